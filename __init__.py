"""ComfyUI entry point of the comfy-credits pack (loaded from custom_nodes/).

Builds nothing itself: run `bash scripts/setup` once to compile the C core.
If anything here fails, the pack fails CLOSED: API nodes stay pointed at a
refusing address (prestartup_script.py) and a small middleware refuses
every prompt that contains an API node, saying why.
"""
import logging

log = logging.getLogger("comfy_credits")

NODE_CLASS_MAPPINGS = {}
NODE_DISPLAY_NAME_MAPPINGS = {}
WEB_DIRECTORY = "./web"  # the Settings UI (one ES module + CSS); pyproject sets no [tool.comfy] web

import sys as _sys

_IN_COMFYUI = "server" in _sys.modules and "nodes" in _sys.modules  # imported by ComfyUI's main.py

try:
    if _IN_COMFYUI:
        from .comfy_credits_ext import pack as _pack

        _pack.install()
except Exception as _exc:  # noqa: BLE001 - any failure must close the gate, loudly
    log.exception("=" * 72 + "\ncomfy-credits FAILED TO LOAD: API nodes are DISABLED until this is fixed.\n"
                  "Run `bash scripts/setup` in the comfy-credits folder and restart ComfyUI.\n" + "=" * 72)
    _reason = f"{type(_exc).__name__}: {_exc}"
    try:
        from aiohttp import web
        from server import PromptServer
        import nodes as _nodes

        @web.middleware
        async def _comfy_credits_closed(request, handler):
            if request.method == "POST" and request.path in ("/prompt", "/api/prompt"):
                try:
                    body = await request.json()
                    prompt = body.get("prompt") if isinstance(body, dict) else None
                except Exception:
                    prompt = None
                if isinstance(prompt, dict) and any(
                        getattr(_nodes.NODE_CLASS_MAPPINGS.get(n.get("class_type")), "API_NODE", False) is True
                        for n in prompt.values() if isinstance(n, dict)):
                    return web.json_response({"error": {
                        "type": "credits_unavailable", "message": "Paid API nodes are disabled on this server",
                        "details": f"comfy-credits failed to load ({_reason}). Ask the operator to check the log.",
                        "extra_info": {}}, "node_errors": {}}, status=503)
            return await handler(request)

        PromptServer.instance.app.middlewares.append(_comfy_credits_closed)
    except Exception:  # noqa: BLE001
        log.exception("comfy-credits: could not even install the refusing middleware")
