"""Issue #9.1: free credits are never the default, and TEST credits (sandbox or
Stripe test mode) are their own kind that never pays for a real upstream."""
import json
import sqlite3

import pytest

from appserver import Server
from comfy_credits_ext import _core, config

C = _core.MICRO


def cfg_of(tmp_path, monkeypatch, raw=None, key="", base=None, stripe=""):
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"database": str(tmp_path / "l.db"), **(raw or {})}))
    monkeypatch.setenv(config.ENV_UPSTREAM_KEY, key)
    monkeypatch.setenv(config.ENV_STRIPE_KEY, stripe)
    if base:
        monkeypatch.setenv(config.ENV_UPSTREAM_BASE, base)
    else:
        monkeypatch.delenv(config.ENV_UPSTREAM_BASE, raising=False)
    return config.load(str(p))


def test_sandbox_is_off_by_default_with_a_real_upstream(tmp_path, monkeypatch):
    cfg = cfg_of(tmp_path, monkeypatch, key="comfyui-real-key")
    assert not cfg.upstream_simulated and not cfg.sandbox_enabled and cfg.start_problem() is None
    cfg = cfg_of(tmp_path, monkeypatch)  # no key either: still no free credits
    assert not cfg.sandbox_enabled


@pytest.mark.parametrize("base", ["http://127.0.0.1:8199", "http://localhost:9", "http://[::1]:8199",
                                  "http://127.5.6.7"])
def test_sandbox_is_on_by_default_only_with_the_simulated_upstream(tmp_path, monkeypatch, base):
    cfg = cfg_of(tmp_path, monkeypatch, key="simulated-operator-key", base=base)
    assert cfg.upstream_simulated and cfg.sandbox_enabled and cfg.start_problem() is None
    cfg = cfg_of(tmp_path, monkeypatch, {"sandbox_checkout": False}, key="k", base=base)
    assert not cfg.sandbox_enabled


def test_sandbox_with_a_real_upstream_key_refuses_to_start(tmp_path, monkeypatch):
    cfg = cfg_of(tmp_path, monkeypatch, {"sandbox_checkout": True}, key="comfyui-real-key",
                 base="https://api.comfy.org")
    problem = cfg.start_problem()
    assert problem and "\n" not in problem and "sandbox_checkout" in problem and "real upstream" in problem
    # Explicitly on without any upstream key: no upstream call can be paid, so it may start.
    assert cfg_of(tmp_path, monkeypatch, {"sandbox_checkout": True}).start_problem() is None
    # A Stripe key replaces the sandbox; a test-mode key sells TEST credits, a live key real ones.
    assert not cfg_of(tmp_path, monkeypatch, {"sandbox_checkout": True}, key="k", stripe="sk_live_x").sandbox_enabled
    assert cfg_of(tmp_path, monkeypatch, stripe="sk_test_x").test_credits_sold
    assert not cfg_of(tmp_path, monkeypatch, stripe="sk_live_x").test_credits_sold


def test_no_purchases_by_default(tmp_path, monkeypatch):
    monkeypatch.delenv(config.ENV_STRIPE_KEY, raising=False)
    s = Server(tmp_path)  # default config: api.comfy.org upstream, no Stripe key
    try:
        assert s.pay.sandbox is None and not s.pay.enabled
        st, body, _ = s.call("POST", "/credits/checkout", {"amount_minor": 100_000, "currency": "usd"})
        assert st == 503 and body["error"]["type"] == "purchases_disabled"
        assert s.rt.ledger.account(s.account)["balance"] == 0
    finally:
        s.close()


def test_test_credits_are_their_own_kind(ledger, account):
    ledger.test_purchase("t1", account, 100 * C, "usd", 5000, "card", "cs_test_1")
    a = ledger.account(account)
    assert a["balance"] == 100 * C and a["test_balance"] == 100 * C and a["paid_total"] == 0
    e = ledger.history(account)["entries"][0]
    assert e["kind"] == "test" and e["test_after"] == 100 * C
    assert ledger.history(account, kinds=["purchase"])["entries"] == []
    # Idempotent like a purchase; the same key as a real purchase is a conflict.
    assert ledger.test_purchase("t1", account, 100 * C, "usd", 5000, "card", "cs_test_1")["replayed"]
    with pytest.raises(_core.IdempotencyConflict):
        ledger.purchase("t1", account, 100 * C, "usd", 5000, "card", "cs_test_1")
    assert ledger.verify()["ok"]


