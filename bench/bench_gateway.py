"""Gateway and gate benchmark (issues #3 and #14), every figure beside its baseline.

1. Admission check for a 50-API-node prompt: the queue-time gate's work
   (identity, pricing every node at its worst case, balance check), p50/p99.
   Target p99 < 1 ms.
2. Gateway vs its baselines, like for like: the same small POST (a JSON
   answer with usage and X-Comfy-Credits-Used) sent by the same load
   generator to
     direct    the (fake) upstream itself,
     native    the metering gateway as ComfyUI's API client reaches it by
               default: the C listener on the gateway's I/O thread
               (src/listener.c: parse, token check, admission, forward with
               libcurl, stream back, meter usage; no Python on the call path),
     gateway   the same gateway served by the aiohttp route
               (gateway_route.py; the fallback, and the baseline before #14's
               C listener),
     aioproxy  a plain aiohttp reverse proxy (forward + stream back, no
               metering): what "just proxy it in Python" costs,
     litellm   LiteLLM's proxy on the same upstream (an optional extra in its
               own venv: LITELLM_BIN or /work/litellm-venv/bin/litellm; skipped
               with a message when absent; it calls /v1/chat/completions).
     native@base  with --baseline-root DIR: the C listener of another
               checkout (its module built in place, e.g. the commit before a
               change), in its own process on the same upstream: before and
               after in the same interleaved rounds.
   Repetitions are interleaved (the order rotates each round) at 64
   concurrent clients and at 1 client. Printed per target: throughput,
   p50 and p99 latency, and the CPU every process of the path spent per
   call (the load generator, the upstream and the proxy, all threads, from
   /proc) with the involuntary context switches per call of each, min and
   median over the rounds.
   Overhead = target minus direct IN THE SAME ROUND (paired), min and
   median; a difference below the noise is printed as "< noise", never as a
   negative overhead. Targets (#14): at 64 concurrent throughput >= 0.8x
   direct and p50 overhead <= 2 ms; at 1 client p50 overhead < 1 ms and
   p99 < 3 ms.
3. Memory: 400 MiB streamed through the gateway; growth of the gateway
   process's peak RSS. Target: flat.

The upstream and every proxy run in their own processes, on loopback; the
load generator is this process. The machine's other load shows in every
target alike (that is why rounds are interleaved and paired).
Run: python bench/bench_gateway.py [--requests 10000] [--rounds 5]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
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
async def chat(req):  # the OpenAI shape, for LiteLLM
    await req.read()
    return web.json_response({"id": "c1", "object": "chat.completion", "created": 1, "model": "bench",
                              "choices": [{"index": 0, "finish_reason": "stop",
                                           "message": {"role": "assistant", "content": "ok"}}],
                              "usage": {"prompt_tokens": 12, "completion_tokens": 34, "total_tokens": 46}})
async def big(req):
    r = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    await r.prepare(req)
    for _ in range(int(req.query.get("mb", "200"))):
        await r.write(BIG)
    return r
app = web.Application()
app.router.add_post("/proxy/bench/generate/poll", gen)
app.router.add_post("/v1/chat/completions", chat)
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
listener = _core.GatewayListener(rt.gateway, rt.runs)  # the C listener, on the gateway's I/O thread
async def info(req):
    with open("/proc/self/status") as f:
        st = dict(l.split(":", 1) for l in f if ":" in l)
    return web.json_response({"token": token, "native_port": listener.port, "rss_kb": int(st["VmRSS"].split()[0]),
                              "hwm_kb": int(st["VmHWM"].split()[0])})
app = web.Application(client_max_size=100 << 20)
routes = web.RouteTableDef()
gateway_route.register(routes, rt)
app.router.add_get("/_info", info)
app.add_routes(routes)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
'''

# A plain reverse proxy in aiohttp: the same forward (method, path, query, body, a few headers, the
# operator's key) and streamed answer as the gateway, without token check or metering.
AIOPROXY = r'''
import sys
import aiohttp
from aiohttp import web
UP = f"http://127.0.0.1:{sys.argv[2]}"
HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "te", "trailer", "upgrade", "date", "server"}
async def on_startup(app):
    app["s"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=128), auto_decompress=False)
async def on_cleanup(app):
    await app["s"].close()
async def proxy(req):
    body = await req.read()
    hdr = {h: req.headers[h] for h in ("Content-Type", "Idempotency-Key") if h in req.headers}
    hdr["X-API-KEY"] = "operator-key"
    async with req.app["s"].request(req.method, UP + req.rel_url.raw_path_qs, data=body, headers=hdr) as r:
        resp = web.StreamResponse(status=r.status)
        for k, v in r.headers.items():
            if k.lower() not in HOP:
                resp.headers.add(k, v)
        await resp.prepare(req)
        async for chunk in r.content.iter_chunked(256 * 1024):
            await resp.write(chunk)
        await resp.write_eof()
        return resp
app = web.Application(client_max_size=100 << 20)
app.on_startup.append(on_startup)
app.on_cleanup.append(on_cleanup)
app.router.add_route("*", "/{tail:.*}", proxy)
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


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, all its threads."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def preempted(pid: int) -> int:
    """Involuntary context switches of a process, all its threads: how often the scheduler took the CPU
    away from it while it still had work (the cost of more runnable processes than CPUs)."""
    n = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("nonvoluntary_ctxt_switches:"):
                        n += int(line.split()[1])
        except OSError:
            pass  # a thread that ended meanwhile
    return n


class Usage:
    """CPU (user + system) and involuntary switches of one process between two points."""

    def __init__(self, pid: int | None):
        self.pid = pid or os.getpid()
        self.self_ = pid is None
        self.c0, self.p0 = self._cpu(), preempted(self.pid)

    def _cpu(self) -> float:
        if self.self_:  # this process: os.times() has the resolution the tick count lacks
            t = os.times()
            return t.user + t.system
        return cpu_seconds(self.pid)

    def per_call(self, n: int) -> tuple[float, float]:
        """(CPU us per call, involuntary switches per call)."""
        return (self._cpu() - self.c0) / n * 1e6, (preempted(self.pid) - self.p0) / n


async def load(url: str, headers: dict, body: bytes, n: int, conc: int) -> tuple[list[float], float]:
    """n POSTs from conc concurrent clients (keep-alive); latencies in ms and the wall time."""
    import aiohttp
    lat: list[float] = []
    conn = aiohttp.TCPConnector(limit=conc)
    async with aiohttp.ClientSession(connector=conn) as s:
        left = n

        async def worker():
            nonlocal left
            while left > 0:
                left -= 1
                t = time.perf_counter()
                async with s.post(url, data=body, headers=headers) as r:
                    await r.read()
                    assert r.status == 200, (url, r.status)
                lat.append((time.perf_counter() - t) * 1000)
        for _ in range(min(50, n)):  # warm-up: connections open, caches warm
            async with s.post(url, data=body, headers=headers) as r:
                await r.read()
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(conc)))
        wall = time.perf_counter() - t0
    return lat, wall


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
          f"(target p99 < 1 ms; {rounds} rounds; load average {os.getloadavg()[0]:.1f})")
    rt.close()


LITELLM_KEY = "sk-bench-" + os.urandom(16).hex()


def litellm_bin() -> str | None:
    cand = os.environ.get("LITELLM_BIN") or "/work/litellm-venv/bin/litellm"
    return cand if os.path.isfile(cand) and os.access(cand, os.X_OK) else shutil.which("litellm")


def fmt_over(ms: float) -> str:
    return f"{ms:+.3f} ms" if ms > 0 else f"< noise ({ms:+.3f})"


def compare(targets: dict, pids: dict, requests: int, conc: int, rounds: int, slow: dict | None = None,
            up_pid: int | None = None) -> None:
    """slow: fewer requests for a target that is an order of magnitude slower (LiteLLM), so a round
    stays short; rates and percentiles are per request either way."""
    slow = slow or {}
    names = list(targets)
    res = {k: {"tput": [], "p50": [], "p99": [], "cpu_us": [], "over50": [], "over99": [], "ratio": [],
               "rest_us": []} for k in names}
    loads = []
    for r in range(rounds):
        loads.append(os.getloadavg()[0])
        order = names[r % len(names):] + names[:r % len(names)]
        got = {}
        for k in order:
            url, hdr, body = targets[k]
            px = Usage(pids[k]) if k in pids else None
            me, upu = Usage(None), (Usage(up_pid) if up_pid else None)
            n = slow.get(k, requests)
            lat, wall = asyncio.run(load(url, hdr, body, n, conc))
            # Every process of the path, per call: the load generator (this process, warm-up included),
            # the upstream and the proxy (CPU us, involuntary context switches).
            gen, gen_sw = me.per_call(n)
            up, up_sw = upu.per_call(n) if upu else (0.0, 0.0)
            cpu, cpu_sw = px.per_call(n) if px else (float("nan"), float("nan"))
            got[k] = (n / wall, statistics.median(lat), pct(lat, 99), cpu, gen + up, gen, up, gen_sw, up_sw, cpu_sw)
        for k in names:
            t, p50, p99, cpu, rest, gen, up, gen_sw, up_sw, cpu_sw = got[k]
            for key, v in (("gen_us", gen), ("up_us", up), ("gen_sw", gen_sw), ("up_sw", up_sw), ("px_sw", cpu_sw)):
                res[k].setdefault(key, []).append(v)
            res[k]["rest_us"].append(rest)
            res[k]["tput"].append(t)
            res[k]["p50"].append(p50)
            res[k]["p99"].append(p99)
            res[k]["cpu_us"].append(cpu)
            res[k]["over50"].append(p50 - got["direct"][1])
            res[k]["over99"].append(p99 - got["direct"][2])
            res[k]["ratio"].append(t / got["direct"][0])
    mm = lambda xs, f="{:.0f}": f"{f.format(min(xs))} / {f.format(statistics.median(xs))}"
    extra = "".join(f", {slow[k]} for {k}" for k in slow if k in targets)
    loads.append(os.getloadavg()[0])
    print(f"\n{conc} concurrent client(s), {requests} requests per target per round{extra}, {rounds} interleaved "
          f"rounds (min / median over rounds); load average (1 min) {min(loads):.1f}-{max(loads):.1f} on "
          f"{os.cpu_count()} CPUs during them:")
    print(f"  {'target':11} {'req/s':>13} {'x direct':>11} {'p50 ms':>15} {'p99 ms':>15} {'proxy CPU/call':>17} "
          f"{'client+upstream CPU/call':>25}")
    for k in names:
        x = res[k]
        cpu = "-" if k not in pids else mm(x["cpu_us"], "{:.0f}") + " us"
        print(f"  {k:11} {mm(x['tput']):>13} {mm(x['ratio'], '{:.2f}'):>11} {mm(x['p50'], '{:.3f}'):>15} "
              f"{mm(x['p99'], '{:.3f}'):>15} {cpu:>17} {mm(x['rest_us'], '{:.0f}') + ' us':>25}")
    # Each process's CPU per call: the load generator and the upstream do the same work for every target
    # (the same requests and answers on the wire), so what they spend above direct is the cost of sharing
    # the CPUs with one more busy process (preemptions, cold caches), not extra work.
    print(f"  CPU per call of every process (us, min / median) and involuntary context switches per call "
          f"(median):")
    print(f"  {'target':11} {'load generator':>18} {'upstream':>14} {'proxy':>14} {'all':>8} "
          f"{'preempted/call gen / up / proxy':>33}")
    for k in names:
        x = res[k]
        px = mm(x["cpu_us"]) if k in pids else "-"
        allc = [a + b for a, b in zip(x["rest_us"], x["cpu_us"])] if k in pids else x["rest_us"]
        med = lambda key: f"{statistics.median(x[key]):.2f}" if not any(v != v for v in x[key]) else "-"
        print(f"  {k:11} {mm(x['gen_us']):>18} {mm(x['up_us']):>14} {px:>14} {statistics.median(allc):>8.0f} "
              f"{med('gen_sw') + ' / ' + med('up_sw') + ' / ' + med('px_sw'):>33}")
    for gname in ("native", "native@base", "gateway"):
        if conc == 1 or gname not in res:
            continue
        # When every process of the path shares the same CPUs and they are the limit, a proxy that
        # costs g per call on top of r (client + upstream) can reach at most r / (r + g) of direct.
        g = statistics.median(res[gname]["cpu_us"])
        r = statistics.median(res["direct"]["rest_us"])
        print(f"  CPU-bound ceiling for {gname} on this machine: r / (r + g) = {r:.0f} / ({r:.0f} + {g:.0f}) "
              f"= {r / (r + g):.2f}x direct (medians); 0.8x needs g <= {r / 4:.0f} us per call")
    for k in names[1:]:
        x = res[k]
        print(f"  {k} overhead vs direct (same round): p50 min {fmt_over(min(x['over50']))}, median "
              f"{fmt_over(statistics.median(x['over50']))}; p99 min {fmt_over(min(x['over99']))}, median "
              f"{fmt_over(statistics.median(x['over99']))}; throughput median {statistics.median(x['ratio']):.2f}x direct")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=10000,
                    help="per target per round at 64 concurrent (a round of 3,000 lasts ~0.4 s now: its ratio swings 0.5-1.5x with whatever else the machine does)")
    ap.add_argument("--single-requests", type=int, default=1000, help="per target per round at 1 client")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--mb", type=int, default=400)
    ap.add_argument("--admission-rounds", type=int, default=2000)
    ap.add_argument("--skip-admission", action="store_true")
    ap.add_argument("--no-litellm", action="store_true")
    ap.add_argument("--litellm-requests", type=int, default=300, help="per round (it is ~30x slower)")
    ap.add_argument("--baseline-root", help="another checkout (module built in place) run as target native@base")
    args = ap.parse_args()
    if not args.skip_admission:
        bench_admission(args.admission_rounds)
    up, gw, ap_port, ll = free_port(), free_port(), free_port(), free_port()
    d = tempfile.mkdtemp()
    procs = {"upstream": subprocess.Popen([sys.executable, "-c", UPSTREAM, str(up)]),
             "gateway": subprocess.Popen([sys.executable, "-c", GATEWAY, str(gw), os.path.join(d, "gw.db"), ROOT,
                                          str(up)]),
             "aioproxy": subprocess.Popen([sys.executable, "-c", AIOPROXY, str(ap_port), str(up)])}
    gwb = free_port()
    if args.baseline_root:
        procs["base"] = subprocess.Popen([sys.executable, "-c", GATEWAY, str(gwb), os.path.join(d, "gwb.db"),
                                          os.path.abspath(args.baseline_root), str(up)])
    lbin = None if args.no_litellm else litellm_bin()
    if lbin:
        # Its own auth on (a master key checked per request, like the gateway's run token); no network.
        env = dict(os.environ, OPENAI_API_KEY="operator-key", LITELLM_LOG="ERROR", LITELLM_MASTER_KEY=LITELLM_KEY,
                   LITELLM_LOCAL_MODEL_COST_MAP="True")
        procs["litellm"] = subprocess.Popen([lbin, "--model", "openai/bench", "--api_base", f"http://127.0.0.1:{up}/v1",
                                             "--port", str(ll), "--host", "127.0.0.1", "--num_workers", "1"],
                                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elif args.no_litellm:
        print("litellm: skipped (--no-litellm)")
    else:
        print("litellm: skipped (not installed; python3 -m venv /work/litellm-venv && "
              "/work/litellm-venv/bin/pip install 'litellm[proxy]', or set LITELLM_BIN)")
    try:
        wait_port(up)
        wait_port(gw)
        wait_port(ap_port)
        import urllib.request
        info = json.load(urllib.request.urlopen(f"http://127.0.0.1:{gw}/_info"))
        body = b'{"prompt":"bench"}'
        hdr = {"X-API-KEY": info["token"], "Content-Type": "application/json", "Idempotency-Key": "bench"}
        path = "/proxy/bench/generate/poll"
        targets = {"direct": (f"http://127.0.0.1:{up}{path}", {"X-API-KEY": "operator-key",
                                                               "Content-Type": "application/json"}, body),
                   "native": (f"http://127.0.0.1:{info['native_port']}/credits/gateway{path}", hdr, body),
                   "gateway": (f"http://127.0.0.1:{gw}/credits/gateway{path}", hdr, body),
                   "aioproxy": (f"http://127.0.0.1:{ap_port}{path}", {"Content-Type": "application/json"}, body)}
        if args.baseline_root:
            wait_port(gwb)
            binfo = json.load(urllib.request.urlopen(f"http://127.0.0.1:{gwb}/_info"))
            bhdr = dict(hdr, **{"X-API-KEY": binfo["token"]})
            targets = dict(list(targets.items())[:2] + [("native@base", (
                f"http://127.0.0.1:{binfo['native_port']}/credits/gateway{path}", bhdr, body))] +
                list(targets.items())[2:])
        pids = {k: procs[k].pid for k in ("gateway", "aioproxy")}
        if args.baseline_root:
            pids["native@base"] = procs["base"].pid
        pids["native"] = procs["gateway"].pid  # the same process; its CPU is counted while each target runs
        if lbin:
            try:
                wait_port(ll, timeout=180)
                chat = json.dumps({"model": "bench", "messages": [{"role": "user", "content": "bench"}]}).encode()
                targets["litellm"] = (f"http://127.0.0.1:{ll}/v1/chat/completions",
                                      {"Content-Type": "application/json", "Authorization": f"Bearer {LITELLM_KEY}"}, chat)
                pids["litellm"] = procs["litellm"].pid
            except RuntimeError:
                print("litellm: skipped (its proxy did not start within 180 s)")
        slow = {"litellm": args.litellm_requests}
        compare(targets, pids, args.requests, args.concurrency, args.rounds, slow, procs["upstream"].pid)
        compare(targets, pids, args.single_requests, 1, args.rounds, {"litellm": min(args.litellm_requests,
                                                                                       args.single_requests)},
                procs["upstream"].pid)
        print()
        for name, port in (("native", info["native_port"]), ("gateway", gw)):
            before = json.load(urllib.request.urlopen(f"http://127.0.0.1:{gw}/_info"))
            t = time.perf_counter()
            n = asyncio.run(stream_big(f"http://127.0.0.1:{port}/credits/gateway/proxy/bench/big?mb={args.mb}", hdr))
            secs = time.perf_counter() - t
            after = json.load(urllib.request.urlopen(f"http://127.0.0.1:{gw}/_info"))
            grow = (after["hwm_kb"] - before["hwm_kb"]) / 1024
            print(f"streamed {n / 2**20:.0f} MiB through {name} in {secs:.2f} s ({n / 2**20 / secs:.0f} MiB/s); "
                  f"gateway process peak RSS {before['hwm_kb'] / 1024:.1f} -> {after['hwm_kb'] / 1024:.1f} MiB "
                  f"(growth {grow:.1f} MiB; target: flat); load average {os.getloadavg()[0]:.1f}")
    finally:
        for p in procs.values():
            p.terminate()
        for p in procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main()
