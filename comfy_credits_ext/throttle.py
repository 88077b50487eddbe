"""Sign-in throttle and the client address behind a reverse proxy.

Rules (issue #9.3, #9.6):
- An attempt is counted when it STARTS, before the password's key derivation,
  so concurrent guesses cannot all pass a check made before any of them
  failed (check-then-act). A success undoes its own count.
- One attempt in flight per email and per client address; more get 429 at
  once without running scrypt.
- A delay that grows per (email, address): the first FREE_PAIR_FAILS
  failures cost nothing, then each further attempt must wait
  DELAY_BASE_S * 2^k (at most DELAY_MAX_S). The owner signing in from
  another address is not slowed by someone guessing elsewhere.
- Per address over all emails (password spraying) the same, from
  FREE_ADDRESS_FAILS failures on; a success does not clear it.
- Bounded memory: at most KEYS_MAX keys; the least recently failed are
  evicted first, and a key forgotten FORGET_S after its last failure.
- The address is the TCP peer, or with `trusted_proxies` configured the
  client named by X-Forwarded-For when the peer is one of those proxies.
"""
from __future__ import annotations

import ipaddress
import logging
import time
from collections import OrderedDict

log = logging.getLogger("comfy_credits")

FREE_PAIR_FAILS = 3          # per (email, address) before any delay
FREE_ADDRESS_FAILS = 20      # per address, over all emails
DELAY_BASE_S = 1.0
DELAY_MAX_S = 15 * 60.0
FORGET_S = 60 * 60.0         # a key with no failure for an hour is forgotten
KEYS_MAX = 50_000            # per table; oldest evicted first


class _Table:
    """key -> (failures, time of the last counted attempt), least recent first."""

    def __init__(self, free: int, keys_max: int):
        self.free, self.keys_max = free, keys_max
        self.d: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def wait_s(self, key: str, now: float) -> float:
        v = self.d.get(key)
        if v is None:
            return 0.0
        n, t = v
        if now - t > FORGET_S:
            del self.d[key]
            return 0.0
        if n < self.free:
            return 0.0
        return max(0.0, t + min(DELAY_MAX_S, DELAY_BASE_S * 2 ** (n - self.free)) - now)

    def count(self, key: str, now: float) -> None:
        n = self.d.pop(key, (0, 0.0))[0]
        self.d[key] = (n + 1, now)  # moves to the most recent end
        while len(self.d) > self.keys_max:
            self.d.popitem(last=False)
        # Drop a few forgotten keys from the old end on every write.
        for _ in range(4):
            k, (_, t) = next(iter(self.d.items()))
            if now - t <= FORGET_S or k == key:
                break
            del self.d[k]

    def undo(self, key: str) -> None:
        v = self.d.get(key)
        if v is not None:
            if v[0] <= 1:
                del self.d[key]
            else:
                self.d[key] = (v[0] - 1, v[1])

    def clear(self, key: str) -> None:
        self.d.pop(key, None)


class Throttle:
    def __init__(self, keys_max: int = KEYS_MAX, clock=time.monotonic):
        self.pairs = _Table(FREE_PAIR_FAILS, keys_max)
        self.addrs = _Table(FREE_ADDRESS_FAILS, keys_max)
        self.in_flight: set[str] = set()
        self.clock = clock

    def begin(self, email: str, address: str) -> tuple[object | None, float, str]:
        """(ticket, 0, "") to go ahead, or (None, seconds to wait, why)."""
        ek, ak, pk = "e:" + email, "a:" + address, f"p:{email}\0{address}"
        if ek in self.in_flight or ak in self.in_flight:
            return None, 1.0, "another sign-in for this account or from this address is in progress"
        now = self.clock()
        wait = max(self.pairs.wait_s(pk, now), self.addrs.wait_s(ak, now))
        if wait > 0:
            return None, wait, "too many failed attempts"
        self.pairs.count(pk, now)  # counted now, before the key derivation runs
        self.addrs.count(ak, now)
        self.in_flight.update((ek, ak))
        return (ek, ak, pk), 0.0, ""

    def end(self, ticket, ok: bool) -> None:
        ek, ak, pk = ticket
        self.in_flight.discard(ek)
        self.in_flight.discard(ak)
        if ok:
            self.pairs.clear(pk)
            self.addrs.undo(ak)  # this attempt was no guess; other failures from the address stay


def parse_trusted_proxies(raw) -> list:
    """["10.0.0.1", "192.168.0.0/16", "::1"] -> networks; ValueError names the bad one."""
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise ValueError('expected a list of addresses or networks, e.g. ["127.0.0.1", "10.0.0.0/8"]')
    nets = []
    for x in raw:
        try:
            nets.append(ipaddress.ip_network(x.strip(), strict=False))
        except ValueError:
            raise ValueError(f"'{x}' is not an IP address or network") from None
    return nets


def _ip(s: str):
    try:
        return ipaddress.ip_address(s.strip().strip("[]"))
    except ValueError:
        return None


_warned = set()


def client_address(request, trusted: list) -> str:
    """The address a person connects from. X-Forwarded-For is read only when
    the TCP peer is a trusted proxy: the right-most address that is not
    itself a trusted proxy is the client (a client can prepend anything)."""
    peer = request.remote or "?"
    xff = request.headers.get("X-Forwarded-For")
    pip = _ip(peer)
    if not trusted or pip is None or not any(pip in n for n in trusted):
        if xff and peer not in _warned and len(_warned) < 100:
            _warned.add(peer)
            log.warning("comfy-credits: requests from %s carry X-Forwarded-For but %s is not in trusted_proxies; "
                        "every person behind it counts as one address for the sign-in throttle", peer, peer)
        return peer
    if not xff:
        return peer
    hops = [h.strip() for h in xff.split(",") if h.strip()]
    for h in reversed(hops):
        ip = _ip(h)
        if ip is None:
            return h[:64]  # garbage from the client side: its own key
        if not any(ip in n for n in trusted):
            return str(ip)
    return str(_ip(hops[0])) if hops else peer
