"""HTTP routes under /credits/ (also served as /api/credits/ by ComfyUI's
add_routes): session, balance and history for the signed-in account.

Every route answers bad input with a 4xx JSON error {"error": {type, message}},
refuses cross-account access (the account is always the caller's own), and
checks Origin on writes.
"""
from __future__ import annotations

import asyncio
import logging
import time
from urllib.parse import urlsplit

from aiohttp import web

from . import _core
from . import gate
from .gate import SESSION_COOKIE, request_token

log = logging.getLogger("comfy_credits")

HISTORY_KINDS = ("grant", "purchase", "test", "hold", "settle", "void", "expire")
SIGN_IN_FAILURES_MAX = 5          # per email and per client address ...
SIGN_IN_WINDOW_S = 15 * 60        # ... within this window, then 429 until it passes
THROTTLE_KEYS_MAX = 50_000        # bounded memory
DAY_MS = 86_400_000
OPENAPI_PATH = __import__("pathlib").Path(__file__).with_name("openapi.json")


class Throttle:
    """Counts failed sign-ins per key; refuses after too many in a window."""

    def __init__(self):
        self.fails: dict[str, list[float]] = {}

    def blocked_for(self, *keys: str) -> int:
        now = time.monotonic()
        worst = 0
        for k in keys:
            recent = [t for t in self.fails.get(k, []) if now - t < SIGN_IN_WINDOW_S]
            if recent:
                self.fails[k] = recent
            else:
                self.fails.pop(k, None)
            if len(recent) >= SIGN_IN_FAILURES_MAX:
                worst = max(worst, int(SIGN_IN_WINDOW_S - (now - recent[0])) + 1)
        return worst

    def failed(self, *keys: str) -> None:
        if len(self.fails) > THROTTLE_KEYS_MAX:
            self.fails.clear()
        now = time.monotonic()
        for k in keys:
            self.fails.setdefault(k, []).append(now)

    def succeeded(self, *keys: str) -> None:
        for k in keys:
            self.fails.pop(k, None)


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


def public_entry(e: dict) -> dict:
    keep = ("id", "kind", "amount", "delta", "uncollected", "balance_after", "held_after", "hold_id", "created_ms",
            "prompt_id", "node_id", "node_class", "model", "tokens_in", "tokens_out", "images", "seconds_ms",
            "currency", "amount_minor", "method", "note")
    out = {k: e[k] for k in keep}
    if e["kind"] == "test":
        out["label"] = "TEST"  # a sandbox purchase: no money was paid
    return out


async def read_json(request):
    """The body as a JSON object sent as application/json, or None. (text/plain
    is what a cross-site page can send without a preflight.)"""
    if not gate.is_json(request):
        return None
    try:
        body = await request.json()
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


def make_whoami(rt):
    async def whoami(request: web.Request):
        """(who, None) for a signed-in caller, else (None, error response)."""
        token = request_token(request)
        if not token:
            return None, error(401, "not_signed_in", "Sign in with your Credits account first.")
        try:
            who = await asyncio.to_thread(rt.ledger.check_credential, token)
        except _core.NotFound:
            return None, error(401, "not_signed_in", "Your session has expired; sign in again.")
        except _core.InvalidState:
            return None, error(403, "account_disabled", "This Credits account is disabled.")
        return who, None
    whoami.public_url = rt.cfg.public_url
    return whoami


