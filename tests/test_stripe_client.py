"""The C Stripe client against the loopback Stripe fake, and the whole paid
flow with Stripe configured: checkout → payment → signed webhook → credits.

Contract tests: the fake models an account created in 2026 (its default API
version is the newest the official SDK knows) and checks every request against
the parameter schema of the request's Stripe-Version, generated from Stripe's
own Python SDK (tests/stripe_schema/). Every test runs with the client pinned
to each version we have a schema for: 2024-06-20 and the newest (endive)."""
import asyncio
import json
import threading
import time

import aiohttp
import pytest

from appserver import free_port
from aiohttp import web

from comfy_credits_ext import _core
from comfy_credits_ext.cli import main as cli_main
from fake_stripe import FakeStripe, NEWEST, VERSIONS

C = _core.MICRO
KEY = "sk_live_fake"  # a live-mode key sells paid credits (sk_test_ keys sell TEST credits: test_test_credits.py)


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
    f = FakeStripe(KEY, "whsec_fake")          # an account created in 2026: default = newest version
    r = Running(f.app())
    r.fake = f
    yield r
    r.close()


@pytest.fixture(params=VERSIONS)
def version(request):
    return request.param


def test_schemas_cover_the_pinned_default_and_2024():
    assert VERSIONS[0] == "2024-06-20" and NEWEST >= "2026-09-30"
    assert _core.stripe_api_version_default() in VERSIONS   # the default pin is tested against its schema
    assert _core.stripe_api_version_default() == NEWEST


def create(client, **over):
    p = dict(currency="usd", amount_minor=1000, credits_micro=2110 * C, account_id=7, customer_email="a@b.co",
             success_url="http://127.0.0.1:8188/?credits_checkout={CHECKOUT_SESSION_ID}",
             cancel_url="http://127.0.0.1:8188/?credits_checkout=cancelled", idempotency_key="idem-1",
             methods=["card", "wechat_pay", "alipay"], rate_micro=211 * C)
    p.update(over)
    return client.create_checkout(**p)


def test_create_sends_what_stripe_documents(fake, version):
    client = _core.Stripe(fake.base, KEY, api_version=version)
    assert client.api_version() == version
    s = create(client)
    assert s["id"].startswith("cs_test_") and s["status"] == "open" and s["payment_status"] == "unpaid"
    assert s["amount_total"] == 1000 and s["currency"] == "usd" and s["account_id"] == 7
    assert s["credits_micro"] == 2110 * C and s["url"].endswith("/pay/" + s["id"])
    sent = fake.get("/_fake/requests")[-1]
    p = sent["params"]
    assert sent["idempotency_key"] == "idem-1" and sent["stripe_version"] == version
    assert p["mode"] == "payment" and p["line_items"][0]["price_data"]["unit_amount"] == "1000"
    listed = "allowed_payment_method_types" if version >= "2026-09-30" else "payment_method_types"
    other = "payment_method_types" if listed.startswith("allowed") else "allowed_payment_method_types"
    assert p[listed] == ["card", "wechat_pay", "alipay"] and other not in p
    assert p["payment_method_options"] == {"wechat_pay": {"client": "web"}}
    assert p["metadata"] == {"account_id": "7", "credits_micro": str(2110 * C), "amount_minor": "1000",
                             "currency": "usd", "rate_micro": str(211 * C), "method": "card,wechat_pay,alipay"}
    assert p["client_reference_id"] == "7" and "{CHECKOUT_SESSION_ID}" in p["success_url"]
    # The same key again: Stripe replays the first answer.
    assert create(client)["id"] == s["id"]
    assert len(fake.fake.sessions) == 1
    # Same key, other parameters: Stripe refuses; the client says so.
    with pytest.raises(_core.InvalidArgument) as ei:
        create(client, amount_minor=2000, credits_micro=4220 * C)
    assert "idempotency_error" in str(ei.value)
    # Retrieve and expire carry the pinned version too.
    client.retrieve_checkout(s["id"])
    client.expire_checkout(s["id"])
    assert {r["stripe_version"] for r in fake.get("/_fake/requests")} == {version}


