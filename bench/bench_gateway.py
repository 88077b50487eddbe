"""Gateway and gate benchmark (issue #3 targets), printed against baselines.

1. Admission check for a 50-API-node prompt: the queue-time gate's work
   (identity, pricing every node at its worst case, balance check), p50/p99.
   Target p99 < 1 ms.
2. Gateway overhead: 64 concurrent clients call a loopback upstream directly,
   then through the metering gateway (token check, hold lookup, forward from
   C with libcurl, stream back, meter usage). Overhead = gateway − direct at
   p50 and p99. Targets: p50 < 1 ms, p99 < 3 ms.
3. Memory: 200 MB streamed through the gateway; growth of the gateway
   process's peak RSS. Target < 20 MB.

The upstream and the gateway run in their own processes, on loopback.
Run: python bench/bench_gateway.py [--requests 4000]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

UPSTREAM = r'''
import sys
from aiohttp import web
BIG = b"x" * (1 << 20)
async def gen(req):
    await req.read()
    return web.json_response({"data": [{"b64_json": "AAAA"}], "usage": {"input_tokens": 12, "output_tokens": 34}},
                             headers={"X-Comfy-Credits-Used": "1.50"})
async def big(req):
    r = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    await r.prepare(req)
    for _ in range(int(req.query.get("mb", "200"))):
        await r.write(BIG)
    return r
app = web.Application()
app.router.add_post("/proxy/bench/generate/poll", gen)
app.router.add_get("/proxy/bench/big", big)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
'''

GATEWAY = r'''
import sys, types, json
sys.path.insert(0, sys.argv[3])
from aiohttp import web
from comfy_credits_ext import _core, gateway_route
led = _core.Ledger(sys.argv[2])
prices = _core.PriceTable('{"format": 1, "credits_per_usd": 211, "default": {"credits": "10"}, "nodes": {}}')
rt = types.SimpleNamespace(ledger=led, prices=prices, runs=_core.Runs(led, prices, 3_600_000, 10_000),
                           cfg=types.SimpleNamespace(upstream_key="operator-key"),
                           gateway=_core.Gateway(f"http://127.0.0.1:{sys.argv[4]}", "operator-key", handles_max=128))
acct = led.create_account("bench@example.com")["id"]
led.grant("fund", acct, 10**15)
# One run's token for every request; the requests are POST polls (".../poll": not
# creating calls, so the per-run creating-call bound does not apply) through
# the same admission, relay and metering path as any other call.
token = rt.runs.begin("run:bench", acct, "bench", "1", "BenchNode", {}, "/proxy/bench/")["token"]
async def info(req):
    import resource
    with open("/proc/self/status") as f:
        st = dict(l.split(":", 1) for l in f if ":" in l)
    return web.json_response({"token": token, "rss_kb": int(st["VmRSS"].split()[0]), "hwm_kb": int(st["VmHWM"].split()[0])})
app = web.Application(client_max_size=100 << 20)
routes = web.RouteTableDef()
gateway_route.register(routes, rt)
app.router.add_get("/_info", info)
app.add_routes(routes)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 20) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


def pct(xs, p):
    s = sorted(xs)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


async def load(url: str, headers: dict, n: int, conc: int) -> list[float]:
    import aiohttp
    lat: list[float] = []
    conn = aiohttp.TCPConnector(limit=conc)
    async with aiohttp.ClientSession(connector=conn) as s:
        q = asyncio.Queue()
        for _ in range(n):
            q.put_nowait(None)

        async def worker():
            while not q.empty():
                q.get_nowait()
                t = time.perf_counter()
                async with s.post(url, data=b'{"prompt":"bench"}', headers=headers) as r:
                    await r.read()
                    assert r.status == 200, r.status
                lat.append((time.perf_counter() - t) * 1000)
        # warm-up
        for _ in range(50):
            async with s.post(url, data=b"{}", headers=headers) as r:
                await r.read()
        await asyncio.gather(*(worker() for _ in range(conc)))
    return lat


async def stream_big(url: str, headers: dict) -> int:
    import aiohttp
    n = 0
    async with aiohttp.ClientSession() as s:
        async with s.get(url, headers=headers) as r:
            assert r.status == 200
            async for chunk in r.content.iter_chunked(1 << 16):
                n += len(chunk)
    return n


def bench_admission(rounds: int) -> None:
    from aiohttp.test_utils import make_mocked_request
    from comfy_credits_ext import _core, config, gate
    from comfy_credits_ext.runtime import Runtime
    d = tempfile.mkdtemp()
    rt = Runtime(config.load(db_path=os.path.join(d, "gate.db")))
    acct = rt.ledger.create_account("gate@example.com")["id"]
    rt.ledger.grant("fund", acct, 10**13)
    key = rt.ledger.create_credential(acct, "api_key")["token"]

    class ApiNode:
        API_NODE = True
    classes = {"OpenAIDalle3": ApiNode, "KlingTextToVideoNode": ApiNode, "FluxProUltraImageNode": ApiNode}
    prompt = {}
    for i in range(50):
        cls = ("OpenAIDalle3", "KlingTextToVideoNode", "FluxProUltraImageNode")[i % 3]
        inputs = {"prompt": "a fox", "size": "1024x1024", "quality": "hd", "n": 1} if i % 3 == 0 else \
                 {"prompt": "a fox", "model_name": "kling-v2-master", "mode": "pro", "duration": "10"} if i % 3 == 1 \
                 else {"prompt": "a fox", "seed": i}
        prompt[str(i)] = {"class_type": cls, "inputs": inputs}
    body = {"prompt": prompt}
    req = make_mocked_request("POST", "/prompt", headers={"Authorization": f"Bearer {key}"})

    async def run():
        times = []
        for _ in range(rounds):
            t = time.perf_counter()
            adm = await gate.admit(rt, req, body, classes)
            times.append((time.perf_counter() - t) * 1000)
            assert isinstance(adm, gate.Admission) and len(adm.nodes) == 50 and adm.reserved, adm
            rt.release_prompt(adm.prompt_id)  # as when the prompt ends (not timed)
        return times
    times = asyncio.run(run())
    print(f"admission check, 50 API nodes: p50 {statistics.median(times):.3f} ms  p99 {pct(times, 99):.3f} ms "
          f"(target p99 < 1 ms; {rounds} rounds)")
    rt.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=2000)
    ap.add_argument("--skip-admission", action="store_true")
    args = ap.parse_args()
    if not args.skip_admission:
        bench_admission(args.rounds)
    up, gw = free_port(), free_port()
    d = tempfile.mkdtemp()
    procs = [subprocess.Popen([sys.executable, "-c", UPSTREAM, str(up)]),
             subprocess.Popen([sys.executable, "-c", GATEWAY, str(gw), os.path.join(d, "gw.db"), ROOT, str(up)])]
    try:
        wait_port(up)
        wait_port(gw)
        import urllib.request
        info = json.load(urllib.request.urlopen(f"http://127.0.0.1:{gw}/_info"))
        hdr = {"X-API-KEY": info["token"], "Content-Type": "application/json", "Idempotency-Key": "bench"}
        direct = asyncio.run(load(f"http://127.0.0.1:{up}/proxy/bench/generate/poll", {"X-API-KEY": "operator-key"},
                                  args.requests, args.concurrency))
        via = asyncio.run(load(f"http://127.0.0.1:{gw}/credits/gateway/proxy/bench/generate/poll", hdr,
                               args.requests, args.concurrency))
        d50, d99, g50, g99 = statistics.median(direct), pct(direct, 99), statistics.median(via), pct(via, 99)
        print(f"{args.concurrency} concurrent, {args.requests} requests each way:")
        print(f"  direct to upstream   p50 {d50:.3f} ms  p99 {d99:.3f} ms")
        print(f"  through the gateway  p50 {g50:.3f} ms  p99 {g99:.3f} ms")
        print(f"  gateway overhead     p50 {g50 - d50:+.3f} ms  p99 {g99 - d99:+.3f} ms (targets < 1 ms / < 3 ms)")
        before = json.load(urllib.request.urlopen(f"http://127.0.0.1:{gw}/_info"))
        t = time.perf_counter()
        n = asyncio.run(stream_big(f"http://127.0.0.1:{gw}/credits/gateway/proxy/bench/big?mb={args.mb}", hdr))
        secs = time.perf_counter() - t
        after = json.load(urllib.request.urlopen(f"http://127.0.0.1:{gw}/_info"))
        grow = (after["hwm_kb"] - before["hwm_kb"]) / 1024
        print(f"streamed {n / 2**20:.0f} MiB through the gateway in {secs:.2f} s ({n / 2**20 / secs:.0f} MiB/s); "
              f"gateway peak RSS {before['hwm_kb'] / 1024:.1f} -> {after['hwm_kb'] / 1024:.1f} MiB "
              f"(growth {grow:.1f} MiB, target < 20 MiB)")
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=10)


if __name__ == "__main__":
    main()