def register(routes, rt):
    whoami = make_whoami(rt)

    throttle = Throttle()

    async def start_session(request, account):
        label = (request.headers.get("User-Agent") or "browser")[:120]
        sess = await asyncio.to_thread(rt.ledger.create_credential, account["id"], "session", label,
                                       rt.cfg.session_ttl_ms)
        resp = web.json_response({"account": public_account(account), "expires_ms": sess["expires_ms"]})
        resp.set_cookie(SESSION_COOKIE, sess["token"], max_age=rt.cfg.session_ttl_ms // 1000, httponly=True,
                        samesite="Strict", path="/", secure=request.secure)
        return resp

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
            try:
                who = await asyncio.to_thread(rt.ledger.check_credential, key)
            except _core.NotFound:
                return error(401, "bad_credentials", "That API key is not valid.")
            except _core.InvalidState:
                return error(403, "account_disabled", "This Credits account is disabled.")
            return await start_session(request, who["account"])
        email, password = body.get("email"), body.get("password")
        if not isinstance(email, str) or not isinstance(password, str) or not email or not password:
            return error(400, "invalid_argument", "Enter your email and password.", "email")
        keys = ("email:" + email.strip().lower()[:254], "addr:" + (request.remote or "?"))
        wait = throttle.blocked_for(*keys)
        if wait:
            resp = error(429, "too_many_attempts", f"Too many failed sign-ins; try again in {wait // 60 + 1} min.")
            resp.headers["Retry-After"] = str(wait)
            return resp
        try:
            account = await asyncio.to_thread(rt.ledger.sign_in, email.strip(), password)
        except _core.NotFound:
            throttle.failed(*keys)
            return error(401, "bad_credentials", "Wrong email or password.")
        except _core.InvalidState:
            return error(403, "account_disabled", "This Credits account is disabled.")
        except _core.InvalidArgument as exc:
            return error(400, "invalid_argument", str(exc), exc.field)
        throttle.succeeded(*keys)
        return await start_session(request, account)

    @routes.post("/credits/signup")
    async def sign_up(request: web.Request):
        if not same_origin(request, rt.cfg.public_url):
            return error(403, "bad_origin", "Cross-site requests are not accepted.")
        if not rt.cfg.allow_signup:
            return error(403, "signup_disabled", "Accounts are created by the operator of this server.")
        body = await read_json(request)
        if body is None:
            return error(400, "bad_json", "Send a JSON object (Content-Type: application/json).")
        email, password, name = body.get("email"), body.get("password"), body.get("display_name", "")
        if not isinstance(email, str) or not isinstance(password, str) or not isinstance(name, str):
            return error(400, "invalid_argument", "email, password and display_name must be strings.", "email")
        if len(password) < 8 or len(password.encode()) > 1024:
            return error(400, "invalid_argument", "The password must have at least 8 characters.", "password")
        try:
            account = await asyncio.to_thread(rt.ledger.create_account, email.strip(), display_name=name[:128])
        except _core.AlreadyExists:
            return error(409, "already_exists", "An account with that email already exists; sign in instead.",
                         "email")
        except _core.InvalidArgument as exc:
            return error(400, "invalid_argument", str(exc), exc.field)
        await asyncio.to_thread(rt.ledger.set_password, account["id"], password)
        return await start_session(request, account)

    @routes.post("/credits/password")
    async def change_password(request: web.Request):
        who, body, err = await signed_in_write(request, whoami, with_body=True)
        if err:
            return err
        old, new = body.get("old_password"), body.get("new_password")
        if not isinstance(old, str) or not isinstance(new, str):
            return error(400, "invalid_argument", "Send old_password and new_password.", "old_password")
        try:
            await asyncio.to_thread(rt.ledger.sign_in, who["account"]["email"], old)
        except _core.NotFound:
            return error(401, "bad_credentials", "The current password is wrong.", "old_password")
        try:
            await asyncio.to_thread(rt.ledger.set_password, who["account"]["id"], new)
        except _core.InvalidArgument as exc:
            return error(400, "invalid_argument", str(exc), "new_password")
        # Every other session ends; this one stays.
        await asyncio.to_thread(rt.ledger.revoke_credential, who["account"]["id"], "session")
        return await start_session(request, who["account"])

    @routes.delete("/credits/sessions")
    async def sign_out_everywhere(request: web.Request):
        who, _, err = await signed_in_write(request, whoami)
        if err:
            return err
        n = await asyncio.to_thread(rt.ledger.revoke_credential, who["account"]["id"], "session")
        resp = web.json_response({"signed_out_sessions": n})
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
        return web.json_response(public_account(who["account"]))

    @routes.get("/credits/history")
    async def history(request: web.Request):
        who, err = await whoami(request)
        if err:
            return err
        q = request.query
        try:
            limit = int(q.get("limit", "50"))
            cursor = int(q["cursor"]) if q.get("cursor") else None
        except ValueError:
            return error(400, "invalid_argument", "limit and cursor must be integers.")
        if not 1 <= limit <= 200:
            return error(400, "invalid_argument", "limit must be between 1 and 200.", "limit")
        if cursor is not None and cursor <= 0:
            return error(400, "invalid_argument", "cursor must be a positive integer.", "cursor")
        kinds = [k for k in q.get("kinds", "").split(",") if k] or None
        if kinds and any(k not in HISTORY_KINDS for k in kinds):
            return error(400, "invalid_argument", f"kinds are {', '.join(HISTORY_KINDS)}.", "kinds")
        try:
            page = await asyncio.to_thread(rt.ledger.history, who["account"]["id"], limit=limit, cursor=cursor,
                                           kinds=kinds)
        except _core.InvalidArgument as exc:
            return error(400, "invalid_argument", str(exc), exc.field)
        return web.json_response({"entries": [public_entry(e) for e in page["entries"]],
                                  "next_cursor": page["next_cursor"]})

    @routes.get("/credits/usage")
    async def usage(request: web.Request):
        """Charged credits per day and per node family, for the panel's chart."""
        who, err = await whoami(request)
        if err:
            return err
        try:
            days = int(request.query.get("days", "30"))
        except ValueError:
            return error(400, "invalid_argument", "days must be an integer.", "days")
        if not 1 <= days <= 366:
            return error(400, "invalid_argument", "days must be between 1 and 366.", "days")
        until = (int(time.time() * 1000) // DAY_MS + 1) * DAY_MS
        since = until - days * DAY_MS
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
        keys = await asyncio.to_thread(rt.ledger.list_credentials, who["account"]["id"], "api_key")
        return web.json_response({"keys": [{k: x[k] for k in ("id", "label", "hint", "created_ms")} for x in keys]})

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
