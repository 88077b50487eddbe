"""Metering gateway route: where ComfyUI's API-node client sends its calls.

ComfyUI reads `comfy.cli_args.args.comfy_api_base` on every API call and
joins the request path to it (comfy_api_nodes/apis/client.py: urljoin with
path.lstrip("/"), so the base needs a trailing slash). The pack points it at
`<this server>/credits/gateway/`. Each call carries the run token the node
wrapper injected as `X-API-KEY`; the run state machine (src/run.c) admits
the call (run still open, path of the node's provider, bounded creating
calls), the route forwards it upstream from C with the operator's key,
streams the answer back, and reports the headers' credits as soon as they
arrive and the body's usage when it ends. A call whose client went away
(interrupted node) is still read to its end and counted. The user's token never leaves
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


def _refusal_for(exc: Exception) -> web.Response:
    """Why a run's token may not make this call (src/run.h cc_run_call_begin)."""
    field = getattr(exc, "field", None)
    if isinstance(exc, _core.InvalidState):
        if "expired" in str(exc):
            return refuse(402, "credits_hold_expired", "comfy-credits: the run token has expired")
        return refuse(402, "credits_hold_resolved", f"comfy-credits: {exc}")
    if field == "path":
        return refuse(403, "credits_path_not_allowed", f"comfy-credits: {exc}; a run token only reaches the "
                                                         "provider of the node it was made for")
    if getattr(exc, "code", "") == "limit_exceeded":
        return refuse(403, "credits_calls_limit", f"comfy-credits: {exc}")
    return refuse(402, "credits_hold_invalid", "comfy-credits: the run token is not valid")


def make_handler(rt):
    # A pool of its own: an upstream call holds its thread for the whole
    # round trip, so sharing the loop's small default pool would queue calls.
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=GATEWAY_THREADS_MAX,
                                                 thread_name_prefix="comfy-credits-gw")

    def open_upstream(call, method, path, query, headers, body):
        """One thread hop: send the request, record the headers' credits, take the first chunk.
        The call's end is recorded here when there is no answer to stream."""
        run_id, kind = call
        try:
            stream = rt.gateway.start(method, path, query=query, content_type=headers["Content-Type"],
                                      idempotency_key=headers["Idempotency-Key"], job_id=headers["Comfy-Job-Id"],
                                      body=body)
        except _core.StorageError as exc:
            rt.runs.call_end(run_id, kind, 0, getattr(exc, "field", None) == "timeout")
            raise
        except BaseException:
            rt.runs.call_end(run_id, kind, 0, False)
            raise
        # X-Comfy-Credits-Used is recorded as soon as the headers are here, not after the body.
        rt.runs.call_headers(run_id, kind, stream.status, stream.usage().get("credits_used_micro", -1))
        try:
            first = stream.read(CHUNK_BYTES)
        except BaseException:
            end_call(call, stream)
            raise
        return stream, first

    def end_call(call, stream):
        usage = None
        try:
            if stream.finished:
                usage = stream.usage()
                usage.pop("credits_used_micro", None)  # already recorded from the headers
        except _core.CreditsError:
            usage = None
        rt.runs.call_end(call[0], call[1], stream.status, False, usage)
        stream.close()  # returns the handle to the pool; does not block

    def drain(call, stream):
        try:
            while stream.read(CHUNK_BYTES):  # read the answer out so its usage is known
                pass
        except _core.CreditsError:
            pass
        end_call(call, stream)

    def abandoned(fut, call):
        """The client went away (the node was interrupted) while the upstream
        was still answering: the call still ends, and is still counted."""
        if fut.cancelled():  # never started: nothing was sent
            rt.runs.call_end(call[0], call[1], 0, False)
        elif fut.exception() is None:  # else open_upstream recorded the end
            stream, _ = fut.result()
            pool.submit(drain, call, stream)

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
        path = raw_tail(request)
        if path is None:
            return refuse(400, "credits_gateway_bad_request", "comfy-credits: only API-node calls go through the gateway")
        body = await request.read()
        headers = {h: request.headers.get(h) for h in FORWARDED_REQUEST_HEADERS}
        loop = asyncio.get_running_loop()
        try:
            call = await loop.run_in_executor(pool, rt.runs.call_begin, token, request.method, path)
        except _core.CreditsError as exc:
            return _refusal_for(exc)
        cfut = pool.submit(open_upstream, call, request.method, path, request.query_string or None, headers, body)
        try:
            stream, chunk = await asyncio.wrap_future(cfut)
        except asyncio.CancelledError:
            cfut.add_done_callback(lambda f: abandoned(f, call))
            raise
        except _core.InvalidArgument as exc:
            return refuse(400, "credits_gateway_bad_request", f"comfy-credits: {exc}")
        except _core.StorageError as exc:
            # Unreachable upstream or timeout: a 502/504 lets the client's own retry logic work.
            status = 504 if getattr(exc, "field", None) == "timeout" else 502
            log.warning("comfy-credits gateway: %s %s: %s", request.method, path, exc)
            return refuse(status, "credits_upstream_unavailable", f"comfy-credits: {exc}")
        pending = None  # a body read in a pool thread
        completed = False
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
                pending = pool.submit(stream.read, CHUNK_BYTES)
                chunk = await asyncio.wrap_future(pending)
                pending = None
            await resp.write_eof()
            completed = True
            return resp
        except _core.CreditsError as exc:
            log.warning("comfy-credits gateway: %s %s failed mid-response: %s", request.method, path, exc)
            raise ConnectionResetError(str(exc)) from None
        finally:
            if completed:
                end_call(call, stream)
            elif pending is not None:
                # The client went away during a read: finish reading in the pool, then count the call.
                pending.add_done_callback(lambda f: pool.submit(drain, call, stream))
            else:
                pool.submit(drain, call, stream)
    return comfy_credits_gateway


def register(routes, rt) -> None:
    routes.route("*", PREFIX + "{tail:.*}")(make_handler(rt))
