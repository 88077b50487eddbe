"""ComfyUI entry point of the comfy-credits pack (loaded from custom_nodes/).

Installed through ComfyUI-Manager: requirements.txt brings the prebuilt
native module (comfy-credits-core), install.py checks it (README "Install").

If anything here fails, the pack fails CLOSED and VISIBLY:
  - API nodes stay pointed at a refusing address (prestartup_script.py);
  - a small middleware refuses every prompt that contains an API node with
    "Credits are unavailable on this server — ask the operator", and answers
    every /credits/* request with the same (no file-system path, no detail);
  - the log says why in one line, plus the fix;
  - the exception is re-raised, so ComfyUI lists the pack as IMPORT FAILED
    and never serves our web/ extension (no sign-in form that cannot work).
"""
import logging
import sys as _sys
import time as _time



def _runqueue_wait_s():
    """Seconds this thread has waited for a CPU (Linux /proc/thread-self/schedstat), else 0."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


_STARTED = (_time.perf_counter(), _time.thread_time(), _runqueue_wait_s())  # the pack's start-up cost, logged

log = logging.getLogger("comfy_credits")

NODE_CLASS_MAPPINGS = {}
NODE_DISPLAY_NAME_MAPPINGS = {}
WEB_DIRECTORY = "./web"  # the Settings UI (one ES module + CSS); pyproject sets no [tool.comfy] web

UNAVAILABLE = "Credits are unavailable on this server — ask the operator"

_IN_COMFYUI = "server" in _sys.modules and "nodes" in _sys.modules  # imported by ComfyUI's main.py


def _install_refusal():
    """Fail closed: refuse API-node prompts and every credits route (server.py middlewares)."""
    from aiohttp import web
    from server import PromptServer
    import nodes as _nodes

    def _refusal(status=503):
        return web.json_response({"error": {"type": "credits_unavailable", "message": UNAVAILABLE,
                                             "details": UNAVAILABLE, "extra_info": {}},
                                  "node_errors": {}, "available": False}, status=status)

    @web.middleware
    async def _comfy_credits_closed(request, handler):
        path = request.path
        if path.startswith("/api/"):
            path = path[4:]
        if path == "/credits" or path.startswith("/credits/"):
            return _refusal()
        if request.method == "POST" and path == "/prompt":
            try:
                body = await request.json()
                prompt = body.get("prompt") if isinstance(body, dict) else None
            except Exception:  # noqa: BLE001 - ComfyUI answers malformed bodies itself
                prompt = None
            if isinstance(prompt, dict) and any(
                    getattr(_nodes.NODE_CLASS_MAPPINGS.get(n.get("class_type")), "API_NODE", False) is True
                    for n in prompt.values() if isinstance(n, dict)):
                return _refusal()
        return await handler(request)

    PromptServer.instance.app.middlewares.append(_comfy_credits_closed)


if _IN_COMFYUI:
    try:
        from .comfy_credits_ext import pack as _pack

        _pack.install(started=_STARTED, runqueue_wait=_runqueue_wait_s)
    except Exception as _exc:  # noqa: BLE001 - any failure must close the gate, loudly, then fail the import
        _reason = getattr(_exc, "reason", None) or f"{type(_exc).__name__}: {_exc}"
        _fix = getattr(_exc, "fix", None) or ("fix the cause above, or reinstall comfy-credits with "
                                              "ComfyUI-Manager ('Try fix'), then restart ComfyUI")
        log.error("comfy-credits DISABLED (paid API nodes are refused): %s Fix: %s", _reason, _fix)
        try:
            _install_refusal()
        except Exception:  # noqa: BLE001
            log.exception("comfy-credits: could not even install the refusing middleware")
        raise
