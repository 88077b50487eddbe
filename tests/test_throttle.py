"""Issue #9.3 / #9.6: the sign-in throttle holds under concurrency, does not
lock the owner out from elsewhere, keeps scrypt off the shared executor,
covers password change, and reads X-Forwarded-For only from trusted proxies."""
import asyncio
import time
import types

import aiohttp
import pytest

from appserver import Server
from comfy_credits_ext import throttle as th

PW = "correct horse battery"


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_attempts_are_counted_before_the_key_derivation():
    t = th.Throttle(clock=Clock())
    ticket, _, _ = t.begin("a@x", "1.1.1.1")
    # While the first guess runs, a second one for the same email or from the same address waits.
    assert t.begin("a@x", "2.2.2.2")[0] is None
    assert t.begin("b@x", "1.1.1.1")[0] is None
    assert t.pairs.d["p:a@x\0" + "1.1.1.1"][0] == 1  # already counted
    t.end(ticket, ok=False)
    assert t.begin("b@x", "1.1.1.1")[0] is not None


def test_delay_grows_per_email_and_address_and_spares_the_owner_elsewhere():
    clk = Clock()
    t = th.Throttle(clock=clk)
    for _ in range(th.FREE_PAIR_FAILS):
        t.end(t.begin("owner@x", "6.6.6.6")[0], ok=False)
    waits = []
    for _ in range(5):
        ticket, wait, why = t.begin("owner@x", "6.6.6.6")
        assert ticket is None and why == "too many failed attempts"
        waits.append(wait)
        clk.t += wait
        t.end(t.begin("owner@x", "6.6.6.6")[0], ok=False)
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0]
    # The owner, from another address, is not slowed at all.
    ticket, wait, _ = t.begin("owner@x", "7.7.7.7")
    assert ticket is not None and wait == 0
    t.end(ticket, ok=True)


def test_spraying_many_emails_from_one_address_is_slowed_and_success_does_not_reset_it():
    clk = Clock()
    t = th.Throttle(clock=clk)
    for i in range(th.FREE_ADDRESS_FAILS - 1):
        t.end(t.begin(f"user{i}@x", "6.6.6.6")[0], ok=False)
    t.end(t.begin("mine@x", "6.6.6.6")[0], ok=True)  # the attacker's own account signs in fine ...
    t.end(t.begin("user99@x", "6.6.6.6")[0], ok=False)
    ticket, wait, _ = t.begin("user100@x", "6.6.6.6")  # ... and the address counter was not cleared
    assert ticket is None and wait > 0


def test_old_entries_are_evicted_not_everything():
    clk = Clock()
    t = th.Throttle(keys_max=100, clock=clk)
    for _ in range(th.FREE_PAIR_FAILS + 2):
        clk.t += 100
        t.end(t.begin("victim@x", "6.6.6.6")[0], ok=False)
    for i in range(90):  # fewer than keys_max new keys: the victim's entry survives
        clk.t += 0.01
        t.end(t.begin(f"x{i}@x", f"10.0.{i}.1")[0], ok=False)
    assert t.begin("victim@x", "6.6.6.6")[0] is None
    assert len(t.pairs.d) <= 100 and len(t.addrs.d) <= 100
    for i in range(200):  # a flood evicts the oldest first, a bounded table
        t.end(t.begin(f"y{i}@x", f"10.1.{i % 250}.{i // 250}")[0], ok=False)
    assert len(t.pairs.d) == 100


def test_forgotten_after_an_hour():
    clk = Clock()
    t = th.Throttle(clock=clk)
    for _ in range(6):
        clk.t += 40
        t.end(t.begin("a@x", "6.6.6.6")[0], ok=False)
    assert t.begin("a@x", "6.6.6.6")[0] is None
    clk.t += th.FORGET_S + 1
    assert t.begin("a@x", "6.6.6.6")[0] is not None


def req(peer, xff=None):
    return types.SimpleNamespace(remote=peer, headers={"X-Forwarded-For": xff} if xff else {})


