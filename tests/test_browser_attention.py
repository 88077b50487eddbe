"""A paid purchase that cannot be credited (#15 "needs attention"), in real
Chromium on both frontend eras: the buyer comes back from the checkout and is
told the purchase is under review (nothing credited), and an admin finds it
in the Credits admin dashboard's "Needs attention" tab.

The case is made the way it happens for real, through the visible sandbox
checkout: the buyer's balance is at the ledger's cap (CC_BALANCE_MAX), so the
paid session cannot be credited (src/fulfil.c: "balance would exceed")."""
import os

import pytest

from test_browser import (ADMIN_EMAIL, ADMIN_PASSWORD, ARTIFACTS, FRONTENDS, admin_ui, close_settings, load_app,
                          open_settings)

playwright = pytest.importorskip("playwright.sync_api")

AMOUNT_MAX = 10 ** 15          # CC_AMOUNT_MAX: the largest single grant (micro-credits)
BALANCE_MAX = 1000 * AMOUNT_MAX  # CC_BALANCE_MAX


@pytest.fixture(scope="module", params=FRONTENDS)
def ui(request, tmp_path_factory):
    def seed(led, c):
        c.buyer = led.create_account("full@example.com", display_name="Full")["id"]
        led.set_password(c.buyer, "full-password")
        for i in range(BALANCE_MAX // AMOUNT_MAX):
            led.grant(f"to-the-cap-{i}", c.buyer, AMOUNT_MAX)
        assert led.account(c.buyer)["balance"] == BALANCE_MAX
    with admin_ui(request, tmp_path_factory, "attention-ui", seed) as c:
        yield c


def signed_in_page(ui, email, password):
    page = ui.browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
    page.on("pageerror", lambda e: print(f"[{ui.version}] page error: {e}"))
    ui.page = page
    page.goto(f"http://127.0.0.1:{ui.port}/")
    st = page.evaluate("""async ([email, password]) => (await fetch('/api/credits/session', {method: 'POST',
        headers: {'Content-Type': 'application/json'}, body: JSON.stringify({email, password})})).status""",
                       [email, password])
    assert st == 200
    load_app(ui)
    return page


def test_a_purchase_that_cannot_be_credited_is_under_review_for_the_buyer_and_listed_for_the_admin(ui):
    page = signed_in_page(ui, "full@example.com", "full-password")
    try:
        co = page.evaluate("""async () => (await fetch('/api/credits/checkout', {method: 'POST',
            headers: {'Content-Type': 'application/json'},
            body: JSON.stringify({amount_minor: 1000, currency: 'usd', request_id: 'attention-ui-1'})})).json()""")
        sid = co["session_id"]
        page.goto(co["checkout_url"])
        page.check("input[value=wechat_pay]")
        page.click("#genqr")
        page.click("#pay")
        page.wait_for_url(f"http://127.0.0.1:{ui.port}/**")
        toast = page.get_by_text("Purchase under review").first
        toast.wait_for(timeout=60_000)
        assert page.get_by_text("being reviewed by the operator").count() >= 1
        assert page.get_by_text("Credits added").count() == 0
        page.screenshot(path=os.path.join(ARTIFACTS, f"{ui.version}-attention-1-buyer.png"))
        with ui.ledger() as led:
            assert led.account(ui.buyer)["balance"] == BALANCE_MAX  # nothing credited
    finally:
        page.context.close()

    page = signed_in_page(ui, ADMIN_EMAIL, ADMIN_PASSWORD)
    try:
        dialog = open_settings(ui, "User")
        dialog.get_by_text("Credits admin", exact=True).first.click()
        panel = page.locator("[data-testid=cca-panel]")
        panel.locator("[data-testid=cca-tab-attention]").click()
        row = panel.locator("[data-testid=cca-attention] tr", has_text=sid)
        row.wait_for(timeout=30_000)
        text = row.inner_text()
        assert "NEEDS ATTENTION" in text and "wechat_pay" in text and "balance would exceed" in text, text
        assert str(ui.buyer) in text
        page.screenshot(path=os.path.join(ARTIFACTS, f"{ui.version}-attention-2-admin.png"))
        close_settings(ui)
    finally:
        page.context.close()
