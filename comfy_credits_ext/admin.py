"""Admin routes under /credits/admin/ (also /api/credits/admin/): the operator's
side in the browser (web/credits_admin.js) and for scripts.

Every route requires an account with the admin role, checked here on the
server for every request; writes also require the same origin (gate.same_origin)
and a JSON body. A normal account gets 403 "admin_only" from every one of them.
Every change an admin makes is appended to the audit log (src/audit.c): who,
what, when, from which address. Money rules stay in C: grants and status go
through the ledger, the reconciliation report is src/report.c.
"""
from __future__ import annotations

import asyncio
import csv
import datetime as dt
import functools
import io
import json
import uuid

from aiohttp import web

from . import _core
from .attention import Attention
from .runtime import audit_path, open_audit  # noqa: F401 - the CLI imports them from here
from .routes import day_window, error, key_view, page_args, public_account, public_entry, read_json, same_origin, signed_in_write
from .throttle import client_address

DAY_MS = 86_400_000
ACCOUNTS_PAGE_MAX = 500
OPEN_HOLDS_MAX = 500
AUDIT_PAGE_MAX = 1000
REQUEST_ID_BYTES_MAX = 64
REPORT_COLUMNS = ["day", "runs", "free_runs", "expired_holds", "billed", "charged", "uncollected", "margin",
                  "purchases", "purchased", "test_purchased", "granted"]



def credits(micro: int) -> str:
    return _core.format_credits(micro)


def caps_view(c: dict) -> dict:
    """An account's spending caps (src/caps.c) in micro-credits (None = no cap) and credits."""
    out = {f"{k}_micro": c[k] for k in ("daily", "monthly", "own_daily", "own_monthly", "daily_left",
                                           "monthly_left", "daily_used", "monthly_used")}
    out.update({k: (None if c[k] is None else credits(c[k])) for k in ("daily", "monthly", "own_daily",
                                                                        "own_monthly")})
    out.update({"daily_resets_ms": c["daily_resets_ms"], "monthly_resets_ms": c["monthly_resets_ms"]})
    return out


def account_row(a: dict) -> dict:
    out = public_account(a)
    out.update({"active": bool(a["active"]), "status": "active" if a["active"] else "disabled",
                "uncollected_micro": a["uncollected_total"], "created_ms": a["created_ms"],
                "caps": caps_view(a["caps"])})
    return out


def parse_cap(v, field: str):
    """A cap as sent: null/"" = no cap, else credits >= 0 ("50", "12.5", 50). ValueError names the field."""
    if v is None or v == "":
        return None
    if isinstance(v, bool) or not isinstance(v, (str, int)):
        raise ValueError(f"{field}: a cap is an amount of credits such as \"50\", or null for no cap")
    try:
        micro = _core.parse_credits(str(v).strip())
    except _core.InvalidArgument:
        raise ValueError(f"{field}: '{v}' is not an amount of credits") from None
    if micro < 0:
        raise ValueError(f"{field}: a cap must not be negative")
    if micro > _core.AMOUNT_MAX:
        raise ValueError(f"{field}: a cap is at most {credits(_core.AMOUNT_MAX)} credits")
    return micro


async def set_caps(rt, account_id: int, who: str, body: dict):
    """(account, None) or (None, 4xx): nothing changes on any error (the ledger checks the rest)."""
    unknown = set(body) - {"daily", "monthly"}
    if unknown:
        return None, error(400, "invalid_argument", f"Unknown field {sorted(unknown)[0]}; send daily and monthly.",
                           sorted(unknown)[0])
    try:
        daily, monthly = parse_cap(body.get("daily"), "daily"), parse_cap(body.get("monthly"), "monthly")
    except ValueError as exc:
        return None, error(400, "invalid_argument", str(exc), str(exc).split(":", 1)[0])
    try:
        return await asyncio.to_thread(_core.set_caps, rt.ledger, account_id, who, daily, monthly), None
    except _core.InvalidArgument as exc:
        return None, error(400, "invalid_argument", str(exc), exc.field)
    except _core.NotFound:
        return None, error(404, "not_found", f"No account {account_id}.", "account_id")


