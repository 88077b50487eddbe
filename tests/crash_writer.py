"""Writer process for test_crash.py: hold+settle pairs from several threads,
printing "ACK <key>" only after the ledger acknowledged the operation."""
import os
import sys
import threading

sys.path.insert(0, os.environ.get("COMFY_CREDITS_IMPORT_ROOT",
                                  os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from comfy_credits_ext import _core  # noqa: E402

path, account, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
led = _core.Ledger(path)
out_lock = threading.Lock()


def ack(key):
    with out_lock:
        sys.stdout.write(f"ACK {key}\n")
        sys.stdout.flush()


def work(tid):
    i = 0
    while True:
        h = led.hold(f"h-{tid}-{i}", account, 1000, 60_000, node_class="Crash")
        ack(f"h-{tid}-{i}")
        led.settle(f"s-{tid}-{i}", h["hold_id"], 700, tokens_in=1)
        ack(f"s-{tid}-{i}")
        i += 1


for t in range(threads):
    threading.Thread(target=work, args=(t,), daemon=True).start()
ack("started")
threading.Event().wait()
