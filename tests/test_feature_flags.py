"""The pack tells the frontend that this server meters API ("partner") nodes
itself: `partner_run_gate_enabled` is False in ComfyUI's server features, on
both channels ComfyUI serves them (GET /features and the websocket reply to the
client's first "feature_flags" message; ComfyUI 0.3.64 server.py
get_features and websocket_handler, comfy_api/feature_flags.py). Frontends
>= 1.5x otherwise replace Run by "Sign in to run" for Comfy.org
(usePartnerNodesRunGate.ts, default true)."""
import asyncio
import json

import aiohttp
import pytest

from test_integration import Comfy


@pytest.fixture(scope="module")
def comfy(tmp_path_factory):
    c = Comfy(tmp_path_factory.mktemp("flags"))
    yield c
    c.close()


async def ws_features(port):
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(f"http://127.0.0.1:{port}/ws?clientId=flagtest") as ws:
            first = await ws.receive_json(timeout=10)
            assert first["type"] == "status"
            # What the frontend sends first (api.ts createSocket 'open' handler).
            await ws.send_str(json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}}))
            while True:
                msg = await ws.receive_json(timeout=10)
                if msg["type"] == "feature_flags":
                    return msg["data"]


def test_server_features_say_partner_nodes_need_no_comfy_org_account(comfy):
    st, feats = comfy.http("GET", "/api/features")
    assert st == 200 and feats["partner_run_gate_enabled"] is False
    assert feats["supports_preview_metadata"] is True  # ComfyUI's own flags are kept
    ws = asyncio.run(ws_features(comfy.port))
    assert ws["partner_run_gate_enabled"] is False and ws["max_upload_size"] == feats["max_upload_size"]


def test_no_announcement_when_the_pack_cannot_start(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{ not json")
    c = Comfy(tmp_path, {"COMFY_CREDITS_CONFIG": str(bad)})
    try:
        st, feats = c.http("GET", "/features")
        # Nothing meters API nodes here, so the frontend keeps its own gate (default true).
        assert st == 200 and "partner_run_gate_enabled" not in feats
        assert "partner_run_gate_enabled" not in asyncio.run(ws_features(c.port))
    finally:
        c.close()
