"""Issue #9.7, the smaller items, each with its attack."""
import asyncio
import socket
import time

import pytest

from appserver import Server
from comfy_credits_ext import gate


@pytest.fixture
def srv(tmp_path):
    s = Server(tmp_path, {"sandbox_checkout": True})
    yield s
    s.close()


def test_checkout_links_never_follow_a_foreign_host_header(srv):
    st, body, _ = srv.call("POST", "/credits/checkout", {"amount_minor": 500}, headers={"Host": "evil.example.com"})
    assert st == 400 and body["error"]["type"] == "unknown_host"
    st, body, _ = srv.call("POST", "/credits/checkout", {"amount_minor": 500})  # loopback Host: fine
    assert st == 200 and body["checkout_url"].startswith(srv.base + "/")


def test_public_url_decides_links_and_makes_the_cookie_secure(tmp_path):
    s = Server(tmp_path, {"sandbox_checkout": True, "public_url": "https://comfy.example.com"})
    try:
        st, body, _ = s.call("POST", "/credits/checkout", {"amount_minor": 500}, headers={"Host": "evil.example.com"})
        assert st == 200 and body["checkout_url"].startswith("https://comfy.example.com/credits/sandbox/")
    finally:
        s.close()


def test_secure_cookie_flag(tmp_path):
    s = Server(tmp_path, {"public_url": "https://comfy.example.com"})
    try:
        s.rt.ledger.set_password(s.account, "correct horse battery")

        async def go():
            import aiohttp
            async with aiohttp.ClientSession() as h:
                async with h.post(s.base + "/credits/session", json={"email": "buyer@example.com",
                                                                     "password": "correct horse battery"}) as r:
                    return r.status, r.headers.getall("Set-Cookie")
        st, cookies = asyncio.run_coroutine_threadsafe(go(), s.loop).result(30)
        assert st == 200 and any("comfy_credits_session=" in c and "Secure" in c for c in cookies), cookies
    finally:
        s.close()


def slow_post(port, path, total=200, every_s=0.5, for_s=4.0):
    """Sends headers, then one body byte every `every_s`: returns (status line, seconds until answered)."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall((f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {total}\r\n\r\n").encode())
    sock.settimeout(every_s)
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < for_s:
            try:
                sock.sendall(b" ")
            except OSError:
                break
            try:
                data = sock.recv(4096)
                if data:
                    return data.split(b"\r\n", 1)[0].decode(), time.monotonic() - t0
            except socket.timeout:
                pass
        return None, time.monotonic() - t0
    finally:
        sock.close()


def test_a_slow_body_is_timed_out(srv, monkeypatch):
    monkeypatch.setattr(gate, "BODY_READ_TIMEOUT_S", 1)
    line, took = slow_post(srv.port, "/credits/session")
    assert line is not None and " 408 " in line and took < 3, (line, took)


def test_a_slow_body_to_the_gateway_is_timed_out(ledger, account, monkeypatch):
    """The gateway route reads its body within the same limit: a token-shaped header and a
    body trickled in never hold the connection, and nothing reaches the upstream."""
    from test_gateway import make_env
    monkeypatch.setattr(gate, "BODY_READ_TIMEOUT_S", 1)
    gen = make_env(ledger, account, timeout_ms=1000)
    env = next(gen)
    try:
        async def trickle():
            reader, writer = await asyncio.open_connection("127.0.0.1", env.port)
            writer.write((f"POST /credits/gateway/proxy/openai/images/generations HTTP/1.1\r\n"
                          f"Host: 127.0.0.1:{env.port}\r\nX-API-KEY: {env.token}\r\n"
                          "Content-Type: application/json\r\nContent-Length: 200\r\n\r\n").encode())
            t0 = time.monotonic()
            line = b""
            while time.monotonic() - t0 < 6 and not line:
                try:
                    writer.write(b" ")
                    await writer.drain()
                except OSError:
                    break
                try:
                    line = await asyncio.wait_for(reader.readline(), 0.5)
                except asyncio.TimeoutError:
                    pass
            took = time.monotonic() - t0
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass
            return line.decode(), took
        line, took = env.loop.run_until_complete(trickle())
        env.loop.run_until_complete(asyncio.sleep(0.2))  # the server sees the connection close
        assert " 408 " in line and took < 4, (line, took)
        assert env.up.requests == []
        assert env.rt.runs.finish(env.hold["hold_id"], "succeeded")["calls"] == 0
    finally:
        next(gen, None)  # make_env's teardown
