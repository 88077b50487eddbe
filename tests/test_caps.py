"""Spending caps (issue #13, src/caps.c): enforced by the ledger at hold time,
atomically with the balance check, across threads and processes; the
queue-time gate refuses the same way; bad caps are clear 4xx / CLI errors."""
import json
import multiprocessing
import os
import sys
import time

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


# ---------------------------------------------------------------- farm mode (PostgreSQL, src/store_pg.c)


def test_farm_four_processes_exactly_fifty_of_a_thousand_one_credit_holds_pass(pg_uri):
    from test_farm import worker
    with _core.Ledger(pg_uri) as led:
        a = led.create_account("farmcap@example.com")["id"]
        led.grant("g", a, 1000 * M)
        _core.set_caps(led, a, "admin", 50 * M, None)
    start = time.time() + 1.5  # every process connected before the first hold
    procs = [worker("race", pg_uri, a, 250, start) for _ in range(4)]
    got = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        got.append(int(out.split()[1]))
    assert sum(got) == 50, got
    with _core.Ledger(pg_uri) as led:
        acct = led.account(a)
        assert acct["held"] == 50 * M and acct["caps"]["daily_used"] == 50 * M and acct["caps"]["daily_left"] == 0
        with pytest.raises(_core.InsufficientCredits) as e:
            led.hold("one-more", a, M, 60_000)
        assert e.value.field == "cap_daily" and "50.00 credits per UTC day" in str(e.value)
        assert led.verify()["ok"]


def test_farm_accounts_made_before_caps_are_uncapped_and_caps_survive_migrate_to(tmp_path, pg_uri):
    from test_farm import run_cli
    src = str(tmp_path / "ledger.db")
    with _core.Ledger(src) as led:
        a = led.create_account("moved@example.com")["id"]
        b = led.create_account("free@example.com")["id"]
        led.grant("g", a, 100 * M)
        led.grant("g2", b, 100 * M)
        _core.set_caps(led, a, "admin", 10 * M, 40 * M)
        _core.set_caps(led, a, "own", 8 * M, None)
        led.hold("h", a, 5 * M, 600_000)
    code, out, err = run_cli("--db", src, "migrate", "--to", pg_uri)
    assert code == 0 and "ok: the PostgreSQL ledger matches" in out, out + err
    with _core.Ledger(pg_uri) as led, _core.Ledger(src) as old:
        assert led.account(a)["caps"] == old.account(a)["caps"]
        caps = led.account(a)["caps"]
        assert (caps["daily"], caps["monthly"], caps["own_daily"], caps["daily_used"]) == (10 * M, 40 * M, 8 * M, 5 * M)
        with pytest.raises(_core.InsufficientCredits) as e:
            led.hold("h2", a, 4 * M, 600_000)   # 5 + 4 > the person's own 8
        assert "your own daily cap is 8.00" in str(e.value)
        led.hold("h3", a, 3 * M, 600_000)
        assert led.account(b)["caps"]["daily"] is None
        led.hold("hb", b, 100 * M, 600_000)     # uncapped: the whole balance
        assert led.verify()["ok"]


def test_farm_two_comfyui_servers_refuse_past_the_cap_at_queue_time(tmp_path, pg_uri):
    """One cap, two servers: a run on A uses it up; B refuses the next prompt before anything runs."""
    from test_farm import http
    from test_integration import Comfy, dalle
    conf = tmp_path / "farm.json"
    conf.write_text(json.dumps({"database": pg_uri}))
    with _core.Ledger(pg_uri) as led:
        acct = led.create_account("capped@example.com")["id"]
        led.grant("g", acct, 100 * M)
        tok = led.create_credential(acct, "api_key", label="farm")["token"]
    auth = {"Authorization": f"Bearer {tok}"}
    servers = []
    try:
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            servers.append(Comfy(tmp_path / name, pack_env={"COMFY_CREDITS_CONFIG": str(conf)}))
        a, b = servers
        st, body, _ = http(a.port, "POST", "/prompt", {"prompt": dalle(), "client_id": "t"}, auth)
        assert st == 200, body
        assert a.wait(body["prompt_id"])["status"]["status_str"] == "success"
        with _core.Ledger(pg_uri) as led:
            spent = led.account(acct)["spent_total"]
            assert spent > 0
            _core.set_caps(led, acct, "admin", spent + spent // 2, None)  # room for half a run more
        st, body, _ = http(b.port, "POST", "/prompt", {"prompt": dalle("again"), "client_id": "t"}, auth)
        assert st == 400 and body["error"]["type"] == "credits_cap_reached", body
        assert "daily spending cap reached: the operator's daily cap is" in body["error"]["details"], body
        assert "It resets at" in body["error"]["details"]
        with _core.Ledger(pg_uri) as led:
            acc = led.account(acct)
            assert acc["spent_total"] == spent and acc["held"] == 0 and led.verify()["ok"]
    finally:
        for s in servers:
            s.close()
