"""Metering gateway route: where ComfyUI's API-node client sends its calls.

ComfyUI reads `comfy.cli_args.args.comfy_api_base` on every API call and
joins the request path to it (comfy_api_nodes/apis/client.py: urljoin with
path.lstrip("/"), so the base needs a trailing slash). The pack points it at
`<this server>/credits/gateway/`. Each call carries the per-hold token the
node wrapper injected as `X-API-KEY`; the route checks it, forwards the call
upstream from C with the operator's key, streams the answer back, and records
the usage the response reported on the hold. The user's token never leaves
the server; the operator's key never reaches the client.

Blocking work (connecting, reading the upstream) runs in worker threads with
the GIL released; the event loop only moves chunks.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging

from aiohttp import web

from . import _core

log = logging.getLogger("comfy_credits")

PREFIX = "/credits/gateway/"
CHUNK_BYTES = 256 * 1024
GATEWAY_THREADS_MAX = 64  # concurrent upstream calls in flight (more wait in line)
FORWARDED_REQUEST_HEADERS = ("Content-Type", "Idempotency-Key", "Comfy-Job-Id")


def refuse(status: int, kind: str, message: str) -> web.Response:
    # The shape ComfyUI's client reads for non-2xx answers: {"error": {"message", "type"}}.
    return web.json_response({"error": {"message": message, "type": kind}}, status=status)


def presented_token(request: web.Request) -> str | None:
    tok = request.headers.get("X-API-KEY")
    if tok:
        return tok.strip()
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return None


def raw_tail(request: web.Request) -> str | None:
    """The path after the gateway prefix exactly as the client sent it (still
    percent-encoded): the C core decodes it once and checks it (gwpath.h).
    aiohttp's match_info is already decoded, so a double-encoded ".." would
    pass through it as a single-encoded one."""
    raw = request.rel_url.raw_path
    for prefix in (PREFIX, "/api" + PREFIX):
        if raw.startswith(prefix):
            return "/" + raw[len(prefix):]
    return None


class _Refused(Exception):
    def __init__(self, response):
        self.response = response


def make_handler(rt):
    # A pool of its own: an upstream call holds its thread for the whole
    # round trip, so sharing the loop's small default pool would queue calls.
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=GATEWAY_THREADS_MAX,
                                                 thread_name_prefix="comfy-credits-gw")

    def open_upstream(claim, method, path, query, headers, body):
        """One thread hop: check the hold, send the request, take the first chunk."""
        try:
            hold = rt.ledger.get_hold(claim["hold_id"])
        except _core.NotFound:
            raise _Refused(refuse(402, "credits_hold_missing", "comfy-credits: the run's credit hold does not exist"))
        if hold["state"] != "open" or hold["account_id"] != claim["account_id"]:
            raise _Refused(refuse(402, "credits_hold_resolved",
                                  f"comfy-credits: the run's credit hold is already {hold['state']}"))
        stream = rt.gateway.start(method, path, query=query, content_type=headers["Content-Type"],
                                  idempotency_key=headers["Idempotency-Key"], job_id=headers["Comfy-Job-Id"],
                                  body=body)
        try:
            first = stream.read(CHUNK_BYTES)
        except BaseException:
            stream.close()
            raise
        return hold, stream, first

    async def comfy_credits_gateway(request: web.Request) -> web.StreamResponse:
        if not rt.cfg.upstream_key:
            # 400, not 5xx: ComfyUI's client would retry a 5xx for nothing.
            return refuse(400, "credits_upstream_not_configured",
                          "comfy-credits: this server's operator has not set COMFY_CREDITS_UPSTREAM_KEY, so API nodes "
                          "cannot reach the provider. Nothing was charged.")
        token = presented_token(request)
        if not token:
            return refuse(402, "credits_hold_missing", "comfy-credits: this call carries no run token; API nodes "
                                                       "must be run from a queued workflow")
        try:
            claim = rt.tokens.verify(token)
        except _core.InvalidState:
            return refuse(402, "credits_hold_expired", "comfy-credits: the run token has expired")
        except _core.InvalidArgument:
            return refuse(402, "credits_hold_invalid", "comfy-credits: the run token is not valid")
        path = raw_tail(request)
        if path is None:
            return refuse(400, "credits_gateway_bad_request", "comfy-credits: only API-node calls go through the gateway")
        body = await request.read()
        headers = {h: request.headers.get(h) for h in FORWARDED_REQUEST_HEADERS}
        loop = asyncio.get_running_loop()
        try:
            hold, stream, chunk = await loop.run_in_executor(
                pool, open_upstream, claim, request.method, path, request.query_string or None, headers, body)
        except _Refused as r:
            return r.response
        except _core.InvalidArgument as exc:
            return refuse(400, "credits_gateway_bad_request", f"comfy-credits: {exc}")
        except _core.StorageError as exc:
            # Unreachable upstream or timeout: a 502/504 lets the client's own retry logic work.
            status = 504 if getattr(exc, "field", None) == "timeout" else 502
            log.warning("comfy-credits gateway: %s %s: %s", request.method, path, exc)
            return refuse(status, "credits_upstream_unavailable", f"comfy-credits: {exc}")
        try:
            resp = web.StreamResponse(status=stream.status)
            for name, value in stream.headers:
                if name.lower() not in ("date", "server"):
                    resp.headers.add(name, value)
            await resp.prepare(request)
            while chunk:
                await resp.write(chunk)
                if stream.finished:  # small answers: no second trip to a thread
                    break
                chunk = await loop.run_in_executor(pool, stream.read, CHUNK_BYTES)
            if 200 <= stream.status < 300:
                usage = stream.usage()
                if usage:
                    rt.meter.record(hold["id"], request.method != "GET", usage)
            await resp.write_eof()
            return resp
        except _core.CreditsError as exc:
            log.warning("comfy-credits gateway: %s %s failed mid-response: %s", request.method, path, exc)
            raise ConnectionResetError(str(exc)) from None
        finally:
            stream.close()  # returns the handle to the pool; does not block
    return comfy_credits_gateway


def register(routes, rt) -> None:
    routes.route("*", PREFIX + "{tail:.*}")(make_handler(rt))
