"""A real aiohttp server with the pack's routes (account, payments) on a free
loopback port, running in its own thread: the routes exactly as ComfyUI
serves them, without ComfyUI."""
import asyncio
import json
import socket
import threading

import aiohttp
from aiohttp import web

from comfy_credits_ext import config, pack, payments
from comfy_credits_ext.runtime import Runtime


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, tmp_path, cfg_extra=None):
        path = tmp_path / "c.json"
        path.write_text(json.dumps({"database": str(tmp_path / "l.db"), **(cfg_extra or {})}))
        self.rt = Runtime(config.load(str(path)))
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.pay = payments.Payments(self.rt, self.base)
        table = web.RouteTableDef()
        pack.register_lazy(table, self.rt, self.pay)  # what the pack's routes are made of at their first request
        self.app = web.Application()
        self.app.add_routes(table)
        self.loop = asyncio.new_event_loop()
        self.runner = web.AppRunner(self.app)
        self.loop.run_until_complete(self.runner.setup())
        self.loop.run_until_complete(web.TCPSite(self.runner, "127.0.0.1", self.port).start())
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        led = self.rt.ledger
        self.account = led.create_account("buyer@example.com")["id"]
        self.key = led.create_credential(self.account, "api_key")["token"]

    def call(self, method, path, body=None, headers=None, raw=None, form=None, redirects=True, auth=True,
             jar=None):
        async def go():
            async with aiohttp.ClientSession(cookie_jar=jar if jar is not None else aiohttp.DummyCookieJar()) as s:
                base_headers = {"Authorization": f"Bearer {self.key}"} if auth else {}
                kw = {"headers": {**base_headers, **(headers or {})}, "allow_redirects": redirects}
                if raw is not None:
                    kw["data"] = raw
                elif form is not None:
                    kw["data"] = form
                elif body is not None:
                    kw["json"] = body
                async with s.request(method, self.base + path, **kw) as r:
                    text = await r.text()
                    try:
                        data = json.loads(text)
                    except ValueError:
                        data = text
                    return r.status, data, str(r.url)
        return asyncio.run_coroutine_threadsafe(go(), self.loop).result(60)

    def close(self):
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.rt.close()




def new_jar(server):
    """A cookie jar that keeps cookies for 127.0.0.1 (made on the server's loop)."""
    async def make():
        return aiohttp.CookieJar(unsafe=True)
    return asyncio.run_coroutine_threadsafe(make(), server.loop).result(10)
