"""Operator side (issue #13): admin routes, audit log, reconciliation report.

Every admin route refuses a normal account (403) and a stranger (401); writes
refuse cross-site requests; bad input changes nothing (balance, audit log)."""
import datetime as dt
import json
import os
import re
import sqlite3
import time

import pytest

from appserver import Server
from comfy_credits_ext import _core, admin, cli

M = 1_000_000
CROSS = {"Origin": "https://evil.example.com"}


@pytest.fixture
def srv(tmp_path):
    s = Server(tmp_path)
    led = s.rt.ledger
    s.admin_id = led.create_account("boss@example.com", role="admin")["id"]
    s.admin_key = led.create_credential(s.admin_id, "api_key")["token"]
    s.other = led.create_account("ann@example.com", display_name="Ann")["id"]
    yield s
    s.close()


def as_admin(s, method, path, body=None, headers=None):
    return s.call(method, path, body, headers={"Authorization": f"Bearer {s.admin_key}", **(headers or {})})


def admin_routes(s):
    out = []
    for r in s.app.router.routes():
        info = r.resource.get_info() if r.resource else {}
        path = info.get("path") or info.get("formatter")
        if path and path.startswith("/credits/admin") and r.method != "HEAD":
            out.append((r.method, path.replace("{account_id}", str(s.other)).replace("{key_id}", "1")))
    return out


def audit_count(s):
    return s.rt.audit.verify()["records"]


def run(led, key, acct, held, billed, node="OpenAIDalle3", model="dall-e-3"):
    h = led.hold(key, acct, held, 60_000, node_class=node, model=model)
    if billed:
        led.settle(f"settle:{key}", h["hold_id"], billed)
    else:
        led.void(f"void:{key}", h["hold_id"])


def test_every_admin_route_refuses_a_normal_account_and_a_stranger(srv):
    routes = admin_routes(srv)
    assert len(routes) >= 11, routes
    for method, path in routes:
        body = {"credits": "5", "note": "x", "active": False} if method == "POST" else None
        st, data, _ = srv.call(method, path, body)  # buyer@example.com's personal key: a normal account
        assert st == 403 and data["error"]["type"] == "admin_only", (method, path, st, data)
        st, data, _ = srv.call(method, path, body, auth=False)
        assert st == 401, (method, path, st, data)
    assert srv.rt.ledger.account(srv.other)["balance"] == 0 and srv.rt.ledger.account(srv.other)["active"]
    assert audit_count(srv) == 0


def test_every_account_route_answers_the_prologue_the_same(srv):
    """Every /credits/admin/accounts/{account_id}... route (admin.admin_route): the same refusals, in the same
    order: cross-site writes first (even from a stranger), then who asks, then a JSON body, then the account."""
    routes = [(r.method, r.resource.get_info().get("formatter")) for r in srv.app.router.routes()
              if r.resource and "{account_id}" in (r.resource.get_info().get("formatter") or "") and r.method != "HEAD"]
    assert len(routes) >= 6, routes
    for method, fmt in routes:
        path = fmt.replace("{account_id}", str(srv.other))
        body = {"credits": "5", "note": "x"} if method == "POST" else None
        if method == "POST":
            st, data, _ = srv.call(method, path, body, headers=CROSS, auth=False)
            assert st == 403 and data["error"]["type"] == "bad_origin", (path, data)
            st, data, _ = srv.call(method, path, raw="{}", headers={"Authorization": f"Bearer {srv.admin_key}",
                                                                   "Content-Type": "text/plain"})
            assert st == 400 and data["error"]["type"] == "bad_json", (path, data)
        st, data, _ = srv.call(method, path, body, auth=False)
        assert st == 401, (path, data)
        st, data, _ = srv.call(method, path, body)
        assert st == 403 and data["error"] == {"type": "admin_only", "message": "This needs an account with the admin "
                                                                                "role."}, (path, data)
        for bad, want in (("abc", (400, "The account id must be an integer.")),
                          ("-1", (400, "The account id must be positive.")), ("999", (404, "No account 999."))):
            st, data, _ = as_admin(srv, method, fmt.replace("{account_id}", bad), body)
            assert (st, data["error"]["message"]) == want and data["error"]["field"] == "account_id", (fmt, bad, data)
    assert srv.rt.ledger.account(srv.other)["balance"] == 0 and audit_count(srv) == 0