def test_unpinned_legacy_create_is_refused_on_a_2026_account(fake):
    """What the client sent before #15 (payment_method_types, no Stripe-Version)
    cannot buy anything on an account whose default is endive; with 2024-06-20
    pinned the same body is accepted."""
    body = ("mode=payment&success_url=http://x.test/&line_items[0][quantity]=1"
            "&line_items[0][price_data][currency]=usd&line_items[0][price_data][unit_amount]=1000"
            "&line_items[0][price_data][product_data][name]=c&payment_method_types[0]=card")

    async def raw(headers):
        async with aiohttp.ClientSession() as s:
            async with s.post(fake.base + "/v1/checkout/sessions", data=body,
                              headers={"Authorization": f"Bearer {KEY}", **headers}) as r:
                return r.status, await r.json()
    st, js = asyncio.run_coroutine_threadsafe(raw({}), fake.loop).result(30)
    assert st == 400 and js["error"]["code"] == "parameter_unknown" and js["error"]["param"] == "payment_method_types"
    st, js = asyncio.run_coroutine_threadsafe(raw({"Stripe-Version": "2024-06-20"}), fake.loop).result(30)
    assert st == 200 and js["payment_method_types"] == ["card"]
    st, js = asyncio.run_coroutine_threadsafe(raw({"Stripe-Version": "1999-01-01"}), fake.loop).result(30)
    assert st == 400 and js["error"]["code"] == "invalid_api_version"


def test_zero_decimal_currency_and_card_only_outside_usd(fake, version):
    client = _core.Stripe(fake.base, KEY, api_version=version)
    s = create(client, currency="JPY", amount_minor=1000, credits_micro=1400 * C, rate_micro=14 * C // 10,
               idempotency_key="jpy", methods=["card"])
    assert s["currency"] == "jpy" and s["amount_total"] == 1000
    with pytest.raises(_core.InvalidArgument) as ei:   # our rule, before any request
        create(client, currency="eur", idempotency_key="eur", methods=["wechat_pay"])
    assert "only offered when paying in USD" in str(ei.value)
    n = len(fake.get("/_fake/requests"))
    with pytest.raises(_core.InvalidArgument):
        create(client, currency="eur", idempotency_key="eur2", methods=["alipay"])
    assert len(fake.get("/_fake/requests")) == n  # refused locally, nothing sent


@pytest.mark.parametrize("currency,amount", [("usd", 49), ("eur", 49), ("gbp", 29), ("jpy", 49), ("hkd", 399)])
def test_amounts_below_stripes_minimum_are_refused_before_calling_stripe(fake, currency, amount):
    client = _core.Stripe(fake.base, KEY)
    least = _core.stripe_min_charge(currency)
    assert least == amount + 1
    with pytest.raises(_core.InvalidArgument) as ei:
        create(client, currency=currency, amount_minor=amount, methods=["card"], idempotency_key="m-" + currency)
    assert ei.value.field == "amount_minor" and "minimum" in str(ei.value)
    assert fake.get("/_fake/requests") == []
    create(client, currency=currency, amount_minor=least, methods=["card"], idempotency_key="ok-" + currency)
    assert len(fake.get("/_fake/requests")) == 1


def test_retrieve_reads_the_method_used(fake, version):
    client = _core.Stripe(fake.base, KEY, api_version=version)
    for i, method in enumerate(("card", "wechat_pay", "alipay")):
        s = create(client, idempotency_key=f"mu-{i}")
        assert client.retrieve_checkout(s["id"])["method_used"] == ""     # payment_intent null: nothing yet
        fake.post(f"/_fake/sessions/{s['id']}/pay", {"outcome": "paid", "method": method})
        got = client.retrieve_checkout(s["id"])
        assert got["method_used"] == method and got["payment_intent"].startswith("pi_")
        assert got["methods_offered"] == "card,wechat_pay,alipay"
    sent = [r for r in fake.get("/_fake/requests") if r["method"] == "GET"]
    assert sent and all(r["params"] == {"expand": ["payment_intent.latest_charge"]} for r in sent)


