"""The C Stripe client against the loopback Stripe fake, and the whole paid
flow with Stripe configured: checkout → payment → signed webhook → credits."""
import asyncio
import json
import threading
import time

import aiohttp
import pytest

from appserver import free_port
from aiohttp import web

from comfy_credits_ext import _core
from fake_stripe import FakeStripe

C = _core.MICRO
KEY = "sk_test_fake"



class Running:
    def __init__(self, app):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.loop = asyncio.new_event_loop()
        self.runner = web.AppRunner(app)
        self.loop.run_until_complete(self.runner.setup())
        self.loop.run_until_complete(web.TCPSite(self.runner, "127.0.0.1", self.port).start())
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def post(self, path, body):
        async def go():
            async with aiohttp.ClientSession() as s:
                async with s.post(self.base + path, json=body) as r:
                    return await r.json()
        return asyncio.run_coroutine_threadsafe(go(), self.loop).result(60)

    def get(self, path):
        async def go():
            async with aiohttp.ClientSession() as s:
                async with s.get(self.base + path) as r:
                    return await r.json()
        return asyncio.run_coroutine_threadsafe(go(), self.loop).result(60)

    def close(self):
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def fake():
    f = FakeStripe(KEY, "whsec_fake")
    r = Running(f.app())
    r.fake = f
    yield r
    r.close()


def create(client, **over):
    p = dict(currency="usd", amount_minor=1000, credits_micro=2110 * C, account_id=7, customer_email="a@b.co",
             success_url="http://127.0.0.1:8188/?credits_checkout={CHECKOUT_SESSION_ID}",
             cancel_url="http://127.0.0.1:8188/?credits_checkout=cancelled", idempotency_key="idem-1",
             methods=["card", "wechat_pay", "alipay"])
    p.update(over)
    return client.create_checkout(**p)


def test_create_sends_what_stripe_documents(fake):
    client = _core.Stripe(fake.base, KEY)
    s = create(client)
    assert s["id"].startswith("cs_test_") and s["status"] == "open" and s["payment_status"] == "unpaid"
    assert s["amount_total"] == 1000 and s["currency"] == "usd" and s["account_id"] == 7
    assert s["credits_micro"] == 2110 * C and s["url"].endswith("/pay/" + s["id"])
    sent = fake.get("/_fake/requests")[-1]
    p = sent["params"]
    assert sent["idempotency_key"] == "idem-1"
    assert p["mode"] == "payment" and p["line_items"][0]["price_data"]["unit_amount"] == "1000"
    assert p["payment_method_types"] == ["card", "wechat_pay", "alipay"]
    assert p["payment_method_options"] == {"wechat_pay": {"client": "web"}}
    assert p["metadata"]["credits_micro"] == str(2110 * C) and p["client_reference_id"] == "7"
    assert "{CHECKOUT_SESSION_ID}" in p["success_url"]
    # The same key again: Stripe replays the first answer.
    assert create(client)["id"] == s["id"]
    # Same key, other parameters: Stripe refuses; the client says so.
    with pytest.raises(_core.InvalidArgument) as ei:
        create(client, amount_minor=2000)
    assert "idempotency_error" in str(ei.value)


def test_zero_decimal_currency_and_card_only_outside_usd(fake):
    client = _core.Stripe(fake.base, KEY)
    s = create(client, currency="JPY", amount_minor=1000, idempotency_key="jpy", methods=["card"])
    assert s["currency"] == "jpy" and s["amount_total"] == 1000
    with pytest.raises(_core.InvalidArgument) as ei:   # our rule, before any request
        create(client, currency="eur", idempotency_key="eur", methods=["wechat_pay"])
    assert "only offered when paying in USD" in str(ei.value)
    n = len(fake.get("/_fake/requests"))
    with pytest.raises(_core.InvalidArgument):
        create(client, currency="eur", idempotency_key="eur2", methods=["alipay"])
    assert len(fake.get("/_fake/requests")) == n  # refused locally, nothing sent


def test_retrieve_expire_and_errors(fake):
    client = _core.Stripe(fake.base, KEY)
    s = create(client, idempotency_key="r1")
    assert client.retrieve_checkout(s["id"])["status"] == "open"
    assert client.expire_checkout(s["id"])["status"] == "expired"
    with pytest.raises(_core.InvalidArgument) as ei:
        client.expire_checkout(s["id"])
    assert "checkout_session_not_open" in str(ei.value)
    with pytest.raises(_core.InvalidArgument) as ei:
        client.retrieve_checkout("cs_test_doesnotexist")
    assert "resource_missing" in str(ei.value)
    fake.post("/_fake/fail_next", {"status": 500, "type": "api_error", "message": "boom"})
    with pytest.raises(_core.StorageError) as ei:
        client.retrieve_checkout(s["id"])
    assert "500" in str(ei.value) and KEY not in str(ei.value)
    with pytest.raises(_core.StorageError):
        _core.Stripe(fake.base, "sk_test_wrong").retrieve_checkout(s["id"])  # 401
    with pytest.raises(_core.StorageError) as ei:
        _core.Stripe("http://127.0.0.1:9", KEY, timeout_ms=500).retrieve_checkout(s["id"])
    assert "cannot reach Stripe" in str(ei.value)


