"""Crash campaign: K kill -9 points in a mixed workload on the embedded ledger.

Each round starts a writer process on the same database (runs: hold then
settle/void/left open, purchases through the fulfilment path twice - the
webhook and the return page -, grants, TEST purchases, expiries), from several
threads, printing "ACK <kind> <key> ..." only after the ledger acknowledged
it; after a random 20-250 ms the writer is killed with SIGKILL. Then the
database is reopened and checked: verify is clean, every acknowledged
operation is present, every acknowledged purchase was credited once with its
amount. At the end every hold still open is expired (its ttl passed) and the
ledger verifies with no open hold left.

With survivor=True (farm mode, `--survivor`) a second writer process, the
other server, runs on the same database through the whole campaign, on the
same account: its holds, purchases and expiries race the writer being killed
(it releases the dead writer's expired holds while the next one runs), and
everything it acknowledged is checked the same way.

  python3 scripts/crash_campaign.py [KILLS] [DB] [--survivor]   (default 200 kill points)

Prints one figures line; exits non-zero on any problem. tests/test_campaigns.py
runs a short version."""
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMPORT_ROOT = os.environ.get("COMFY_CREDITS_IMPORT_ROOT", str(ROOT))
sys.path.insert(0, IMPORT_ROOT)
from comfy_credits_ext import _core  # noqa: E402

C = _core.MICRO


def session_json(sid, account, cents):
    return json.dumps({"id": sid, "object": "checkout.session", "status": "complete", "payment_status": "paid",
                       "currency": "usd", "amount_total": cents, "client_reference_id": str(account),
                       "metadata": {"credits_micro": str(cents * 2_110_000), "amount_minor": str(cents),
                                    "currency": "usd", "rate_micro": "211000000", "method": "card"},
                       "created": 1700000000}).encode()


def writer(path, account, round_no, threads=4, pause_s=0.0):
    led = _core.Ledger(path)
    out = threading.Lock()

    def ack(*parts):
        with out:
            sys.stdout.write("ACK " + " ".join(map(str, parts)) + "\n")
            sys.stdout.flush()

    def work(tid):
        rnd = random.Random(round_no * 100 + tid)
        i = 0
        while True:
            k = f"r{round_no}-t{tid}-{i}"
            r = rnd.random()
            if r < 0.55:  # a run
                ttl = 150 if rnd.random() < 0.3 else 60_000
                h = led.hold("h-" + k, account, 1000 + rnd.randrange(5000), ttl, node_class="Crash")
                ack("hold", "h-" + k)
                end = rnd.random()
                if end < 0.7:
                    led.settle("s-" + k, h["hold_id"], rnd.randrange(8000), tokens_in=1)
                    ack("settle", "s-" + k)
                elif end < 0.9:
                    led.void("v-" + k, h["hold_id"], note="failed")
                    ack("void", "v-" + k)
            elif r < 0.70:  # a purchase: webhook, then the return page
                sid = "cs_live_crash_" + k
                cents = 100 * (1 + rnd.randrange(10))
                a = led.fulfil_checkout(session_json(sid, account, cents))
                ack("purchase", "stripe:" + sid, cents * 2_110_000, a["state"])
                b = led.fulfil_checkout(session_json(sid, account, cents))
                assert b["state"] == "already_credited", b
            elif r < 0.80:
                led.test_purchase("t-" + k, account, 5 * C, "usd", 237, "card", "cs_test_" + k)
                ack("test", "t-" + k)
            elif r < 0.92:
                led.grant("g-" + k, account, 3 * C, note="crash")
                ack("grant", "g-" + k)
            else:
                led.expire()
            i += 1
            if pause_s:
                time.sleep(pause_s)

    for t in range(threads):
        threading.Thread(target=work, args=(t,), daemon=True).start()
    threading.Event().wait()


def read_acks(lines, acked):
    for line in lines:
        p = line.split()
        if len(p) >= 3 and p[0] == "ACK" and line.endswith("\n"):
            acked[p[2]] = (p[1], p[3:] if len(p) > 3 else [])