def test_client_address_and_trusted_proxies():
    trusted = th.parse_trusted_proxies(["127.0.0.1", "10.0.0.0/8"])
    assert th.client_address(req("203.0.113.5", "1.2.3.4"), trusted) == "203.0.113.5"  # not a proxy: ignored
    assert th.client_address(req("127.0.0.1", "198.51.100.7"), trusted) == "198.51.100.7"
    # A client can prepend anything; the right-most address a trusted proxy added counts.
    assert th.client_address(req("127.0.0.1", "1.1.1.1, 198.51.100.7, 10.2.3.4"), trusted) == "198.51.100.7"
    assert th.client_address(req("127.0.0.1"), trusted) == "127.0.0.1"
    assert th.client_address(req("127.0.0.1", "9.9.9.9"), []) == "127.0.0.1"  # no trusted_proxies: the peer
    with pytest.raises(ValueError):
        th.parse_trusted_proxies(["not-an-ip"])


@pytest.fixture
def srv(tmp_path):
    s = Server(tmp_path, {"trusted_proxies": ["127.0.0.1"]})
    s.rt.ledger.set_password(s.account, PW)
    yield s
    s.close()


def burst(srv, bodies, headers_list, path="/credits/session", extra=None):
    """Sends every request at once; returns [(status, seconds)] and the latency of `extra` GETs meanwhile."""
    async def go():
        async with aiohttp.ClientSession() as s:
            async def one(body, headers):
                t0 = time.monotonic()
                async with s.post(srv.base + path, json=body, headers=headers) as r:
                    await r.read()
                    return r.status, time.monotonic() - t0

            async def probe():
                await asyncio.sleep(0.05)
                t0 = time.monotonic()
                async with s.get(srv.base + "/credits/balance", headers={"Authorization": f"Bearer {srv.key}"}) as r:
                    assert r.status == 200
                return time.monotonic() - t0
            tasks = [one(b, h) for b, h in zip(bodies, headers_list)] + [probe() for _ in range(extra or 0)]
            return await asyncio.gather(*tasks)
    return asyncio.run_coroutine_threadsafe(go(), srv.loop).result(120)


def test_concurrent_guesses_for_one_email_run_one_at_a_time(srv):
    """Was: 24 concurrent wrong passwords -> 24 x 401, 0 x 429."""
    res = burst(srv, [{"email": "buyer@example.com", "password": f"guess {i:04d}"} for i in range(24)],
                [{"X-Forwarded-For": "198.51.100.7"}] * 24)
    codes = [c for c, _ in res]
    assert codes.count(401) <= th.FREE_PAIR_FAILS and codes.count(429) >= 24 - th.FREE_PAIR_FAILS
    assert set(codes) <= {401, 429}


def test_a_burst_of_scrypt_does_not_starve_other_requests(srv):
    """Was: other people's /credits/balance took up to 9 s during a burst."""
    n = 16
    bodies = [{"email": f"nobody{i}@example.com", "password": "wrong password"} for i in range(n)]
    headers = [{"X-Forwarded-For": f"198.51.100.{i}"} for i in range(n)]  # distinct people: no throttling
    res = burst(srv, bodies, headers, extra=5)
    codes, probes = [c for c, _ in res[:n]], res[n:]
    assert codes == [401] * n
    slowest_sign_in = max(t for _, t in res[:n])
    assert max(probes) < 2.0 and max(probes) < slowest_sign_in / 2, (probes, slowest_sign_in)


def test_the_owner_signs_in_from_elsewhere_while_someone_guesses(srv):
    res = burst(srv, [{"email": "buyer@example.com", "password": "wrong guess!"}] * 1,
                [{"X-Forwarded-For": "203.0.113.66"}])
    for i in range(8):  # the attacker keeps going, mostly refused
        burst(srv, [{"email": "buyer@example.com", "password": f"wrong {i}"}], [{"X-Forwarded-For": "203.0.113.66"}])
    res = burst(srv, [{"email": "buyer@example.com", "password": PW}], [{"X-Forwarded-For": "198.51.100.200"}])
    assert res[0][0] == 200


def test_password_change_is_throttled_too(srv, monkeypatch):
    # A minute instead of the real 1 s: a scrypt hash on a loaded machine can
    # outlast 1 s, and the 4th attempt would then find the delay already over.
    monkeypatch.setattr(th, "DELAY_BASE_S", 60.0)
    hdr = {"Authorization": f"Bearer {srv.key}", "X-Forwarded-For": "203.0.113.9"}
    codes = [burst(srv, [{"old_password": f"wrong {i}", "new_password": "new password 1"}], [hdr],
                   path="/credits/password")[0][0] for i in range(th.FREE_PAIR_FAILS + 1)]
    assert codes == [401] * th.FREE_PAIR_FAILS + [429]