def test_fake_refuses_what_stripe_refuses(fake):
    """The fake is strict: a client that sent these would fail against Stripe too."""
    async def raw(body):
        async with aiohttp.ClientSession() as s:
            async with s.post(fake.base + "/v1/checkout/sessions", data=body,
                              headers={"Authorization": f"Bearer {KEY}"}) as r:
                return r.status, await r.json()
    cases = [
        ("mode=payment&success_url=http://x.test/&line_items[0][quantity]=1&line_items[0][price_data][currency]=usd"
         "&line_items[0][price_data][unit_amount]=100&line_items[0][price_data][product_data][name]=c&bogus=1",
         "parameter_unknown"),
        ("success_url=http://x.test/", "parameter_missing"),
        ("mode=payment&success_url=http://x.test/&line_items[0][quantity]=1&line_items[0][price_data][currency]=usd"
         "&line_items[0][price_data][unit_amount]=1.5&line_items[0][price_data][product_data][name]=c",
         "parameter_invalid_integer"),
        ("mode=payment&success_url=http://x.test/&line_items[0][quantity]=1&line_items[0][price_data][currency]=usd"
         "&line_items[0][price_data][unit_amount]=100&line_items[0][price_data][product_data][name]=c"
         "&payment_method_types[0]=wechat_pay", "parameter_missing"),
        ("mode=payment&success_url=http://x.test/&line_items[0][quantity]=1&line_items[0][price_data][currency]=nzd"
         "&line_items[0][price_data][unit_amount]=100&line_items[0][price_data][product_data][name]=c"
         "&payment_method_types[0]=wechat_pay&payment_method_options[wechat_pay][client]=web",
         "payment_method_unactivated"),
    ]
    for body, code in cases:
        st, js = asyncio.run_coroutine_threadsafe(raw(body), fake.loop).result(30)
        assert st == 400 and js["error"]["code"] == code, (body, js)


@pytest.fixture
def shop(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("STRIPE_SECRET_KEY", KEY)
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", "whsec_fake")
    monkeypatch.setenv("COMFY_CREDITS_STRIPE_API_BASE", fake.base)
    from appserver import Server
    s = Server(tmp_path)
    yield s
    s.close()


def test_paid_through_stripe_webhook_and_return_credit_once(fake, shop):
    assert shop.pay.stripe is not None and shop.pay.sandbox is None
    st, co, _ = shop.call("POST", "/credits/checkout", {"amount_minor": 1000, "currency": "usd"})
    assert st == 200 and co["test_mode"] is False and co["checkout_url"].startswith(fake.base + "/pay/")
    sent = fake.get("/_fake/requests")[-1]["params"]
    assert sent["customer_email"] == "buyer@example.com" and sent["client_reference_id"] == str(shop.account)
    st, s, _ = shop.call("GET", f"/credits/checkout/{co['session_id']}")
    assert s["state"] == "pending"
    fake.post(f"/_fake/sessions/{co['session_id']}/pay", {"outcome": "paid"})
    # Stripe delivers the completed event three times (retries): credited once.
    results = fake.post("/_fake/deliver", {"url": f"{shop.base}/credits/stripe/webhook", "repeat": 3})
    assert [r["body"]["state"] for r in results] == ["credited", "already_credited", "already_credited"]
    st, s, _ = shop.call("GET", f"/credits/checkout/{co['session_id']}")   # the buyer returns
    assert s["state"] == "already_credited" and s["balance_micro"] == 2110 * C
    assert shop.rt.ledger.account(shop.account)["paid_total"] == 2110 * C


def test_return_before_webhook_and_bad_deliveries(fake, shop):
    st, co, _ = shop.call("POST", "/credits/checkout", {"amount_minor": 500, "currency": "usd"})
    fake.post(f"/_fake/sessions/{co['session_id']}/pay", {"outcome": "paid"})
    st, s, _ = shop.call("GET", f"/credits/checkout/{co['session_id']}")  # return first: retrieve → credit
    assert s["state"] == "credited" and s["balance_micro"] == 1055 * C
    stale = fake.post("/_fake/deliver", {"url": f"{shop.base}/credits/stripe/webhook", "stale": True, "keep": True})
    wrong = fake.post("/_fake/deliver", {"url": f"{shop.base}/credits/stripe/webhook", "secret": "whsec_x",
                                         "keep": True})
    assert stale[0]["status"] == 400 and wrong[0]["status"] == 400
    late = fake.post("/_fake/deliver", {"url": f"{shop.base}/credits/stripe/webhook"})
    assert late[0]["body"]["state"] == "already_credited"
    assert shop.rt.ledger.account(shop.account)["balance"] == 1055 * C


def test_delayed_payment_then_failure_credits_nothing(fake, shop):
    st, co, _ = shop.call("POST", "/credits/checkout", {"amount_minor": 1000, "currency": "usd", "method": "alipay"})
    fake.post(f"/_fake/sessions/{co['session_id']}/pay", {"outcome": "async_pending"})
    fake.post(f"/_fake/sessions/{co['session_id']}/pay", {"outcome": "async_failed"})
    res = fake.post("/_fake/deliver", {"url": f"{shop.base}/credits/stripe/webhook"})
    assert [r["body"]["state"] for r in res] == ["pending", "ignored"]
    assert shop.rt.ledger.account(shop.account)["balance"] == 0
    time.sleep(0.1)
