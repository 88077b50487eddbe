"""HTTP routes under /credits/ (also served as /api/credits/ by ComfyUI's
add_routes): session, balance and history for the signed-in account.

Every route answers bad input with a 4xx JSON error {"error": {type, message}},
refuses cross-account access (the account is always the caller's own), and
checks Origin on writes.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import re
import time
from urllib.parse import urlsplit

from aiohttp import web

from . import _core, emails, invites
from . import gate
from .throttle import Throttle, client_address
from .gate import SESSION_COOKIE, request_token

log = logging.getLogger("comfy_credits")

HISTORY_KINDS = ("grant", "purchase", "test", "hold", "settle", "void", "expire")
HISTORY_FILTERS = ("runs", "purchases", "grants")  # /credits/history/rows (src/history.h)
PRICE_NODES_MAX = 500  # nodes priced by one POST /credits/prices (a whole workflow)
KDF_THREADS = 2                   # scrypt runs here, never in the loop's default executor
KDF_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=KDF_THREADS, thread_name_prefix="comfy-credits-kdf")
DAY_MS = 86_400_000
OPENAPI_PATH = __import__("pathlib").Path(__file__).with_name("openapi.json")



def day_window(q, days_max: int = 366) -> tuple:
    """((since_ms, until_ms), None) or (None, 400) for the last `days` whole UTC days (today included), from a
    query's `days` (default 30, 1..days_max). Shared by the person's usage chart and the admin charts."""
    try:
        days = int(q.get("days", "30"))
    except ValueError:
        return None, error(400, "invalid_argument", "days must be an integer.", "days")
    if not 1 <= days <= days_max:
        return None, error(400, "invalid_argument", f"days must be between 1 and {days_max}.", "days")
    until = (int(time.time() * 1000) // DAY_MS + 1) * DAY_MS
    return (until - days * DAY_MS, until), None


def page_args(q, limit_max: int = 200) -> tuple:
    """`limit` (1..limit_max, default 50) and `cursor` (a positive id) of a page (history, audit log), or a 400."""
    try:
        limit = int(q.get("limit", "50"))
        cursor = int(q["cursor"]) if q.get("cursor") else None
    except ValueError:
        return None, None, error(400, "invalid_argument", "limit and cursor must be integers.")
    if not 1 <= limit <= limit_max:
        return None, None, error(400, "invalid_argument", f"limit must be between 1 and {limit_max}.", "limit")
    if cursor is not None and cursor <= 0:
        return None, None, error(400, "invalid_argument", "cursor must be a positive integer.", "cursor")
    return limit, cursor, None


def page_and_names(q, key: str, allowed, says: str) -> tuple:
    """page_args() plus `key`: a comma-separated list of names out of `allowed` (None when absent), or a 400."""
    limit, cursor, err = page_args(q)
    if err:
        return None, None, None, err
    names = [n for n in q.get(key, "").split(",") if n] or None
    if names and any(n not in allowed for n in names):
        return None, None, None, error(400, "invalid_argument", f"{says} {', '.join(allowed)}.", key)
    return limit, cursor, names, None


async def read_page(fn, *args, **kw) -> tuple:
    """A page read from the ledger off the event loop: (page, None), or (None, 400) for what C refused."""
    try:
        return await asyncio.to_thread(fn, *args, **kw), None
    except _core.InvalidArgument as exc:
        return None, error(400, "invalid_argument", str(exc), exc.field)


def error(status: int, kind: str, message: str, field: str | None = None) -> web.Response:
    body = {"error": {"type": kind, "message": message}}
    if field:
        body["error"]["field"] = field
    return web.json_response(body, status=status)


def same_origin(request: web.Request, public_url: str | None = None) -> bool:
    """See gate.same_origin: one rule for the queue gate and every write route."""
    return gate.same_origin(request, public_url)


def public_account(a: dict) -> dict:
    return {
        "id": a["id"], "email": a["email"], "display_name": a["display_name"], "role": a["role"],
        "balance_micro": a["balance"], "held_micro": a["held"], "available_micro": a["available"],
        "paid_micro": a["paid_total"], "granted_micro": a["granted_total"], "spent_micro": a["spent_total"],
        # TEST credits (sandbox checkout): never paid for; spendable only against the simulated upstream.
        "test_micro": a["test_balance"], "test": _core.format_credits(a["test_balance"]) if a["test_balance"] else None,
        "balance": _core.format_credits(a["balance"]), "available": _core.format_credits(a["available"]),
        "updated_ms": a["updated_ms"],
    }


SESSION_ID = re.compile(r"^cs_[A-Za-z0-9_]{1,250}$")  # a Checkout Session id (receipts.py)


def receipt_link(entry: dict) -> str | None:
    """Where a purchase's receipt is (receipts.py), for an entry or a history row bought through a checkout."""
    if entry.get("kind") in ("purchase", "test") and SESSION_ID.match(entry.get("external_ref") or ""):
        return f"/credits/receipt/{entry['external_ref']}"
    return None


