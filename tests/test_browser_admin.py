"""The Credits admin dashboard (web/credits_admin.js) in real Chromium on both
frontend eras, through the visible UI: an admin signs in with the form in
Settings → User, sees the "Credits admin" entry, grants credits with a note and
sees the grant in the audit log; a normal account never sees the entry."""
import os

import pytest

from test_browser import (ADMIN_EMAIL, ADMIN_PASSWORD, ARTIFACTS, FRONTENDS, admin_ui, close_settings, load_app,
                          open_settings)
from test_integration import C

playwright = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module", params=FRONTENDS)
def ui(request, tmp_path_factory):
    def seed(led, c):
        c.user = led.create_account("pat@example.com", display_name="Pat")["id"]
        led.set_password(c.user, "pat-password")
        led.grant("seed", c.user, 10 * C, note="welcome")
    with admin_ui(request, tmp_path_factory, "admin-ui", seed) as c:
        yield c


def new_page(ui):
    page = ui.browser.new_page(viewport={"width": 1400, "height": 900})
    page.on("pageerror", lambda e: print(f"[{ui.version}] page error: {e}"))
    ui.page = page
    return page


def sign_in_with_the_form(ui, email, password):
    load_app(ui)
    dialog = open_settings(ui, "User")
    account = dialog.locator("[data-testid=cc-account]")
    account.locator("[data-testid=cc-email-input]").fill(email)
    account.locator("[data-testid=cc-password-input]").fill(password)
    account.locator("[data-testid=cc-signin]").click()
    ui.page.locator("[data-testid=cc-email]").wait_for()
    return dialog


def open_account_as_admin(ui, email):
    """Signed in as the admin with the form: Credits admin → the account's page. Returns the panel."""
    dialog = sign_in_with_the_form(ui, ADMIN_EMAIL, ADMIN_PASSWORD)
    dialog.get_by_text("Credits admin", exact=True).first.click()
    panel = ui.page.locator("[data-testid=cca-panel]")
    panel.locator("[data-testid=cca-open-account]", has_text=email).click()
    panel.locator("[data-testid=cca-account]").wait_for()
    return panel


def shot(ui, name):
    ui.page.screenshot(path=os.path.join(ARTIFACTS, f"{ui.version}-admin-{name}.png"))


def test_a_normal_account_never_sees_the_admin_entry(ui):
    page = new_page(ui)
    try:
        dialog = sign_in_with_the_form(ui, "pat@example.com", "pat-password")
        page.wait_for_timeout(1500)  # the role check after sign-in has had time to run
        assert dialog.get_by_text("Credits admin", exact=True).count() == 0
        close_settings(ui)
        load_app(ui)  # and after a reload, signed in
        dialog = open_settings(ui, "User")
        page.wait_for_timeout(1000)
        assert dialog.get_by_text("Credits admin", exact=True).count() == 0
        # the server refuses the admin routes to this session whatever the page shows
        st = page.evaluate("async () => (await fetch('/api/credits/admin/accounts')).status")
        assert st == 403
        shot(ui, "0-normal-user")
    finally:
        page.close()


