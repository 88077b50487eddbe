"""Hooks comfy_api/feature_flags.py: tells the frontend that this server
meters API ("partner") nodes itself.

ComfyUI serves the dict SERVER_FEATURE_FLAGS to the frontend twice, both
through get_server_features() (a copy taken per request): GET /features
(server.py get_features) and the websocket reply to the client's first
"feature_flags" message (server.py websocket_handler). Frontends >= 1.5x
read `partner_run_gate_enabled` from either (useFeatureFlags.ts resolveFlag:
remote config = GET /api/features, else the websocket map, else true) and,
while it is true, replace Run with "Sign in to run - Partner nodes require
an account" unless a Comfy.org session exists (usePartnerNodesRunGate.ts).
On this server a Comfy.org session is not what pays: our queue gate and the
per-node holds are (gate.py, api_nodes.py). So once those are in place we
publish the flag as False, the server's own answer to "does running partner
nodes need a Comfy.org account here?". Frontends without the gate (1.27.x)
ignore unknown flags.
"""
from __future__ import annotations

import logging

log = logging.getLogger("comfy_credits")

PARTNER_RUN_GATE = "partner_run_gate_enabled"


def announce_self_metering() -> bool:
    """Sets partner_run_gate_enabled = False in ComfyUI's server features.
    Returns False (and changes nothing) on a ComfyUI without feature flags."""
    try:
        from comfy_api import feature_flags  # ComfyUI >= 0.3.4x
    except ImportError:
        log.info("comfy-credits: this ComfyUI has no comfy_api.feature_flags; nothing to announce")
        return False
    flags = getattr(feature_flags, "SERVER_FEATURE_FLAGS", None)
    if not isinstance(flags, dict):
        return False
    flags[PARTNER_RUN_GATE] = False
    return True
