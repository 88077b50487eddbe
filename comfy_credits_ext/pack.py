"""Installs comfy-credits into a running ComfyUI (called from the pack's
root __init__.py while ComfyUI imports custom nodes).

Order (shared/reference/backend.md §1.1, §1.4): packs are imported after
PromptServer exists and before add_routes() and the app start, so at import
we append our middleware, add our on_prompt handler and routes. API nodes of
packs loaded after us exist only later, so wrapping happens in
app.on_startup, which runs once every pack is loaded. Only then is
comfy_api_base pointed at our gateway: until that moment the pack's
prestartup_script.py keeps it on a refusing address (fail closed).

Start-up cost (issue #14): what only the /credits/* routes use (routes.py,
admin.py, receipts.py and what they import) is imported at the first request
to one of them, not at start-up; see LazyRoutes.
"""
from __future__ import annotations

import importlib
import logging
import threading
import time

from aiohttp import web

from . import __version__, _core, api_nodes, config, feature_flags, gate, gateway_route, payments
from .runtime import Runtime, open_audit

log = logging.getLogger("comfy_credits")

STATE: dict = {}

LAZY_MODULES = ("routes", "payments", "admin", "receipts")  # what LazyRoutes' build imports
PREFETCH_AFTER_S = 2.0  # the deferred modules are imported this long after start-up, off the event loop

# The routes of the modules LazyRoutes imports at the first request: what each one's register() adds, in
# its order (aiohttp tries a table's routes in the order they were added, e.g. /credits/checkout/options
# before /credits/checkout/{session_id}). tests/test_startup.py checks these lists against register().
LAZY_ROUTES = {
    "routes": (
        ("POST", "/credits/session"), ("GET", "/credits/signup"), ("GET", "/credits/invite"),
        ("POST", "/credits/admin/invites"), ("POST", "/credits/signup"), ("POST", "/credits/password"),
        ("DELETE", "/credits/sessions"), ("GET", "/credits/session"), ("DELETE", "/credits/session"),
        ("GET", "/credits/balance"), ("GET", "/credits/history"), ("POST", "/credits/prices"),
        ("GET", "/credits/history/rows"), ("GET", "/credits/usage"), ("GET", "/credits/keys"),
        ("POST", "/credits/keys"), ("DELETE", "/credits/keys/{key_id}"), ("GET", "/credits/openapi.json"),
    ),
    "payments": (
        ("GET", "/credits/checkout/options"), ("POST", "/credits/checkout"), ("GET", "/credits/checkout/{session_id}"),
        ("POST", "/credits/stripe/webhook"),
    ),
    "payments (sandbox checkout)": (  # after "payments", only with the sandbox checkout (TEST MODE)
        ("GET", "/credits/sandbox/checkout/{session_id}"), ("POST", "/credits/sandbox/checkout/{session_id}"),
    ),
    "admin": (
        ("GET", "/credits/admin/accounts"), ("GET", "/credits/admin/accounts/{account_id}"),
        ("POST", "/credits/admin/accounts/{account_id}/grant"), ("POST", "/credits/admin/accounts/{account_id}/status"),
        ("POST", "/credits/admin/accounts/{account_id}/caps"), ("GET", "/credits/caps"), ("POST", "/credits/caps"),
        ("GET", "/credits/admin/accounts/{account_id}/keys"), ("POST", "/credits/admin/keys/{key_id}/limits"),
        ("POST", "/credits/keys/{key_id}/limits"), ("GET", "/credits/admin/accounts/{account_id}/history"),
        ("GET", "/credits/admin/holds"), ("GET", "/credits/admin/verify"), ("GET", "/credits/admin/report"),
        ("GET", "/credits/admin/charts"), ("GET", "/credits/admin/attention"), ("GET", "/credits/admin/audit"),
    ),
    "receipts": (
        ("GET", "/credits/receipt/{session_id}"),
    ),
}


class LazyRoutes:
    """Routes whose handlers are made at the first request to any of them (start-up, issue #14).

    ComfyUI adds every route to its app before the app starts (server.py add_routes), so each
    (method, path) of LAZY_ROUTES is registered at start-up with a stand-in. The first request to one
    runs build(table) once: it imports the modules and has their register() add the real handlers to a
    table of our own; every stand-in then hands its requests to its real handler. Nothing else is
    deferred: the ledger, prices, gateway, payments, audit log and every hook are made at start-up."""

    def __init__(self, build):
        self._build = build
        self._handlers = None

    def handlers(self) -> dict:
        if self._handlers is None:  # the event loop's thread only: no lock needed
            table = web.RouteTableDef()
            self._build(table)
            self._handlers = {(r.method, r.path): r.handler for r in table}
        return self._handlers

    def stand_in(self, method: str, path: str):
        key = (method, path)

        async def comfy_credits_route(request):
            return await self.handlers()[key](request)
        return comfy_credits_route

    def register(self, routes, route_list) -> None:
        for method, path in route_list:
            routes.route(method, path)(self.stand_in(method, path))

    @staticmethod
    def prefetch() -> None:
        """Imports the deferred modules (in a thread of its own, a moment after start-up), so that the
        first request does not compile them (without .pyc files that took 120 ms at load 20); the
        first request still makes the handlers, which is cheap. Nothing depends on it: a request that
        comes first imports them itself (Python's import lock makes the two wait for one another)."""
        try:
            for name in LAZY_MODULES:
                importlib.import_module("." + name, __package__)
        except Exception:  # noqa: BLE001 - the first request will fail the same way and say so
            log.exception("comfy-credits: importing the /credits routes' modules failed")


