"""The metering gateway against a loopback upstream (no ComfyUI needed), served both ways: by the
aiohttp route (gateway_route.py) and by the C listener on the gateway's I/O thread (src/listener.c,
_core.GatewayListener). Every test of a call runs against both: they must answer alike."""
import asyncio
import json
import os
import sys
import time
import types

import aiohttp
import pytest
import yarl

from appserver import free_port
from aiohttp import web

from comfy_credits_ext import _core, gateway_route

C = _core.MICRO



class Upstream:
    """Records requests; answers per path as the test configures."""

    def __init__(self):
        self.requests = []
        self.mode = {}

    async def handle(self, req):
        body = await req.read()
        self.requests.append({"method": req.method, "path": req.path, "query": req.query_string,
                              "headers": dict(req.headers), "body": body})
        mode = self.mode.get(req.path, "ok")
        if mode == "slow":
            await asyncio.sleep(3)
        if mode == "500":
            return web.json_response({"error": {"message": "boom"}}, status=500)
        if mode == "slowbody":
            resp = web.StreamResponse(headers={"X-Comfy-Credits-Used": "2.5"})
            await resp.prepare(req)
            await resp.write(b"x" * 64)
            # Well inside the gateway's 1000 ms timeout even on a loaded CI machine (at 1.0 s the
            # two raced: a timeout left the abandoned stream open at teardown under ASan).
            await asyncio.sleep(0.3)
            await resp.write(b"y" * 64)
            await resp.write_eof()
            return resp
        if mode == "big":  # a large answer in 64 KiB writes
            resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream",
                                               "X-Comfy-Credits-Used": "0.5"})
            await resp.prepare(req)
            block = b"z" * 65536
            for _ in range(int(req.query.get("kb", "512")) // 64):
                await resp.write(block)
            await resp.write_eof()
            return resp
        if mode == "hang":  # headers and a few bytes, then nothing until long after the gateway's timeout
            resp = web.StreamResponse(headers={"X-Comfy-Credits-Used": "2.5"})
            await resp.prepare(req)
            await resp.write(b"x" * 64)
            await asyncio.sleep(5)
            return resp
        if mode == "poll":
            return web.json_response({"status": "succeed", "usage": {"input_tokens": 7, "output_tokens": 9}})
        return web.json_response({"data": [{"b64_json": "AAAA"}], "usage": {"input_tokens": 7, "output_tokens": 9}},
                                 headers={"X-Comfy-Credits-Used": "2.5"})


# One flat rule of 10 credits; "/proxy/" reaches every provider path (as for a node of unknown family).
PRICES = '{"format": 1, "credits_per_usd": 211, "default": {"credits": "10"}, "nodes": {}}'


def make_runtime(ledger, base, **gw):
    prices = _core.PriceTable(PRICES)
    return types.SimpleNamespace(ledger=ledger, prices=prices, runs=_core.Runs(ledger, prices, 60_000, 2_000),
                                 cfg=types.SimpleNamespace(upstream_key="operator-secret"),
                                 gateway=_core.Gateway(base, "operator-secret", **gw))


def begin(rt, account, prefixes="/proxy/\n/customers/storage"):
    return rt.runs.begin(f"run:{time.time_ns()}", account, "p1", "1", "AnyNode", {}, prefixes)


SERVERS = ["aiohttp", "native"]


def make_env(ledger, account, server="aiohttp", **gw):
    up = Upstream()
    up_port, gw_port = free_port(), free_port()
    loop = asyncio.new_event_loop()
    rt = make_runtime(ledger, f"http://127.0.0.1:{up_port}", **gw)
    ledger.grant("g", account, 100 * C)
    run = begin(rt, account)
    hold = {"hold_id": run["run_id"]}
    token = run["token"]

    async def ping(req):
        return web.Response(text="pong")

    async def start():
        a = web.Application()
        a.router.add_route("*", "/{tail:.*}", up.handle)
        r1 = web.AppRunner(a)
        await r1.setup()
        await web.TCPSite(r1, "127.0.0.1", up_port).start()
        g = web.Application()
        routes = web.RouteTableDef()
        gateway_route.register(routes, rt)
        g.add_routes(routes)
        g.router.add_get("/ping", ping)  # another route of the same server: must stay responsive
        r2 = web.AppRunner(g)
        await r2.setup()
        await web.TCPSite(r2, "127.0.0.1", gw_port).start()
        return r1, r2
    runners = loop.run_until_complete(start())
    listener = _core.GatewayListener(rt.gateway, rt.runs) if server == "native" else None
    gw_base = f"http://127.0.0.1:{listener.port if listener else gw_port}/credits/gateway"

    def set_upstream_key(key):
        rt.cfg.upstream_key = key
        if listener:
            listener.set_upstream_configured(bool(key))

    def call(method, path, headers=None, body=b"{}"):
        async def go():
            async with aiohttp.ClientSession() as s:
                url = yarl.URL(f"{gw_base}{path}", encoded=True)  # sent as written
                async with s.request(method, url, data=body,
                                     headers=headers or {}) as r:
                    return r.status, dict(r.headers), await r.read()
        return loop.run_until_complete(go())

    yield types.SimpleNamespace(up=up, rt=rt, hold=hold, token=token, call=call, account=account, ledger=ledger,
                                loop=loop, port=gw_port, gw=gw_base, listener=listener,
                                set_upstream_key=set_upstream_key)
    if listener:
        listener.close()
    for r in runners:
        loop.run_until_complete(r.cleanup())
    gateway_route.release_waiters(rt.gateway)
    rt.gateway.close()
    rt.runs.close()
    loop.close()


@pytest.fixture(params=SERVERS)
def env(ledger, account, request):
    yield from make_env(ledger, account, request.param, timeout_ms=1000)


def test_forwards_with_operator_key_and_meters_usage(env):
    st, hdr, body = env.call("POST", "/proxy/openai/images/generations?x=1",
                             {"X-API-KEY": env.token, "Content-Type": "application/json",
                              "Idempotency-Key": "idem-1", "Authorization": "Bearer user-secret",
                              "Cookie": "comfy_credits_session=ccs_x"}, b'{"prompt": "fox"}')
    assert st == 200 and json.loads(body)["usage"]["input_tokens"] == 7
    assert hdr["X-Comfy-Credits-Used"] == "2.5"
    if env.listener:  # the native listener passes the answer's headers on, but not the upstream's Date and Server
        assert "Date" not in hdr and "Server" not in hdr and hdr["Content-Type"].startswith("application/json")
    seen = env.up.requests[-1]
    assert seen["path"] == "/proxy/openai/images/generations" and seen["query"] == "x=1"
    assert seen["headers"]["X-API-KEY"] == "operator-secret"
    assert seen["headers"]["Idempotency-Key"] == "idem-1"
    assert "Authorization" not in seen["headers"] and "Cookie" not in seen["headers"]
    assert env.token not in json.dumps(seen["headers"])
    assert seen["body"] == b'{"prompt": "fox"}'
    # A poll (GET) repeating the same usage does not double it.
    env.up.mode["/proxy/task/1"] = "poll"
    assert env.call("GET", "/proxy/task/1", {"X-API-KEY": env.token})[0] == 200
    assert env.call("GET", "/proxy/task/1", {"X-API-KEY": env.token})[0] == 200
    res = env.rt.runs.finish(env.hold["hold_id"], "succeeded")
    assert res["usage"] == {"credits_used_micro": 2_500_000, "input_tokens": 7, "output_tokens": 9, "images": 1}
    assert res["calls"] == 3 and res["billable_calls"] == 1 and res["charged"] == 2_500_000


@pytest.mark.parametrize("headers,kind", [
    ({}, "credits_hold_missing"),
    ({"X-API-KEY": "cck_" + "0" * 64}, "credits_hold_invalid"),
    ({"X-API-KEY": "not-a-token"}, "credits_hold_invalid"),
])
def test_refuses_without_a_valid_token(env, headers, kind):
    st, _, body = env.call("POST", "/proxy/x", headers)
    assert st == 402 and json.loads(body)["error"]["type"] == kind
    assert env.up.requests == []


def test_forged_and_replayed_tokens(env):
    other = _core.TokenKey().mint(env.hold["hold_id"], env.account, int(time.time() * 1000) + 60_000)
    st, _, body = env.call("POST", "/proxy/x", {"X-API-KEY": other})
    assert st == 402 and json.loads(body)["error"]["type"] == "credits_hold_invalid"
    env.rt.runs.finish(env.hold["hold_id"], "failed")
    st, _, body = env.call("POST", "/proxy/x", {"X-API-KEY": env.token})  # replay after the run finished
    assert st == 402 and json.loads(body)["error"]["type"] == "credits_hold_resolved"
    assert env.up.requests == []


def test_a_token_reaches_only_its_providers_paths(env):
    run = begin(env.rt, env.account, "/proxy/openai/")
    st, _, body = env.call("POST", "/proxy/kling/v1/videos/text2video", {"X-API-KEY": run["token"]})
    assert st == 403 and json.loads(body)["error"]["type"] == "credits_path_not_allowed"
    assert env.call("POST", "/proxy/openai/images/generations", {"X-API-KEY": run["token"]})[0] == 200
    assert [r["path"] for r in env.up.requests] == ["/proxy/openai/images/generations"]


def test_credits_are_recorded_when_the_headers_arrive(env):
    """A client that goes away after the headers (an interrupted node) still pays what the upstream reported."""
    env.up.mode["/proxy/slowbody"] = "slowbody"

    async def go():
        async with aiohttp.ClientSession() as s:
            async with s.post(f"{env.gw}/proxy/slowbody",
                              headers={"X-API-KEY": env.token}) as r:
                assert r.status == 200
                await r.content.read(10)  # headers and the first bytes, then hang up
    env.loop.run_until_complete(go())
    # finish waits for the call still in flight (the gateway keeps reading the abandoned answer).
    res = env.loop.run_until_complete(asyncio.to_thread(env.rt.runs.finish, env.hold["hold_id"], "interrupted"))
    assert res["billed"] == 2_500_000 and res["charged"] == 2_500_000 and res["in_flight_at_deadline"] == 0


def test_upstream_errors_pass_through_uncharged(env):
    env.up.mode["/proxy/fail"] = "500"
    st, _, body = env.call("POST", "/proxy/fail", {"X-API-KEY": env.token})
    assert st == 500 and json.loads(body)["error"]["message"] == "boom"
    res = env.rt.runs.finish(env.hold["hold_id"], "failed")
    assert res["calls"] == 1 and res["billable_calls"] == 0 and res["charged"] == 0


def test_upstream_timeout_is_504(env):
    env.up.mode["/proxy/slow"] = "slow"
    st, _, body = env.call("POST", "/proxy/slow", {"X-API-KEY": env.token})
    assert st == 504 and "did not answer" in json.loads(body)["error"]["message"]
    # The upstream may have accepted it: a timed-out creating call is billable.
    assert env.rt.runs.finish(env.hold["hold_id"], "failed")["billable_calls"] == 1


@pytest.mark.parametrize("server", SERVERS)
def test_upstream_unreachable_is_502(ledger, account, server):
    rt = make_runtime(ledger, "http://127.0.0.1:9", connect_timeout_ms=500)
    ledger.grant("g", account, 50 * C)
    run = begin(rt, account)
    tok = run["token"]
    port = free_port()

    listener = _core.GatewayListener(rt.gateway, rt.runs) if server == "native" else None

    async def go():
        app = web.Application()
        routes = web.RouteTableDef()
        gateway_route.register(routes, rt)
        app.add_routes(routes)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            async with aiohttp.ClientSession() as s:
                async with s.post(f"http://127.0.0.1:{listener.port if listener else port}/credits/gateway/proxy/x",
                                  headers={"X-API-KEY": tok}) as r:
                    return r.status, await r.json()
        finally:
            await runner.cleanup()
    st, body = asyncio.run(go())
    if listener:
        listener.close()
    assert st == 502 and "cannot reach the upstream" in body["error"]["message"]
    assert rt.runs.finish(run["run_id"], "failed")["charged"] == 0  # nothing reached a provider
    rt.gateway.close()
    rt.runs.close()


def test_bad_paths_are_refused(env):
    env.call("GET", "/proxy/%2e%2e/secret", {"X-API-KEY": env.token})
    assert all(".." not in r["path"] and "%2e" not in r["path"].lower() for r in env.up.requests)
    for bad in ("/proxy/../secret", "/proxy/./x", "proxy/x", "/proxy/x?y", "/proxy/x#y", "/a\\b",
                "/customers/balance", "/customers/credit", "/customers/storage/../balance"):
        with pytest.raises(_core.InvalidArgument):
            env.rt.gateway.start("GET", bad)
    with pytest.raises(_core.InvalidArgument):
        env.rt.gateway.start("GET", "//evil.example/x")
    with pytest.raises(_core.InvalidArgument):
        env.rt.gateway.start("TRACE", "/proxy/x")
    with pytest.raises(_core.InvalidArgument):
        env.rt.gateway.start("GET", "/proxy/x\r\nHost: evil")


def test_operator_account_endpoints_are_not_reachable(env):
    # A run token reaches only API-node paths (run.c), and the gateway forwards nothing else (gateway.c).
    st, _, body = env.call("GET", "/customers/balance", {"X-API-KEY": env.token})
    assert st == 403 and json.loads(body)["error"]["type"] == "credits_path_not_allowed"
    st, _, body = env.call("POST", "/customers/credit", {"X-API-KEY": env.token}, b'{"amount_micros": 1}')
    assert st == 403
    run = begin(env.rt, env.account, "/")  # even a token allowed everywhere
    st, _, body = env.call("GET", "/customers/balance", {"X-API-KEY": run["token"]})
    assert st == 400 and b"only API-node calls" in body
    assert not [r for r in env.up.requests if r["path"].startswith("/customers/")]


def test_no_upstream_key_is_a_clear_refusal(env):
    env.set_upstream_key("")
    st, _, body = env.call("POST", "/proxy/openai/images/generations", {"X-API-KEY": env.token})
    assert st == 400 and b"COMFY_CREDITS_UPSTREAM_KEY" in body and b"Nothing was charged" in body
    assert env.up.requests == []


def test_usage_parsing_from_bodies():
    assert _core.usage_from_json(b'{"usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 20,'
                                 b' "thoughtsTokenCount": 5}}') == {"input_tokens": 10, "output_tokens": 25}
    assert _core.usage_from_json(b'{"usage": {"prompt_tokens": 3, "completion_tokens": 4}}') == \
        {"input_tokens": 3, "output_tokens": 4}
    assert _core.usage_from_json(b"not json") == {}
    assert _core.usage_from_json(b'{"usage": {"input_tokens": -5}}') == {}


def test_gateway_config_errors():
    with pytest.raises(_core.InvalidArgument):
        _core.Gateway("ftp://example.com")
    with pytest.raises(_core.InvalidArgument):
        _core.Gateway("http://example.com", "key\nInjected: 1")
    with pytest.raises(_core.InvalidArgument):
        _core.Gateway("http://example.com", timeout_ms=0)


def _batch_threads() -> int:
    """Threads of this process scheduled as SCHED_BATCH (Linux)."""
    n = 0
    for tid in os.listdir("/proc/self/task"):
        try:
            n += os.sched_getscheduler(int(tid)) == os.SCHED_BATCH
        except OSError:
            pass  # a thread that ended meanwhile
    return n


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SCHED_BATCH is Linux's")
def test_gateway_io_thread_scheduling(tmp_path):
    """The I/O thread runs as SCHED_BATCH unless the config says "normal" (src/gateway.h)."""
    from comfy_credits_ext import config
    before = _batch_threads()
    gw = _core.Gateway("http://127.0.0.1:9")
    end = time.monotonic() + 5
    while _batch_threads() == before and time.monotonic() < end:
        time.sleep(0.01)
    assert _batch_threads() == before + 1
    del gw
    gw = _core.Gateway("http://127.0.0.1:9", io_sched="normal")
    time.sleep(0.2)  # the I/O thread has started (it would set the class first thing)
    assert _batch_threads() == before
    del gw
    with pytest.raises(_core.InvalidArgument):
        _core.Gateway("http://127.0.0.1:9", io_sched="fifo")
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"gateway_io_sched": "normal"}))
    assert config.load(str(path), db_path=str(tmp_path / "l.db")).gateway_io_sched == "normal"
    assert config.load(db_path=str(tmp_path / "l.db")).gateway_io_sched == "batch"
    path.write_text(json.dumps({"gateway_io_sched": "realtime"}))
    with pytest.raises(config.ConfigError):
        config.load(str(path), db_path=str(tmp_path / "l.db"))


