"""GatewayStream.read() and the GIL (src/py_gateway.c S_read): it lets go of the GIL to wait for the
upstream, and only then. Data, the end or a failure that is already there is taken with the GIL held:
a reader that let go of it would restart the wait of any thread that wants the GIL (CPython's switch
interval begins again) and then wait for it back.

The upstream runs in a process of its own, so the only Python threads that want this process's GIL are
the test's."""
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from appserver import free_port
from comfy_credits_ext import _core

UPSTREAM = r'''
import asyncio, sys
from aiohttp import web
async def handle(req):
    await req.read()
    resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    await resp.prepare(req)
    if req.path.endswith("/slow"):   # a first part, then the rest after a pause
        await resp.write(b"a" * 100)
        await asyncio.sleep(float(req.query.get("pause", "1.5")))
        await resp.write(b"b" * 100)
    else:                            # the whole body in one write
        await resp.write(b"c" * int(req.query.get("n", "1000")))
    await resp.write_eof()
    return resp
app = web.Application()
app.router.add_route("*", "/{tail:.*}", handle)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
'''


@pytest.fixture(scope="module")
def gateway():
    port = free_port()
    up = subprocess.Popen([sys.executable, "-c", UPSTREAM, str(port)])
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline and up.poll() is None, "the upstream did not start"
                time.sleep(0.05)
        gw = _core.Gateway(f"http://127.0.0.1:{port}", "operator-key", timeout_ms=30_000)
        yield gw
        gw.close()
    finally:
        up.terminate()
        up.wait(timeout=10)


def test_a_read_that_waits_for_the_upstream_lets_other_python_threads_run(gateway):
    with gateway.start("POST", "/proxy/test/slow", query="pause=2", body=b"{}") as s:
        got = b""
        while len(got) < 100:  # the first part (the read may wait for it)
            got += s.read(100 - len(got))
        assert got == b"a" * 100
        waits_before = s.read_waits
        ticks = []
        stop = threading.Event()

        def other():  # any other Python thread of the server: it needs the GIL after each sleep
            while not stop.is_set():
                ticks.append(time.monotonic())
                time.sleep(0.005)
        t = threading.Thread(target=other, daemon=True)
        t.start()
        t0 = time.monotonic()
        rest = s.read(65536)  # nothing is there yet: waits ~2 s for the upstream's second write
        t1 = time.monotonic()
        stop.set()
        t.join(10)
        assert rest == b"b" * 100
        assert s.read_waits == waits_before + 1  # it did wait, once
        assert t1 - t0 > 0.5
        # Holding the GIL while it waited, the other thread could not have run at all meanwhile (at most
        # the tick it was taking when the read began: 1 with the release removed). With it, ~400 ticks
        # on an idle machine; >= 4 leaves room for a machine so loaded that a wake-up takes 0.5 s.
        during = [x for x in ticks if t0 < x < t1]
        assert len(during) >= 4, (len(during), t1 - t0)
        assert s.read(65536) == b""


def test_reads_of_data_already_there_keep_the_gil(gateway):
    n = 2000
    with gateway.start("POST", "/proxy/test/whole", query=f"n={n}", body=b"{}") as s:
        got, reads = b"", 0
        while True:
            b = s.read(1)  # one byte per call: most find the rest of the body already there
            reads += 1
            if not b:
                break
            got += b
        assert got == b"c" * n
        assert reads == n + 1
        # A wait per arrival of data from the upstream (one write of 2,000 bytes: one, or a few if
        # the kernel splits it), not one per call (which letting go of the GIL on every read would be).
        assert 0 <= s.read_waits <= 10, s.read_waits
