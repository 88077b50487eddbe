"""Metering gateway route: where ComfyUI's API-node client sends its calls.

ComfyUI reads `comfy.cli_args.args.comfy_api_base` on every API call and
joins the request path to it (comfy_api_nodes/apis/client.py: urljoin with
path.lstrip("/"), so the base needs a trailing slash). The pack points it at
this route on a private loopback listener (see `Listener`). Each call carries
the run token the node wrapper injected as `X-API-KEY`; the run state machine
(src/run.c) admits the call (run still open, path of the node's provider,
bounded creating calls), the route forwards it upstream from C with the
operator's key, streams the answer back, and reports the headers' credits as
soon as they arrive and the body's usage when it ends. A call whose client
went away (interrupted node) is still read to its end and counted. The user's
token never leaves the server; the operator's key never reaches the client.

No thread hops: the gateway's own I/O thread (src/gateway.c) drives every
transfer; this handler submits, then takes the headers and body chunks
without blocking and, when nothing is there yet, awaits a future that the
gateway's notify socket resolves (one event-loop wake-up for all streams with
news). A saturated gateway answers 503 with Retry-After at once (ComfyUI's
client retries 503 with back-off); a reader that takes no data for the
gateway's reader_idle_ms loses its connection.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import time

from aiohttp import web

from . import _core, gate

log = logging.getLogger("comfy_credits")

PREFIX = "/credits/gateway/"
CHUNK_BYTES = 256 * 1024
RETRY_AFTER_S = 1
REQUEST_BYTES_MAX = 64 << 20  # the Gateway's default request_bytes_max
FORWARDED_REQUEST_HEADERS = ("Content-Type", "Idempotency-Key", "Comfy-Job-Id")


def refuse(status: int, kind: str, message: str, headers: dict | None = None) -> web.Response:
    # The shape ComfyUI's client reads for non-2xx answers: {"error": {"message", "type"}}.
    return web.json_response({"error": {"message": message, "type": kind}}, status=status, headers=headers)


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


class Waiters:
    """The gateway's ready list as callbacks on one event loop.

    The I/O thread writes a byte to a socket when streams that were waiting
    have news; the loop reads it, asks the gateway which ones, and runs what
    was registered for each (resolving a future, or finishing an abandoned
    call). A stream is registered right after take()/headers_ready()/ended()
    said "not yet", on the loop thread, so no news can be missed."""

    def __init__(self, gateway, loop: asyncio.AbstractEventLoop):
        self.gateway = gateway
        self.loop = loop
        self.callbacks: dict[int, object] = {}
        self.rsock, self.wsock = socket.socketpair()
        self.rsock.setblocking(False)
        self.wsock.setblocking(False)
        loop.add_reader(self.rsock.fileno(), self._on_news)
        gateway.set_notify_fd(self.wsock.fileno())

    def _on_news(self) -> None:
        try:
            while self.rsock.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        for sid in self.gateway.ready():
            cb = self.callbacks.pop(sid, None)
            if cb is not None:
                cb()

    def on_news(self, stream, cb) -> None:
        self.callbacks[stream.id] = cb

    def wait(self, stream) -> asyncio.Future:
        fut = self.loop.create_future()

        def wake(fut=fut):
            if not fut.done():
                fut.set_result(None)
        self.callbacks[stream.id] = wake
        return fut

    def forget(self, stream_id: int) -> None:
        self.callbacks.pop(stream_id, None)

    def close(self) -> None:
        self.gateway.set_notify_fd(-1)  # a barrier: the I/O thread no longer writes to wsock
        if not self.loop.is_closed():
            self.loop.remove_reader(self.rsock.fileno())
        self.rsock.close()
        self.wsock.close()


class _RateLimitedLog:
    def __init__(self, every_s: float = 1.0):
        self.every_s = every_s
        self.last = 0.0
        self.count = 0

    def warning(self, fmt: str, *args) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self.last >= self.every_s:
            log.warning(fmt + " (%d refused since the last such line)", *args, self.count)
            self.last = now
            self.count = 0


# One Waiters per gateway (it owns the gateway's notify socket), shared by every route serving it
# (ComfyUI's server and the private listener); keyed by id() while it holds the gateway.
_WAITERS: dict[int, Waiters] = {}


def waiters_for(gateway) -> Waiters:
    loop = asyncio.get_running_loop()
    w = _WAITERS.get(id(gateway))
    if w is None or w.gateway is not gateway or w.loop is not loop:
        if w is not None:
            w.close()
        w = _WAITERS[id(gateway)] = Waiters(gateway, loop)
    return w


def release_waiters(gateway) -> None:
    """Before a gateway is dropped: its notify socket goes too."""
    w = _WAITERS.pop(id(gateway), None)
    if w is not None and w.gateway is gateway:
        w.close()


def make_handler(rt):
    busy_log = _RateLimitedLog()

    def waiters() -> Waiters:
        return waiters_for(rt.gateway)

    def end_call(call, stream, timed_out: bool = False) -> None:
        """Records how the call ended (usage when the body arrived whole) and releases the stream."""
        try:
            usage = None
            try:
                if stream.finished:
                    usage = stream.usage()
                    usage.pop("credits_used_micro", None)  # already recorded from the headers
            except _core.CreditsError:
                usage = None
            rt.runs.call_end(call[0], call[1], stream.status, timed_out, usage)
        finally:
            stream.close()

    def abandon(call, stream, w: Waiters) -> None:
        """The client went away (the node was interrupted) or stopped reading:
        the upstream's answer is still read to its end in the I/O thread
        (discarded), and the call is counted when it ends, however it ends
        (done, upstream timeout, error): the stream is always closed then."""
        try:
            stream.detach()
        except _core.CreditsError:
            pass

        def check() -> None:
            try:
                timed_out = stream.ended()
            except BaseException:
                end_call(call, stream)
                raise
            if timed_out is None:  # still running: its end comes out of ready()
                w.on_news(stream, check)
                return
            end_call(call, stream, bool(timed_out) and stream.status == 0)
        check()

    def not_started(call, stream, status: int, exc: Exception, timed_out: bool) -> web.Response:
        rt.runs.call_end(call[0], call[1], 0, timed_out)
        stream.close()
        log.warning("comfy-credits gateway: %s", exc)
        return refuse(status, "credits_upstream_unavailable", f"comfy-credits: {exc}")

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
        try:
            # Within gate.BODY_READ_TIMEOUT_S (#9.7: a trickled body is cut off), and before the
            # saturation check: from that check to submit() nothing awaits, so no other call slips in.
            body = await gate.read_body(request)
        except gate.BodyTimeout:
            return refuse(408, "request_timeout", f"comfy-credits: send the whole body within "
                                                  f"{gate.BODY_READ_TIMEOUT_S} s. Nothing was charged.")
        gw = rt.gateway
        if gw.stats()["in_flight"] >= gw.handles_max:
            # Refused before the call is admitted: a 503 costs the run none of its creating calls.
            busy_log.warning("comfy-credits gateway: saturated (%d upstream calls in flight): %s %s answered 503",
                             gw.handles_max, request.method, path)
            return refuse(503, "credits_gateway_busy", "comfy-credits: the gateway is saturated; retry shortly. "
                          "Nothing was charged.", {"Retry-After": str(RETRY_AFTER_S)})
        headers = request.headers
        try:
            # Token check and admission: in memory (it may extend the hold in the ledger, GIL released).
            call = rt.runs.call_begin(token, request.method, path)
        except _core.CreditsError as exc:
            return _refusal_for(exc)
        try:
            stream = gw.submit(request.method, path, query=request.query_string or None,
                               content_type=headers.get("Content-Type"),
                               idempotency_key=headers.get("Idempotency-Key"), job_id=headers.get("Comfy-Job-Id"),
                               body=body)
        except _core.CreditsError as exc:
            rt.runs.call_end(call[0], call[1], 0, False)  # nothing was sent
            if getattr(exc, "field", None) == "busy":
                busy_log.warning("comfy-credits gateway: %s: %s %s answered 503", exc, request.method, path)
                return refuse(503, "credits_gateway_busy", f"comfy-credits: {exc}; retry shortly. Nothing was charged.",
                              {"Retry-After": str(RETRY_AFTER_S)})
            if isinstance(exc, _core.InvalidArgument):
                return refuse(400, "credits_gateway_bad_request", f"comfy-credits: {exc}")
            log.warning("comfy-credits gateway: %s %s: %s", request.method, path, exc)
            return refuse(502, "credits_upstream_unavailable", f"comfy-credits: {exc}")
        w = waiters()
        try:
            while not stream.headers_ready():
                await w.wait(stream)
        except asyncio.CancelledError:
            w.forget(stream.id)
            abandon(call, stream, w)  # the upstream may still answer: counted when it does
            raise
        except _core.StorageError as exc:
            # Unreachable upstream or timeout: a 502/504 lets the client's own retry logic work.
            timeout = getattr(exc, "field", None) == "timeout"
            return not_started(call, stream, 504 if timeout else 502, exc, timeout)
        except _core.CreditsError as exc:
            return not_started(call, stream, 502, exc, False)
        # X-Comfy-Credits-Used is recorded as soon as the headers are here, not after the body.
        rt.runs.call_headers(call[0], call[1], stream.status, stream.usage().get("credits_used_micro", -1))
        completed = False
        loop = w.loop
        idle_s = gw.reader_idle_ms / 1000
        writing_since = None
        watchdog = None

        def watch():
            # A client that takes no bytes for reader_idle_ms loses its connection (the call is still counted).
            nonlocal watchdog
            if writing_since is not None and loop.time() - writing_since >= idle_s:
                log.warning("comfy-credits gateway: %s %s: the client read nothing for %.0f s; connection closed",
                            request.method, path, idle_s)
                if request.transport is not None:
                    request.transport.abort()
                watchdog = None
                return
            watchdog = loop.call_later(idle_s / 2, watch)
        try:
            chunk = stream.take(CHUNK_BYTES)
            if chunk is not None and stream.finished:
                # The whole answer is here (most API answers): one plain response, no chunked stream.
                resp = web.Response(status=stream.status, body=chunk)
                for name, value in stream.headers:
                    if name.lower() not in ("date", "server"):
                        resp.headers.add(name, value)
                completed = True
                return resp
            resp = web.StreamResponse(status=stream.status)
            for name, value in stream.headers:
                if name.lower() not in ("date", "server"):
                    resp.headers.add(name, value)
            await resp.prepare(request)
            while True:
                if chunk is None:
                    chunk = stream.take(CHUNK_BYTES)
                if chunk is None:
                    await w.wait(stream)
                    continue
                if not chunk:
                    break
                if watchdog is None and not stream.finished:
                    watchdog = loop.call_later(idle_s / 2, watch)  # only for answers longer than one chunk
                writing_since = loop.time()
                await resp.write(chunk)
                writing_since = None
                chunk = None
            await resp.write_eof()
            completed = True
            return resp
        except _core.CreditsError as exc:
            log.warning("comfy-credits gateway: %s %s failed mid-response: %s", request.method, path, exc)
            raise ConnectionResetError(str(exc)) from None
        finally:
            if watchdog is not None:
                watchdog.cancel()
            if completed:
                end_call(call, stream)
            else:
                w.forget(stream.id)
                abandon(call, stream, w)
    return comfy_credits_gateway


def register(routes, rt) -> None:
    routes.route("*", PREFIX + "{tail:.*}")(make_handler(rt))


class PrivateSite:
    """The gateway on a listener of its own: plain HTTP on a loopback address
    and a port the kernel picks, for ComfyUI's API client in this process.

    ComfyUI's client verifies TLS (comfy_api_nodes/apis/client.py:
    verify_ssl=True) and ComfyUI may listen with its own certificate
    (--tls-keyfile/--tls-certfile: server.py start_multi_address), on
    addresses this process cannot reach by a name its certificate holds, on a
    list of addresses (--listen a,b), or behind a reverse proxy that
    authenticates people; ComfyUI 0.3.64 listens only on TCP (no unix socket).
    The gateway therefore never goes through ComfyUI's own listener: this one
    serves only the gateway route (no other route, no ComfyUI middleware) and
    every call still needs a run token. With the sandbox checkout (TEST MODE)
    it also serves the Stripe webhook route, to which the sandbox posts its
    signed events for the same reasons (it verifies the signature first)."""

    HOSTS = (("127.0.0.1", socket.AF_INET), ("::1", socket.AF_INET6))

    def __init__(self, rt, request_bytes_max: int, extra_routes=(), gateway: bool = True):
        """extra_routes: (method, path, handler) served beside the gateway; only the
        sandbox checkout's webhook uses it (payments.make_webhook: signed events only).
        gateway=False: only the extra routes (the C listener, NativeSite, serves the gateway)."""
        self.rt = rt
        self.gateway = gateway
        self.request_bytes_max = request_bytes_max
        self.extra_routes = tuple(extra_routes)
        self.runner = None
        self.base = None

    async def start(self) -> str:
        app = web.Application(client_max_size=self.request_bytes_max)
        routes = web.RouteTableDef()
        if self.gateway:
            register(routes, self.rt)
        for method, path, handler in self.extra_routes:
            routes.route(method, path)(handler)
        app.add_routes(routes)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        last = None
        for host, family in self.HOSTS:
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.bind((host, 0))
                sock.listen(512)
                sock.setblocking(False)
            except OSError as exc:  # e.g. no IPv4 loopback in this container
                sock.close()
                last = exc
                continue
            await web.SockSite(self.runner, sock).start()
            port = sock.getsockname()[1]
            self.base = f"http://{host}:{port}" if family == socket.AF_INET else f"http://[{host}]:{port}"
            return self.base
        await self.runner.cleanup()
        raise OSError(f"comfy-credits: no loopback address to serve the gateway on: {last}")

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


class NativeSite:
    """The gateway on the C listener (src/listener.c, _core.GatewayListener): a
    loopback port served on the gateway's own I/O thread, where each call is
    parsed, admitted (run token, src/run.c), forwarded and streamed back
    without Python, with the same answers, refusals and metering as the route
    above (tests/test_gateway.py runs every case against both). Python only
    starts and stops it and forwards its log lines to this module's logger.
    The same reasons as PrivateSite's make it a loopback port of its own."""

    LOG_EVERY_S = 0.5

    def __init__(self, rt):
        self.rt = rt
        self.listener = None
        self.base = None
        self._drain = None

    async def start(self) -> str:
        last = None
        for ipv6 in (False, True):  # e.g. no IPv4 loopback in this container
            try:
                self.listener = _core.GatewayListener(self.rt.gateway, self.rt.runs, ipv6=ipv6,
                                                      upstream_configured=bool(self.rt.cfg.upstream_key))
                break
            except _core.CreditsError as exc:
                last = exc
        if self.listener is None:
            raise OSError(f"comfy-credits: no loopback address to serve the gateway on: {last}")
        self.rt.listener = self.listener  # Runtime.close() closes it before the runs and the gateway
        host = self.listener.host
        self.base = f"http://{host}:{self.listener.port}" if ":" not in host else f"http://[{host}]:{self.listener.port}"
        loop = asyncio.get_running_loop()

        def drain():
            self.flush_logs()
            self._drain = loop.call_later(self.LOG_EVERY_S, drain)
        self._drain = loop.call_later(self.LOG_EVERY_S, drain)
        return self.base

    def flush_logs(self) -> None:
        if self.listener is not None:
            self.flush_logs_of(self.listener)

    async def stop(self) -> None:
        if self._drain is not None:
            self._drain.cancel()
            self._drain = None
        if self.listener is not None:
            listener, self.listener = self.listener, None
            self.flush_logs_of(listener)
            await asyncio.to_thread(listener.close)  # waits for the I/O thread to let go
            if getattr(self.rt, "listener", None) is listener:
                self.rt.listener = None

    @staticmethod
    def flush_logs_of(listener) -> None:
        for line in listener.logs():
            log.warning("%s", line)