def test_hold_tokens():
    k = _core.TokenKey()
    t = k.mint(3, 4, int(time.time() * 1000) + 1000)
    assert k.verify(t)["hold_id"] == 3
    with pytest.raises(_core.InvalidArgument):
        _core.TokenKey().verify(t)
    with pytest.raises(TypeError):
        _core.TokenKey(b"chosen-secret")


@pytest.mark.parametrize("raw", [
    "/proxy/%252e%252e/customers/balance",      # double-encoded ..
    "/proxy/%2e%2e/customers/balance",          # encoded ..
    "/proxy/.%2e/customers/balance",
    "/proxy/x%2f..%2f..%2fcustomers%2fbalance",  # encoded slash
    "/proxy/x%252f..%252fcustomers",
    "/proxy/x%5c..%5ccustomers",                # encoded backslash
    "/proxy/x%00",                              # NUL
    "/proxy/x%3fy",                             # encoded ?
    "/proxy/%e2%80%ae",                         # non-ASCII
    "/proxy/x%2",                               # truncated escape
    "/proxy//customers/balance",
])
def test_paths_that_are_not_plain_after_one_decoding_are_refused(env, raw):
    """Issue #9.0b: /proxy/%252e%252e/customers/balance reached the upstream as
    /proxy/../customers/balance with the operator's key."""
    st, _, body = env.call("GET", raw, {"X-API-KEY": env.token})
    assert st == 400, (raw, st, body)
    assert env.up.requests == []