def test_admin_signs_in_sees_the_dashboard_and_grants(ui):
    page = new_page(ui)
    try:
        dialog = sign_in_with_the_form(ui, ADMIN_EMAIL, ADMIN_PASSWORD)
        entry = dialog.get_by_text("Credits admin", exact=True).first
        entry.wait_for(timeout=15_000)  # appears as soon as the admin signs in, without a reload
        entry.click()
        panel = page.locator("[data-testid=cca-panel]")
        panel.locator("[data-testid=cca-accounts]").wait_for()
        assert "pat@example.com" in panel.inner_text()
        # the setting row's label is hidden and the panel has the row (with an empty name ComfyUI's 1.27.10 showed
        # the translation key as the label, which kept half the width)
        page.wait_for_function("document.querySelector('[data-testid=cca-panel]').getBoundingClientRect().width > 560")
        assert dialog.get_by_text("settings.ComfyCredits_Admin.name").count() == 0
        shot(ui, "1-accounts")
        panel.locator("[data-testid=cca-search]").fill("pat")
        panel.locator("[data-testid=cca-search]").press("Enter")
        panel.locator("[data-testid=cca-open-account]", has_text="pat@example.com").click()
        panel.locator("[data-testid=cca-account]").wait_for()

        def grant(amount, note, says):
            panel.locator("[data-testid=cca-grant-amount]").fill(amount)
            panel.locator("[data-testid=cca-grant-note]").fill(note)
            panel.locator("[data-testid=cca-grant]").click()
            page.wait_for_function(f"document.querySelector('[data-testid=cca-msg]').textContent.includes({says!r})")
        grant("2.5", "late fee waived", "Granted 2.50")
        with ui.ledger() as led:
            assert led.account(ui.user)["balance"] == 12_500_000
            assert led.history(ui.user)["entries"][0]["note"] == "late fee waived"
        assert "12.50" in panel.locator("[data-testid=cca-account-balance]").inner_text()
        # a bad amount is refused with the server's words, and changes nothing
        grant("-3", "oops", "positive")
        with ui.ledger() as led:
            assert led.account(ui.user)["balance"] == 12_500_000
        shot(ui, "2-granted")
        panel.locator("[data-testid=cca-tab-audit]").click()
        audit = panel.locator("[data-testid=cca-audit]")
        audit.wait_for()
        text = audit.inner_text()
        assert "boss@example.com" in text and "grant" in text and "late fee waived" in text and "127.0.0.1" in text
        panel.locator("[data-testid=cca-tab-verify]").click()
        panel.locator("[data-testid=cca-verify]").wait_for()
        assert "OK: every invariant holds" in panel.inner_text()
        panel.locator("[data-testid=cca-tab-report]").click()
        panel.locator("[data-testid=cca-report]").wait_for()
        assert "Total" in panel.locator("[data-testid=cca-report]").inner_text()
        panel.locator("[data-testid=cca-tab-charts]").click()
        panel.locator("[data-testid=cca-top-accounts]").wait_for()
        shot(ui, "3-charts")
        close_settings(ui)
    finally:
        page.close()


def test_admin_sets_a_cap_and_the_capped_user_is_refused_with_the_cap_message(ui):
    from test_browser import dalle, open_workflow, run_button
    page = new_page(ui)
    try:
        panel = open_account_as_admin(ui, "pat@example.com")
        panel.locator("[data-testid=cca-cap-daily]").fill("5")
        panel.locator("[data-testid=cca-set-caps]").click()
        page.wait_for_function("document.querySelector('[data-testid=cca-msg]').textContent.includes('Caps of')")
        with ui.ledger() as led:
            assert led.account(ui.user)["caps"]["daily"] == 5_000_000
        # a bad cap is refused with the server's words and changes nothing
        panel.locator("[data-testid=cca-cap-daily]").fill("-2")
        panel.locator("[data-testid=cca-set-caps]").click()
        page.wait_for_function("document.querySelector('[data-testid=cca-msg]').textContent.includes('negative')")
        with ui.ledger() as led:
            assert led.account(ui.user)["caps"]["daily"] == 5_000_000
        shot(ui, "4-cap-set")
        close_settings(ui)
    finally:
        page.close()
    # the capped person runs a DALL-E 3 node (8.44 credits, more than the 5-credit daily cap)
    page = new_page(ui)
    try:
        page.goto(f"http://127.0.0.1:{ui.port}/")
        st = page.evaluate("""async () => (await fetch('/api/credits/session', {method: 'POST',
            headers: {'Content-Type': 'application/json'},
            body: JSON.stringify({email: 'pat@example.com', password: 'pat-password'})})).status""")
        assert st == 200
        load_app(ui)
        page.wait_for_selector(".cc-topchip", timeout=60_000)
        with ui.ledger() as led:
            before = led.account(ui.user)["balance"]
        open_workflow(ui, "capped", dalle(909))
        run_button(ui).click()
        refused = page.locator("[data-testid=cc-refused]")
        refused.wait_for(timeout=20_000)
        text = refused.inner_text()
        assert "Spending cap reached" in text and "daily spending cap reached" in text and "resets at" in text, text
        shot(ui, "5-capped-user-refused")
        with ui.ledger() as led:
            assert led.account(ui.user)["balance"] == before and led.account(ui.user)["held"] == 0
    finally:
        page.close()


