"""Spending caps (issue #13, src/caps.c): enforced by the ledger at hold time,
atomically with the balance check, across threads and processes; the
queue-time gate refuses the same way; bad caps are clear 4xx / CLI errors."""
import multiprocessing
import os
import sys

import pytest

from appserver import Server
from comfy_credits_ext import _core, cli

M = 1_000_000
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _holds(db, account_id, n, start, out):
    sys.path.insert(0, ROOT)  # this checkout's pack, whatever the parent's sys.path[0] was
    from comfy_credits_ext import _core as core
    led = core.Ledger(db)
    ok = 0
    for i in range(n):
        try:
            led.hold(f"p{start + i}", account_id, M, 600_000)
            ok += 1
        except core.InsufficientCredits as exc:
            assert exc.field == "cap_daily", exc
    led.close()
    out.put(ok)


def test_four_processes_exactly_fifty_of_a_thousand_one_credit_holds_pass(tmp_path):
    db = str(tmp_path / "l.db")
    led = _core.Ledger(db)
    a = led.create_account("cap@example.com")["id"]
    led.grant("g", a, 1000 * M)
    _core.set_caps(led, a, "admin", 50 * M, None)
    led.close()
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_holds, args=(db, a, 250, 250 * k, out)) for k in range(4)]
    for p in procs:
        p.start()
    passed = [out.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert sum(passed) == 50, passed
    led = _core.Ledger(db)
    acct = led.account(a)
    assert acct["held"] == 50 * M and acct["caps"]["daily_used"] == 50 * M
    assert led.verify()["ok"]
    led.close()


def test_refusal_names_the_cap_its_window_and_reset_and_resolution_returns_room(tmp_path):
    led = _core.Ledger(str(tmp_path / "l.db"))
    a = led.create_account("c@example.com")["id"]
    led.grant("g", a, 100 * M)
    _core.set_caps(led, a, "admin", 10 * M, 30 * M)
    h1 = led.hold("h1", a, 4 * M, 60_000)
    led.hold("h2", a, 4 * M, 60_000)
    with pytest.raises(_core.InsufficientCredits) as e:
        led.hold("h3", a, 4 * M, 60_000)
    assert e.value.field == "cap_daily"
    msg = str(e.value)
    assert "daily spending cap reached" in msg and "10.00 credits per UTC day" in msg and "resets at" in msg
    assert "UTC" in msg and "8.00 are used or held today" in msg
    led.settle("settle:h1", h1["hold_id"], 1 * M)       # charged 1: 3 return to today's window
    led.hold("h3", a, 4 * M, 60_000)
    assert led.account(a)["caps"]["daily_used"] == 9 * M
    # the person's own lower cap binds, and says so
    with pytest.raises(_core.InvalidArgument) as e:
        _core.set_caps(led, a, "own", 20 * M, 30 * M)   # above the operator's
    assert e.value.field == "daily"
    with pytest.raises(_core.InvalidArgument) as e:
        _core.set_caps(led, a, "own", 5 * M, 31 * M)    # above the operator's monthly 30
    assert e.value.field == "monthly"
    _core.set_caps(led, a, "own", 9 * M, None)          # none of their own: the operator's monthly applies
    with pytest.raises(_core.InsufficientCredits) as e:
        led.hold("h4", a, 1 * M, 60_000)
    assert "your own daily cap is 9.00" in str(e.value)
    # the monthly window
    _core.set_caps(led, a, "own", None, None)
    _core.set_caps(led, a, "admin", None, 10 * M)
    with pytest.raises(_core.InsufficientCredits) as e:
        led.hold("h5", a, 2 * M, 60_000)
    assert e.value.field == "cap_monthly" and "per UTC month" in str(e.value)
    assert led.verify()["ok"]
    led.close()


@pytest.mark.parametrize("daily", [-1 * M, 10 ** 16, "x"])
def test_bad_caps_change_nothing(tmp_path, daily):
    led = _core.Ledger(str(tmp_path / "l.db"))
    a = led.create_account("c@example.com")["id"]
    with pytest.raises((_core.InvalidArgument, TypeError)):
        _core.set_caps(led, a, "admin", daily, None)
    assert led.account(a)["caps"]["daily"] is None
    with pytest.raises(_core.NotFound):
        _core.set_caps(led, 999, "admin", M, None)
    led.close()


@pytest.fixture
def srv(tmp_path):
    s = Server(tmp_path)
    led = s.rt.ledger
    s.admin_key = led.create_credential(led.create_account("boss@example.com", role="admin")["id"], "api_key")["token"]
    led.grant("g", s.account, 100 * M)
    yield s
    s.close()


def boss(s, method, path, body=None):
    return s.call(method, path, body, headers={"Authorization": f"Bearer {s.admin_key}"})


def test_admin_sets_caps_the_person_lowers_them_bad_input_is_a_400(srv):
    path = f"/credits/admin/accounts/{srv.account}/caps"
    for body, field in (({"daily": "-5"}, "daily"), ({"daily": "abc"}, "daily"), ({"monthly": True}, "monthly"),
                        ({"daily": "2000000000"}, "daily"), ({"weekly": "5"}, "weekly")):
        st, data, _ = boss(srv, "POST", path, body)
        assert st == 400 and data["error"]["field"] == field, (body, data)
    st, data, _ = srv.call("POST", path, {"daily": "5"})   # a normal account
    assert st == 403
    assert srv.rt.ledger.account(srv.account)["caps"]["daily"] is None
    assert srv.rt.audit.verify()["records"] == 0
    st, data, _ = boss(srv, "POST", path, {"daily": "20", "monthly": "100"})
    assert st == 200 and data["account"]["caps"]["daily"] == "20.00"
    log = srv.rt.audit.list()["records"]
    assert log[0]["action"] == "caps" and '"daily": "20.00"' in log[0]["detail"]
    # the person: own caps below the operator's only
    st, data, _ = srv.call("POST", "/credits/caps", {"daily": "30", "monthly": "100"})
    assert st == 400 and data["error"]["field"] == "daily" and "operator" in data["error"]["message"]
    st, data, _ = srv.call("POST", "/credits/caps", {"daily": "5", "monthly": "100"})
    assert st == 200 and data["own_daily"] == "5.00" and data["daily_left_micro"] == 5 * M
    st, data, _ = srv.call("POST", "/credits/caps", {"daily": "5"}, headers={"Origin": "https://evil.example.com"})
    assert st == 403
    st, data, _ = srv.call("GET", "/credits/caps")
    assert st == 200 and data["daily"] == "20.00" and data["own_daily"] == "5.00"


def test_cli_caps(tmp_path, capsys):
    db = str(tmp_path / "l.db")
    assert cli.main(["--db", db, "user", "add", "a@example.com"]) == 0
    assert cli.main(["--db", db, "caps", "a@example.com", "--daily", "50"]) == 0
    assert "daily cap 50.00 credits" in capsys.readouterr().out
    for bad in ("-1", "abc"):
        assert cli.main(["--db", db, "caps", "a@example.com", "--daily", bad]) == 2
    assert cli.main(["--db", db, "caps", "a@example.com", "--daily", "none", "--json"]) == 0
    assert cli.main(["--db", db, "audit"]) == 0
    assert capsys.readouterr().out.count(" caps ") == 2
