"""Receipts (issue #13): a Stripe purchase's history row links Stripe's
receipt_url, read from the PaymentIntent retrieved with its latest charge
expanded (parameters checked by the loopback fake as Stripe documents them);
a sandbox purchase gets a local receipt page marked TEST MODE."""
import asyncio

import aiohttp
import pytest

from comfy_credits_ext import _core
from test_stripe_client import KEY, Running, fake, shop, version, webhook  # noqa: F401 (fixtures)

C = _core.MICRO


def raw_get(fake, path, key=KEY):
    async def go():
        async with aiohttp.ClientSession() as s:
            async with s.get(fake.base + path, headers={"Authorization": f"Bearer {key}",
                                                        "Stripe-Version": "2026-10-28.endive"}) as r:
                return r.status, await r.json(content_type=None)
    return asyncio.run_coroutine_threadsafe(go(), fake.loop).result(30)


def paid(fake, shop, method="wechat_pay"):
    st, co, _ = shop.call("POST", "/credits/checkout", {"amount_minor": 1000, "currency": "usd"})
    fake.post(f"/_fake/sessions/{co['session_id']}/pay", {"outcome": "paid", "method": method})
    assert [r["body"]["state"] for r in webhook(fake, shop)] == ["credited"]
    return co["session_id"]


def test_the_fake_checks_payment_intent_retrieve_as_stripe_documents_it(fake):
    f = fake.fake
    f.intents["pi_x1"] = {"id": "pi_x1", "object": "payment_intent", "status": "succeeded", "latest_charge": "ch_1",
                          "charges": {"ch_1": {"id": "ch_1", "object": "charge", "receipt_url": "https://r/x",
                                               "payment_method_details": {"type": "card"}}}}
    st, pi = raw_get(fake, "/v1/payment_intents/pi_x1?expand%5B%5D=latest_charge")
    assert st == 200 and pi["latest_charge"]["receipt_url"] == "https://r/x"
    st, pi = raw_get(fake, "/v1/payment_intents/pi_x1")
    assert st == 200 and pi["latest_charge"] == "ch_1"  # not expanded: the id only
    for q, param in (("expand=latest_charge", "expand"),                  # not an array
                     ("expand%5B%5D=payment_intent", "expand"),           # not expandable on a PaymentIntent
                     ("expand%5B%5D=latest_charge.receipt_url", "expand"),
                     ("expandd%5B%5D=latest_charge", "expandd")):
        st, body = raw_get(fake, f"/v1/payment_intents/pi_x1?{q}")
        assert st == 400 and body["error"]["param"] == param, (q, body)
    st, body = raw_get(fake, "/v1/payment_intents/pi_nope?expand%5B%5D=latest_charge")
    assert st == 404 and body["error"]["code"] == "resource_missing"


def test_the_client_sends_expand_latest_charge_and_reads_the_receipt(fake, shop, version):
    sid = paid(fake, shop, "alipay")
    st, r, _ = shop.call("GET", f"/credits/receipt/{sid}?format=json")
    assert st == 200 and r["method_used"] == "alipay" and r["receipt_url"].startswith(fake.base + "/receipts/payment/")
    sent = [x for x in fake.get("/_fake/requests") if x["path"].startswith("/v1/payment_intents/")]
    assert sent and sent[-1]["params"] == {"expand": ["latest_charge"]} and sent[-1]["stripe_version"] == version
    # the history row links it; following the link lands on Stripe's receipt page
    st, h, _ = shop.call("GET", "/credits/history?kinds=purchase")
    link = h["entries"][0]["receipt_url"]
    assert link == f"/credits/receipt/{sid}"
    # and so does its row in the history the panel shows (one row per run or purchase), without the raw session id
    st, rows, _ = shop.call("GET", "/credits/history/rows?filter=purchases")
    assert st == 200 and rows["rows"][0]["receipt_url"] == link and "external_ref" not in rows["rows"][0]
    st, rows, _ = shop.call("GET", "/credits/history/rows?filter=grants,runs")
    assert all("receipt_url" not in r and "external_ref" not in r for r in rows["rows"])
    st, page, url = shop.call("GET", link)
    assert st == 200 and url == r["receipt_url"] and "Receipt" in page


def test_receipts_are_the_buyers_own(fake, shop, version):
    sid = paid(fake, shop)
    other = shop.rt.ledger.create_account("other@example.com")["id"]
    key = shop.rt.ledger.create_credential(other, "api_key")["token"]
    st, body, _ = shop.call("GET", f"/credits/receipt/{sid}?format=json", headers={"Authorization": f"Bearer {key}"})
    assert st == 404
    st, body, _ = shop.call("GET", f"/credits/receipt/{sid}?format=json", auth=False)
    assert st == 401
    for bad in ("nope", "cs_a%20b", "cs_" + "a" * 300):
        st, body, _ = shop.call("GET", f"/credits/receipt/{bad}")
        assert st in (400, 404), (bad, st, body)
    st, body, _ = shop.call("GET", f"/credits/receipt/{sid}?format=pdf")
    assert st == 400
    st, body, _ = shop.call("GET", "/credits/receipt/cs_unknown_123?format=json")
    assert st == 404


def test_c_client_refuses_a_bad_intent_id():
    st = _core.Stripe("http://127.0.0.1:9", "sk_test_x")
    with pytest.raises(_core.InvalidArgument) as e:
        st.payment_receipt("cs_not_an_intent")
    assert e.value.field == "payment_intent"


def test_sandbox_purchase_gets_a_local_test_mode_receipt(tmp_path):
    from appserver import Server
    s = Server(tmp_path, {"sandbox_checkout": True})
    try:
        st, co, _ = s.call("POST", "/credits/checkout", {"amount_minor": 1000, "currency": "usd"})
        st, _, _ = s.call("POST", co["checkout_url"][len(s.base):], redirects=False,
                          form={"action": "pay", "method": "wechat_pay", "email_confirmed": "yes"})
        assert st == 303
        st, h, _ = s.call("GET", "/credits/history?kinds=test")
        link = h["entries"][0]["receipt_url"]
        st, page, _ = s.call("GET", link)
        assert st == 200 and "TEST MODE" in page and "10.00 USD" in page and "WeChat Pay" in page
        assert "2,110" in page or "2110" in page
    finally:
        s.close()