def test_admin_sees_and_sets_a_persons_api_key_limits(ui):
    """Credits admin → an account → Personal API keys: each key's cap and last day, set through the form
    (bad input said before sending or in the server's words, nothing changed), audited."""
    with ui.ledger() as led:
        kid = led.create_credential(ui.user, "api_key", "render farm")["id"]
    page = new_page(ui)
    try:
        panel = open_account_as_admin(ui, "pat@example.com")
        row = panel.locator(f"[data-testid=cca-key][data-key-id='{kid}']")
        row.wait_for()
        assert "render farm" in row.inner_text()
        assert row.locator("[data-testid=cca-key-limits]").inner_text() == "no cap · never expires"
        cap, expires = row.locator("[data-testid=cc-key-cap]"), row.locator("[data-testid=cc-key-expires]")
        error = row.locator("[data-testid=cc-key-error]")
        cap.fill("x1")  # malformed: said before sending
        row.locator("[data-testid=cc-key-save]").click()
        assert "an amount of credits" in error.inner_text()
        cap.fill("7.5")
        expires.fill("2001-01-01")  # in the past: the server's words
        row.locator("[data-testid=cc-key-save]").click()
        page.wait_for_function("document.querySelector('[data-testid=cca-key] [data-testid=cc-key-error]')"
                               ".textContent.includes('in the future')")
        with ui.ledger() as led:
            k = [x for x in led.list_credentials(ui.user, "api_key") if x["id"] == kid][0]
            assert k["cap_micro"] is None and not k["expires_ms"]  # nothing changed
        expires.fill("2031-05-01")
        cap.press("Enter")  # the keyboard submits the form
        page.wait_for_function("document.querySelector('[data-testid=cca-msg]').textContent.includes('Limits of key')")
        with ui.ledger() as led:
            k = [x for x in led.list_credentials(ui.user, "api_key") if x["id"] == kid][0]
            assert k["cap_micro"] == 7_500_000 and k["expires_ms"] == 1935446400000  # the end of 2031-05-01 UTC
        row = panel.locator(f"[data-testid=cca-key][data-key-id='{kid}']")
        row.locator("[data-testid=cca-key-limits]", has_text="cap 7.50").wait_for()
        assert "works through 2031-05-01 (UTC)" in row.inner_text()
        assert row.locator("[data-testid=cc-key-cap]").input_value() == "7.50"
        shot(ui, "6-key-limits")
        panel.locator("[data-testid=cca-tab-audit]").click()
        audit = panel.locator("[data-testid=cca-audit]")
        audit.wait_for()
        line = audit.locator("tr", has_text="key limits").first.inner_text()
        assert "pat@example.com" in line and "7.50" in line, line
        close_settings(ui)
    finally:
        page.close()


def test_admin_sees_an_expired_key_marked_expired_with_its_last_day(ui):
    from test_browser import expired_key
    k, last = expired_key(ui, ui.user, "old laptop")
    page = new_page(ui)
    try:
        panel = open_account_as_admin(ui, "pat@example.com")
        row = panel.locator(f"[data-testid=cca-key][data-key-id='{k['id']}']")
        row.wait_for()
        assert row.get_attribute("data-expired") == "true" and "old laptop" in row.inner_text()
        text = row.locator("[data-testid=cca-key-limits]").inner_text()
        assert f"expired: its last day was {last} (UTC), it does not work" in text, text
        shot(ui, "7-key-expired")
        close_settings(ui)
    finally:
        page.close()
        with ui.ledger() as led:
            led.revoke_credential(ui.user, "api_key", id=k["id"])
