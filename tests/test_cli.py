"""The operator CLI as a new operator would use it (a real subprocess)."""
import csv
import io
import json
import os
import subprocess
import sys

import pytest

ROOT = os.environ["COMFY_CREDITS_IMPORT_ROOT"]  # set by conftest


@pytest.fixture
def cli(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT, COMFY_CREDITS_DB=str(tmp_path / "cli.db"))
    env.pop("COMFY_CREDITS_CONFIG", None)

    def run(*args, expect=0):
        p = subprocess.run([sys.executable, "-m", "comfy_credits_ext", *args], capture_output=True,
                           text=True, env=env, cwd=tmp_path, timeout=60)
        assert p.returncode == expect, (args, p.returncode, p.stdout, p.stderr)
        return p
    return run


def test_walkthrough(cli):
    out = cli("user", "add", "ann@example.com", "--name", "Ann").stdout
    assert "created account 1" in out
    cli("user", "add", "bob@example.com", "--admin")
    out = cli("grant", "ann@example.com", "500", "--note", "welcome", "--key", "w1").stdout
    assert "granted 500.00 credits" in out and "balance 500.00" in out
    out = cli("grant", "ann@example.com", "500", "--note", "welcome", "--key", "w1").stdout
    assert "already applied" in out and "balance 500.00" in out
    cli("grant", "1", "0.5")
    bal = json.loads(cli("balance", "ann@example.com", "--json").stdout)
    assert bal["balance"] == 500_500_000 and bal["balance_credits"] == "500.50"
    assert bal["granted_total"] == 500_500_000 and bal["paid_total"] == 0
    listing = cli("user", "list").stdout
    assert "ann@example.com" in listing and "admin" in listing
    hist = cli("history", "ann@example.com", "--csv").stdout
    rows = list(csv.DictReader(io.StringIO(hist)))
    assert [r["credits"] for r in rows] == ["0.50", "500.00"]
    assert rows[1]["note"] == "welcome"
    js = json.loads(cli("history", "1", "--json", "--kind", "grant", "--limit", "1").stdout)
    assert len(js["entries"]) == 1 and js["next_cursor"] is not None
    out = cli("verify").stdout
    assert "ok: every invariant holds" in out
    cli("user", "disable", "ann@example.com")
    assert "ann@example.com" not in cli("user", "list").stdout
    assert "disabled" in cli("user", "list", "--all").stdout
    assert "expired 0 hold(s)" in cli("expire").stdout


@pytest.mark.parametrize("args,code,needle", [
    (("grant", "ghost@example.com", "5"), 1, "no account with email"),
    (("grant", "99", "5"), 1, "no account with id 99"),
    (("grant", "someone", "5"), 2, "neither an account id nor an email"),
    (("grant", "1", "-5"), 2, "must be positive"),
    (("grant", "1", "1.0000001"), 2, "not an amount of credits"),
    (("grant", "1", "0"), 2, "must be positive"),
    (("grant", "1", "99999999999999999999"), 2, "not an amount of credits"),
    (("user", "add", "not-an-email"), 2, "not a valid email"),
    (("history", "1", "--limit", "0"), 2, "--limit"),
    (("history", "1", "--since", "yesterday"), 2, "not a date"),
    (("price", "estimate", "OpenAIDalle3", "{not json"), 2, "not valid JSON"),
    (("price", "estimate", "OpenAIDalle3", "[1]"), 2, "must be an object"),
])
def test_bad_input_exit_codes(cli, args, code, needle):
    cli("user", "add", "ann@example.com")
    p = cli(*args, expect=code)
    assert needle in p.stderr
    assert "Traceback" not in p.stderr


def test_bad_config_is_reported(cli, tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text('{"databse": "x.db"}')
    p = cli("--config", str(cfg), "user", "list", expect=2)
    assert "unknown key(s) databse" in p.stderr
    cfg.write_text('{"rates": {"usd": 211.5}}')
    p = cli("--config", str(cfg), "user", "list", expect=2)
    assert "decimal string" in p.stderr
    cfg.write_text("{")
    assert "not valid JSON" in cli("--config", str(cfg), "user", "list", expect=2).stderr


def test_verify_reports_tampering_with_exit_1(cli, tmp_path):
    import sqlite3
    cli("user", "add", "ann@example.com")
    cli("grant", "1", "5")
    con = sqlite3.connect(tmp_path / "cli.db")
    con.execute("UPDATE accounts SET balance = balance + 7")
    con.commit()
    con.close()
    p = cli("verify", expect=1)
    assert "PROBLEM: account 1: balance 5000007 but its entries sum to 5000000" in p.stdout


def test_storage_error_exit_4(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT, COMFY_CREDITS_DB=str(tmp_path / "missing" / "x.db"))
    p = subprocess.run([sys.executable, "-m", "comfy_credits_ext", "user", "list"], capture_output=True,
                       text=True, env=env, timeout=60)
    assert p.returncode == 4 and "cannot open database" in p.stderr


def test_invite_command(cli, tmp_path):
    out = cli("invite", "Invited@Example.com", "--days", "3", "--url", "https://comfy.example.com/").stdout.strip()
    assert out.startswith("https://comfy.example.com/?credits_invite=cci1.")
    data = json.loads(cli("invite", "invited@example.com", "--json").stdout)
    assert data["email"] == "invited@example.com" and data["url"].startswith("http://127.0.0.1:8188/?credits_invite=")
    assert (tmp_path / "invite.key").stat().st_mode & 0o777 == 0o600  # the shared key, owner-only
    cli("user", "add", "taken@example.com")
    assert "exists already" in cli("invite", "taken@example.com", expect=1).stderr
    assert "email" in cli("invite", "not-an-email", expect=2).stderr.lower()
    assert "30 days" in cli("invite", "a@example.com", "--days", "40", expect=2).stderr
