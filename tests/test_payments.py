"""Buying credits through the routes: sandbox checkout end to end, limits,
currency rules, signed webhooks and exactly-once fulfilment under races."""
import asyncio
import hashlib
import hmac
import json
import threading
import time

import aiohttp
import pytest

from comfy_credits_ext import _core

C = _core.MICRO


from appserver import Server  # noqa: E402


@pytest.fixture
def srv(tmp_path):
    s = Server(tmp_path, {"sandbox_checkout": True})  # explicitly on: no upstream key, so allowed
    yield s
    s.close()


def balance(srv):
    return srv.rt.ledger.account(srv.account)["balance"]


def test_sandbox_purchase_end_to_end(srv):
    st, co, _ = srv.call("POST", "/credits/checkout", {"amount_minor": 1000, "currency": "usd"})
    assert st == 200 and co["test_mode"] and co["credits_micro"] == 2110 * C
    st, s, _ = srv.call("GET", f"/credits/checkout/{co['session_id']}")
    assert s["state"] == "pending" and balance(srv) == 0
    st, page, _ = srv.call("GET", co["checkout_url"][len(srv.base):])
    assert "TEST MODE" in page and "10.00 USD" in page and "buyer@example.com" in page and "WeChat Pay" in page
    # The account's email is shown prefilled and locked (as Stripe Checkout shows customer_email), no tickbox.
    assert 'value="buyer@example.com" readonly' in page and 'type="checkbox"' not in page
    st, page, url = srv.call("POST", co["checkout_url"][len(srv.base):], form={"action": "fail", "method": "card"})
    assert "declined" in page and balance(srv) == 0
    # A posted email field changes nothing: the session was made for the account's email.
    st, _, url = srv.call("POST", co["checkout_url"][len(srv.base):], redirects=False,
                          form={"action": "pay", "method": "alipay", "email": "someone@example.com"})
    assert st == 303
    assert balance(srv) == 2110 * C  # the signed webhook credited before the redirect
    st, s, _ = srv.call("GET", f"/credits/checkout/{co['session_id']}")
    assert s["state"] == "already_credited" and s["balance_micro"] == 2110 * C
    e = srv.rt.ledger.history(srv.account, kinds=["test"])["entries"][0]
    assert (e["currency"], e["amount_minor"], e["method"], e["external_ref"]) == ("usd", 1000, "alipay",
                                                                                    co["session_id"])
    assert e["note"] == "offered: card,wechat_pay,alipay"   # the offer, kept apart from the method used
    assert srv.rt.ledger.verify()["ok"]


def test_undeliverable_sandbox_webhook_still_redirects_and_the_return_credits(srv):
    """When the sandbox cannot post its webhook (here: a closed port), the buyer is still sent back (no 500)
    and their return credits the session, as with Stripe when a webhook is late."""
    from appserver import free_port
    srv.pay.sandbox.self_base = f"http://127.0.0.1:{free_port()}"
    st, co, _ = srv.call("POST", "/credits/checkout", {"amount_minor": 1000, "currency": "usd"})
    st, _, _ = srv.call("POST", co["checkout_url"][len(srv.base):], redirects=False,
                        form={"action": "pay", "method": "card"})
    assert st == 303 and balance(srv) == 0
    st, s, _ = srv.call("GET", f"/credits/checkout/{co['session_id']}")
    assert s["state"] == "credited" and balance(srv) == 2110 * C, s


def test_cancel_adds_nothing(srv):
    st, co, _ = srv.call("POST", "/credits/checkout", {"amount_minor": 500, "currency": "usd"})
    st, _, url = srv.call("POST", co["checkout_url"][len(srv.base):], redirects=False, form={"action": "cancel"})
    assert st == 303
    assert balance(srv) == 0
    assert srv.call("GET", f"/credits/checkout/{co['session_id']}")[1]["state"] == "pending"


@pytest.mark.parametrize("body,status,kind", [
    ({"amount_minor": 99, "currency": "usd"}, 400, "amount_out_of_range"),          # below $1
    ({"amount_minor": 100_001, "currency": "usd"}, 400, "amount_out_of_range"),     # above $1,000
    ({"amount_minor": 0, "currency": "usd"}, 400, "invalid_argument"),
    ({"amount_minor": 10.5, "currency": "usd"}, 400, "invalid_argument"),
    ({"amount_minor": "1000", "currency": "usd"}, 400, "invalid_argument"),
    ({"amount_minor": 1000, "currency": "eur"}, 400, "invalid_argument"),            # no EUR rate configured
    ({"amount_minor": 1000, "currency": "usd", "method": "paypal"}, 400, "invalid_argument"),
])
def test_checkout_bad_input(srv, body, status, kind):
    st, err, _ = srv.call("POST", "/credits/checkout", body)
    assert st == status and err["error"]["type"] == kind