def test_retrieve_expire_and_errors(fake, version):
    client = _core.Stripe(fake.base, KEY, api_version=version)
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
    with pytest.raises(_core.InvalidArgument) as ei:
        _core.Stripe(fake.base, KEY, api_version="latest")
    assert ei.value.field == "api_version"


def test_over_long_fields_are_refused_not_truncated(fake, version):
    client = _core.Stripe(fake.base, KEY, api_version=version)
    fake.fake.url_pad = 5000                       # Stripe answers a checkout url longer than we keep
    with pytest.raises(_core.InvalidArgument) as ei:
        create(client, idempotency_key="long-1")
    assert ei.value.field == "url" and "at most 4096" in str(ei.value)
    fake.fake.url_pad = 4096 - len(fake.base + "/pay/cs_test_") - 32   # exactly the limit: kept whole
    s = create(client, idempotency_key="long-2")
    assert len(s["url"]) == 4096 and s["url"].startswith(fake.base + "/pay/" + s["id"] + "?x")
    # What we would send that is too long is refused before any request.
    n = len(fake.get("/_fake/requests"))
    with pytest.raises(_core.InvalidArgument) as ei:
        create(client, idempotency_key="k" * 256)
    assert ei.value.field == "idempotency_key"
    with pytest.raises(_core.InvalidArgument) as ei:
        create(client, idempotency_key="long-3", product_name="x" * 201)
    assert ei.value.field == "product_name"
    with pytest.raises(_core.InvalidArgument) as ei:
        create(client, idempotency_key="long-4", customer_email="a" * 250 + "@b.co")
    assert ei.value.field == "customer_email"
    assert len(fake.get("/_fake/requests")) == n


def test_fake_refuses_what_stripe_refuses(fake, version):
    """The fake is strict: a client that sent these would fail against Stripe too."""
    async def raw(body):
        async with aiohttp.ClientSession() as s:
            async with s.post(fake.base + "/v1/checkout/sessions", data=body,
                              headers={"Authorization": f"Bearer {KEY}", "Stripe-Version": version}) as r:
                return r.status, await r.json()
    base = ("mode=payment&success_url=http://x.test/&line_items[0][quantity]=1&line_items[0][price_data][currency]=usd"
            "&line_items[0][price_data][unit_amount]=100&line_items[0][price_data][product_data][name]=c")
    listed = "allowed_payment_method_types" if version >= "2026-09-30" else "payment_method_types"
    gone = "payment_method_types" if version >= "2026-09-30" else "allowed_payment_method_types"
    cases = [
        (base + "&bogus=1", "parameter_unknown"),
        (base + f"&{gone}[0]=card", "parameter_unknown"),                 # the other version's parameter
        (base + "&line_items[0][price_data][bogus]=1", "parameter_unknown"),
        ("success_url=http://x.test/", "parameter_missing"),
        (base.replace("unit_amount]=100", "unit_amount]=1.5"), "parameter_invalid_integer"),
        (base + "&mode=rent", "parameter_invalid_string"),                # enum from the SDK's Literal
        (base + f"&{listed}[0]=wechat_pay", "parameter_missing"),         # wechat needs [client]
        (base.replace("currency]=usd", "currency]=nzd") + f"&{listed}[0]=wechat_pay"
         "&payment_method_options[wechat_pay][client]=web", "payment_method_unactivated"),
        (base + "&payment_method_options[wechat_pay][client]=tv", "parameter_invalid_string"),
    ]
    for body, code in cases:
        st, js = asyncio.run_coroutine_threadsafe(raw(body), fake.loop).result(30)
        assert st == 400 and js["error"]["code"] == code, (body, js)
    st, js = asyncio.run_coroutine_threadsafe(raw(base + f"&{listed}[0]=card"), fake.loop).result(30)
    assert st == 200, js


@pytest.fixture
def shop(fake, version, tmp_path, monkeypatch):
    monkeypatch.setenv("STRIPE_SECRET_KEY", KEY)
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", "whsec_fake")
    monkeypatch.setenv("COMFY_CREDITS_STRIPE_API_BASE", fake.base)
    from appserver import Server
    s = Server(tmp_path, {"stripe_api_version": version, "rates": {"usd": "211", "eur": "229.5", "jpy": "1.4"}})
    s.cfg_path = tmp_path / "c.json"
    yield s
    s.close()