def test_plain_paths_are_sent_canonical(env):
    st, _, _ = env.call("GET", "/proxy/kling/v1/videos/text2video/task-1%3A2", {"X-API-KEY": env.token})
    assert st == 200
    assert env.up.requests[-1]["path"] == "/proxy/kling/v1/videos/text2video/task-1:2"


def test_creating_calls_per_run_are_bounded(env):
    for _ in range(8):  # ComfyUI's client retries, a node's few calls: fine
        assert env.call("POST", "/proxy/fail", {"X-API-KEY": env.token})[0] == 200
    st, _, body = env.call("POST", "/proxy/fail", {"X-API-KEY": env.token})
    assert st == 403 and json.loads(body)["error"]["type"] == "credits_calls_limit"
    assert env.call("GET", "/proxy/task/1", {"X-API-KEY": env.token})[0] == 200  # reads still pass
    assert len(env.up.requests) == 9


# ---------------------------------------------------------------- bounded everything (issue #14)

@pytest.mark.parametrize("server", SERVERS)
def test_200_slow_readers_of_large_answers_never_freeze_the_gateway(ledger, account, server):
    """200 concurrent large answers, each read slowly, against 64 transfer slots: every call either
    gets its whole body or is refused at once with 503 + Retry-After (nothing sent upstream, nothing
    charged); the server's other routes stay responsive, and a small call (retrying on 503 as
    ComfyUI's client does) goes through while the storm runs."""
    gen = make_env(ledger, account, server, timeout_ms=60_000, handles_max=64, reader_idle_ms=10_000)
    env = next(gen)
    env.up.mode["/proxy/big"] = "big"
    size = 512 * 1024
    ledger.grant("g2", account, 2100 * C)
    runs = [env.rt.runs.begin(f"run:storm:{i}", account, "p1", str(i), "AnyNode", {}, "/proxy/") for i in range(200)]
    base = f"http://127.0.0.1:{env.port}"

    async def slow_reader(s, run):
        t = time.monotonic()
        async with s.get(f"{env.gw}/proxy/big?kb=512", headers={"X-API-KEY": run["token"]}) as r:
            if r.status == 503:
                await r.read()
                return "refused", time.monotonic() - t, r.headers.get("Retry-After")
            assert r.status == 200, r.status
            n = 0
            while True:
                chunk = await r.content.read(32 * 1024)
                if not chunk:
                    break
                n += len(chunk)
                await asyncio.sleep(0.01)  # a slow reader
            return "done", n, None

    async def small_call(s):
        await asyncio.sleep(0.3)  # in the middle of the storm
        t = time.monotonic()
        ping = time.monotonic()
        async with s.get(f"{base}/ping") as r:
            assert await r.text() == "pong"
        ping = time.monotonic() - ping
        for _ in range(60):
            async with s.post(f"{env.gw}/proxy/openai/images/generations",
                              headers={"X-API-KEY": env.token}, data=b"{}") as r:
                if r.status == 503:
                    await asyncio.sleep(float(r.headers["Retry-After"]) / 4)  # (ComfyUI backs off 1, 2, 4 s)
                    continue
                assert r.status == 200
                await r.read()
                return time.monotonic() - t, ping
        raise AssertionError("the small call never went through")

    async def go():
        conn = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=conn) as s:
            return await asyncio.wait_for(asyncio.gather(small_call(s), *(slow_reader(s, r) for r in runs)), 120)
    (small_s, ping_s), *results = env.loop.run_until_complete(go())
    done = [r for r in results if r[0] == "done"]
    refused = [r for r in results if r[0] == "refused"]
    assert len(done) + len(refused) == 200
    assert len(done) >= 64 and refused, (len(done), len(refused))
    assert all(n == size for _, n, _ in done)
    assert all(retry == "1" and secs < 5 for _, secs, retry in refused)  # at once, not after a wait in line
    assert ping_s < 2 and small_s < 30
    # Refused calls never reached the upstream and cost nothing.
    assert sum(1 for r in env.up.requests if r["path"] == "/proxy/big") == len(done)
    charged = [env.rt.runs.finish(r["run_id"], "succeeded")["charged"] for r in runs]
    assert sorted(set(charged)) == ([0, 500_000] if len(done) < 200 else [500_000])
    assert charged.count(500_000) == len(done)
    stats = env.rt.gateway.stats()
    assert stats["in_flight"] == 0 and stats["started"] == len(done) + 1 + stats["refused_busy"]
    next(gen, None)