def test_admin_grants_with_a_note_and_the_audit_log_says_who_what_when_where(srv):
    t0 = int(time.time() * 1000)
    st, data, _ = as_admin(srv, "POST", f"/credits/admin/accounts/{srv.other}/grant",
                           {"credits": "12.5", "note": "workshop", "request_id": "r-1"})
    assert st == 200 and data["granted"] == "12.50" and data["account"]["balance_micro"] == 12_500_000, data
    # a retried click with the same request id grants once and is logged once
    st, data, _ = as_admin(srv, "POST", f"/credits/admin/accounts/{srv.other}/grant",
                           {"credits": "12.5", "note": "workshop", "request_id": "r-1"})
    assert st == 200 and data["replayed"] is True
    assert srv.rt.ledger.account(srv.other)["balance"] == 12_500_000
    e = srv.rt.ledger.history(srv.other)["entries"][0]
    assert e["kind"] == "grant" and e["note"] == "workshop"
    st, log, _ = as_admin(srv, "GET", "/credits/admin/audit")
    assert st == 200 and len(log["records"]) == 1
    r = log["records"][0]
    assert r["actor"] == "boss@example.com" and r["actor_id"] == srv.admin_id and r["action"] == "grant"
    assert r["target"] == f"account {srv.other} <ann@example.com>" and r["source"] == "127.0.0.1"
    assert json.loads(r["detail"])["note"] == "workshop" and r["at_ms"] >= t0
    # the CLI reads the same log
    assert cli.main(["--db", str(srv.rt.cfg.database), "audit", "--json"]) == 0


@pytest.mark.parametrize("body,field", [
    ({"credits": "-5", "note": "x"}, "credits"),
    ({"credits": "0", "note": "x"}, "credits"),
    ({"credits": "abc", "note": "x"}, "credits"),
    ({"credits": 1e30, "note": "x"}, "credits"),
    ({"credits": "99999999999999999999", "note": "x"}, "credits"),
    ({"credits": True, "note": "x"}, "credits"),
    ({"credits": "5"}, "note"),
    ({"credits": "5", "note": "   "}, "note"),
    ({"credits": "5", "note": "x" * 300}, "note"),
    ({"credits": "5", "note": "x", "request_id": "a b"}, "request_id"),
])
def test_bad_grants_change_nothing(srv, body, field):
    st, data, _ = as_admin(srv, "POST", f"/credits/admin/accounts/{srv.other}/grant", body)
    assert st == 400 and data["error"]["field"] == field, data
    assert srv.rt.ledger.account(srv.other)["balance"] == 0 and audit_count(srv) == 0


def test_bad_targets_and_origins_change_nothing(srv):
    good = {"credits": "5", "note": "x"}
    for path, st_want in ((f"/credits/admin/accounts/999/grant", 404), ("/credits/admin/accounts/abc/grant", 400),
                          ("/credits/admin/accounts/-1/grant", 400)):
        st, data, _ = as_admin(srv, "POST", path, good)
        assert st == st_want, (path, data)
    st, data, _ = as_admin(srv, "POST", f"/credits/admin/accounts/{srv.other}/grant", good, CROSS)
    assert st == 403 and data["error"]["type"] == "bad_origin"
    st, data, _ = srv.call("POST", f"/credits/admin/accounts/{srv.other}/grant", raw=json.dumps(good),
                           headers={"Authorization": f"Bearer {srv.admin_key}", "Content-Type": "text/plain"})
    assert st == 400 and data["error"]["type"] == "bad_json"
    st, data, _ = as_admin(srv, "POST", f"/credits/admin/accounts/{srv.other}/status", {"active": "no"})
    assert st == 400 and data["error"]["field"] == "active"
    st, data, _ = as_admin(srv, "POST", f"/credits/admin/accounts/{srv.admin_id}/status", {"active": False})
    assert st == 400  # an admin cannot lock themselves out
    assert srv.rt.ledger.account(srv.other)["balance"] == 0 and audit_count(srv) == 0