def webhook(fake, shop, **opts):
    return fake.post("/_fake/deliver", {"url": f"{shop.base}/credits/stripe/webhook", **opts})


def test_every_method_and_currency_the_ui_offers(fake, shop, version):
    opts = shop.call("GET", "/credits/checkout/options")[1]
    assert {c["code"] for c in opts["currencies"]} == {"usd", "eur", "jpy"}
    made = 0
    for c in opts["currencies"]:
        amount = 1000 if c["exponent"] == 2 else 1000   # $10 / €10 / ¥1,000 (all above the $1 minimum)
        for method in [None, *c["methods"]]:            # None: "Choose on the payment page"
            body = {"amount_minor": amount, "currency": c["code"], **({"method": method} if method else {})}
            st, co, _ = shop.call("POST", "/credits/checkout", body)
            assert st == 200, (version, body, co)
            sent = fake.get("/_fake/requests")[-1]
            assert sent["stripe_version"] == version
            made += 1
            s = fake.fake.sessions[co["session_id"]]
            assert s["payment_method_types"] == ([method] if method else c["methods"])
            paid_with = method or c["methods"][-1]
            fake.post(f"/_fake/sessions/{co['session_id']}/pay", {"outcome": "paid", "method": paid_with})
            res = webhook(fake, shop)
            assert [r["body"]["state"] for r in res] == ["credited"], res
            e = shop.rt.ledger.history(shop.account, kinds=["purchase"], limit=1)["entries"][0]
            assert (e["currency"], e["amount_minor"], e["method"], e["amount"]) == (
                c["code"], amount, paid_with, co["credits_micro"])
    assert made == 1 + 3 + 2 * 2 and len(fake.fake.sessions) == made
    assert shop.pay.attention.list() == []


@pytest.mark.parametrize("method", ["card", "wechat_pay", "alipay"])
def test_method_used_is_recorded_apart_from_the_offer(fake, shop, version, method):
    st, co, _ = shop.call("POST", "/credits/checkout", {"amount_minor": 1000, "currency": "usd"})  # all offered
    fake.post(f"/_fake/sessions/{co['session_id']}/pay", {"outcome": "paid", "method": method})
    assert [r["body"]["state"] for r in webhook(fake, shop)] == ["credited"]
    e = shop.rt.ledger.history(shop.account, kinds=["purchase"])["entries"][0]
    assert (e["method"], e["note"], e["amount_minor"], e["currency"]) == (method, "offered: card,wechat_pay,alipay",
                                                                         1000, "usd")
    st, h, _ = shop.call("GET", "/credits/history?kinds=purchase")
    assert h["entries"][0]["method"] == method and h["entries"][0]["note"] == "offered: card,wechat_pay,alipay"
    st, s, _ = shop.call("GET", f"/credits/checkout/{co['session_id']}")
    assert s["state"] == "already_credited" and s["method"] == method


def test_operator_csv_shows_the_method_used(fake, shop, version, capsys):
    st, co, _ = shop.call("POST", "/credits/checkout", {"amount_minor": 500, "currency": "usd"})
    fake.post(f"/_fake/sessions/{co['session_id']}/pay", {"outcome": "paid", "method": "wechat_pay"})
    webhook(fake, shop)
    assert cli_main(["--config", str(shop.cfg_path), "history", "buyer@example.com", "--csv"]) == 0
    import csv
    import io
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    purchase = [r for r in rows if r["kind"] == "purchase"][0]
    assert purchase["method"] == "wechat_pay" and purchase["note"] == "offered: card,wechat_pay,alipay"