def parse_expiry(v, field: str = "expires"):
    """An API key's expiry as sent: null/"" = never, else "YYYY-MM-DD" (the key works through that UTC day).
    Returns epoch ms of the end of that day, or None. ValueError names the field."""
    if v is None or v == "":
        return None
    if not isinstance(v, str):
        raise ValueError(f"{field}: an expiry is a date such as \"2027-01-31\", or null for never")
    try:
        d = dt.date.fromisoformat(v.strip())
    except ValueError:
        raise ValueError(f"{field}: '{v}' is not a date (YYYY-MM-DD)") from None
    end = dt.datetime(d.year, d.month, d.day, tzinfo=dt.timezone.utc) + dt.timedelta(days=1)
    return int(end.timestamp() * 1000)


def key_limits_audit(k: dict) -> dict:
    """The audit entry of a key's new limits, with what they were before (the ledger reads both in the change's
    own transaction): {"key_id", "hint", "cap", "expires_ms", "was": {"cap", "expires_ms"}}; a cap in credits
    ("12.00") or null for none, an expiry in epoch ms or null for never."""
    def cap(micro):
        return None if micro is None else _core.format_credits(micro)
    return {"key_id": k["id"], "hint": k["hint"], "cap": cap(k["cap_micro"]), "expires_ms": k["expires_ms"] or None,
            "was": {"cap": cap(k["was"]["cap_micro"]), "expires_ms": k["was"]["expires_ms"] or None}}


async def set_key_limits(rt, key_id: int, owner_id: int | None, body: dict):
    """(key, None) or (None, 4xx): a personal API key's cap (credits over its life, null = none) and expiry
    (YYYY-MM-DD, null = never); both fields are set, a missing one means none/never. Nothing changes on error.
    The key is the ledger's (key_view() shows it), with its limits before the change under "was"."""
    unknown = set(body) - {"cap", "expires"}
    if unknown:
        return None, error(400, "invalid_argument", f"Unknown field {sorted(unknown)[0]}; send cap and expires.",
                           sorted(unknown)[0])
    try:
        cap, expires = parse_cap(body.get("cap"), "cap"), parse_expiry(body.get("expires"))
    except ValueError as exc:
        return None, error(400, "invalid_argument", str(exc), str(exc).split(":", 1)[0])
    try:
        k = await asyncio.to_thread(rt.ledger.key_limits, key_id, cap, expires, owner_id=owner_id)
    except _core.InvalidArgument as exc:
        return None, error(400, "invalid_argument", str(exc), exc.field)
    except _core.NotFound:
        return None, error(404, "not_found", "No such active API key" + (" on your account." if owner_id else "."),
                           "key_id")
    return k, None


def path_id(request, name: str):
    """(id, None) or (None, 400) from the path's {name} ("key_id", "account_id"): a positive integer."""
    what = name.replace("_", " ")
    try:
        n = int(request.match_info[name])
    except ValueError:
        return None, error(400, "invalid_argument", f"The {what} must be an integer.", name)
    if n <= 0:
        return None, error(400, "invalid_argument", f"The {what} must be positive.", name)
    return n, None


# ---- reconciliation report (shared with the CLI)

def parse_day(text: str, name: str) -> int:
    """YYYY-MM-DD (UTC) -> ms at the start of that day. ValueError says which."""
    try:
        d = dt.date.fromisoformat(text)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: '{text}' is not a date (YYYY-MM-DD)") from None
    return int(dt.datetime(d.year, d.month, d.day, tzinfo=dt.timezone.utc).timestamp() * 1000)


def report_range(frm: str, to: str) -> tuple[int, int]:
    """--from and --to are days (UTC), both included."""
    since = parse_day(frm, "from")
    until = parse_day(to, "to") + DAY_MS
    if until <= since:
        raise ValueError(f"to: {to} is before from: {frm} (the range is reversed)")
    return since, until


def day_text(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).strftime("%Y-%m-%d")