def register_lazy(table, rt, pay) -> None:
    """What LazyRoutes builds at the first request: the modules' register() in the order install()
    registered their stand-ins (LAZY_ROUTES)."""
    from . import admin, receipts, routes
    whoami = routes.register(table, rt)
    payments.register(table, rt, pay, whoami)
    admin.register(table, rt, whoami)
    receipts.register(table, rt, pay, whoami)


def lazy_routes_after_gateway(pay) -> tuple:
    """LAZY_ROUTES registered after the gateway's route, in register_lazy's order."""
    return (LAZY_ROUTES["payments"] + (LAZY_ROUTES["payments (sandbox checkout)"] if pay.sandbox else ()) +
            LAZY_ROUTES["admin"] + LAZY_ROUTES["receipts"])


def install(started: tuple[float, float, float] | None = None, runqueue_wait=None) -> Runtime:
    """started: (perf_counter, thread_time, runqueue_wait()) when the pack's import began, for the
    start-up cost line; runqueue_wait() is the seconds the thread has waited for a CPU so far."""
    from server import PromptServer  # ComfyUI modules: present only inside ComfyUI
    import folder_paths
    import nodes
    from comfy.cli_args import args

    server = PromptServer.instance
    cfg = config.load(comfyui_user_dir=folder_paths.get_user_directory())
    problem = cfg.start_problem()
    if problem:
        raise config.ConfigError(problem)
    rt = Runtime(cfg)
    server.app.middlewares.append(gate.make_middleware(rt, nodes.NODE_CLASS_MAPPINGS))
    server.app.middlewares.append(gate.make_storage_middleware())
    server.add_on_prompt_handler(gate.make_on_prompt(rt))
    gate.install_queue_hook(server, rt)
    rt.audit = open_audit(cfg)  # admin actions' log: opened (and any problem with it seen) at start-up
    pay = payments.Payments(rt)  # the sandbox's webhook goes to the private listener (on_startup)
    lazy = LazyRoutes(lambda table: register_lazy(table, rt, pay))
    lazy.register(server.routes, LAZY_ROUTES["routes"])
    gateway_route.register(server.routes, rt)
    lazy.register(server.routes, lazy_routes_after_gateway(pay))

    @server.routes.get("/credits/status")
    async def credits_status(request):
        # For web/ and monitoring. When the pack fails to load, the root
        # __init__.py answers this (and every /credits/* route) with 503.
        return web.json_response({"available": True, "version": __version__})

    extra = [("POST", "/credits/stripe/webhook", payments.make_webhook(rt, pay))] if pay.sandbox else []
    native = gateway_route.NativeSite(rt) if cfg.gateway_listener == "native" else None
    site = gateway_route.PrivateSite(rt, gateway_route.REQUEST_BYTES_MAX, extra)
    sites = []

    async def on_startup(app):
        nonlocal native
        wrapped = api_nodes.wrap_all(rt, nodes.NODE_CLASS_MAPPINGS)
        # The gateway on its own loopback listener: reachable however ComfyUI listens (TLS,
        # --listen elsewhere or on several addresses, behind a proxy); see PrivateSite. Served
        # from C (NativeSite) unless configured otherwise or it cannot start (then aiohttp).
        gw_base = None
        if native is not None:
            try:
                gw_base = await native.start()
                sites.append(native)
            except (OSError, _core.CreditsError) as exc:
                log.warning("comfy-credits: the native gateway listener did not start (%s); serving the gateway "
                            "from aiohttp instead", exc)
                native = None
        if native is None or pay.sandbox:
            site.gateway = native is None  # with the native listener, the aiohttp one only takes the webhook
            private = await site.start()
            sites.append(site)
            gw_base = gw_base or private
            if pay.sandbox:
                pay.sandbox.self_base = private
        base = gw_base + gateway_route.PREFIX
        args.comfy_api_base = base
        rt.start_expiry()
        # Only now does every API node run on a hold: say so to the frontend.
        feature_flags.announce_self_metering()
        prefetch = threading.Timer(PREFETCH_AFTER_S, LazyRoutes.prefetch)
        prefetch.daemon = True
        prefetch.name = "comfy-credits-prefetch"
        prefetch.start()
        STATE["prefetch"] = prefetch
        STATE["ready"] = True
        key = "set" if cfg.upstream_key else "NOT SET (upstream calls will be refused upstream)"
        shown = cfg.database_shown + ("" if rt.ledger_reachable else " (unreachable: API-node runs refused until it answers)")
        log.info("comfy-credits: ready; %d API node classes metered; ledger %s; gateway %s -> %s (%s listener); "
                 "operator key %s", len(wrapped), shown, base, cfg.upstream_base,
                 "native" if native is not None else "aiohttp", key)

    async def on_cleanup(app):
        if STATE.get("prefetch"):
            STATE["prefetch"].cancel()
        for s in sites:
            await s.stop()

    def now():
        return time.perf_counter(), time.thread_time(), runqueue_wait() if runqueue_wait else 0.0
    installed = now()

    async def on_startup_timed(app):
        t = now()
        await on_startup(app)
        if started:  # what the pack itself adds to ComfyUI's start (bench/bench_startup.py reads it)
            end = now()
            own, cpu, queued = ((installed[i] - started[i]) + (end[i] - t[i]) for i in range(3))
            log.info("comfy-credits: start-up cost %.0f ms (import and install %.0f ms, metering at start %.0f ms), "
                     "CPU %.0f ms, waiting for a CPU %.0f ms", own * 1000, (installed[0] - started[0]) * 1000,
                     (end[0] - t[0]) * 1000, cpu * 1000, queued * 1000)

    server.app.on_startup.append(on_startup_timed)
    server.app.on_cleanup.append(on_cleanup)
    STATE["runtime"] = rt
    return rt