def test_paid_through_stripe_webhook_and_return_credit_once(fake, shop, version):
    assert shop.pay.stripe is not None and shop.pay.sandbox is None
    st, co, _ = shop.call("POST", "/credits/checkout", {"amount_minor": 1000, "currency": "usd"})
    assert st == 200 and co["test_mode"] is False and co["checkout_url"].startswith(fake.base + "/pay/")
    sent = fake.get("/_fake/requests")[-1]["params"]
    assert sent["customer_email"] == "buyer@example.com" and sent["client_reference_id"] == str(shop.account)
    st, s, _ = shop.call("GET", f"/credits/checkout/{co['session_id']}")
    assert s["state"] == "pending"
    fake.post(f"/_fake/sessions/{co['session_id']}/pay", {"outcome": "paid"})
    # Stripe delivers the completed event three times (retries): credited once.
    results = webhook(fake, shop, repeat=3)
    assert [r["body"]["state"] for r in results] == ["credited", "already_credited", "already_credited"]
    st, s, _ = shop.call("GET", f"/credits/checkout/{co['session_id']}")   # the buyer returns
    assert s["state"] == "already_credited" and s["balance_micro"] == 2110 * C
    assert shop.rt.ledger.account(shop.account)["paid_total"] == 2110 * C


def test_return_before_webhook_and_bad_deliveries(fake, shop, version):
    st, co, _ = shop.call("POST", "/credits/checkout", {"amount_minor": 500, "currency": "usd"})
    fake.post(f"/_fake/sessions/{co['session_id']}/pay", {"outcome": "paid"})
    st, s, _ = shop.call("GET", f"/credits/checkout/{co['session_id']}")  # return first: retrieve → credit
    assert s["state"] == "credited" and s["balance_micro"] == 1055 * C
    stale = webhook(fake, shop, stale=True, keep=True)
    wrong = webhook(fake, shop, secret="whsec_x", keep=True)
    assert stale[0]["status"] == 400 and wrong[0]["status"] == 400
    late = webhook(fake, shop)
    assert late[0]["body"]["state"] == "already_credited"
    assert shop.rt.ledger.account(shop.account)["balance"] == 1055 * C


def test_delayed_payment_then_failure_credits_nothing(fake, shop, version):
    st, co, _ = shop.call("POST", "/credits/checkout", {"amount_minor": 1000, "currency": "usd", "method": "alipay"})
    fake.post(f"/_fake/sessions/{co['session_id']}/pay", {"outcome": "async_pending", "method": "alipay"})
    fake.post(f"/_fake/sessions/{co['session_id']}/pay", {"outcome": "async_failed"})
    res = webhook(fake, shop)
    assert [r["body"]["state"] for r in res] == ["pending", "ignored"]
    assert shop.rt.ledger.account(shop.account)["balance"] == 0
    time.sleep(0.1)


def test_a_session_is_fulfilled_at_the_price_it_was_created_with(fake, shop, version):
    """Paid at the $1 minimum at 211 credits/$; before the webhook arrives the
    operator changes the rate to 250 and the minimum to $5: the buyer gets the
    211 credits they were shown, not a refusal and not 250."""
    st, co, _ = shop.call("POST", "/credits/checkout", {"amount_minor": 100, "currency": "usd"})
    assert st == 200 and co["credits_micro"] == 211 * C
    fake.post(f"/_fake/sessions/{co['session_id']}/pay", {"outcome": "paid", "method": "card"})
    shop.rt.cfg.rates_micro["usd"] = 250 * C                    # the operator's new rate and minimum
    shop.pay.min_micro = _core.convert("usd", 500, shop.rt.cfg.rates_micro)
    st, err, _ = shop.call("POST", "/credits/checkout", {"amount_minor": 100, "currency": "usd"})
    assert st == 400 and err["error"]["type"] == "amount_out_of_range"   # the new limits apply to new sessions
    st, co2, _ = shop.call("POST", "/credits/checkout", {"amount_minor": 500, "currency": "usd"})
    assert co2["credits_micro"] == 1250 * C
    res = webhook(fake, shop)
    assert [r["status"] for r in res] == [200] and res[0]["body"]["state"] == "credited"
    assert shop.rt.ledger.account(shop.account)["balance"] == 211 * C
    assert shop.pay.attention.list() == []
    st, s, _ = shop.call("GET", f"/credits/checkout/{co['session_id']}")
    assert s["state"] == "already_credited" and s["credits_micro"] == 211 * C