def campaign(kills=200, path=None, seed=7, survivor=False):
    rnd = random.Random(seed)
    own = path is None
    tmp = tempfile.mkdtemp() if own else None
    path = path or os.path.join(tmp, "crash.db")
    with _core.Ledger(path) as led:
        account = led.create_account("crash@example.com")["id"]
        led.grant("seed", account, 10**9 * C)
    acked = {}  # key -> (kind, extra)
    checked = set()
    problems = []
    t0 = time.monotonic()
    env = dict(os.environ, COMFY_CREDITS_IMPORT_ROOT=IMPORT_ROOT)
    other, other_lines = None, []
    if survivor:  # the other server: round -1, alive during every kill
        other = subprocess.Popen([sys.executable, __file__, "--writer", path, str(account), "-1", "0.01"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        threading.Thread(target=lambda: other_lines.extend(iter(other.stdout.readline, "")), daemon=True).start()
        while not other_lines and other.poll() is None:
            time.sleep(0.01)
    for round_no in range(kills):
        proc = subprocess.Popen([sys.executable, __file__, "--writer", path, str(account), str(round_no)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        # Let it start, then kill it at a random point of its work.
        first = proc.stdout.readline()
        lines = [first] if first else []
        deadline = time.monotonic() + rnd.uniform(0.02, 0.25)
        threading.Timer(max(0.0, deadline - time.monotonic()), lambda: proc.send_signal(signal.SIGKILL)).start()
        lines += proc.stdout.readlines()
        proc.wait()
        err = proc.stderr.read()
        if proc.returncode != -signal.SIGKILL:
            problems.append(f"round {round_no}: writer ended with {proc.returncode}: {err[-300:]}")
        read_acks(lines, acked)
        if other is not None:
            if other.poll() is not None:
                problems.append(f"round {round_no}: the other server ended with {other.returncode}: "
                                f"{other.stderr.read()[-300:]}")
                break
            read_acks(list(other_lines), acked)
        with _core.Ledger(path) as led:
            rep = led.verify()
            if not rep["ok"]:
                problems.append(f"round {round_no}: verify: {rep['problems'][:3]}")
            # entries are immutable (a trigger refuses changes): each acknowledged one is looked up
            # after the round it was acknowledged in, and all of them again at the end
            for key, (kind, extra) in [(k, v) for k, v in acked.items() if k not in checked]:
                checked.add(key)
                try:
                    e = led.entry(key)
                except _core.NotFound:
                    problems.append(f"round {round_no}: acknowledged {kind} {key} is missing")
                    continue
                if kind == "purchase" and e["amount"] != int(extra[0]):
                    problems.append(f"round {round_no}: purchase {key} credited {e['amount']}, not {extra[0]}")
        if len(problems) > 20:
            break
    other_acked = 0
    if other is not None:
        other.send_signal(signal.SIGKILL)
        other.wait()
        time.sleep(0.1)  # its reader thread reads what was written before the kill
        read_acks(list(other_lines), acked)
        other_acked = sum(1 for k in acked if "r-1-t" in k)
    with _core.Ledger(path) as led:
        for key, (kind, extra) in acked.items():  # the other server's last ones too
            try:
                led.entry(key)
            except _core.NotFound:
                problems.append(f"at the end: acknowledged {kind} {key} is missing")
        far = int(time.time() * 1000) + 8 * 24 * 3600 * 1000  # past every hold's ttl
        expired = 0
        while True:
            n = led.expire(now_ms=far)
            expired += n
            if n == 0:
                break
        rep = led.verify()
        if not rep["ok"] or rep["open_holds"]:
            problems.append(f"after expiry: verify {rep['ok']}, open holds {rep['stats']['open_holds']}")
        stats = rep
    kinds = {}
    for kind, _ in acked.values():
        kinds[kind] = kinds.get(kind, 0) + 1
    res = {"kill_points": round_no + 1, "acknowledged": len(acked), **{f"acked_{k}": v for k, v in sorted(kinds.items())},
           "acked_by_the_other_server": other_acked,
           "entries": stats["entries"], "holds_expired_at_end": expired, "open_holds_after": stats["open_holds"],
           "problems": len(problems),
           "seconds": round(time.monotonic() - t0, 1)}
    return res, problems


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--writer":
        writer(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), pause_s=float(sys.argv[5]) if len(sys.argv) > 5 else 0.0)
    kills = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    res, problems = campaign(kills, sys.argv[2] if len(sys.argv) > 2 else None,
                             survivor=len(sys.argv) > 3 and sys.argv[3] == "--survivor")
    for p in problems[:20]:
        print("PROBLEM", p)
    print("crash campaign: " + ", ".join(f"{k}={v}" for k, v in res.items()))
    sys.exit(1 if problems else 0)
