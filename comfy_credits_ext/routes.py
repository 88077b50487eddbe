"""HTTP routes under /credits/ (also served as /api/credits/ by ComfyUI's
add_routes): session, balance and history for the signed-in account.

Every route answers bad input with a 4xx JSON error {"error": {type, message}},
refuses cross-account access (the account is always the caller's own), and
checks Origin on writes.
"""
from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit

from aiohttp import web

from . import _core
from .gate import SESSION_COOKIE, request_token

log = logging.getLogger("comfy_credits")

HISTORY_KINDS = ("grant", "purchase", "hold", "settle", "void", "expire")


def error(status: int, kind: str, message: str, field: str | None = None) -> web.Response:
    body = {"error": {"type": kind, "message": message}}
    if field:
        body["error"]["field"] = field
    return web.json_response(body, status=status)


def same_origin(request: web.Request) -> bool:
    """Browsers send Origin on cross-site writes; scripts usually send none."""
    origin = request.headers.get("Origin")
    if not origin:
        return True
    try:
        o = urlsplit(origin)
    except ValueError:
        return False
    return bool(o.netloc) and o.netloc == request.host


def public_account(a: dict) -> dict:
    return {
        "id": a["id"], "email": a["email"], "display_name": a["display_name"], "role": a["role"],
        "balance_micro": a["balance"], "held_micro": a["held"], "available_micro": a["available"],
        "paid_micro": a["paid_total"], "granted_micro": a["granted_total"], "spent_micro": a["spent_total"],
        "balance": _core.format_credits(a["balance"]), "available": _core.format_credits(a["available"]),
        "updated_ms": a["updated_ms"],
    }


def public_entry(e: dict) -> dict:
    keep = ("id", "kind", "amount", "delta", "uncollected", "balance_after", "held_after", "hold_id", "created_ms",
            "prompt_id", "node_id", "node_class", "model", "tokens_in", "tokens_out", "images", "seconds_ms",
            "currency", "amount_minor", "method", "note")
    return {k: e[k] for k in keep}


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
    return whoami


def register(routes, rt):
    whoami = make_whoami(rt)

    @routes.post("/credits/session")
    async def sign_in(request: web.Request):
        if not same_origin(request):
            return error(403, "bad_origin", "Cross-site requests are not accepted.")
        try:
            body = await request.json()
        except Exception:
            return error(400, "bad_json", "Send a JSON object.")
        if not isinstance(body, dict):
            return error(400, "bad_json", "Send a JSON object.")
        key = body.get("api_key")
        if not isinstance(key, str) or not key.startswith("cck_"):
            return error(400, "invalid_argument", "Send {\"api_key\": \"cck_...\"} (a personal API key).", "api_key")
        try:
            who = await asyncio.to_thread(rt.ledger.check_credential, key)
        except _core.NotFound:
            return error(401, "bad_credentials", "That API key is not valid.")
        except _core.InvalidState:
            return error(403, "account_disabled", "This Credits account is disabled.")
        account = who["account"]
        label = (request.headers.get("User-Agent") or "browser")[:120]
        sess = await asyncio.to_thread(rt.ledger.create_credential, account["id"], "session", label,
                                       rt.cfg.session_ttl_ms)
        resp = web.json_response({"account": public_account(account), "expires_ms": sess["expires_ms"]})
        resp.set_cookie(SESSION_COOKIE, sess["token"], max_age=rt.cfg.session_ttl_ms // 1000, httponly=True,
                        samesite="Strict", path="/", secure=request.secure)
        return resp

    @routes.get("/credits/session")
    async def session(request: web.Request):
        who, err = await whoami(request)
        if err:
            return err
        return web.json_response({"account": public_account(who["account"])})

    @routes.delete("/credits/session")
    async def sign_out(request: web.Request):
        if not same_origin(request):
            return error(403, "bad_origin", "Cross-site requests are not accepted.")
        who, err = await whoami(request)
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

    return whoami
