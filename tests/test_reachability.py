"""Issue #14: ComfyUI's API client reaches the gateway however ComfyUI listens.

ComfyUI's client verifies TLS (comfy_api_nodes/apis/client.py verify_ssl=True)
and joins its calls to args.comfy_api_base. The pack serves the gateway on a
loopback listener of its own (gateway_route.PrivateSite), so API nodes work
when ComfyUI runs with its own certificate (--tls-keyfile/--tls-certfile,
server.py start_multi_address), listens on other or several addresses
(--listen, main.py run()), or sits behind a reverse proxy the API client
cannot pass. ComfyUI 0.3.64 has no unix-socket listener (server.py creates
only web.TCPSite), so there is no such case to serve."""
import asyncio
import re
import socket
import subprocess
import ssl
import threading
import urllib.error
import urllib.parse
import urllib.request

import aiohttp
import pytest
from aiohttp import web

from appserver import free_port
from test_integration import C, Comfy, dalle, user

BASE_RE = re.compile(r"gateway (\S+) -> ")


def gateway_base(comfy):
    m = BASE_RE.search(comfy.boot_log)
    assert m, comfy.boot_log
    return m.group(1)


def runs_a_metered_api_node(comfy, email):
    acct, key = user(comfy, email, 50 * C)
    st, body = comfy.queue(dalle(), key)
    assert st == 200, body
    h = comfy.wait(body["prompt_id"])
    assert h["status"]["status_str"] == "success", h["status"]
    with comfy.ledger() as led:
        a = led.account(acct)
    assert a["balance"] == 50 * C - 8_440_000 and a["held"] == 0  # charged what the upstream billed
    assert any(r["path"].startswith("/proxy/openai/images") for r in comfy.upstream_requests())


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    """A throwaway self-signed certificate for a name that is not 127.0.0.1 (as an operator's would be)."""
    d = tmp_path_factory.mktemp("tls")
    key, crt = d / "key.pem", d / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                    "/CN=comfy.example.org", "-keyout", str(key), "-out", str(crt)], check=True, capture_output=True)
    return str(crt), str(key)


@pytest.mark.parametrize("listener", ["native", "aiohttp"])
def test_comfyui_with_its_own_tls(tmp_path, cert, listener):
    """Both listeners: the C one (the default) and the aiohttp route (configurable; the fallback)."""
    comfy = Comfy(tmp_path, tls=cert, pack_env={"COMFY_CREDITS_GATEWAY_LISTENER": listener})
    try:
        assert f"To see the GUI go to: https://127.0.0.1:{comfy.port}" in comfy.boot_log
        assert f"({listener} listener)" in comfy.boot_log
        runs_a_metered_api_node(comfy, "tls@example.com")
        # The API client's base is the private plain-HTTP loopback listener, not https://127.0.0.1:<port>
        # (whose certificate names comfy.example.org: every API node failed there).
        base = gateway_base(comfy)
        assert base.startswith("http://127.0.0.1:") and f":{comfy.port}/" not in base
        sandbox_purchase_is_credited_by_its_webhook(comfy, "tls-buyer@example.com")
    finally:
        comfy.close()


def sandbox_purchase_is_credited_by_its_webhook(comfy, email):
    """The sandbox checkout (TEST MODE, on with the simulated upstream) posts a signed webhook to the pack
    itself when the buyer pays. It used to post to https://127.0.0.1:<port> under ComfyUI's own TLS, whose
    certificate names another host: the delivery raised and the buyer's "Pay" got a 500."""
    acct, key = user(comfy, email)
    st, co = comfy.http("POST", "/credits/checkout", {"amount_minor": 1000, "currency": "usd"}, key)
    assert st == 200 and co["test_mode"], co
    path = urllib.parse.urlsplit(co["checkout_url"]).path

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **kw):
            return None
    ctx = ssl._create_unverified_context() if comfy.base.startswith("https:") else None
    opener = urllib.request.build_opener(NoRedirect, urllib.request.HTTPSHandler(context=ctx))
    req = urllib.request.Request(comfy.base + path, method="POST",
                                 data=urllib.parse.urlencode({"action": "pay", "method": "card"}).encode())
    try:
        opener.open(req, timeout=60)
        raise AssertionError("no redirect after paying")
    except urllib.error.HTTPError as e:
        assert e.code == 303, (e.code, e.read()[:500])
    # Credited by the signed webhook before the redirect (the buyer has not come back yet).
    with comfy.ledger() as led:
        a = led.account(acct)
    assert a["balance"] == 2110 * C and a["test_balance"] == 2110 * C, a


def ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.parametrize("listen,connect", [
    ("127.0.0.2", "127.0.0.2"),                 # another address
    ("::1", "[::1]"),                          # IPv6 only
    ("127.0.0.3,::1", "127.0.0.3"),              # several addresses (main.py run() splits on commas)
])
def test_comfyui_listening_elsewhere(tmp_path, listen, connect):
    if ":" in listen and not ipv6_loopback():
        pytest.skip("no IPv6 loopback on this machine")
    comfy = Comfy(tmp_path, listen=listen, connect_host=connect)
    try:
        assert gateway_base(comfy).startswith("http://127.0.0.1:") and "(native listener)" in comfy.boot_log
        runs_a_metered_api_node(comfy, "elsewhere@example.com")
    finally:
        comfy.close()


class AuthProxy:
    """A reverse proxy in front of ComfyUI that lets only people with its password through."""

    def __init__(self, target_port):
        self.port = free_port()
        self.target = f"http://127.0.0.1:{target_port}"
        self.paths = []
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        ready.wait(10)

    async def handle(self, req):
        self.paths.append(req.path)
        if req.headers.get("X-Proxy-Password") != "open-sesame":
            return web.Response(status=401, text="proxy: who are you?")
        hdr = {k: v for k, v in req.headers.items() if k.lower() not in ("host", "x-proxy-password", "content-length")}
        async with aiohttp.ClientSession() as s:
            async with s.request(req.method, self.target + req.rel_url.raw_path_qs, headers=hdr,
                                 data=await req.read()) as r:
                return web.Response(status=r.status, body=await r.read(),
                                    headers={"Content-Type": r.headers.get("Content-Type", "application/json")})

    def _run(self, ready):
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        runner = web.AppRunner(app)
        self.loop.run_until_complete(runner.setup())
        self.loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        ready.set()
        self.loop.run_forever()


def test_comfyui_behind_a_reverse_proxy(tmp_path):
    comfy = Comfy(tmp_path)
    proxy = AuthProxy(comfy.port)
    try:
        comfy.base = f"http://127.0.0.1:{proxy.port}"  # people reach ComfyUI only through the proxy
        acct, key = user(comfy, "proxied@example.com", 50 * C)
        st, _ = comfy.queue(dalle(), key)
        assert st == 401  # the proxy's password is needed...
        st, body = comfy.http("POST", "/prompt", {"prompt": dalle(), "client_id": "t"}, key,
                              headers={"X-Proxy-Password": "open-sesame"})
        assert st == 200, body
        comfy.base = f"http://127.0.0.1:{comfy.port}"
        h = comfy.wait(body["prompt_id"])
        assert h["status"]["status_str"] == "success", h["status"]
        # ...which the API client does not have: its calls never went through the proxy.
        assert not [p for p in proxy.paths if "gateway" in p]
        with comfy.ledger() as led:
            assert led.account(acct)["balance"] == 50 * C - 8_440_000
    finally:
        proxy.loop.call_soon_threadsafe(proxy.loop.stop)
        comfy.close()