def key_view(k: dict) -> dict:
    """A personal API key as the panel and the dashboard show it: never the secret."""
    out = {f: k[f] for f in ("id", "account_id", "label", "hint", "created_ms", "cap_micro", "cap_used")}
    out["cap"] = None if k["cap_micro"] is None else _core.format_credits(k["cap_micro"])
    out["left_micro"] = None if k["cap_micro"] is None else max(0, k["cap_micro"] - k["cap_used"])
    out["expires_ms"] = k["expires_ms"] or None
    # An expired key stays listed (list_credentials(expired=True)) so its owner and the admin see it, and may
    # extend it; the ledger refuses it meanwhile (sign-in checks and holds).
    out["expired"] = bool(k["expires_ms"]) and k["expires_ms"] <= int(time.time() * 1000)
    return out


def public_entry(e: dict) -> dict:
    keep = ("id", "kind", "amount", "delta", "uncollected", "balance_after", "held_after", "hold_id", "created_ms",
            "prompt_id", "node_id", "node_class", "model", "tokens_in", "tokens_out", "images", "seconds_ms",
            "currency", "amount_minor", "method", "note")
    out = {k: e[k] for k in keep}
    link = receipt_link(e)
    if link:
        out["receipt_url"] = link
    if e["kind"] == "test":
        out["label"] = "TEST"  # a sandbox purchase: no money was paid
    return out


async def read_json(request):
    """The body as a JSON object sent as application/json, or None. (text/plain
    is what a cross-site page can send without a preflight.)"""
    if not gate.is_json(request):
        return None
    try:
        body = json.loads(await gate.read_body(request))
    except gate.BodyTimeout:
        raise web.HTTPRequestTimeout(text=json.dumps({"error": {"type": "request_timeout", "message":
                                     f"Send the whole body within {gate.BODY_READ_TIMEOUT_S} s."}}),
                                     content_type="application/json") from None
    except Exception:
        return None
    return body if isinstance(body, dict) else None


async def signed_in_write(request, whoami, with_body=False):
    """The checks every write route makes, in this order: same origin, a
    signed-in caller, and (with_body) a JSON object body.
    Returns (who, body, None) or (None, None, error response)."""
    if not same_origin(request, whoami.public_url):
        return None, None, error(403, "bad_origin", "Cross-site requests are not accepted.")
    who, err = await whoami(request)
    if err:
        return None, None, err
    body = None
    if with_body:
        body = await read_json(request)
        if body is None:
            return None, None, error(400, "bad_json", "Send a JSON object (Content-Type: application/json).")
    return who, body, None


def cookie_secure(request: web.Request, cfg) -> bool:
    """Secure cookies over https: the request's own scheme, or public_url when
    a TLS-terminating proxy talks plain http to ComfyUI."""
    return request.secure or bool(cfg.public_url and cfg.public_url.startswith("https://"))


async def check_token(rt, token: str):
    """(who, None) for a usable session or personal key, else (None, a 4xx saying why)."""
    try:
        return await asyncio.to_thread(rt.ledger.check_credential, token), None
    except _core.NotFound as exc:
        key = token.startswith("cck_")
        if exc.field == "revoked":
            return None, error(401, "revoked", "This API key was revoked; create a new one under Settings → Credits."
                               if key else "This session was signed out; sign in again.")
        if exc.field == "expired":
            return None, error(401, "not_signed_in", "Your session has expired; sign in again.")
        return None, error(401, "bad_credentials" if key else "not_signed_in",
                           "That API key is not valid." if key else "Your session is not valid; sign in again.")
    except _core.InvalidArgument:  # e.g. a NUL or invalid Unicode in the key
        return None, error(400, "invalid_argument", "The session or API key is malformed.")
    except _core.InvalidState:
        return None, error(403, "account_disabled", "This Credits account is disabled.")