def report_row(day: str, t: dict) -> dict:
    return {"day": day, "runs": t["runs"], "free_runs": t["runs_free"], "expired_holds": t["expired"],
            "billed": credits(t["billed"]), "charged": credits(t["charged"]),
            "uncollected": credits(t["uncollected"]), "margin": credits(t["charged"] - t["billed"]),
            "purchases": t["purchases"], "purchased": credits(t["purchased"]),
            "test_purchased": credits(t["test_purchased"]), "granted": credits(t["granted"])}


def report_json(rep: dict) -> dict:
    """Credits as exact decimal strings next to the micro-credit integers."""
    def tot(t):
        return {**t, "margin": t["charged"] - t["billed"],
                **{k + "_credits": credits(t[k]) for k in ("billed", "charged", "uncollected", "purchased",
                                                           "test_purchased", "granted")}}
    return {"from": day_text(rep["since_ms"]), "to": day_text(rep["until_ms"] - 1), "since_ms": rep["since_ms"],
            "until_ms": rep["until_ms"], "total": tot(rep["total"]),
            "days": [{"day": day_text(d["day_ms"]), **tot(d)} for d in rep["days"]],
            "spend": [{"day": day_text(s["day_ms"]), **s} for s in rep["spend"]],
            "accounts": rep["accounts"]}


def report_csv(rep: dict) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=REPORT_COLUMNS, lineterminator="\n")
    w.writeheader()
    for d in rep["days"]:
        w.writerow(report_row(day_text(d["day_ms"]), d))
    w.writerow(report_row("total", rep["total"]))
    return buf.getvalue()


def verify_all(ledger, audit) -> dict:
    """verify: the ledger's invariants, Σ of the report == the ledger, the audit chain."""
    rep = ledger.verify()
    chk = _core.report_check(ledger)
    rep["problems"] = list(rep["problems"]) + chk["problems"]
    rep["problems_total"] += len(chk["problems"])
    rep["report_total"] = chk["total"]
    if audit is not None:
        au = audit.verify()
        rep["audit"] = au
        if not au["ok"]:
            rep["problems"].append(f"audit log: record {au['first_bad']} was changed or removed "
                                   "(the hash chain breaks there)")
            rep["problems_total"] += 1
    rep["ok"] = not rep["problems"]
    return rep


def open_holds(ledger, account: dict, cap: int) -> list[dict]:
    """An account's open holds (newest first): its hold entries until their sum reaches `held`."""
    out, left, cursor = [], account["held"], None
    while left > 0 and len(out) < cap:
        page = ledger.history(account["id"], limit=200, cursor=cursor, kinds=["hold"])
        for e in page["entries"]:
            h = ledger.get_hold(e["hold_id"])
            if h["state"] == "open":
                out.append({"hold_id": h["id"], "account_id": account["id"], "email": account["email"],
                            "amount_micro": h["amount"], "amount": credits(h["amount"]),
                            "expires_ms": h["expires_ms"], "created_ms": e["created_ms"],
                            "node_class": e["node_class"], "model": e["model"], "prompt_id": e["prompt_id"]})
                left -= h["amount"]
                if left <= 0 or len(out) >= cap:
                    break
        cursor = page["next_cursor"]
        if cursor is None:
            break
    return out


def all_accounts(ledger) -> list[dict]:
    rows, after = [], 0
    while True:
        page = ledger.accounts(after_id=after, limit=10_000)
        rows += page
        if len(page) < 10_000:
            return rows
        after = page[-1]["id"]


# ---- routes

