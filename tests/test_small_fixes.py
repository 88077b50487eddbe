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