def test_a_paid_session_that_cannot_be_credited_needs_attention(fake, shop, version):
    st, co, _ = shop.call("POST", "/credits/checkout", {"amount_minor": 1000, "currency": "usd"})
    sid = co["session_id"]
    fake.fake.sessions[sid]["amount_total"] = 900     # e.g. changed on Stripe's side: not what was priced
    fake.post(f"/_fake/sessions/{sid}/pay", {"outcome": "paid", "method": "alipay"})
    res = webhook(fake, shop, repeat=2)
    # Never a silent "rejected": kept for the operator, Stripe gets 200 (a retry cannot change it).
    assert [r["status"] for r in res] == [200, 200]
    assert [r["body"]["state"] for r in res] == ["needs_attention"] * 2
    assert "priced at 1000" in res[0]["body"]["reason"]
    assert shop.rt.ledger.account(shop.account)["balance"] == 0
    rows = shop.pay.attention.list()
    assert len(rows) == 1 and rows[0]["session_id"] == sid and rows[0]["reports"] == 2
    assert (rows[0]["method"], rows[0]["amount_minor"], rows[0]["account_id"]) == ("alipay", 900, shop.account)
    # The buyer is told it is being reviewed.
    st, s, _ = shop.call("GET", f"/credits/checkout/{sid}")
    assert st == 200 and s["state"] == "needs_attention" and "being reviewed" in s["message"]
    # The operator sees it in the CLI and resolves it.
    import io
    import contextlib
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli_main(["--config", str(shop.cfg_path), "purchases", "attention"]) == 0
    assert sid in out.getvalue() and "NEEDS ATTENTION" in out.getvalue() and "buyer@example.com" in out.getvalue()
    assert "paid 9.00 USD (alipay) for 2110.00 credits" in out.getvalue()
    # Resolved by crediting what was actually paid, as the purchase itself (once).
    args = ["--config", str(shop.cfg_path), "purchases", "resolve", sid, "--note", "paid 9.00, credit 1899"]
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli_main(args + ["--credit", "1899"]) == 0
        assert cli_main(args + ["--credit", "1899"]) == 1          # resolved: not again
    assert shop.pay.attention.list() == [] and shop.pay.attention.list(include_resolved=True)[0]["resolution"]
    e = shop.rt.ledger.history(shop.account, kinds=["purchase"])["entries"]
    assert len(e) == 1 and (e[0]["amount"], e[0]["amount_minor"], e[0]["method"]) == (1899 * C, 900, "alipay")
    assert shop.rt.ledger.account(shop.account)["paid_total"] == 1899 * C
    # A late webhook retry for it credits nothing more.
    fake.fake.pending.append(fake.fake.events[-1])
    assert webhook(fake, shop)[0]["body"]["state"] == "already_credited"
    assert shop.rt.ledger.account(shop.account)["balance"] == 1899 * C
    assert shop.pay.attention.list() == []                      # still resolved


def test_webhook_reads_the_session_from_stripe_not_the_event(fake, shop, version):
    st, co, _ = shop.call("POST", "/credits/checkout", {"amount_minor": 1000, "currency": "usd"})
    fake.post(f"/_fake/sessions/{co['session_id']}/pay", {"outcome": "paid"})
    ev = fake.fake.pending[0]
    ev["data"]["object"]["metadata"]["credits_micro"] = str(99_999 * C)   # a doctored body (signed with the secret)
    assert webhook(fake, shop)[0]["body"]["state"] == "credited"
    assert shop.rt.ledger.account(shop.account)["balance"] == 2110 * C    # what Stripe has, not the event
    # A signed event for a session Stripe does not know: refused, nothing credited.
    fake.fake.event("checkout.session.completed", {"id": "cs_test_unknown", "object": "checkout.session"})
    assert webhook(fake, shop)[0]["status"] == 404
    # Stripe unreachable while fulfilling: 503, so Stripe retries later.
    st, co2, _ = shop.call("POST", "/credits/checkout", {"amount_minor": 500, "currency": "usd"})
    fake.post(f"/_fake/sessions/{co2['session_id']}/pay", {"outcome": "paid"})
    fake.post("/_fake/fail_next", {"status": 500})
    assert webhook(fake, shop, keep=True)[0]["status"] == 503
    assert webhook(fake, shop)[0]["body"]["state"] == "credited"
    assert shop.rt.ledger.account(shop.account)["balance"] == 3165 * C


