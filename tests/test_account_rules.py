"""Issue #9.4 and #9.7: one spelling per email, one password rule (in C),
personal keys offered for revocation, clear 4xx answers for odd credentials."""
import unicodedata

import pytest

from appserver import Server, new_jar
from comfy_credits_ext import _core, emails
from comfy_credits_ext.cli import main as cli_main


@pytest.mark.parametrize("a,b", [
    ("josé@example.com", unicodedata.normalize("NFD", "josé@example.com")),
    ("kate@example.com", "\u212aate@example.com"),                     # Kelvin sign
    ("kate@example.com", "KATE@Example.COM"),
    ("strasse@example.com", "STRASSE@example.com"),
    ("ｋａｔｅ@example.com", "kate@example.com"),                          # full width
])
def test_one_spelling_per_address(a, b):
    assert emails.normalize(a) == emails.normalize(b)


@pytest.mark.parametrize("bad", [
    "k\u200bate@example.com",        # zero-width space
    "kate\u00ad@example.com",        # soft hyphen
    "\u202eevil@example.com",        # right-to-left override
    "k\u0430te@example.com",         # Cyrillic а among Latin letters
    "kate@ex\u0430mple.com",         # ... in the domain
    "ka te@example.com", "kate", "@example.com", "kate@",
])
def test_invisible_and_mixed_script_addresses_are_refused(bad):
    with pytest.raises(emails.EmailError):
        emails.normalize(bad)


def test_single_script_and_allowed_mixes_pass():
    for ok in ("ааа@пример.рф", "田中さん@example.jp", "josé.o'neil+tag@example.com"):
        emails.normalize(ok)


@pytest.fixture
def srv(tmp_path):
    s = Server(tmp_path, {"allow_signup": True})
    yield s
    s.close()


def signup(srv, email, password="long enough pw"):
    return srv.call("POST", "/credits/signup", {"email": email, "password": password}, auth=False, jar=new_jar(srv))


def test_lookalike_signups_are_one_account_or_refused(srv):
    assert signup(srv, "josé@example.com")[0] == 200
    st, body, _ = signup(srv, unicodedata.normalize("NFD", "JOSÉ@example.com"))
    assert st == 409 and body["error"]["type"] == "already_exists"
    st, body, _ = signup(srv, "jos\u200bé@example.com")
    assert st == 400 and body["error"]["field"] == "email"
    # Signing in with another spelling of the same address works.
    st, body, _ = srv.call("POST", "/credits/session", {"email": "JOSE\u0301@EXAMPLE.COM", "password": "long enough pw"},
                           auth=False, jar=new_jar(srv))
    assert st == 200 and body["account"]["email"] == "josé@example.com"


@pytest.mark.parametrize("pw,ok", [
    ("12345678", True), ("ééééééé", False), ("éééééééé", True),  # characters, not bytes
    (" " * 8, False), ("\u3000" * 8, False), ("\t \n \t \n ", False),  # only spaces
    ("x" * 1024, True), ("x" * 1025, False), ("é" * 513, False),   # at most 1,024 bytes
    ("password\x01", False),
])
def test_one_password_rule_everywhere(srv, pw, ok):
    if ok:
        _core.check_password(pw)
    else:
        with pytest.raises(_core.InvalidArgument):
            _core.check_password(pw)
    st, body, _ = signup(srv, f"p{abs(hash(pw))}@example.com", pw)
    assert (st == 200) == ok, body
    if not ok:
        assert body["error"]["field"] == "password"
        with pytest.raises(_core.NotFound):  # refused before the account was made
            srv.rt.ledger.account_by_email(f"p{abs(hash(pw))}@example.com")
    # The same rule for a password change (was: 8 spaces accepted).
    srv.rt.ledger.set_password(srv.account, "old password 1")
    st, body, _ = srv.call("POST", "/credits/password", {"old_password": "old password 1", "new_password": pw})
    assert (st == 200) == ok, body


def test_password_change_and_sign_out_everywhere_offer_to_revoke_keys(srv):
    led = srv.rt.ledger
    led.set_password(srv.account, "old password 1")
    led.create_credential(srv.account, "api_key", "stolen")  # srv.key plus this one
    st, body, _ = srv.call("POST", "/credits/password", {"old_password": "old password 1",
                                                         "new_password": "new password 2"})
    assert st == 200 and body["api_keys"] == 2 and body["revoked_api_keys"] == 0
    assert "2 personal API keys still work" in body["api_keys_note"] and "revoke_api_keys" in body["api_keys_note"]
    st, body, _ = srv.call("DELETE", "/credits/sessions?revoke_api_keys=true")
    assert st == 200 and body["revoked_api_keys"] == 2 and body["api_keys"] == 0
    st, body, _ = srv.call("GET", "/credits/balance")  # the key used for that call is gone too
    assert st == 401 and body["error"]["type"] == "revoked" and "revoked" in body["error"]["message"]


def test_cli_says_how_many_keys_and_revokes_on_request(tmp_path, capsys, monkeypatch):
    db = str(tmp_path / "l.db")
    with _core.Ledger(db) as led:
        a = led.create_account("cli@example.com")["id"]
        led.create_credential(a, "api_key", "k")
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("new password 9\n"))
    assert cli_main(["--db", db, "user", "password", "CLI@example.com"]) == 0
    assert "1 personal API key(s) still work (add --revoke-keys" in capsys.readouterr().out
    assert cli_main(["--db", db, "user", "signout", "cli@example.com", "--revoke-keys"]) == 0
    assert "1 personal API key(s) revoked" in capsys.readouterr().out
    assert cli_main(["--db", db, "user", "add", "k\u0430te@example.com"]) == 2
    assert "mixes scripts" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("        \n"))
    assert cli_main(["--db", db, "user", "password", "cli@example.com"]) == 2


def test_a_nul_in_a_key_is_a_4xx(srv):
    """Was: 500 on /credits/session (and on /prompt: test_csrf.py)."""
    st, body, _ = srv.call("POST", "/credits/session", {"api_key": "cck_" + "0" * 30 + "\x00" + "0" * 33}, auth=False)
    assert 400 <= st < 500 and body["error"]["type"], body


def test_a_revoked_key_says_so(srv):
    kid = srv.rt.ledger.list_credentials(srv.account, "api_key")[0]["id"]
    srv.rt.ledger.revoke_credential(srv.account, "api_key", kid)
    st, body, _ = srv.call("GET", "/credits/balance")
    assert st == 401 and body["error"]["type"] == "revoked" and "revoked" in body["error"]["message"]
    assert "expired" not in body["error"]["message"]