@pytest.mark.parametrize("server", SERVERS)
def test_a_reader_that_stops_reading_loses_its_slot(ledger, account, server):
    """A client that takes no bytes while its answer is still coming cannot hold a transfer slot
    forever: after reader_idle_ms its transfer is aborted and its connection closed; the call is
    still counted, and the slot serves the next call."""
    gen = make_env(ledger, account, server, timeout_ms=60_000, handles_max=1, reader_idle_ms=600)
    env = next(gen)
    env.up.mode["/proxy/big"] = "big"
    base = env.gw

    async def go():
        async with aiohttp.ClientSession() as s:
            r = await s.get(f"{base}/proxy/big?kb=16384", headers={"X-API-KEY": env.token})
            assert r.status == 200
            # Read nothing: the gateway's buffer and the sockets fill up.
            async with s.get(f"{base}/proxy/task/1", headers={"X-API-KEY": env.token}) as r2:
                assert r2.status == 503 and r2.headers["Retry-After"] == "1"
            deadline = time.monotonic() + 10
            while env.rt.gateway.stats()["in_flight"] and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert env.rt.gateway.stats()["in_flight"] == 0
            # Two guards race here, both at reader_idle_ms: the I/O thread aborts the paused transfer
            # (aborted_idle; tests/c/test_gateway.c tests it alone), or the route's watchdog closes the
            # client's connection first and the detached transfer is read out. Under load either wins;
            # the slot is free and the connection closed both ways.
            assert env.rt.gateway.stats()["aborted_idle"] in (0, 1)
            async with s.get(f"{base}/proxy/task/1", headers={"X-API-KEY": env.token}) as r3:
                assert r3.status == 200
            with pytest.raises((aiohttp.ClientError, ConnectionError)):
                while await r.content.read(1 << 20):
                    pass
            r.release()
    env.loop.run_until_complete(go())
    res = env.loop.run_until_complete(asyncio.to_thread(env.rt.runs.finish, env.hold["hold_id"], "interrupted"))
    # Both calls counted; reads report their credits as a peak (the poll's 2.5 over the stream's 0.5).
    assert res["calls"] == 2 and res["in_flight_at_deadline"] == 0 and res["charged"] == 2_500_000
    next(gen, None)


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("mode", ["hang", "slow"])
def test_an_abandoned_stream_that_then_times_out_is_always_closed(ledger, account, mode, server):
    """Last session's open question: a client goes away (after the headers, or before them), then the
    upstream times out. The gateway must still end the call (counted: the upstream may have taken it)
    and close the stream, so the gateway closes cleanly with nothing left open."""
    gen = make_env(ledger, account, server, timeout_ms=800)
    env = next(gen)
    env.up.mode["/proxy/x"] = mode
    base = env.gw

    async def go():
        async with aiohttp.ClientSession() as s:
            try:
                async with s.post(f"{base}/proxy/x", headers={"X-API-KEY": env.token},
                                  timeout=aiohttp.ClientTimeout(total=0.3)) as r:
                    await r.content.read(10)  # "hang": the headers and first bytes, then hang up
            except asyncio.TimeoutError:
                pass  # "slow": hung up before any answer
        deadline = time.monotonic() + 10
        while env.rt.gateway.stats()["in_flight"] and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    env.loop.run_until_complete(go())
    res = env.loop.run_until_complete(asyncio.to_thread(env.rt.runs.finish, env.hold["hold_id"], "interrupted"))
    assert res["calls"] == 1 and res["in_flight_at_deadline"] == 0
    assert res["billable_calls"] == 1  # headers 2xx ("hang") or a timeout after sending ("slow")
    assert res["charged"] == (2_500_000 if mode == "hang" else 10_000_000)
    if env.listener:
        env.listener.close()  # its calls all ended: nothing left to cancel
    env.rt.gateway.close()  # raises if any stream were still open
    next(gen, None)


