"""Start-up cost (issue #14): what only the /credits/* routes need is imported at their first request.

pack.LAZY_ROUTES lists the routes the deferred modules register; pack.install registers a stand-in for
each, and the first request to any of them has the modules register their real handlers. These tests
check the lists against the modules (a route added to a module but not to the list fails here), and, on
the contract harness (the order ComfyUI imports packs, adds routes and starts its app), that a started
server has imported none of those modules, and that the first requests are answered as before.
"""
import json
import os
import subprocess
import sys

import pytest
from aiohttp import web

from comfy_credits_ext import config, pack, payments
from comfy_credits_ext.runtime import Runtime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HARNESS = os.path.join(ROOT, "tests", "comfyui_harness")
DEFERRED = ("routes", "admin", "receipts", "invites", "emails", "throttle")


@pytest.mark.parametrize("sandbox", [False, True])
def test_lazy_route_lists_are_what_the_modules_register_in_order(tmp_path, monkeypatch, sandbox):
    monkeypatch.setenv("COMFY_CREDITS_UPSTREAM_KEY", "k")
    cfg_path = tmp_path / "c.json"
    cfg_path.write_text(json.dumps({"database": str(tmp_path / "l.db"), "sandbox_checkout": sandbox}))
    rt = Runtime(config.load(str(cfg_path)))
    try:
        pay = payments.Payments(rt)
        assert bool(pay.sandbox) == sandbox
        table = web.RouteTableDef()
        pack.register_lazy(table, rt, pay)
        real = [(r.method, r.path, r.kwargs) for r in table]
        listed = [(m, p, {}) for m, p in pack.LAZY_ROUTES["routes"] + pack.lazy_routes_after_gateway(pay)]
        assert real == listed
        # the gateway's catch-all route, registered between the two blocks, overlaps none of them
        assert not any(p.startswith("/credits/gateway/") for _, p, _ in real)
    finally:
        rt.close()


START = r'''
import asyncio, json, logging, os, sys, threading
logging.basicConfig(level=logging.INFO, format="%(message)s")
sys.path.insert(0, sys.argv[1])
from comfy.cli_args import args, parse
parse(["--listen", "127.0.0.1", "--port", "0", "--user-directory", sys.argv[3], "--custom-nodes-dir", sys.argv[2]])
import folder_paths
folder_paths.set_user_directory(sys.argv[3])
import nodes, server
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
loop = asyncio.new_event_loop()
asyncio.set_event_loop(loop)
ps = server.PromptServer(loop)
loop.run_until_complete(nodes.init_extra_nodes(sys.argv[2], init_api_nodes=True))
ps.add_routes()
def ours():
    return sorted(n.rsplit(".", 1)[1] for n in sys.modules if ".comfy_credits_ext." in n)
async def main():
    client = TestClient(TestServer(ps.app))
    await client.start_server()  # the app's on_startup hooks run here: the pack is ready
    out = {"started": ours()}
    if sys.argv[4] == "prefetch":  # no request: the pack imports them itself a moment later
        t = loop.time()
        def busy():  # not imported yet, or being imported (a module is in sys.modules from its first line)
            return "routes" not in ours() or any(th.name == "comfy-credits-prefetch" for th in threading.enumerate())
        while busy() and loop.time() - t < 60:
            await asyncio.sleep(0.05)
        out["prefetched_after_s"] = loop.time() - t
        out["prefetched"] = ours()
    r = await client.get("/credits/status")
    out["status"] = [r.status, await r.json()]
    out["after_status"] = ours()
    r = await client.get("/api/credits/session")
    out["session"] = [r.status, await r.json()]
    r = await client.post("/credits/session", json={"email": "nobody@example.com", "password": "wrong password"})
    out["sign_in"] = [r.status, await r.json()]
    r = await client.get("/credits/checkout/options")
    out["options"] = [r.status, (await r.json()).get("presets_usd")]
    r = await client.get("/credits/admin/accounts")
    out["admin"] = r.status
    r = await client.get("/credits/no-such-route")
    out["unknown"] = r.status
    r = await client.put("/credits/session")
    out["wrong_method"] = r.status
    out["after_requests"] = ours()
    await client.close()
    print(json.dumps(out))
loop.run_until_complete(main())
'''


def start(tmp_path, mode):
    nodes_dir = tmp_path / "custom_nodes"
    nodes_dir.mkdir()
    os.symlink(ROOT, nodes_dir / "comfy-credits")
    (tmp_path / "user").mkdir()
    env = dict(os.environ, COMFY_CREDITS_UPSTREAM_KEY="k", COMFY_CREDITS_UPSTREAM_BASE="http://127.0.0.1:9")
    env.pop("COMFY_CREDITS_DB", None)
    p = subprocess.run([sys.executable, "-c", START, HARNESS, str(nodes_dir), str(tmp_path / "user"), mode],
                       capture_output=True, text=True, timeout=180, env=env, cwd=str(tmp_path))
    assert p.returncode == 0, p.stderr[-3000:]
    assert "comfy-credits: ready" in p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_a_started_server_has_not_imported_the_route_modules_and_the_first_requests_work(tmp_path):
    out = start(tmp_path, "requests")
    started = set(out["started"])
    assert {"pack", "gate", "runtime", "api_nodes", "gateway_route", "payments"} <= started
    assert not started & set(DEFERRED), started
    assert out["status"] == [200, {"available": True, "version": out["status"][1]["version"]}]
    assert not set(out["after_status"]) & set(DEFERRED)  # /credits/status is served at once
    # the first request to a deferred route loads them and is answered by the real handler
    assert out["session"][0] == 401 and out["session"][1]["error"]["type"]
    assert out["sign_in"][0] == 401 and out["sign_in"][1]["error"]["type"] == "bad_credentials"
    assert out["options"] == [200, list(payments.PRESETS_USD)]
    assert out["admin"] == 401
    assert out["unknown"] == 404 and out["wrong_method"] == 405  # as aiohttp answers them for any route
    assert {"routes", "admin", "receipts"} <= set(out["after_requests"])


def test_the_route_modules_are_imported_a_moment_after_start_up_without_a_request(tmp_path):
    """pack.LazyRoutes.prefetch: the first person's request then does not compile them."""
    out = start(tmp_path, "prefetch")
    assert not set(out["started"]) & set(DEFERRED)
    assert out["prefetched_after_s"] >= pack.PREFETCH_AFTER_S * 0.9
    assert set(DEFERRED) <= set(out["prefetched"])
    assert out["session"][0] == 401 and out["sign_in"][0] == 401  # and the requests are served as before