def make_whoami(rt):
    async def whoami(request: web.Request):
        """(who, None) for a signed-in caller, else (None, error response)."""
        token = request_token(request)
        if not token:
            return None, error(401, "not_signed_in", "Sign in with your Credits account first.")
        return await check_token(rt, token)
    whoami.public_url = rt.cfg.public_url
    return whoami


def register(routes, rt):
    whoami = make_whoami(rt)

    throttle = Throttle()
    trusted = rt.cfg.trusted_proxies

    async def kdf(fn, *args):
        """Runs a password check or hash in the KDF pool (never the loop's default executor)."""
        return await asyncio.get_running_loop().run_in_executor(KDF_POOL, fn, *args)

    def throttled(wait: float, why: str) -> web.Response:
        wait_s = max(1, int(wait + 0.999))
        msg = (f"Too many failed attempts; try again in {wait_s // 60 + 1} min." if wait_s >= 60 else
               f"Too many failed attempts; try again in {wait_s} s." if why.startswith("too many") else
               "Another sign-in for this account or from this address is in progress; try again in a moment.")
        resp = error(429, "too_many_attempts", msg)
        resp.headers["Retry-After"] = str(wait_s)
        return resp

    async def check_password(request, email: str, password: str):
        """(account, None) when the password is right; else (None, response). Throttled per (email, address)."""
        ticket, wait, why = throttle.begin(email, client_address(request, trusted))
        if ticket is None:
            return None, throttled(wait, why)
        ok = False
        try:
            account = await kdf(rt.ledger.sign_in, email, password)
            ok = True
            return account, None
        except _core.NotFound:
            return None, error(401, "bad_credentials", "Wrong email or password.")
        except _core.InvalidState:
            ok = True  # the password was right; the account is disabled
            return None, error(403, "account_disabled", "This Credits account is disabled.")
        except _core.InvalidArgument as exc:
            return None, error(400, "invalid_argument", str(exc), exc.field)
        finally:
            throttle.end(ticket, ok)

    async def start_session(request, account):
        label = (request.headers.get("User-Agent") or "browser")[:120]
        sess = await asyncio.to_thread(rt.ledger.create_credential, account["id"], "session", label,
                                       rt.cfg.session_ttl_ms)
        resp = web.json_response({"account": public_account(account), "expires_ms": sess["expires_ms"]})
        resp.set_cookie(SESSION_COOKIE, sess["token"], max_age=rt.cfg.session_ttl_ms // 1000, httponly=True,
                        samesite="Strict", path="/", secure=cookie_secure(request, rt.cfg))
        return resp

    async def keys_after(account_id: int, revoke: bool) -> dict:
        """Personal API keys survive a password change or sign-out everywhere unless the person asks:
        say how many there are, and revoke them when asked."""
        revoked = 0
        if revoke:
            revoked = await asyncio.to_thread(rt.ledger.revoke_credential, account_id, "api_key")
        left = len(await asyncio.to_thread(rt.ledger.list_credentials, account_id, "api_key"))
        out = {"revoked_api_keys": revoked, "api_keys": left}
        if left:
            out["api_keys_note"] = (f"{left} personal API key{'s' if left != 1 else ''} still work"
                                    f"{'s' if left == 1 else ''}; send revoke_api_keys: true to revoke "
                                    f"{'it' if left == 1 else 'them'} too.")
        return out

    @routes.post("/credits/session")
    async def sign_in(request: web.Request):
        """Sign in with email + password, or with a personal API key."""
        if not same_origin(request, rt.cfg.public_url):
            return error(403, "bad_origin", "Cross-site requests are not accepted.")
        body = await read_json(request)
        if body is None:
            return error(400, "bad_json", "Send a JSON object (Content-Type: application/json).")
        key = body.get("api_key")
        if key is not None:
            if not isinstance(key, str) or not key.startswith("cck_"):
                return error(400, "invalid_argument", "api_key must be a personal API key (cck_...).", "api_key")
            who, err = await check_token(rt, key)
            if err:
                return err
            return await start_session(request, who["account"])
        email, password = body.get("email"), body.get("password")
        if not isinstance(email, str) or not isinstance(password, str) or not email or not password:
            return error(400, "invalid_argument", "Enter your email and password.", "email")
        try:
            email = emails.normalize(email)
        except emails.EmailError:
            return error(401, "bad_credentials", "Wrong email or password.")  # no such account can exist
        account, err = await check_password(request, email, password)
        if err:
            return err
        return await start_session(request, account)

    @routes.get("/credits/signup")
    async def sign_up_allowed(request: web.Request):
        """Whether people may create their own account here (the UI shows sign-up only then)."""
        return web.json_response({"allowed": bool(rt.cfg.allow_signup)})

    async def check_invite(invite) -> tuple[dict | None, web.Response | None]:
        """An invite link's email (src/invite.c), or the answer that says what is wrong with it."""
        if not isinstance(invite, str) or not invite:
            return None, error(400, "invite_invalid", "This invite link is not valid. Ask the operator for a new one.",
                               "invite")
        try:
            invite_key = invites.key(rt.cfg)
        except _core.CreditsError as exc:
            return None, error(503, "invites_unavailable", str(exc))
        try:
            info = _core.invite_verify(invite_key, invite)
        except _core.InvalidState as exc:
            return None, error(410, "invite_expired", str(exc), "invite")
        except _core.InvalidArgument as exc:
            return None, error(400, "invite_invalid", str(exc), "invite")
        try:
            await asyncio.to_thread(rt.ledger.account_by_email, info["email"])
        except _core.NotFound:
            return info, None
        return None, error(409, "invite_used", f"This invite was already used: the account {info['email']} exists. "
                                               "Sign in with it instead.", "invite")

    @routes.get("/credits/invite")
    async def invite_info(request: web.Request):
        """What an invite link opens: the email it was made for, or why it cannot be used."""
        info, err = await check_invite(request.query.get("invite"))
        if err:
            return err
        return web.json_response({"email": info["email"], "expires_ms": info["expires_ms"]})

    @routes.post("/credits/admin/invites")
    async def create_invite(request: web.Request):
        """An admin makes an invite link (the CLI: `python -m comfy_credits_ext invite EMAIL`)."""
        who, body, err = await signed_in_write(request, whoami, with_body=True)
        if err:
            return err
        if who["account"].get("role") != "admin":
            return error(403, "admin_only", "Only an admin of this server can invite people.")
        email, days = body.get("email"), body.get("days", invites.DAYS_DEFAULT)
        if not isinstance(email, str) or not isinstance(days, int) or isinstance(days, bool):
            return error(400, "invalid_argument", "Send {email, days}.", "email")
        try:
            email = emails.normalize(email)
            return web.json_response(invites.make(rt.cfg, email, days))
        except emails.EmailError as exc:
            return error(400, "invalid_argument", str(exc), "email")
        except _core.InvalidArgument as exc:
            return error(400, "invalid_argument", str(exc), "days" if "days" in str(exc) else exc.field)
        except _core.InvalidState as exc:
            return error(503, "invites_unavailable", str(exc))

    @routes.post("/credits/signup")
    async def sign_up(request: web.Request):
        if not same_origin(request, rt.cfg.public_url):
            return error(403, "bad_origin", "Cross-site requests are not accepted.")
        body = await read_json(request)
        if body is None:
            return error(400, "bad_json", "Send a JSON object (Content-Type: application/json).")
        if "invite" in body:  # an invite opens sign-up for its email, whether or not sign-up is open
            info, err = await check_invite(body["invite"])
            if err:
                return err
            body["email"] = info["email"]
        elif not rt.cfg.allow_signup:
            return error(403, "signup_disabled", "Accounts are created by the operator of this server.")
        email, password, name = body.get("email"), body.get("password"), body.get("display_name", "")
        if not isinstance(email, str) or not isinstance(password, str) or not isinstance(name, str):
            return error(400, "invalid_argument", "email, password and display_name must be strings.", "email")
        try:
            email = emails.normalize(email)
            _core.check_password(password)  # the one rule, in C: before the account exists
        except emails.EmailError as exc:
            return error(400, "invalid_argument", str(exc), "email")
        except _core.InvalidArgument as exc:
            return error(400, "invalid_argument", str(exc), "password")
        try:
            account = await asyncio.to_thread(rt.ledger.create_account, email, display_name=name[:128])
        except _core.AlreadyExists:
            return error(409, "already_exists", "An account with that email already exists; sign in instead.",
                         "email")
        except _core.InvalidArgument as exc:
            return error(400, "invalid_argument", str(exc), exc.field)
        await kdf(rt.ledger.set_password, account["id"], password)
        return await start_session(request, account)

    @routes.post("/credits/password")
    async def change_password(request: web.Request):
        who, body, err = await signed_in_write(request, whoami, with_body=True)
        if err:
            return err
        old, new, revoke = body.get("old_password"), body.get("new_password"), body.get("revoke_api_keys", False)
        if not isinstance(old, str) or not isinstance(new, str):
            return error(400, "invalid_argument", "Send old_password and new_password.", "old_password")
        if not isinstance(revoke, bool):
            return error(400, "invalid_argument", "revoke_api_keys must be true or false.", "revoke_api_keys")
        try:
            _core.check_password(new)
        except _core.InvalidArgument as exc:
            return error(400, "invalid_argument", str(exc), "new_password")
        _, err = await check_password(request, who["account"]["email"], old)  # throttled like sign-in
        if err:
            if err.status == 401:
                return error(401, "bad_credentials", "The current password is wrong.", "old_password")
            return err
        try:
            await kdf(rt.ledger.set_password, who["account"]["id"], new)
        except _core.InvalidArgument as exc:
            return error(400, "invalid_argument", str(exc), "new_password")
        # Every other session ends; this one stays.
        n = await asyncio.to_thread(rt.ledger.revoke_credential, who["account"]["id"], "session")
        resp = await start_session(request, who["account"])
        data = json.loads(resp.body)
        data.update({"signed_out_sessions": n, **await keys_after(who["account"]["id"], revoke)})
        resp.body = json.dumps(data).encode()
        return resp

    @routes.delete("/credits/sessions")
    async def sign_out_everywhere(request: web.Request):
        who, _, err = await signed_in_write(request, whoami)
        if err:
            return err
        revoke = request.query.get("revoke_api_keys", "false")
        if revoke not in ("true", "false", "1", "0"):
            return error(400, "invalid_argument", "revoke_api_keys must be true or false.", "revoke_api_keys")
        n = await asyncio.to_thread(rt.ledger.revoke_credential, who["account"]["id"], "session")
        resp = web.json_response({"signed_out_sessions": n,
                                  **await keys_after(who["account"]["id"], revoke in ("true", "1"))})
        resp.del_cookie(SESSION_COOKIE, path="/")
        return resp

    @routes.get("/credits/session")
    async def session(request: web.Request):
        who, err = await whoami(request)
        if err:
            return err
        return web.json_response({"account": public_account(who["account"])})

    @routes.delete("/credits/session")
    async def sign_out(request: web.Request):
        who, _, err = await signed_in_write(request, whoami)
        if err:
            return err
        cred = who["credential"]
        if cred["kind"] == "session":
            await asyncio.to_thread(rt.ledger.revoke_credential, cred["account_id"], "session", cred["id"])
        resp = web.json_response({"signed_out": True})
        resp.del_cookie(SESSION_COOKIE, path="/")
        return resp

    @routes.get("/credits/balance")
    async def balance(request: web.Request):
        who, err = await whoami(request)
        if err:
            return err
        acc = public_account(who["account"])
        # Credits queued prompts reserve for their API nodes (src/run.c) are not available to new runs.
        reserved = await rt.reserved_now(acc["id"])
        acc["reserved_micro"] = reserved
        acc["reserved"] = _core.format_credits(reserved)
        acc["available_micro"] = max(0, acc["available_micro"] - reserved)
        acc["available"] = _core.format_credits(acc["available_micro"])
        return web.json_response(acc)

    @routes.get("/credits/history")
    async def history(request: web.Request):
        who, err = await whoami(request)
        if err:
            return err
        limit, cursor, kinds, err = page_and_names(request.query, "kinds", HISTORY_KINDS, "kinds are")
        if err:
            return err
        page, err = await read_page(rt.ledger.history, who["account"]["id"], limit=limit, cursor=cursor,
                                    kinds=kinds)
        if err:
            return err
        return web.json_response({"entries": [public_entry(e) for e in page["entries"]],
                                  "next_cursor": page["next_cursor"]})

    @routes.post("/credits/prices")
    async def prices(request: web.Request):
        """The operator's price for API nodes as they stand in the editor (the node badges): the worst case a
        run holds, from the same table and the same C call as admission. Reads only; no account needed."""
        body = await read_json(request)
        nodes = body.get("nodes") if body else None
        if not isinstance(nodes, list) or not 1 <= len(nodes) <= PRICE_NODES_MAX:
            return error(400, "invalid_argument", f"Send {{\"nodes\": [...]}} with 1 to {PRICE_NODES_MAX} nodes.",
                         "nodes")
        out = []
        for n in nodes:
            if not (isinstance(n, dict) and isinstance(n.get("id"), (str, int)) and not isinstance(n["id"], bool)
                    and isinstance(n.get("class_type"), str)
                    and isinstance(n.get("inputs", {}), dict)):
                return error(400, "invalid_argument", "Each node is {id, class_type, inputs}.", "nodes")
            try:
                est = rt.prices.estimate(n["class_type"], n.get("inputs", {}))
                out.append({"id": n["id"], "micro": est["micro"], "credits": _core.format_credits(est["micro"]),
                            "used_default": est["used_default"]})
            except _core.InvalidArgument as exc:
                out.append({"id": n["id"], "error": str(exc)})
        return web.json_response({"prices": out})

    @routes.get("/credits/history/rows")
    async def history_rows(request: web.Request):
        """One row per run (src/history.c) plus what queued prompts reserve."""
        who, err = await whoami(request)
        if err:
            return err
        limit, cursor, show, err = page_and_names(request.query, "filter", HISTORY_FILTERS, "filter is any of")
        if err:
            return err
        account_id = who["account"]["id"]
        page, err = await read_page(_core.history_rows, rt.ledger, account_id, limit=limit, cursor=cursor,
                                    filter=show)
        if err:
            return err
        for row in page["rows"]:  # a purchase links its receipt; the Stripe session id itself stays inside
            link = receipt_link(row)
            if link:
                row["receipt_url"] = link
            row.pop("external_ref", None)
        reserved = rt.reservations_of(account_id)
        return web.json_response({
            "rows": page["rows"], "next_cursor": page["next_cursor"],
            "reserved_micro": sum(r["reserved_micro"] for r in reserved), "reserved_prompts": reserved})

    @routes.get("/credits/usage")
    async def usage(request: web.Request):
        """Charged credits per day and per node family, for the panel's chart."""
        who, err = await whoami(request)
        if err:
            return err
        window, err = day_window(request.query)
        if err:
            return err
        since, until = window
        days = (until - since) // DAY_MS
        rows = await asyncio.to_thread(rt.ledger.usage, who["account"]["id"], since, until)
        per_day: dict[int, int] = {}
        per_family: dict[str, dict] = {}
        for r in rows:
            per_day[r["day"]] = per_day.get(r["day"], 0) + r["charged"]
            fam = rt.prices.family(r["node_class"]) or r["node_class"] or "other"
            f = per_family.setdefault(fam, {"family": fam, "charged_micro": 0, "runs": 0})
            f["charged_micro"] += r["charged"]
            f["runs"] += r["runs"]
        first = since // DAY_MS
        return web.json_response({
            "days": [{"day_ms": (first + i) * DAY_MS, "charged_micro": per_day.get(first + i, 0)} for i in range(days)],
            "families": sorted(per_family.values(), key=lambda f: -f["charged_micro"])})

    @routes.get("/credits/keys")
    async def list_keys(request: web.Request):
        who, err = await whoami(request)
        if err:
            return err
        keys = await asyncio.to_thread(rt.ledger.list_credentials, who["account"]["id"], "api_key", expired=True)
        return web.json_response({"keys": [key_view(x) for x in keys]})

    @routes.post("/credits/keys")
    async def create_key(request: web.Request):
        who, body, err = await signed_in_write(request, whoami, with_body=True)
        if err:
            return err
        label = body.get("label", "")
        if not isinstance(label, str) or len(label.encode()) > 128:
            return error(400, "invalid_argument", "label must be a string of at most 128 bytes.", "label")
        try:
            k = await asyncio.to_thread(rt.ledger.create_credential, who["account"]["id"], "api_key", label)
        except _core.InvalidArgument as exc:
            return error(400, "invalid_argument", str(exc), exc.field)
        # The only time the key is shown.
        return web.json_response({"id": k["id"], "label": k["label"], "hint": k["hint"], "created_ms": k["created_ms"],
                                  "key": k["token"]}, status=201)

    @routes.delete("/credits/keys/{key_id}")
    async def revoke_key(request: web.Request):
        who, _, err = await signed_in_write(request, whoami)
        if err:
            return err
        try:
            kid = int(request.match_info["key_id"])
        except ValueError:
            return error(400, "invalid_argument", "The key id must be an integer.", "key_id")
        if kid <= 0:
            return error(400, "invalid_argument", "The key id must be positive.", "key_id")
        try:
            await asyncio.to_thread(rt.ledger.revoke_credential, who["account"]["id"], "api_key", kid)
        except _core.NotFound:
            return error(404, "not_found", "No such API key on your account.")
        return web.json_response({"revoked": kid})

    @routes.get("/credits/openapi.json")
    async def openapi(request: web.Request):
        return web.FileResponse(OPENAPI_PATH)

    return whoami