def test_a_saturated_gateway_refuses_at_once():
    """The C core: no slot means an immediate refusal (field "busy"), never a wait in line."""
    import socket
    silent = socket.create_server(("127.0.0.1", 0))  # accepts connections (backlog), never answers
    gw = _core.Gateway(f"http://127.0.0.1:{silent.getsockname()[1]}", handles_max=1)
    stream = gw.submit("POST", "/proxy/x")  # a slot, taken at once
    with pytest.raises(_core.InvalidArgument) as e:
        gw.submit("POST", "/proxy/y")
    assert e.value.field == "busy" and "saturated" in str(e.value)
    assert gw.stats()["refused_busy"] == 1
    stream.close()
    gw.close()
    silent.close()


@pytest.mark.parametrize("server", SERVERS)
def test_a_client_gone_before_the_answer_still_pays_for_what_the_upstream_did(ledger, account, server):
    """The client (an interrupted node) hangs up while the upstream is still working; the upstream then
    answers 2xx with its credits. The call is counted with that answer's status (billable) and the
    credits it reported, not as a call without an answer."""
    gen = make_env(ledger, account, server, timeout_ms=10_000)
    env = next(gen)
    env.up.mode["/proxy/x"] = "slow"  # answers after 3 s

    async def go():
        async with aiohttp.ClientSession() as s:
            with pytest.raises(asyncio.TimeoutError):
                async with s.post(f"{env.gw}/proxy/x", headers={"X-API-KEY": env.token},
                                  timeout=aiohttp.ClientTimeout(total=0.3)):
                    pass
        await asyncio.sleep(3.5)  # the upstream answers meanwhile
        deadline = time.monotonic() + 15
        while env.rt.gateway.stats()["in_flight"] and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # the end is delivered after the transfer's slot is released
    env.loop.run_until_complete(go())
    res = env.loop.run_until_complete(asyncio.to_thread(env.rt.runs.finish, env.hold["hold_id"], "interrupted"))
    assert res["calls"] == 1 and res["in_flight_at_deadline"] == 0
    assert res["billable_calls"] == 1 and res["charged"] == 2_500_000  # X-Comfy-Credits-Used of the answer
    next(gen, None)
