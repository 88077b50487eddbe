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

Farm mode (issue #12): python bench/bench_ledger.py --db postgresql://user@host:port/db
measures the PostgreSQL store from 1 and 4 OS PROCESSES (each one ledger =
one ComfyUI server, all on one database), against a psycopg baseline (PyPI
`psycopg`; pip install psycopg) of the same semantics: idempotency key
lookup, the available-balance check under a row lock (SELECT ... FOR
UPDATE), hold row, settle with the rest returned, entries carrying the
balance after, in its own schema. Same batching on both sides: per-op (one
operation per call and transaction, one thread per process) and batched (256
holds + the previous call's settles per call and transaction). Runs are
interleaved (C, Python, C, Python ...) over --reps repetitions; min and
median are printed. The database must be durable (fsync on) for the figures
to mean anything; the URI's user needs CREATE on it.
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


# ---------------------------------------------------------------- farm mode (PostgreSQL, several processes)

PG_SCHEMA = """
CREATE SCHEMA IF NOT EXISTS cc_pybench;
CREATE TABLE IF NOT EXISTS cc_pybench.accounts(id BIGINT PRIMARY KEY, balance BIGINT NOT NULL, held BIGINT NOT NULL,
  spent BIGINT NOT NULL, uncollected BIGINT NOT NULL, CHECK (balance >= 0 AND held >= 0 AND held <= balance));
CREATE TABLE IF NOT EXISTS cc_pybench.entries(id BIGSERIAL PRIMARY KEY, op_key TEXT NOT NULL UNIQUE,
  kind TEXT NOT NULL, account_id BIGINT NOT NULL, amount BIGINT NOT NULL, delta BIGINT NOT NULL,
  held_delta BIGINT NOT NULL, uncollected BIGINT NOT NULL, balance_after BIGINT NOT NULL, held_after BIGINT NOT NULL,
  hold_id BIGINT NOT NULL, created_ms BIGINT NOT NULL, node_class TEXT NOT NULL, tokens_in BIGINT, tokens_out BIGINT);
CREATE INDEX IF NOT EXISTS entries_by_account ON cc_pybench.entries(account_id, id);
CREATE TABLE IF NOT EXISTS cc_pybench.holds(id BIGINT PRIMARY KEY, account_id BIGINT NOT NULL,
  amount BIGINT NOT NULL, state INTEGER NOT NULL, expires_ms BIGINT NOT NULL);
"""


class PgPyLedger:
    """The same rules as the C ledger, the obvious psycopg way (row locks)."""

    def __init__(self, uri):
        import psycopg
        self.db = psycopg.connect(uri, autocommit=False)
        self.db.execute("SET search_path = cc_pybench")

    def _entry(self, key, kind, acct, amount, delta, held_delta, unc, bal, held, hold_id, cls, tin=None, tout=None):
        return self.db.execute(
            "INSERT INTO entries(op_key, kind, account_id, amount, delta, held_delta, uncollected, balance_after,"
            " held_after, hold_id, created_ms, node_class, tokens_in, tokens_out)"
            " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (op_key) DO NOTHING RETURNING id",
            (key, kind, acct, amount, delta, held_delta, unc, bal, held, hold_id, int(time.time() * 1000), cls,
             tin, tout)).fetchone()

    def hold(self, key, acct, amount, ttl_ms, node_class=""):
        row = self.db.execute("SELECT id FROM entries WHERE op_key = %s", (key,)).fetchone()
        if row:
            return row[0]
        bal, held = self.db.execute("SELECT balance, held FROM accounts WHERE id = %s FOR UPDATE", (acct,)).fetchone()
        if bal <= 0 or bal - held < amount:
            raise ValueError("insufficient")
        held += amount
        row = self._entry(key, "hold", acct, amount, 0, amount, 0, bal, held, 0, node_class)
        if row is None:
            raise RuntimeError("key taken meanwhile")
        self.db.execute("INSERT INTO holds VALUES (%s,%s,%s,0,%s)", (row[0], acct, amount,
                                                                     int(time.time() * 1000) + ttl_ms))
        self.db.execute("UPDATE accounts SET held = %s WHERE id = %s", (held, acct))
        return row[0]

    def settle(self, key, hold_id, cost, tokens_in=None, tokens_out=None):
        row = self.db.execute("SELECT id FROM entries WHERE op_key = %s", (key,)).fetchone()
        if row:
            return row[0]
        acct, amount, state = self.db.execute("SELECT account_id, amount, state FROM holds WHERE id = %s FOR UPDATE",
                                              (hold_id,)).fetchone()
        if state != 0:
            raise ValueError("resolved")
        (cls,) = self.db.execute("SELECT node_class FROM entries WHERE id = %s", (hold_id,)).fetchone()
        bal, held = self.db.execute("SELECT balance, held FROM accounts WHERE id = %s FOR UPDATE", (acct,)).fetchone()
        charge = min(cost, amount + (bal - held))
        bal, held = bal - charge, held - amount
        row = self._entry(key, "settle", acct, cost, -charge, -amount, cost - charge, bal, held, hold_id, cls,
                          tokens_in, tokens_out)
        if row is None:
            raise RuntimeError("key taken meanwhile")
        self.db.execute("UPDATE holds SET state = 1 WHERE id = %s AND state = 0", (hold_id,))
        self.db.execute("UPDATE accounts SET balance = %s, held = %s, spent = spent + %s, uncollected = uncollected + %s"
                        " WHERE id = %s", (bal, held, charge, cost - charge, acct))
        return row[0]

    def txn(self, fn, *a, **kw):
        try:
            r = fn(*a, **kw)
        except BaseException:
            self.db.rollback()
            raise
        self.db.commit()
        return r


def farm_worker(impl, mode, uri, seconds, start_at, prefix, acct):
    """One process (one server): pairs until start_at + seconds; prints the count."""
    if impl == "c":
        led = _core.Ledger(uri, readers=1)
        hold = lambda k, a: led.hold(k, a, 5_000_000, 60_000, node_class="Bench")["hold_id"]  # noqa: E731
        settle = lambda k, h: led.settle(k, h, 3_000_000, tokens_in=10, tokens_out=20)  # noqa: E731

        def batch(pending, new_keys):
            ops = [{"op": "settle", "key": f"s{k}", "hold_id": hid, "amount": 3_000_000, "tokens_in": 10,
                    "tokens_out": 20} for k, hid in pending]
            ops += [{"op": "hold", "key": f"h{k}", "account_id": acct, "amount": 5_000_000, "ttl_ms": 60_000,
                     "node_class": "Bench"} for k in new_keys]
            res = led.execute(ops)
            if not all(r["ok"] for r in res):
                raise RuntimeError([r for r in res if not r["ok"]][0])
            return list(zip(new_keys, (r["hold_id"] for r in res[len(pending):])))
    else:
        pl = PgPyLedger(uri)
        hold = lambda k, a: pl.txn(pl.hold, k, a, 5_000_000, 60_000, "Bench")  # noqa: E731
        settle = lambda k, h: pl.txn(pl.settle, k, h, 3_000_000, 10, 20)  # noqa: E731

        def batch(pending, new_keys):
            def body():
                for k, hid in pending:
                    pl.settle(f"s{k}", hid, 3_000_000, 10, 20)
                return [(k, pl.hold(f"h{k}", acct, 5_000_000, 60_000, "Bench")) for k in new_keys]
            return pl.txn(body)
    time.sleep(max(0.0, start_at - time.time()))
    stop = start_at + seconds
    n = 0
    if mode == "per-op":
        while time.time() < stop:
            h = hold(f"h{prefix}-{n}", acct)
            settle(f"s{prefix}-{n}", h)
            n += 1
    else:
        b, pending = 0, []
        while time.time() < stop or pending:
            new = [f"{prefix}-{b}-{i}" for i in range(BATCH_PAIRS)] if time.time() < stop else []
            done = len(pending)
            pending = batch(pending, new)
            n += done
            b += 1
    print(f"PAIRS {n} {time.time() - start_at:.4f}", flush=True)


RUN_TAG = f"{time.time_ns():x}"  # keys and emails of this invocation (the database may hold earlier runs)


def farm_run(uri, impl, mode, procs, seconds, run_no):
    """`procs` processes at once; returns pairs/s over the slowest process's time."""
    import subprocess
    if impl == "c":
        with _core.Ledger(uri, readers=1) as led:
            accts = [led.create_account(f"r{RUN_TAG}-{run_no}-p{i}@bench.example")["id"] for i in range(procs)]
            for a in accts:
                led.grant(f"fund-{RUN_TAG}-{run_no}-{a}", a, FUND)
    else:
        import psycopg
        with psycopg.connect(uri, autocommit=True) as db:
            base = db.execute("SELECT COALESCE(max(id), 0) + 1 FROM cc_pybench.accounts").fetchone()[0]
            accts = [base + i for i in range(procs)]
            for a in accts:
                db.execute("INSERT INTO cc_pybench.accounts VALUES (%s, %s, 0, 0, 0)", (a, FUND))
    start_at = time.time() + 1.0 + 0.2 * procs
    ps = [subprocess.Popen([sys.executable, os.path.abspath(__file__), "--farm-worker", impl, mode, uri, str(seconds),
                            str(start_at), f"r{RUN_TAG}-{run_no}p{i}", str(a)], stdout=subprocess.PIPE, text=True)
          for i, a in enumerate(accts)]
    total, longest = 0, 0.0
    for p in ps:
        out, _ = p.communicate(timeout=seconds + 120)
        if p.returncode != 0:
            raise RuntimeError(f"{impl} worker failed")
        _, n, el = out.split()
        total += int(n)
        longest = max(longest, float(el))
    return total / longest


def farm_main(uri, seconds, reps, procs_list, modes=("per-op", "batched")):
    import psycopg
    with psycopg.connect(uri, autocommit=True) as db:
        db.execute(PG_SCHEMA)
        durable = db.execute("SHOW fsync").fetchone()[0], db.execute("SHOW synchronous_commit").fetchone()[0]
    with _core.Ledger(uri) as led:  # creates the C ledger's schema
        shown = led.path
    print(f"farm mode: durable hold+settle pairs/s on {shown} (fsync={durable[0]}, synchronous_commit={durable[1]}); "
          f"{seconds:g} s per run, {reps} interleaved reps; each process = one server")
    print(f"{'mode':<8} {'procs':>5} {'C min':>9} {'C med':>9} {'Py min':>9} {'Py med':>9} {'ratio med':>9}")
    run_no = 0
    best_c4 = 0.0
    ratios = []
    for mode in modes:
        for procs in procs_list:
            c, p = [], []
            for _ in range(reps):
                for impl, acc in (("c", c), ("py", p)):
                    acc.append(farm_run(uri, impl, mode, procs, seconds, run_no))
                    run_no += 1
            cm, pm = statistics.median(c), statistics.median(p)
            ratios.append(cm / pm if pm else float("inf"))
            if procs == max(procs_list):
                best_c4 = max(best_c4, cm)
            print(f"{mode:<8} {procs:>5} {min(c):>9,.0f} {cm:>9,.0f} {min(p):>9,.0f} {pm:>9,.0f} {ratios[-1]:>8.1f}x",
                  flush=True)
    print(f"best median from {max(procs_list)} processes: {best_c4:,.0f} pairs/s (target >= 10,000); C vs psycopg "
          f"like for like: min {min(ratios):.1f}x, median {statistics.median(ratios):.1f}x")
    with _core.Ledger(uri) as led:
        rep = led.verify()
    print(f"verify after the runs: {'ok' if rep['ok'] else rep['problems'][:3]} ({rep['entries']:,} entries)")


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
    ap.add_argument("--db", default=None, help="farm mode: a postgresql:// URI (see above)")
    ap.add_argument("--reps", type=int, default=3, help="farm mode: interleaved repetitions")
    ap.add_argument("--procs", default="1,4", help="farm mode: process counts")
    ap.add_argument("--modes", default="per-op,batched", help="farm mode: per-op and/or batched")
    if len(sys.argv) > 1 and sys.argv[1] == "--farm-worker":
        impl, mode, uri, seconds, start_at, prefix, acct = sys.argv[2:9]
        farm_worker(impl, mode, uri, float(seconds), float(start_at), prefix, int(acct))
        return
    args = ap.parse_args()
    if args.db:
        if not args.db.startswith(("postgresql://", "postgres://")):
            ap.error("--db must be a postgresql:// URI (the SQLite figures need no --db)")
        farm_main(args.db, args.seconds, args.reps, [int(x) for x in args.procs.split(",")],
                  tuple(args.modes.split(",")))
        return
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