def test_a_retried_create_reuses_its_idempotency_key(fake, shop, version):
    body = {"amount_minor": 1000, "currency": "usd", "request_id": "attempt-0001"}
    st, first, _ = shop.call("POST", "/credits/checkout", body)
    fake.post("/_fake/fail_next", {"status": 500})          # Stripe failed once: the buyer clicks Buy again
    st, err, _ = shop.call("POST", "/credits/checkout", body)
    assert st == 502
    st, again, _ = shop.call("POST", "/credits/checkout", body)
    assert st == 200 and again["session_id"] == first["session_id"]
    creates = [r for r in fake.get("/_fake/requests") if r["path"] == "/v1/checkout/sessions"]
    assert len(creates) == 3 and len({r["idempotency_key"] for r in creates}) == 1
    assert len(fake.fake.sessions) == 1
    # The same request id for another purchase is refused; another id is another purchase.
    st, err, _ = shop.call("POST", "/credits/checkout", {**body, "amount_minor": 2000})
    assert st == 409 and err["error"]["type"] == "request_reused"
    st, other, _ = shop.call("POST", "/credits/checkout", {**body, "request_id": "attempt-0002"})
    assert st == 200 and other["session_id"] != first["session_id"]
    # Another account's same request id is its own key.
    okey = shop.rt.ledger.create_credential(shop.rt.ledger.create_account("o@example.com")["id"], "api_key")["token"]
    st, theirs, _ = shop.call("POST", "/credits/checkout", body, headers={"Authorization": f"Bearer {okey}"})
    assert st == 200 and theirs["session_id"] != first["session_id"]
    st, err, _ = shop.call("POST", "/credits/checkout", {**body, "request_id": "x"})
    assert st == 400 and err["error"]["field"] == "request_id"


@pytest.mark.parametrize("currency,amount", [("jpy", 49), ("usd", 49)])
def test_route_refuses_below_stripes_minimum(fake, tmp_path, monkeypatch, currency, amount):
    monkeypatch.setenv("STRIPE_SECRET_KEY", KEY)
    monkeypatch.setenv("COMFY_CREDITS_STRIPE_API_BASE", fake.base)
    from appserver import Server
    # The operator's own minimum set below Stripe's, so Stripe's is the one that bites.
    s = Server(tmp_path, {"purchase_min_usd": "0.01", "rates": {"usd": "211", "jpy": "1.4"}})
    try:
        st, err, _ = s.call("POST", "/credits/checkout", {"amount_minor": amount, "currency": currency})
        assert st == 400 and err["error"]["type"] == "amount_below_minimum", err
        assert fake.get("/_fake/requests") == []
        st, co, _ = s.call("POST", "/credits/checkout", {"amount_minor": amount + 1, "currency": currency})
        assert st == 200
    finally:
        s.close()


def test_api_version_is_configurable_and_checked(tmp_path, monkeypatch):
    from comfy_credits_ext import config
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"database": str(tmp_path / "l.db")}))
    assert config.load(str(path)).stripe_api_version == _core.stripe_api_version_default() == "2026-10-28.endive"
    path.write_text(json.dumps({"database": str(tmp_path / "l.db"), "stripe_api_version": "2024-06-20"}))
    assert config.load(str(path)).stripe_api_version == "2024-06-20"
    for bad in ("latest", "2024-06-20\r\nX-Evil: 1", 20240620):
        path.write_text(json.dumps({"database": str(tmp_path / "l.db"), "stripe_api_version": bad}))
        with pytest.raises(config.ConfigError):
            config.load(str(path))
    monkeypatch.setenv("COMFY_CREDITS_STRIPE_API_VERSION", "2026-09-30.endive")
    assert config.load(str(path)).stripe_api_version == "2026-09-30.endive"
