"""Ledger benchmark: durable hold+settle pairs per second, and history latency.

Every ratio printed compares like with like: the C ledger against a plain-Python
`sqlite3` implementation of the same semantics (idempotency key lookup,
available-balance check, hold row, settle with return of the rest, immutable
entries carrying the balance after; WAL + synchronous=FULL), in the same mode,
with the same batching, the same number of threads, in the same process:

  per-op   every call is one operation and returns only once it is durable;
           concurrent callers share commits (group commit: a leader takes every
           operation queued so far into one transaction). The Python baseline
           does the same group commit (PyGroupCommit), so with 1 thread both
           commit once per operation and with N threads both batch what N
           callers queue.
  batched  each call carries 256 holds plus the settles of the previous call's
           holds (TigerBeetle-style client batching) in one durable transaction,
           in both.

Repetitions are interleaved (C, Python, C, Python, ...) and each side is printed
as min and median over them; ratios are median/median (and min/min).

The ceiling for per-op durability is the machine's raw fsync rate: a durable
commit needs at least one fsync, so one caller can do at most that many commits
per second (a hold+settle pair is two). It is measured here (4 KiB write +
fdatasync, in the same directory) and printed beside the per-op figures.

Without --db both ledgers run on SQLite files (in --dir or a temp dir) through
SqliteBackend (c_ledger(name), py_connect(name), fsync_dir): the threaded, single-
process figures above. Another single-process store plugs in as another backend
class with its own Python baseline; --db postgresql://... runs the farm mode below.

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
median are printed. With --pg-data DIR (the cluster's data directory, PostgreSQL on
this machine) each row also prints the CPU the whole cluster spent per pair (backends,
WAL writer, checkpointer: from /proc), medians for C and psycopg. The database must be durable (fsync on) for the figures
to mean anything; the URI's user needs CREATE on it.

Run: python bench/bench_ledger.py [--seconds 2] [--reps 3] [--threads 1,2,8] [--entries 1000000]
Targets (issue #2): >= 50,000 pairs/s; a history page of 50 in < 2 ms at 1,000,000 entries.
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

def c_ledger(backend, name, threads):
    led = backend.c_ledger(name)
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


def c_per_op(backend, name, threads, seconds):
    led, accts = c_ledger(backend, name, threads)

    def body(t, stop):
        n, a = 0, accts[t]
        while time.monotonic() < stop:
            h = led.hold(f"h{t}-{n}", a, 5_000_000, 60_000, node_class="Bench")
            led.settle(f"s{t}-{n}", h["hold_id"], 3_000_000, tokens_in=10, tokens_out=20)
            n += 1
        return n

    c0 = led.counters()
    rate = run_threads(threads, seconds, body)
    ctr = led.counters()
    rep = led.verify()
    led.close()
    assert rep["ok"], rep["problems"]
    return rate, (ctr["ops"] - c0["ops"]) / max(1, ctr["commits"] - c0["commits"])


def c_batched(backend, name, threads, seconds):
    led, accts = c_ledger(backend, name, threads)

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
    return rate, 2 * BATCH_PAIRS


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

    def __init__(self, db):
        self.db = db
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

    # Each operation checks everything before it writes anything, so a refused
    # one leaves the transaction as it was (as the C ledger's rules do).
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


class PyGroupCommit:
    """Leader/follower group commit in Python, the C ledger's scheme (src/commit.c): a
    caller queues its operation; the first caller to find no leader becomes it, runs
    every operation queued so far (at most BATCH_OPS_MAX) in one transaction, commits
    once, and wakes their callers. One writer connection."""

    BATCH_OPS_MAX = 1024

    def __init__(self, pl: PyLedger):
        self.pl = pl
        self.mu = threading.Lock()
        self.cv = threading.Condition(self.mu)
        self.queue: list = []
        self.leader = False
        self.ops = self.commits = 0

    def call(self, fn, *args):
        job = {"fn": fn, "args": args, "done": False, "result": None, "error": None}
        with self.cv:
            self.queue.append(job)
            while not job["done"]:
                if self.leader:
                    self.cv.wait()
                    continue
                self.leader = True
                batch, self.queue = self.queue[:self.BATCH_OPS_MAX], self.queue[self.BATCH_OPS_MAX:]
                self.mu.release()
                try:
                    self._run(batch)
                finally:
                    self.mu.acquire()
                    self.leader = False
                    self.cv.notify_all()
        if job["error"] is not None:
            raise job["error"]
        return job["result"]

    def _run(self, batch):
        db = self.pl.db
        try:
            db.execute("BEGIN IMMEDIATE")
            for j in batch:
                try:
                    j["result"] = j["fn"](*j["args"])
                except ValueError as exc:  # refused by the rules: wrote nothing
                    j["error"] = exc
            db.execute("COMMIT")
        except BaseException as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            for j in batch:
                j["error"] = exc
        for j in batch:
            j["done"] = True
        self.ops += len(batch)
        self.commits += 1


def py_setup(backend, name, threads):
    pl = PyLedger(backend.py_connect(name))
    for t in range(threads):
        pl.db.execute("INSERT INTO accounts VALUES (?, ?, 0, 0, 0)", (t + 1, FUND))
    return pl


def py_per_op(backend, name, threads, seconds):
    pl = py_setup(backend, name, threads)
    gc = PyGroupCommit(pl)

    def body(t, stop):
        n, a = 0, t + 1
        while time.monotonic() < stop:
            hid = gc.call(pl.hold, f"h{t}-{n}", a, 5_000_000, 60_000, "Bench")
            gc.call(pl.settle, f"s{t}-{n}", hid, 3_000_000, 10, 20)
            n += 1
        return n

    rate = run_threads(threads, seconds, body)
    pl.db.close()
    return rate, gc.ops / max(1, gc.commits)


def py_batched(backend, name, threads, seconds):
    py_setup(backend, name, threads).db.close()

    def body(t, stop):
        pl = PyLedger(backend.py_connect(name))  # one connection per caller; SQLite serialises the writers
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
        pl.db.close()
        return n

    return run_threads(threads, seconds, body), 2 * BATCH_PAIRS


# ---------------------------------------------------------------- backends

class SqliteBackend:
    """Both ledgers on SQLite files in one directory (WAL, synchronous=FULL)."""

    label = "SQLite (WAL, synchronous=FULL)"

    def __init__(self, directory):
        self.fsync_dir = directory
        self.dir = directory

    def c_ledger(self, name):
        return _core.Ledger(os.path.join(self.dir, f"c-{name}.db"), readers=4)

    def py_connect(self, name):
        return sqlite3.connect(os.path.join(self.dir, f"p-{name}.db"), timeout=30, isolation_level=None,
                               check_same_thread=False)


def fsync_rate(directory, seconds):
    """fdatasync()s per second of a 4 KiB write at the same offset (the WAL's pattern, one caller)."""
    path = os.path.join(directory, "fsync-probe")
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    try:
        block = b"\0" * 4096
        n, stop = 0, time.monotonic() + seconds
        t = time.perf_counter()
        while time.monotonic() < stop:
            os.pwrite(fd, block, 0)
            os.fdatasync(fd)
            n += 1
        return n / (time.perf_counter() - t)
    finally:
        os.close(fd)
        os.unlink(path)


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


def server_cpu_s(pg_data):
    """CPU seconds a local PostgreSQL cluster has used so far: its postmaster's own time, that of the backends
    it reaped (cutime + cstime: every connection that ended) and that of its live children (from /proc, Linux;
    run as the cluster's owner or root). None when it cannot be read."""
    try:
        with open(os.path.join(pg_data, "postmaster.pid")) as f:
            pm = int(f.readline())
        ticks = os.sysconf("SC_CLK_TCK")

        def stat(pid):
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()

        total = sum(int(x) for x in stat(pm)[11:15])
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    g = stat(d)
                except OSError:
                    continue
                if int(g[1]) == pm:
                    total += int(g[11]) + int(g[12])
        return total / ticks
    except (OSError, ValueError):
        return None


def farm_run(uri, impl, mode, procs, seconds, run_no, pg_data=None):
    """`procs` processes at once; returns pairs/s over the slowest process's time, and with pg_data the
    cluster's CPU ms per pair (else None)."""
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
    cpu0 = server_cpu_s(pg_data) if pg_data else None
    total, longest = 0, 0.0
    for p in ps:
        out, _ = p.communicate(timeout=seconds + 120)
        if p.returncode != 0:
            raise RuntimeError(f"{impl} worker failed")
        _, n, el = out.split()
        total += int(n)
        longest = max(longest, float(el))
    cpu1 = server_cpu_s(pg_data) if cpu0 is not None else None
    srv = 1000 * (cpu1 - cpu0) / total if cpu1 is not None and total else None
    return total / longest, srv


def loadavg():
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def farm_main(uri, seconds, reps, procs_list, modes=("per-op", "batched"), fsync_dir=None, pg_data=None):
    import psycopg
    with psycopg.connect(uri, autocommit=True) as db:
        db.execute(PG_SCHEMA)
        durable = db.execute("SHOW fsync").fetchone()[0], db.execute("SHOW synchronous_commit").fetchone()[0]
    with _core.Ledger(uri) as led:  # creates the C ledger's schema
        shown = led.path
    print(f"farm mode: durable hold+settle pairs/s on {shown} (fsync={durable[0]}, synchronous_commit={durable[1]}); "
          f"{seconds:g} s per run, {reps} interleaved reps (C, psycopg, C, ...); each process = one server; "
          f"load average {loadavg()}")
    fsync_dir = fsync_dir or tempfile.gettempdir()
    ceiling = fsync_rate(fsync_dir, 2.0)
    print(f"raw fsync rate here ({fsync_dir}): {ceiling:,.0f} fdatasync/s. A durable commit waits for one; commits "
          f"that do not share a flush allow at most {ceiling / 2:,.0f} per-op pairs/s (two commits a pair), for "
          f"all processes together if their commits are serialised; batching ({BATCH_PAIRS} pairs a commit) and "
          f"flushes shared by concurrent commits go above it")
    srv_head = "  server CPU ms/pair (C med, Py med)" if pg_data else ""
    print(f"{'mode':<8} {'procs':>5} {'C min':>9} {'C med':>9} {'Py min':>9} {'Py med':>9} {'ratio med':>9} "
          f"{'ratio min':>9}  load avg{srv_head}")
    run_no = 0
    best_c4 = 0.0
    ratios = []
    for mode in modes:
        for procs in procs_list:
            c, p, srv_c, srv_p = [], [], [], []
            for _ in range(reps):
                for impl, acc in (("c", c), ("py", p)):
                    rate, srv = farm_run(uri, impl, mode, procs, seconds, run_no, pg_data)
                    acc.append(rate)
                    if srv is not None:
                        (srv_c if impl == "c" else srv_p).append(srv)
                    run_no += 1
            cm, pm = statistics.median(c), statistics.median(p)
            ratios.append(cm / pm if pm else float("inf"))
            rmin = min(c) / min(p) if min(p) else float("inf")
            if procs == max(procs_list):
                best_c4 = max(best_c4, cm)
            srv = (f"  {statistics.median(srv_c):.3f} {statistics.median(srv_p):.3f}"
                   if srv_c and srv_p else "")
            print(f"{mode:<8} {procs:>5} {min(c):>9,.0f} {cm:>9,.0f} {min(p):>9,.0f} {pm:>9,.0f} {ratios[-1]:>8.1f}x "
                  f"{rmin:>8.1f}x  {loadavg()}{srv}", flush=True)
    print(f"best median from {max(procs_list)} processes: {best_c4:,.0f} pairs/s (target >= 10,000); C vs psycopg "
          f"like for like (median/median per row): from {min(ratios):.1f}x to {max(ratios):.1f}x; "
          f"load average {loadavg()}")
    with _core.Ledger(uri, busy_timeout_ms=600_000) as led:  # a scan of millions of entries on a busy machine
        rep = led.verify()
    print(f"verify after the runs: {'ok' if rep['ok'] else rep['problems'][:3]} ({rep['entries']:,} entries)")


# ---------------------------------------------------------------- history

def pct(samples, p):
    s = sorted(samples)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


def history_bench(backend, entries):
    led = backend.c_ledger("history")
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


def interleaved(reps, cfn, pfn, backend, mode, threads, seconds):
    """reps x (C run, Python run), alternating which goes first; fresh databases each run."""
    c, p = [], []
    for r in range(reps):
        order = ((cfn, c, "c"), (pfn, p, "p"))
        for fn, out, side in (order if r % 2 == 0 else order[::-1]):
            out.append(fn(backend, f"{mode}-{threads}-{r}-{side}", threads, seconds))
    return c, p


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=2.0, help="duration of each throughput run")
    ap.add_argument("--reps", type=int, default=3, help="interleaved repetitions of each C/Python pair")
    ap.add_argument("--threads", default="1,2,8")
    ap.add_argument("--modes", default="per-op,batched")
    ap.add_argument("--entries", type=int, default=1_000_000, help="ledger size for the history benchmark "
                                                                  "(0: skip it)")
    ap.add_argument("--db", default=None, help="farm mode: a postgresql:// URI (see above); default: SQLite files")
    ap.add_argument("--dir", default=None, help="where to put the SQLite databases (default: a temp dir); farm "
                                                "mode: where to measure the raw fsync rate (put it on PostgreSQL's disk)")
    ap.add_argument("--procs", default="1,4", help="farm mode: process counts")
    ap.add_argument("--pg-data", default=None, help="farm mode, PostgreSQL on this machine: its data directory; "
                                                    "prints the cluster's CPU per pair (Linux /proc; run as its "
                                                    "owner or root)")
    if len(sys.argv) > 1 and sys.argv[1] == "--farm-worker":
        impl, mode, uri, seconds, start_at, prefix, acct = sys.argv[2:9]
        farm_worker(impl, mode, uri, float(seconds), float(start_at), prefix, int(acct))
        return
    args = ap.parse_args()
    if args.db:
        if not args.db.startswith(("postgresql://", "postgres://")):
            ap.error("--db must be a postgresql:// URI (the SQLite figures need no --db)")
        farm_main(args.db, args.seconds, args.reps, [int(x) for x in args.procs.split(",")],
                  tuple(args.modes.split(",")), args.dir, args.pg_data)
        return
    threads = [int(x) for x in args.threads.split(",")]
    modes = {"per-op": (c_per_op, py_per_op), "batched": (c_batched, py_batched)}
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        backend = SqliteBackend(d)
        ceiling = fsync_rate(backend.fsync_dir, 2.0)
        print(f"durable hold+settle pairs/s, {backend.label}; {args.seconds:g} s per run, {args.reps} interleaved "
              f"reps, dir {d}; load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        print(f"raw fsync ceiling: {ceiling:,.0f} fdatasync/s here, so one caller making each operation durable "
              f"on its own can do at most {ceiling / 2:,.0f} pairs/s (two commits a pair); only sharing commits "
              f"(group commit, batching) goes above it")
        print(f"{'mode':<8} {'threads':>7} {'C min':>10} {'C median':>10} {'Py min':>10} {'Py median':>10} "
              f"{'ratio med':>9} {'ratio min':>9} {'ops/commit C/Py':>16}")
        best = 0.0
        ratios = []  # C / Python in the SAME mode, batching, thread count and process: the only ratio printed
        for mode in args.modes.split(","):
            cfn, pfn = modes[mode]
            for t in threads:
                c, p = interleaved(args.reps, cfn, pfn, backend, mode, t, args.seconds)
                cr, pr = [x[0] for x in c], [x[0] for x in p]
                cm, pm = statistics.median(cr), statistics.median(pr)
                best = max(best, max(cr))
                ratios.append(cm / pm)
                opc = f"{statistics.median(x[1] for x in c):.1f}/{statistics.median(x[1] for x in p):.1f}"
                print(f"{mode:<8} {t:>7} {min(cr):>10,.0f} {cm:>10,.0f} {min(pr):>10,.0f} {pm:>10,.0f} "
                      f"{cm / pm:>8.2f}x {min(cr) / min(pr):>8.2f}x {opc:>16}", flush=True)
        after = fsync_rate(backend.fsync_dir, 2.0)
        print(f"raw fsync rate again after the runs: {after:,.0f} fdatasync/s (ceiling {after / 2:,.0f} pairs/s "
              f"for one caller)")
        print(f"best C run: {best:,.0f} pairs/s (target >= 50,000). C vs Python like for like (median/median per "
              f"row): from {min(ratios):.2f}x to {max(ratios):.2f}x, median {statistics.median(ratios):.2f}x")
        if args.entries:
            fill, first, deep, filtered, n = history_bench(backend, args.entries)
            print(f"history at {n:,} entries (filled in {fill:.1f} s, {n / fill:,.0f} entries/s):")
            for name, s in (("newest page of 50", first), ("page of 50 mid-history", deep),
                            ("filtered page (kind+date)", filtered)):
                print(f"  {name:<28} p50 {statistics.median(s):.3f} ms  p99 {pct(s, 99):.3f} ms  (target < 2 ms)")


if __name__ == "__main__":
    main()
