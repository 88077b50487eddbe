"""Ledger benchmark: durable hold+settle pairs per second, and history latency.

Prints figures and ratios against a baseline measured in the same run:
a plain-Python `sqlite3` implementation of the same semantics (idempotency
key lookup, available-balance check, hold row, settle with return of the
rest, immutable entries carrying the balance after), WAL + synchronous=FULL,
one transaction per operation (or per batch in the batched mode), one
connection per thread.

Modes:
  per-op   every call is one operation and returns only once it is durable;
           concurrent callers share commits (group commit).
  batched  each call carries 256 holds plus the settles of the previous
           call's holds (TigerBeetle-style client batching); still durable.

Run: python bench/bench_ledger.py [--seconds 3] [--entries 1000000]
Targets (issue #2): >= 50,000 pairs/s and >= 10x the Python baseline;
a history page of 50 in < 2 ms at 1,000,000 entries.
"""
from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from comfy_credits_ext import _core  # noqa: E402

BATCH_PAIRS = 256
FUND = 10**15


# ---------------------------------------------------------------- C ledger

def c_ledger(path, threads):
    led = _core.Ledger(path, readers=4)
    accts = [led.create_account(f"t{i}@bench.example")["id"] for i in range(threads)]
    for i, a in enumerate(accts):
        led.grant(f"fund-{i}", a, FUND)
    return led, accts


def run_threads(threads, seconds, body):
    stop = time.monotonic() + seconds
    counts = [0] * threads
    errors = []

    def worker(t):
        try:
            counts[t] = body(t, stop)
        except Exception as exc:  # reported, not hidden
            errors.append(exc)

    ths = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    t0 = time.perf_counter()
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return sum(counts) / elapsed


def c_per_op(path, threads, seconds):
    led, accts = c_ledger(path, threads)

    def body(t, stop):
        n, a = 0, accts[t]
        while time.monotonic() < stop:
            h = led.hold(f"h{t}-{n}", a, 5_000_000, 60_000, node_class="Bench")
            led.settle(f"s{t}-{n}", h["hold_id"], 3_000_000, tokens_in=10, tokens_out=20)
            n += 1
        return n

    rate = run_threads(threads, seconds, body)
    rep = led.verify()
    ctr = led.counters()
    led.close()
    assert rep["ok"], rep["problems"]
    return rate, ctr["ops"] / max(1, ctr["commits"])


def c_batched(path, threads, seconds):
    led, accts = c_ledger(path, threads)

    def body(t, stop):
        n, a, b, pending = 0, accts[t], 0, []
        while time.monotonic() < stop or pending:
            ops = [{"op": "settle", "key": f"s{t}-{k}", "hold_id": hid, "amount": 3_000_000, "tokens_in": 10,
                    "tokens_out": 20} for k, hid in pending]
            new = []
            if time.monotonic() < stop:
                new = [f"{t}-{b}-{i}" for i in range(BATCH_PAIRS)]
                ops += [{"op": "hold", "key": f"h{k}", "account_id": a, "amount": 5_000_000, "ttl_ms": 60_000,
                         "node_class": "Bench"} for k in new]
            res = led.execute(ops)
            if not all(r["ok"] for r in res):
                raise RuntimeError([r for r in res if not r["ok"]][0])
            n += len(pending)
            pending = list(zip(new, (r["hold_id"] for r in res[len(pending):])))
            b += 1
        return n

    rate = run_threads(threads, seconds, body)
    rep = led.verify()
    led.close()
    assert rep["ok"], rep["problems"]
    return rate


# ---------------------------------------------------------------- Python baseline

SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts(id INTEGER PRIMARY KEY, balance INTEGER NOT NULL, held INTEGER NOT NULL,
  spent INTEGER NOT NULL, uncollected INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS entries(id INTEGER PRIMARY KEY, op_key TEXT NOT NULL UNIQUE, kind TEXT NOT NULL,
  account_id INTEGER NOT NULL, amount INTEGER NOT NULL, delta INTEGER NOT NULL, held_delta INTEGER NOT NULL,
  uncollected INTEGER NOT NULL, balance_after INTEGER NOT NULL, held_after INTEGER NOT NULL,
  hold_id INTEGER NOT NULL, created_ms INTEGER NOT NULL, node_class TEXT NOT NULL,
  tokens_in INTEGER, tokens_out INTEGER);
CREATE INDEX IF NOT EXISTS entries_by_account ON entries(account_id, id);
CREATE TABLE IF NOT EXISTS holds(id INTEGER PRIMARY KEY, account_id INTEGER NOT NULL, amount INTEGER NOT NULL,
  state INTEGER NOT NULL, expires_ms INTEGER NOT NULL);
"""


class PyLedger:
    """The same rules as the C ledger, in the obvious Python + sqlite3 way."""

    def __init__(self, path):
        self.db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)

    def _entry(self, key, kind, acct, amount, delta, held_delta, unc, bal, held, hold_id, cls, tin=None,
               tout=None):
        cur = self.db.execute(
            "INSERT INTO entries(op_key, kind, account_id, amount, delta, held_delta, uncollected, balance_after,"
            " held_after, hold_id, created_ms, node_class, tokens_in, tokens_out) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (key, kind, acct, amount, delta, held_delta, unc, bal, held, hold_id, int(time.time() * 1000), cls,
             tin, tout))
        return cur.lastrowid

    def hold(self, key, acct, amount, ttl_ms, node_class=""):
        row = self.db.execute("SELECT id FROM entries WHERE op_key = ?", (key,)).fetchone()
        if row:
            return row[0]
        bal, held = self.db.execute("SELECT balance, held FROM accounts WHERE id = ?", (acct,)).fetchone()
        if bal <= 0 or bal - held < amount:
            raise ValueError("insufficient")
        held += amount
        eid = self._entry(key, "hold", acct, amount, 0, amount, 0, bal, held, 0, node_class)
        self.db.execute("INSERT INTO holds VALUES (?,?,?,0,?)", (eid, acct, amount, int(time.time() * 1000) + ttl_ms))
        self.db.execute("UPDATE accounts SET held = ? WHERE id = ?", (held, acct))
        return eid

    def settle(self, key, hold_id, cost, tokens_in=None, tokens_out=None):
        row = self.db.execute("SELECT id FROM entries WHERE op_key = ?", (key,)).fetchone()
        if row:
            return row[0]
        acct, amount, state = self.db.execute("SELECT account_id, amount, state FROM holds WHERE id = ?",
                                              (hold_id,)).fetchone()
        if state != 0:
            raise ValueError("resolved")
        (cls,) = self.db.execute("SELECT node_class FROM entries WHERE id = ?", (hold_id,)).fetchone()
        bal, held = self.db.execute("SELECT balance, held FROM accounts WHERE id = ?", (acct,)).fetchone()
        charge = min(cost, amount + (bal - held))
        bal, held = bal - charge, held - amount
        eid = self._entry(key, "settle", acct, cost, -charge, -amount, cost - charge, bal, held, hold_id, cls,
                          tokens_in, tokens_out)
        self.db.execute("UPDATE holds SET state = 1 WHERE id = ?", (hold_id,))
        self.db.execute("UPDATE accounts SET balance = ?, held = ?, spent = spent + ?, uncollected = uncollected + ?"
                        " WHERE id = ?", (bal, held, charge, cost - charge, acct))
        return eid

    def txn(self, fn, *a, **kw):
        self.db.execute("BEGIN IMMEDIATE")
        try:
            r = fn(*a, **kw)
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")
        return r


def py_setup(path, threads):
    pl = PyLedger(path)
    for t in range(threads):
        pl.db.execute("INSERT INTO accounts VALUES (?, ?, 0, 0, 0)", (t + 1, FUND))
    pl.db.close()


def py_per_op(path, threads, seconds):
    py_setup(path, threads)

    def body(t, stop):
        pl = PyLedger(path)
        n, a = 0, t + 1
        while time.monotonic() < stop:
            hid = pl.txn(pl.hold, f"h{t}-{n}", a, 5_000_000, 60_000, "Bench")
            pl.txn(pl.settle, f"s{t}-{n}", hid, 3_000_000, 10, 20)
            n += 1
        return n

    return run_threads(threads, seconds, body)


def py_batched(path, threads, seconds):
    py_setup(path, threads)

    def body(t, stop):
        pl = PyLedger(path)
        n, a, b, pending = 0, t + 1, 0, []
        while time.monotonic() < stop or pending:
            def batch():
                for k, hid in pending:
                    pl.settle(f"s{t}-{k}", hid, 3_000_000, 10, 20)
                new = []
                if time.monotonic() < stop:
                    for i in range(BATCH_PAIRS):
                        k = f"{t}-{b}-{i}"
                        new.append((k, pl.hold(f"h{k}", a, 5_000_000, 60_000, "Bench")))
                return new
            new = pl.txn(batch)
            n += len(pending)
            pending = new
            b += 1
        return n

    return run_threads(threads, seconds, body)


# ---------------------------------------------------------------- history

def pct(samples, p):
    s = sorted(samples)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


def history_bench(path, entries):
    led = _core.Ledger(path)
    a = led.create_account("history@bench.example")["id"]
    other = led.create_account("other@bench.example")["id"]
    t0 = time.perf_counter()
    done = 0
    while done < entries:
        n = min(8000, entries - done)
        # Every fourth entry belongs to another account, so pages must skip.
        ops = [{"op": "grant", "key": f"g{done + i}", "account_id": other if (done + i) % 4 == 3 else a,
                "amount": 1_000_000, "note": "bench"} for i in range(n)]
        res = led.execute(ops)
        assert all(r["ok"] for r in res)
        done += n
    fill = time.perf_counter() - t0
    first, deep, filtered = [], [], []
    page = led.history(a, limit=50)
    mid_cursor = None
    for _ in range(300):  # walk a little so a cursor from the middle exists
        page = led.history(a, limit=50, cursor=page["next_cursor"])
    mid_cursor = page["next_cursor"]
    for _ in range(2000):
        t = time.perf_counter()
        led.history(a, limit=50)
        first.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        led.history(a, limit=50, cursor=mid_cursor)
        deep.append((time.perf_counter() - t) * 1000)
    for _ in range(200):
        t = time.perf_counter()
        led.history(a, limit=50, kinds=["grant"], since_ms=1)
        filtered.append((time.perf_counter() - t) * 1000)
    rep = led.verify()
    led.close()
    assert rep["ok"]
    return fill, first, deep, filtered, rep["entries"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0, help="duration of each throughput run")
    ap.add_argument("--threads", default="1,2,8")
    ap.add_argument("--entries", type=int, default=1_000_000, help="ledger size for the history benchmark")
    ap.add_argument("--dir", default=None, help="where to put the databases (default: a temp dir)")
    args = ap.parse_args()
    threads = [int(x) for x in args.threads.split(",")]
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        print(f"durable hold+settle pairs/s (WAL, synchronous=FULL; {args.seconds:g} s per run, dir {d})")
        print(f"{'mode':<8} {'threads':>7} {'C ledger':>12} {'Python':>12} {'ratio':>8} {'ops/commit':>11}")
        best = 0.0
        ratios = []  # C / Python in the SAME mode and thread count: the only honest ratio
        for mode, cfn, pfn in (("per-op", c_per_op, py_per_op), ("batched", c_batched, py_batched)):
            for t in threads:
                r = cfn(os.path.join(d, f"c-{mode}-{t}.db"), t, args.seconds)
                c_rate, per_commit = (r if isinstance(r, tuple) else (r, None))
                p_rate = pfn(os.path.join(d, f"p-{mode}-{t}.db"), t, args.seconds)
                best = max(best, c_rate)
                ratios.append(c_rate / p_rate)
                pc = f"{per_commit:.1f}" if per_commit else "-"
                print(f"{mode:<8} {t:>7} {c_rate:>12,.0f} {p_rate:>12,.0f} {c_rate / p_rate:>7.1f}x {pc:>11}",
                      flush=True)
        print(f"best: {best:,.0f} pairs/s (target >= 50,000); C vs Python like for like (same mode, same "
              f"threads): min {min(ratios):.1f}x, median {statistics.median(ratios):.1f}x")
        fill, first, deep, filtered, n = history_bench(os.path.join(d, "history.db"), args.entries)
        print(f"history at {n:,} entries (filled in {fill:.1f} s, {n / fill:,.0f} entries/s):")
        for name, s in (("newest page of 50", first), ("page of 50 mid-history", deep),
                        ("filtered page (kind+date)", filtered)):
            print(f"  {name:<28} p50 {statistics.median(s):.3f} ms  p99 {pct(s, 99):.3f} ms  (target < 2 ms)")


if __name__ == "__main__":
    main()