def test_wechat_and_alipay_only_in_usd(tmp_path):
    s = Server(tmp_path, {"rates": {"usd": "211", "eur": "229.5", "jpy": "1.4"}, "sandbox_checkout": True})
    try:
        st, err, _ = s.call("POST", "/credits/checkout", {"amount_minor": 1000, "currency": "eur", "method": "wechat_pay"})
        assert st == 400 and err["error"]["type"] == "method_not_available" and "USD" in err["error"]["message"]
        st, err, _ = s.call("POST", "/credits/checkout", {"amount_minor": 1000, "currency": "eur", "method": "alipay"})
        assert st == 400 and err["error"]["type"] == "method_not_available"
        st, co, _ = s.call("POST", "/credits/checkout", {"amount_minor": 1000, "currency": "usd", "method": "alipay"})
        assert st == 200
        # JPY is zero-decimal: 1,000 yen at 1.4 credits per yen = 1,400 credits.
        st, co, _ = s.call("POST", "/credits/checkout", {"amount_minor": 1000, "currency": "jpy"})
        assert st == 200 and co["credits_micro"] == 1400 * C
        page = s.call("GET", co["checkout_url"][len(s.base):])[1]
        assert "1,000 JPY" in page and "only available when paying in USD" in page and "WeChat" not in \
            page.split("<fieldset>")[1].split("</fieldset>")[0]
        opts = s.call("GET", "/credits/checkout/options")[1]
        assert {c["code"]: c["methods"] for c in opts["currencies"]}["eur"] == ["card"]
    finally:
        s.close()


def signed(srv, event, secret=None, t=None):
    body = json.dumps(event).encode()
    t = int(time.time()) if t is None else t
    mac = hmac.new((secret or srv.pay.sandbox.webhook_secret).encode(), f"{t}.".encode() + body,
                   hashlib.sha256).hexdigest()
    return body, {"Stripe-Signature": f"t={t},v1={mac}", "Content-Type": "application/json"}


def sandbox_session(srv, amount=1000, status="complete", payment_status="paid", method="card"):
    """A real sandbox session (created through the route), set to a state as Stripe would."""
    st, co, _ = srv.call("POST", "/credits/checkout", {"amount_minor": amount, "currency": "usd"})
    assert st == 200, co
    s = srv.pay.sandbox.sessions[co["session_id"]]
    s["status"], s["payment_status"] = status, payment_status
    if payment_status == "paid":
        s["payment_intent"] = {"id": "pi_t", "latest_charge": {"payment_method_details": {"type": method}}}
    return co["session_id"]


def paid_event(srv, sid, kind="checkout.session.completed"):
    """The event as Stripe sends it: only the session id is trusted (the rest is read from the sandbox)."""
    return {"id": "evt_" + sid, "object": "event", "type": kind,
            "data": {"object": {"id": sid, "object": "checkout.session"}}}


def test_webhook_signatures(srv):
    sid = sandbox_session(srv)
    body, hdr = signed(srv, paid_event(srv, sid))
    bad = dict(hdr, **{"Stripe-Signature": hdr["Stripe-Signature"][:-1] + ("0" if hdr["Stripe-Signature"][-1] != "0"
                                                                             else "1")})
    assert srv.call("POST", "/credits/stripe/webhook", raw=body, headers=bad)[0] == 400
    _, stale = signed(srv, paid_event(srv, sid), t=int(time.time()) - 301)
    assert srv.call("POST", "/credits/stripe/webhook", raw=body, headers=stale)[0] == 400
    _, wrong = signed(srv, paid_event(srv, sid), secret="whsec_other")
    assert srv.call("POST", "/credits/stripe/webhook", raw=body, headers=wrong)[0] == 400
    assert srv.call("POST", "/credits/stripe/webhook", raw=body[:-2] + b" }", headers=hdr)[0] == 400  # tampered
    assert balance(srv) == 0
    st, r, _ = srv.call("POST", "/credits/stripe/webhook", raw=body, headers=hdr)
    assert st == 200 and r["state"] == "credited" and balance(srv) == 2110 * C