def test_test_credits_never_pay_for_a_real_upstream(ledger, account):
    ledger.test_purchase("t", account, 100 * C, "usd", 5000, "card", "cs_test_1")
    # Default: the upstream is real, TEST credits cannot hold anything.
    with pytest.raises(_core.InsufficientCredits) as exc:
        ledger.hold("h0", account, 1 * C, 60_000)
    assert "TEST credits cannot pay for a real upstream" in str(exc.value)
    ledger.purchase("p", account, 10 * C, "usd", 500, "card", "cs_live_1")
    with pytest.raises(_core.InsufficientCredits):
        ledger.hold("h1", account, 11 * C, 60_000)
    h = ledger.hold("h2", account, 10 * C, 60_000)
    # A cost above the hold takes nothing from TEST credits: the rest is uncollected.
    r = ledger.settle("s2", h["hold_id"], 50 * C)
    assert r["delta"] == -10 * C and r["uncollected"] == 40 * C
    a = ledger.account(account)
    assert a["balance"] == 100 * C and a["test_balance"] == 100 * C
    assert ledger.verify()["ok"]


def test_test_credits_pay_for_the_simulated_upstream_first(ledger, account):
    ledger.set_test_spendable(True)
    ledger.purchase("p", account, 10 * C, "usd", 500, "card", "cs_live_1")
    ledger.test_purchase("t", account, 20 * C, "usd", 1000, "card", "cs_test_1")
    h = ledger.hold("h", account, 25 * C, 60_000)
    ledger.settle("s", h["hold_id"], 25 * C)
    a = ledger.account(account)
    assert a["balance"] == 5 * C and a["test_balance"] == 0 and a["paid_total"] == 10 * C
    ledger.set_test_spendable(False)
    ledger.test_purchase("t2", account, 7 * C, "usd", 1000, "card", "cs_test_2")
    with pytest.raises(_core.InsufficientCredits):
        ledger.hold("h2", account, 6 * C, 60_000)
    assert ledger.verify()["ok"]


def test_verify_notices_tampered_test_credits(tmp_path):
    path = tmp_path / "l.db"
    led = _core.Ledger(str(path))
    a = led.create_account("t@example.com")["id"]
    led.test_purchase("t", a, 5 * C, "usd", 100, "card", "cs_test_1")
    led.close()
    db = sqlite3.connect(path)
    db.execute("UPDATE accounts SET test_balance = 0")  # "turn TEST credits into real ones"
    db.commit()
    db.close()
    led = _core.Ledger(str(path))
    rep = led.verify()
    led.close()
    assert not rep["ok"] and any("TEST credits" in p for p in rep["problems"])


def test_a_ledger_from_before_test_credits_opens_and_verifies(tmp_path):
    path = tmp_path / "old.db"
    led = _core.Ledger(str(path))
    a = led.create_account("o@example.com")["id"]
    led.grant("g", a, 3 * C)
    led.close()
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE accounts DROP COLUMN test_balance")
    db.execute("ALTER TABLE entries DROP COLUMN test_after")
    db.commit()
    db.close()
    led = _core.Ledger(str(path))
    try:
        assert led.account(a)["test_balance"] == 0 and led.verify()["ok"]
    finally:
        led.close()


def test_sandbox_purchases_show_as_test_in_the_api(tmp_path):
    s = Server(tmp_path, {"sandbox_checkout": True})
    try:
        st, co, _ = s.call("POST", "/credits/checkout", {"amount_minor": 500, "currency": "usd"})
        assert st == 200 and co["test_mode"]
        st, _, _ = s.call("POST", co["checkout_url"][len(s.base):], redirects=False,
                          form={"action": "pay", "method": "card", "email_confirmed": "yes"})
        st, bal, _ = s.call("GET", "/credits/balance")
        assert bal["test_micro"] == 1055 * C and bal["paid_micro"] == 0 and bal["test"] == "1055.00"
        st, hist, _ = s.call("GET", "/credits/history?kinds=test")
        assert hist["entries"][0]["kind"] == "test" and hist["entries"][0]["label"] == "TEST"
    finally:
        s.close()


def test_a_stripe_test_mode_key_sells_test_credits(tmp_path, monkeypatch):
    from fake_stripe import FakeStripe
    from test_stripe_client import Running
    f = FakeStripe("sk_test_fake", "whsec_fake")
    r = Running(f.app())
    monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_test_fake")
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", "whsec_fake")
    monkeypatch.setenv("COMFY_CREDITS_STRIPE_API_BASE", r.base)
    s = Server(tmp_path)
    try:
        st, co, _ = s.call("POST", "/credits/checkout", {"amount_minor": 1000, "currency": "usd"})
        assert st == 200 and co["test_mode"] is True
        r.post(f"/_fake/sessions/{co['session_id']}/pay", {"outcome": "paid"})
        res = r.post("/_fake/deliver", {"url": f"{s.base}/credits/stripe/webhook"})
        assert [x["body"]["state"] for x in res] == ["credited"]
        a = s.rt.ledger.account(s.account)
        assert a["test_balance"] == 2110 * C and a["paid_total"] == 0
    finally:
        s.close()
        r.close()
