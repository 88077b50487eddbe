"""Installs comfy-credits into a running ComfyUI (called from the pack's
root __init__.py while ComfyUI imports custom nodes).

Order (shared/reference/backend.md §1.1, §1.4): packs are imported after
PromptServer exists and before add_routes() and the app start, so at import
we append our middleware, add our on_prompt handler and routes. API nodes of
packs loaded after us exist only later, so wrapping happens in
app.on_startup, which runs once every pack is loaded. Only then is
comfy_api_base pointed at our gateway: until that moment the pack's
prestartup_script.py keeps it on a refusing address (fail closed).
"""
from __future__ import annotations

import logging
import time

from . import __version__, _core, admin, api_nodes, config, feature_flags, gate, gateway_route, payments, receipts, routes
from .runtime import Runtime

log = logging.getLogger("comfy_credits")

STATE: dict = {}


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
    whoami = routes.register(server.routes, rt)
    gateway_route.register(server.routes, rt)
    pay = payments.Payments(rt)  # the sandbox's webhook goes to the private listener (on_startup)
    payments.register(server.routes, rt, pay, whoami)
    admin.register(server.routes, rt, whoami)
    receipts.register(server.routes, rt, pay, whoami)

    @server.routes.get("/credits/status")
    async def credits_status(request):
        # For web/ and monitoring. When the pack fails to load, the root
        # __init__.py answers this (and every /credits/* route) with 503.
        from aiohttp import web
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
        STATE["ready"] = True
        key = "set" if cfg.upstream_key else "NOT SET (upstream calls will be refused upstream)"
        shown = cfg.database_shown + ("" if rt.ledger_reachable else " (unreachable: API-node runs refused until it answers)")
        log.info("comfy-credits: ready; %d API node classes metered; ledger %s; gateway %s -> %s (%s listener); "
                 "operator key %s", len(wrapped), shown, base, cfg.upstream_base,
                 "native" if native is not None else "aiohttp", key)

    async def on_cleanup(app):
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