def test_disable_enable_search_and_history(srv):
    st, data, _ = as_admin(srv, "POST", f"/credits/admin/accounts/{srv.other}/status", {"active": False})
    assert st == 200 and data["account"]["status"] == "disabled"
    assert not srv.rt.ledger.account(srv.other)["active"]
    st, data, _ = as_admin(srv, "GET", "/credits/admin/accounts?q=ANN&status=disabled")
    assert st == 200 and [a["email"] for a in data["accounts"]] == ["ann@example.com"]
    st, data, _ = as_admin(srv, "GET", "/credits/admin/accounts?status=weird")
    assert st == 400
    st, data, _ = as_admin(srv, "POST", f"/credits/admin/accounts/{srv.other}/status", {"active": True})
    assert st == 200 and data["account"]["active"] is True
    srv.rt.ledger.grant("g", srv.other, 3 * M, note="hello")
    st, data, _ = as_admin(srv, "GET", f"/credits/admin/accounts/{srv.other}/history")
    assert st == 200 and data["entries"][0]["note"] == "hello"
    st, log, _ = as_admin(srv, "GET", "/credits/admin/audit?limit=1")
    assert [r["action"] for r in log["records"]] == ["enable"] and log["next_cursor"]
    st, log, _ = as_admin(srv, "GET", f"/credits/admin/audit?limit=5&cursor={log['next_cursor']}")
    assert [r["action"] for r in log["records"]] == ["disable"]


def test_reconciliation_report_sums_equal_the_ledger(srv):
    led = srv.rt.ledger
    led.grant("g1", srv.other, 100 * M)
    led.purchase("stripe:cs_1", srv.other, 50 * M, "usd", 2370, "card", "cs_1")
    run(led, "r1", srv.other, 20 * M, 8 * M)                     # upstream billed 8, charged 8
    run(led, "r2", srv.other, 20 * M, 30 * M)                    # billed 30, charged 20, 10 uncollected
    run(led, "r3", srv.other, 5 * M, 0, node="GeminiNode", model="gemini-2.5-pro")  # billed nothing: free
    open_hold = led.hold("r4", srv.other, 7 * M, 60_000, node_class="GeminiNode")
    today = dt.datetime.now(dt.timezone.utc).date().isoformat()
    st, rep, _ = as_admin(srv, "GET", f"/credits/admin/report?from={today}&to={today}")
    assert st == 200, rep
    t = rep["total"]
    assert (t["runs"], t["runs_free"], t["billed"], t["charged"], t["uncollected"], t["margin"]) == \
        (3, 1, 38 * M, 28 * M, 10 * M, -10 * M)
    assert t["purchased"] == 50 * M and t["granted"] == 100 * M
    acct = led.account(srv.other)
    assert t["charged"] == acct["spent_total"] and t["uncollected"] == acct["uncollected_total"]
    st, text, _ = as_admin(srv, "GET", f"/credits/admin/report?from={today}&to={today}&format=csv")
    assert st == 200 and text.splitlines()[0].startswith("day,runs,free_runs")
    assert text.splitlines()[-1] == "total,3,1,0,38.00,28.00,10.00,-10.00,1,50.00,0.00,100.00"
    # verify checks the report against the ledger, and the audit chain
    st, v, _ = as_admin(srv, "GET", "/credits/admin/verify")
    assert st == 200 and v["ok"] and v["report_total"]["charged"] == 28 * M and v["audit"]["ok"]
    st, ch, _ = as_admin(srv, "GET", "/credits/admin/charts?days=7")
    assert st == 200 and ch["by_node"][0] == {"node_class": "OpenAIDalle3", "charged_micro": 28 * M}
    assert ch["days"][-1]["purchased_micro"] == 50 * M and ch["top_accounts"][0]["email"] == "ann@example.com"
    st, hs, _ = as_admin(srv, "GET", "/credits/admin/holds")
    assert st == 200 and [h["hold_id"] for h in hs["holds"]] == [open_hold["hold_id"]]
    # the CLI prints the same sums
    db = str(srv.rt.cfg.database)
    assert cli.main(["--db", db, "report", "--from", today, "--to", today, "--csv"]) == 0


@pytest.mark.parametrize("query,field", [
    ("from=2026-11-30&to=2026-11-01", "to"),        # reversed
    ("from=2025-01-01&to=2026-11-01", "to"),        # longer than 366 days
    ("from=yesterday&to=2026-11-01", "from"),
    ("from=2026-11-01&to=2026-13-01", "to"),
])
def test_bad_report_ranges_are_clear_400s(srv, query, field):
    st, data, _ = as_admin(srv, "GET", f"/credits/admin/report?{query}")
    assert st == 400 and data["error"]["field"] == field, data
    st, data, _ = as_admin(srv, "GET", "/credits/admin/report?format=xml")
    assert st == 400