def test_hundred_duplicate_deliveries_and_concurrent_returns_credit_once(srv):
    sid = sandbox_session(srv)
    body, hdr = signed(srv, paid_event(srv, sid))

    async def storm():
        async with aiohttp.ClientSession() as s:
            async def one():
                async with s.post(srv.base + "/credits/stripe/webhook", data=body, headers=hdr) as r:
                    return (await r.json())["state"]
            return await asyncio.gather(*(one() for _ in range(100)))
    states = asyncio.run_coroutine_threadsafe(storm(), srv.loop).result(120)
    assert states.count("credited") == 1 and states.count("already_credited") == 99
    # The return path at the same moment from several threads: still once.
    session_json = srv.pay.fetch_session(sid)
    results = []
    ths = [threading.Thread(target=lambda: results.append(srv.pay.fulfil(session_json))) for _ in range(20)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    assert len(results) == 20 and all(r["state"] == "already_credited" for r in results)
    assert balance(srv) == 2110 * C
    assert len(srv.rt.ledger.history(srv.account, kinds=["test"])["entries"]) == 1


def test_out_of_order_async_events(srv):
    # Delayed method: completed-but-unpaid first, then failed: nothing credited.
    sid = sandbox_session(srv, payment_status="unpaid")
    for kind in ("checkout.session.completed", "checkout.session.async_payment_failed"):
        body, hdr = signed(srv, paid_event(srv, sid, kind=kind))
        st, r, _ = srv.call("POST", "/credits/stripe/webhook", raw=body, headers=hdr)
        assert st == 200 and r["state"] in ("pending", "ignored")
    assert balance(srv) == 0
    # Succeeded arrives before completed (reordered): credits once.
    sid2 = sandbox_session(srv, method="alipay")
    for kind in ("checkout.session.async_payment_succeeded", "checkout.session.completed"):
        body, hdr = signed(srv, paid_event(srv, sid2, kind=kind))
        srv.call("POST", "/credits/stripe/webhook", raw=body, headers=hdr)
    assert balance(srv) == 2110 * C


def test_forged_or_mispriced_sessions_are_never_credited(srv):
    # A signed event naming a session the sandbox (Stripe) never created: refused.
    body, hdr = signed(srv, paid_event(srv, "cs_test_big"))
    st, r, _ = srv.call("POST", "/credits/stripe/webhook", raw=body, headers=hdr)
    assert st == 404 and balance(srv) == 0
    # A paid session whose promised credits do not match what was paid: kept for the operator.
    sid = sandbox_session(srv)
    srv.pay.sandbox.sessions[sid]["metadata"]["credits_micro"] = str(422_000 * C)
    body, hdr = signed(srv, paid_event(srv, sid))
    st, r, _ = srv.call("POST", "/credits/stripe/webhook", raw=body, headers=hdr)
    assert st == 200 and r["state"] == "needs_attention" and balance(srv) == 0
    assert [a["session_id"] for a in srv.pay.attention.list()] == [sid]
    st, s, _ = srv.call("GET", f"/credits/checkout/{sid}")
    assert s["state"] == "needs_attention" and "being reviewed" in s["message"]


def test_sandbox_retried_create_is_the_same_session(srv):
    body = {"amount_minor": 1000, "currency": "usd", "request_id": "sandbox-attempt-1"}
    first = srv.call("POST", "/credits/checkout", body)[1]
    again = srv.call("POST", "/credits/checkout", body)[1]
    assert again["session_id"] == first["session_id"] and len(srv.pay.sandbox.sessions) == 1
    st, err, _ = srv.call("POST", "/credits/checkout", {**body, "method": "card"})
    assert st == 409 and err["error"]["type"] == "request_reused"


def test_checkout_requires_sign_in_and_own_sessions(srv):
    st, err, _ = srv.call("POST", "/credits/checkout", {"amount_minor": 1000}, headers={"Authorization": ""})
    assert st == 401
    st, co, _ = srv.call("POST", "/credits/checkout", {"amount_minor": 1000})
    other = srv.rt.ledger.create_account("other@example.com")["id"]
    okey = srv.rt.ledger.create_credential(other, "api_key")["token"]
    st, err, _ = srv.call("GET", f"/credits/checkout/{co['session_id']}", headers={"Authorization": f"Bearer {okey}"})
    assert st == 404
    st, err, _ = srv.call("POST", "/credits/checkout", {"amount_minor": 1000},
                          headers={"Origin": "http://evil.example"})
    assert st == 403


def test_sandbox_can_be_turned_off(tmp_path):
    s = Server(tmp_path, {"sandbox_checkout": False})
    try:
        st, err, _ = s.call("POST", "/credits/checkout", {"amount_minor": 1000})
        assert st == 503 and err["error"]["type"] == "purchases_disabled"
        assert s.call("GET", "/credits/checkout/options")[1]["enabled"] is False
    finally:
        s.close()
