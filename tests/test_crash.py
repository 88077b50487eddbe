"""kill -9 a writer mid-workload; reopen: verify passes and every acknowledged
operation is durable."""
import os
import signal
import subprocess
import sys
import time

from comfy_credits_ext import _core

HERE = os.path.dirname(os.path.abspath(__file__))


def test_kill_9_mid_workload_loses_no_acknowledged_operation(tmp_path):
    db = str(tmp_path / "crash.db")
    with _core.Ledger(db) as led:
        acct = led.create_account("crash@example.com")["id"]
        led.grant("g", acct, 10**12)
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "crash_writer.py"), db, str(acct), "4"],
                            stdout=subprocess.PIPE, text=True)
    acked = []
    deadline = time.monotonic() + 30
    try:
        for line in proc.stdout:
            acked.append(line.split()[1])
            if len(acked) >= 3000 or time.monotonic() > deadline:
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    acked = [k for k in acked if k != "started"]
    assert len(acked) > 100, "the writer made too little progress to test anything"
    with _core.Ledger(db) as led:
        rep = led.verify()
        assert rep["ok"], rep["problems"]
        for key in acked:
            e = led.entry(key)  # raises NotFound if an acknowledged op was lost
            assert e["kind"] in ("hold", "settle")
        a = led.account(acct)
        settles = sum(1 for k in acked if k.startswith("s-"))
        assert a["spent_total"] >= settles * 700
        # Holds left open by the kill are released by expiry, never charged.
        led.expire(now_ms=int(time.time() * 1000) + 120_000)
        a = led.account(acct)
        assert a["held"] == 0
        assert a["balance"] == 10**12 - a["spent_total"]
        assert led.verify()["ok"]