def register(routes, rt, whoami):
    audit = getattr(rt, "audit", None) or open_audit(rt.cfg)  # the pack opens it at start-up (pack.install)
    rt.audit = audit  # the CLI and tests read the same file
    trusted = rt.cfg.trusted_proxies

    async def admin(request, write=False, body=False):
        """(who, body, None) for an admin; else (None, None, 4xx). Same origin first on writes."""
        if write and not same_origin(request, rt.cfg.public_url):
            return None, None, error(403, "bad_origin", "Cross-site requests are not accepted.")
        who, err = await whoami(request)
        if err:
            return None, None, err
        if who["account"]["role"] != "admin":
            return None, None, error(403, "admin_only", "This needs an account with the admin role.")
        data = None
        if body:
            data = await read_json(request)
            if data is None:
                return None, None, error(400, "bad_json", "Send a JSON object (Content-Type: application/json).")
        return who, data, None

    def admin_route(write=False, account=False):
        """An admin route's prologue, the same for all of them: admin() (on writes same origin first and a JSON
        body), then with account=True the path's {account_id} looked up (target_account); the first refusal is
        the answer. The handler is called as handler(request, who, body) or handler(request, who, body, account)
        (body is None on reads)."""
        def wrap(handler):
            @functools.wraps(handler)
            async def route(request):
                who, body, err = await admin(request, write=write, body=write)
                if err:
                    return err
                if not account:
                    return await handler(request, who, body)
                a, err = await target_account(request)
                if err:
                    return err
                return await handler(request, who, body, a)
            return route
        return wrap

    async def record(request, who, action: str, target: dict, detail: dict) -> dict:
        a = who["account"]
        tgt = f"account {target['id']} <{target['email']}>" if target else ""
        return await asyncio.to_thread(audit.append, a["id"], a["email"], action, tgt,
                                       json.dumps(detail, sort_keys=True)[:2000],
                                       client_address(request, trusted)[:64])

    async def target_account(request):
        aid, err = path_id(request, "account_id")
        if err:
            return None, err
        try:
            return await asyncio.to_thread(rt.ledger.account, aid), None
        except _core.NotFound:
            return None, error(404, "not_found", f"No account {aid}.", "account_id")

    @routes.get("/credits/admin/accounts")
    @admin_route()
    async def accounts(request, who, body):
        q = (request.query.get("q") or "").strip().casefold()
        status = request.query.get("status", "all")
        if status not in ("all", "active", "disabled"):
            return error(400, "invalid_argument", "status is all, active or disabled.", "status")
        try:
            limit = int(request.query.get("limit", "100"))
        except ValueError:
            return error(400, "invalid_argument", "limit must be an integer.", "limit")
        if not 1 <= limit <= ACCOUNTS_PAGE_MAX:
            return error(400, "invalid_argument", f"limit must be between 1 and {ACCOUNTS_PAGE_MAX}.", "limit")
        if len(q) > 254:
            return error(400, "invalid_argument", "The search text is at most 254 characters.", "q")
        rows = await asyncio.to_thread(all_accounts, rt.ledger)
        rows = [a for a in rows if (not q or q in a["email"].casefold() or q in a["display_name"].casefold())
                and (status == "all" or bool(a["active"]) == (status == "active"))]
        return web.json_response({"accounts": [account_row(a) for a in rows[:limit]], "matched": len(rows)})

    @routes.get("/credits/admin/accounts/{account_id}")
    @admin_route(account=True)
    async def account(request, who, body, a):
        return web.json_response(account_row(a))

    @routes.post("/credits/admin/accounts/{account_id}/grant")
    @admin_route(write=True, account=True)
    async def grant(request, who, body, a):
        amount, note, rid = body.get("credits"), body.get("note"), body.get("request_id")
        if not isinstance(amount, (str, int)) or isinstance(amount, bool):
            return error(400, "invalid_argument", "credits must be an amount such as \"500\" or \"12.5\".", "credits")
        try:
            micro = _core.parse_credits(str(amount).strip())
        except _core.InvalidArgument:
            return error(400, "invalid_argument", f"'{amount}' is not an amount of credits.", "credits")
        if micro <= 0:
            return error(400, "invalid_argument", "The amount of credits must be positive.", "credits")
        if not isinstance(note, str) or not note.strip():
            return error(400, "invalid_argument", "Say why (a note is shown in the person's history).", "note")
        if rid is not None and (not isinstance(rid, str) or not rid or len(rid) > REQUEST_ID_BYTES_MAX
                                or not rid.replace("-", "").isalnum()):
            return error(400, "invalid_argument", "request_id is 1..64 letters, digits or dashes.", "request_id")
        # A retried click (same request id) grants once.
        key = f"admin-grant:{who['account']['id']}:{rid or uuid.uuid4().hex}"
        try:
            r = await asyncio.to_thread(rt.ledger.grant, key, a["id"], micro, note=note.strip())
        except _core.InvalidArgument as exc:
            return error(400, "invalid_argument", str(exc), exc.field if exc.field != "amount" else "credits")
        except _core.IdempotencyConflict:
            return error(409, "conflict", "This request id was used for another grant.", "request_id")
        if not r["replayed"]:
            await record(request, who, "grant", a, {"credits": credits(micro), "note": note.strip(),
                                                    "entry_id": r["entry_id"]})
        return web.json_response({"granted": credits(micro), "replayed": r["replayed"],
                                  "account": account_row(await asyncio.to_thread(rt.ledger.account, a["id"]))})

    @routes.post("/credits/admin/accounts/{account_id}/status")
    @admin_route(write=True, account=True)
    async def status(request, who, body, a):
        active = body.get("active")
        if not isinstance(active, bool):
            return error(400, "invalid_argument", "active must be true or false.", "active")
        if not active and a["id"] == who["account"]["id"]:
            return error(400, "invalid_argument", "You cannot disable your own account.", "active")
        if bool(a["active"]) == active:
            return web.json_response({"account": account_row(a), "changed": False})
        a = await asyncio.to_thread(rt.ledger.update_account, a["id"], active=active)
        await record(request, who, "enable" if active else "disable", a, {"active": active})
        return web.json_response({"account": account_row(a), "changed": True})

    @routes.post("/credits/admin/accounts/{account_id}/caps")
    @admin_route(write=True, account=True)
    async def caps(request, who, body, a):
        before = caps_view(a["caps"])
        a, err = await set_caps(rt, a["id"], "admin", body)
        if err:
            return err
        after = caps_view(a["caps"])
        await record(request, who, "caps", a, {"daily": after["daily"], "monthly": after["monthly"],
                                               "was": {"daily": before["daily"], "monthly": before["monthly"]}})
        return web.json_response({"account": account_row(a)})

    @routes.get("/credits/caps")
    async def own_caps(request):
        """The signed-in person's caps (the operator's and their own lower ones)."""
        who, err = await whoami(request)
        if err:
            return err
        return web.json_response(caps_view(who["account"]["caps"]))

    @routes.post("/credits/caps")
    async def set_own_caps(request):
        """A person may set caps on their own account, never above the operator's."""
        who, body, err = await signed_in_write(request, whoami, with_body=True)
        if err:
            return err
        a, err = await set_caps(rt, who["account"]["id"], "own", body)
        if err:
            return err
        return web.json_response(caps_view(a["caps"]))

    @routes.get("/credits/admin/accounts/{account_id}/keys")
    @admin_route(account=True)
    async def account_keys(request, who, body, a):
        keys = await asyncio.to_thread(rt.ledger.list_credentials, a["id"], "api_key", expired=True)
        return web.json_response({"keys": [key_view(k) for k in keys]})

    @routes.post("/credits/admin/keys/{key_id}/limits")
    @admin_route(write=True)
    async def admin_key_limits(request, who, body):
        kid, err = path_id(request, "key_id")
        if err:
            return err
        k, err = await set_key_limits(rt, kid, None, body)
        if err:
            return err
        owner = await asyncio.to_thread(rt.ledger.account, k["account_id"])
        await record(request, who, "key limits", owner, key_limits_audit(k))
        return web.json_response({"key": key_view(k)})

    @routes.post("/credits/keys/{key_id}/limits")
    async def own_key_limits(request):
        """A person sets the cap and expiry of their own key, signed in: a key cannot raise its own cap."""
        who, body, err = await signed_in_write(request, whoami, with_body=True)
        if err:
            return err
        if (who.get("credential") or {}).get("kind") == "api_key":
            return error(403, "session_required", "Sign in to change a key's limits; an API key cannot change them.")
        kid, err = path_id(request, "key_id")
        if err:
            return err
        k, err = await set_key_limits(rt, kid, who["account"]["id"], body)
        if err:
            return err
        return web.json_response({"key": key_view(k)})

    @routes.get("/credits/admin/accounts/{account_id}/history")
    @admin_route(account=True)
    async def history(request, who, body, a):
        limit, cursor, err = page_args(request.query)
        if err:
            return err
        page = await asyncio.to_thread(rt.ledger.history, a["id"], limit=limit, cursor=cursor)
        return web.json_response({"account": account_row(a), "entries": [public_entry(e) for e in page["entries"]],
                                  "next_cursor": page["next_cursor"]})

    @routes.get("/credits/admin/holds")
    @admin_route()
    async def holds(request, who, body):

        def collect():
            out = []
            for a in all_accounts(rt.ledger):
                if a["held"] > 0 and len(out) < OPEN_HOLDS_MAX:
                    out += open_holds(rt.ledger, a, OPEN_HOLDS_MAX - len(out))
            return out
        rows = await asyncio.to_thread(collect)
        counts = rt.runs.counts()
        return web.json_response({"holds": rows, "open_runs": counts["open"], "reservations": counts["reservations"],
                                  "truncated": len(rows) >= OPEN_HOLDS_MAX})

    @routes.get("/credits/admin/verify")
    @admin_route()
    async def verify(request, who, body):
        return web.json_response(await asyncio.to_thread(verify_all, rt.ledger, audit))

    @routes.get("/credits/admin/report")
    @admin_route()
    async def report(request, who, body):
        today = dt.datetime.now(dt.timezone.utc).date()
        frm = request.query.get("from") or (today - dt.timedelta(days=29)).isoformat()
        to = request.query.get("to") or today.isoformat()
        fmt = request.query.get("format", "json")
        if fmt not in ("json", "csv"):
            return error(400, "invalid_argument", "format is json or csv.", "format")
        try:
            since, until = report_range(frm, to)
            rep = await asyncio.to_thread(_core.report, rt.ledger, since, until)
        except ValueError as exc:  # includes _core.InvalidArgument (too long)
            field = getattr(exc, "field", None) or str(exc).split(":", 1)[0]
            return error(400, "invalid_argument", str(exc), field if field in ("from", "to") else "to")
        if fmt == "csv":
            return web.Response(text=report_csv(rep), content_type="text/csv", headers={
                "Content-Disposition": f'attachment; filename="credits-report-{frm}-{to}.csv"'})
        return web.json_response(report_json(rep))

    @routes.get("/credits/admin/charts")
    @admin_route()
    async def charts(request, who, body):
        window, err = day_window(request.query)
        if err:
            return err
        rep = await asyncio.to_thread(_core.report, rt.ledger, *window)
        by_node: dict[str, int] = {}
        by_model: dict[str, int] = {}
        for s in rep["spend"]:
            by_node[s["node_class"]] = by_node.get(s["node_class"], 0) + s["charged"]
            by_model[s["model"] or "(none)"] = by_model.get(s["model"] or "(none)", 0) + s["charged"]
        return web.json_response({
            "days": [{"day": day_text(d["day_ms"]), "day_ms": d["day_ms"], "purchased_micro": d["purchased"],
                      "purchases": d["purchases"], "charged_micro": d["charged"], "billed_micro": d["billed"],
                      "uncollected_micro": d["uncollected"]} for d in rep["days"]],
            "spend": [{"day": day_text(s["day_ms"]), "node_class": s["node_class"], "model": s["model"],
                       "charged_micro": s["charged"], "runs": s["runs"]} for s in rep["spend"]],
            "by_node": sorted(({"node_class": k, "charged_micro": v} for k, v in by_node.items()),
                              key=lambda r: -r["charged_micro"]),
            "by_model": sorted(({"model": k, "charged_micro": v} for k, v in by_model.items()),
                               key=lambda r: -r["charged_micro"]),
            "top_accounts": rep["accounts"][:10]})

    @routes.get("/credits/admin/attention")
    @admin_route()
    async def attention(request, who, body):
        everything = request.query.get("all", "false")
        if everything not in ("true", "false"):
            return error(400, "invalid_argument", "all must be true or false.", "all")

        rows = await asyncio.to_thread(Attention(rt.ledger).list, include_resolved=everything == "true")
        return web.json_response({"purchases": rows})

    @routes.get("/credits/admin/audit")
    @admin_route()
    async def audit_log(request, who, body):
        limit, cursor, err = page_args(request.query, limit_max=AUDIT_PAGE_MAX)
        if err:
            return err
        return web.json_response(await asyncio.to_thread(audit.list, limit, cursor))

    return admin
