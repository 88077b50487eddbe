"""One OS process acting as one ComfyUI server on a shared PostgreSQL ledger
(tests/test_farm.py). Modes:

  race URI ACCOUNT N START_AT     N holds of 1 credit from START_AT (epoch s); prints "OK <succeeded>"
  fulfil URI ACCOUNT N START_AT   N Stripe sessions fulfilled, session i at START_AT + i*SLOT
                                  (the other process does the same: webhook vs return page);
                                  prints "STATE <sid> <state>" per session
"""
import json
import os
import sys
import time

sys.path.insert(0, os.environ.get("COMFY_CREDITS_IMPORT_ROOT",
                                  os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from comfy_credits_ext import _core  # noqa: E402

SLOT_S = 0.03


def session_json(sid, account, cents):
    return json.dumps({"id": sid, "object": "checkout.session", "status": "complete", "payment_status": "paid",
                       "currency": "usd", "amount_total": cents, "client_reference_id": str(account),
                       "metadata": {"credits_micro": str(cents * 2_110_000), "amount_minor": str(cents),
                                    "currency": "usd", "rate_micro": "211000000", "method": "card"},
                       "created": 1700000000}).encode()


def main():
    mode, uri, account, n, start_at = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
    led = _core.Ledger(uri)
    time.sleep(max(0.0, start_at - time.time()))
    if mode == "race":
        ok = 0
        for i in range(n):
            try:
                led.hold(f"race-{os.getpid()}-{i}", account, _core.MICRO, 60_000, node_class="Race")
                ok += 1
            except _core.InsufficientCredits:
                pass
        print(f"OK {ok}", flush=True)
    elif mode == "fulfil":
        for i in range(n):
            time.sleep(max(0.0, start_at + i * SLOT_S - time.time()))
            sid = f"cs_live_farm_{i:04d}"
            r = led.fulfil_checkout(session_json(sid, account, 100 * (1 + i % 10)))
            print(f"STATE {sid} {r['state']}", flush=True)
    led.close()


if __name__ == "__main__":
    main()