def test_cli_report_errors_and_exit_codes(tmp_path, capsys):
    db = str(tmp_path / "l.db")
    assert cli.main(["--db", db, "report", "--from", "2026-11-30", "--to", "2026-11-01"]) == 2
    assert "reversed" in capsys.readouterr().err
    assert cli.main(["--db", db, "report", "--from", "2024-01-01", "--to", "2026-11-01"]) == 2
    assert "366 days" in capsys.readouterr().err
    assert cli.main(["--db", db, "report", "--from", "2026-11-01", "--to", "2026-11-30", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert len(rep["days"]) == 30 and rep["total"]["runs"] == 0


def test_cli_changes_are_audited_and_a_tampered_log_is_found(tmp_path, capsys):
    db = str(tmp_path / "l.db")
    assert cli.main(["--db", db, "user", "add", "a@example.com"]) == 0
    assert cli.main(["--db", db, "grant", "a@example.com", "5", "--note", "welcome"]) == 0
    assert cli.main(["--db", db, "user", "disable", "a@example.com"]) == 0
    capsys.readouterr()
    assert cli.main(["--db", db, "audit"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"cli:\S+\s+grant\s+account 1 <a@example.com>\s+from cli", out), out
    assert "disable" in out
    assert cli.main(["--db", db, "verify"]) == 0
    # append-only by schema; an edit behind its back breaks the chain, and verify says so
    con = sqlite3.connect(str(tmp_path / "l.audit.db"))
    with pytest.raises(sqlite3.DatabaseError):
        con.execute("DELETE FROM audit WHERE id=1")
    con.execute("DROP TRIGGER audit_no_update")
    con.execute("UPDATE audit SET detail='{}' WHERE id=1")
    con.commit()
    con.close()
    capsys.readouterr()
    assert cli.main(["--db", db, "verify"]) == 1
    assert "audit log: record 1 was changed" in capsys.readouterr().out
    assert cli.main(["--db", db, "audit"]) == 1


def test_attention_table_for_admins(srv):
    from comfy_credits_ext.attention import Attention
    st = Attention(srv.rt.ledger)
    st.record({"session_id": "cs_x", "account_id": srv.other, "currency": "usd", "amount_total": 500,
               "credits_micro": 1055 * M, "method_used": "card", "reason": "amount differs"})
    st.close()
    code, data, _ = as_admin(srv, "GET", "/credits/admin/attention")
    assert code == 200 and [p["session_id"] for p in data["purchases"]] == ["cs_x"]
    code, data, _ = as_admin(srv, "GET", "/credits/admin/attention?all=maybe")
    assert code == 400


def test_farm_mode_local_files_never_land_in_the_working_directory(tmp_path, pg_uri):
    """With a PostgreSQL ledger the audit log and the needs-attention table are local files: ComfyUI's user
    directory, else beside the config file, else $XDG_CONFIG_HOME/comfy-credits; never the cwd."""
    import subprocess
    import sys
    from comfy_credits_ext import config
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = dict(os.environ, PYTHONPATH=os.environ["COMFY_CREDITS_IMPORT_ROOT"])
    env.pop("COMFY_CREDITS_CONFIG", None)

    def cli(*args):
        p = subprocess.run([sys.executable, "-m", "comfy_credits_ext", "--db", pg_uri, *args], cwd=cwd, env=env,
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        return p.stdout
    cli("user", "add", "farmaudit@example.com")
    cli("grant", "farmaudit@example.com", "5", "--note", "audited")
    assert " grant " in cli("audit")
    assert not list(cwd.iterdir())                       # nothing in the working directory
    local = config.local_dir()
    assert str(local).startswith(os.environ["XDG_CONFIG_HOME"]) and (local / "purchase-attention.audit.db").is_file()
    # beside the config file when there is one, whatever the cwd
    conf = tmp_path / "conf" / "config.json"
    conf.parent.mkdir()
    conf.write_text(json.dumps({"database": pg_uri}))
    assert config.load(str(conf)).attention_path == conf.parent / config.ATTENTION_FILE_NAME
    cli("--config", str(conf), "grant", "farmaudit@example.com", "1", "--note", "again")
    assert (conf.parent / "purchase-attention.audit.db").is_file() and not list(cwd.iterdir())
