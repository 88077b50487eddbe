"""Webhook storm: N deliveries to the real webhook route (sandbox checkout,
signed like Stripe) with duplicates, reordering, concurrency, forged and
stale signatures, unpaid sessions and sessions of other accounts.
Checks: every paid session credited exactly once, nothing else credited,
no forged or stale delivery accepted, the ledger verifies.

  python3 scripts/webhook_storm.py [DELIVERIES] [SESSIONS]   (default 10000 500)

Prints one figures line; exits non-zero on any double credit or forgery.
Used by tests/test_campaigns.py."""
import asyncio
import hashlib
import hmac
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, os.environ.get("COMFY_CREDITS_IMPORT_ROOT", str(ROOT)))
sys.path.insert(0, str(ROOT / "tests"))

import aiohttp  # noqa: E402

from appserver import Server  # noqa: E402
from comfy_credits_ext import _core  # noqa: E402


def sign(secret: str, body: bytes, t: int) -> str:
    return f"t={t},v1=" + hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()


def storm(deliveries: int = 10_000, sessions: int = 500, seed: int = 1, concurrency: int = 32) -> dict:
    rnd = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        srv = Server(Path(tmp), {"sandbox_checkout": True})
        try:
            led = srv.rt.ledger
            sb = srv.pay.sandbox
            other = led.create_account("other@example.com")["id"]
            made = []
            for i in range(sessions):
                st, co, _ = srv.call("POST", "/credits/checkout", {"amount_minor": 100 + (i % 7) * 100,
                                                                   "currency": "usd", "request_id": f"storm-request-{i:06d}"})
                assert st == 200, co
                made.append(co["session_id"])
            paid = set(made[: int(sessions * 0.8)])  # the rest stay unpaid
            for sid in paid:
                s = sb.sessions[sid]
                s["status"], s["payment_status"] = "complete", "paid"
            now = int(time.time())
            plan = []  # (kind, body, header)
            while len(plan) < deliveries:
                sid = rnd.choice(made)
                ev = {"id": f"evt_{len(plan)}", "object": "event", "type": "checkout.session.completed",
                      "created": now, "livemode": False, "data": {"object": {"id": sid, "object": "checkout.session"}}}
                body = json.dumps(ev).encode()
                r = rnd.random()
                if r < 0.70:
                    plan.append(("valid", body, sign(sb.webhook_secret, body, now)))
                elif r < 0.80:
                    plan.append(("forged", body, sign("whsec_attacker", body, now)))
                elif r < 0.85:
                    plan.append(("stale", body, sign(sb.webhook_secret, body, now - 3600)))
                elif r < 0.90:  # a valid signature, then the body altered (another session)
                    hdr = sign(sb.webhook_secret, body, now)
                    plan.append(("tampered", body.replace(sid.encode(), rnd.choice(made).encode()) + b" ", hdr))
                elif r < 0.95:
                    plan.append(("no_signature", body, ""))
                else:
                    plan.append(("async_succeeded", body.replace(b"checkout.session.completed",
                                                                  b"checkout.session.async_payment_succeeded"),
                                 None))
            plan = [(k, b, h if h is not None else sign(sb.webhook_secret, b, now)) for k, b, h in plan]
            rnd.shuffle(plan)
            t0 = time.monotonic()

            async def send_all():
                sem = asyncio.Semaphore(concurrency)
                async with aiohttp.ClientSession() as http:
                    async def one(kind, body, hdr):
                        async with sem:
                            async with http.post(srv.base + "/credits/stripe/webhook", data=body,
                                                 headers={"Stripe-Signature": hdr,
                                                          "Content-Type": "application/json"}) as r:
                                return kind, r.status, (await r.json(content_type=None))
                    return await asyncio.gather(*(one(*p) for p in plan))
            results = asyncio.run_coroutine_threadsafe(send_all(), srv.loop).result(600)
            took = time.monotonic() - t0
            accepted_bad = [r for r in results if r[0] in ("forged", "stale", "tampered", "no_signature")
                            and r[1] == 200]
            credited_answers = sum(1 for r in results if r[1] == 200 and r[2].get("state") == "credited")
            entries = led.history(srv.account, kinds=["test", "purchase"], limit=1000)["entries"]
            keys = [e["external_ref"] for e in entries]
            double = len(keys) - len(set(keys))
            unpaid_credited = sum(1 for k in keys if k not in paid)
            missing = sum(1 for sid in paid if sid not in set(keys))
            want = sum(int(sb.sessions[s]["metadata"]["credits_micro"]) for s in paid)
            bal = led.account(srv.account)
            verify = led.verify()
            out = {"deliveries": len(results), "sessions": sessions, "paid_sessions": len(paid),
                   "valid": sum(1 for r in results if r[0] in ("valid", "async_succeeded")),
                   "forged_or_stale_or_tampered": len(results) - sum(1 for r in results if r[0] in ("valid", "async_succeeded")),
                   "accepted_forgeries": len(accepted_bad), "double_credits": double,
                   "credited_answers": credited_answers, "unpaid_credited": unpaid_credited, "missing": missing,
                   "balance_ok": bal["balance"] == want and led.account(other)["balance"] == 0,
                   "verify_ok": verify["ok"], "seconds": round(took, 2),
                   "deliveries_per_s": round(len(results) / took)}
            out["ok"] = (not accepted_bad and double == 0 and unpaid_credited == 0 and out["balance_ok"]
                         and out["verify_ok"] and credited_answers == len(paid) - missing)
            return out
        finally:
            srv.close()


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    s = int(sys.argv[2]) if len(sys.argv) > 2 else 500
    res = storm(n, s)
    print("webhook storm: " + ", ".join(f"{k}={v}" for k, v in res.items()))
    sys.exit(0 if res["ok"] else 1)
