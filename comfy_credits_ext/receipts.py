"""Receipts for purchases: GET /credits/receipt/{session_id}.

A Stripe purchase's receipt is Stripe's own page: the session gives the
PaymentIntent, which is retrieved with its latest charge expanded
(src/stripe.c cc_stripe_payment_receipt: GET /v1/payment_intents/{id}?expand[]=
latest_charge); the charge's receipt_url is where we send the browser, and its
payment_method_details.type is the method actually used. A sandbox purchase
(no real money) gets a local receipt page marked TEST MODE.

Only the buyer (or an admin) sees a receipt; a purchase is found by the key
fulfilment wrote it under ("stripe:<session id>"), so nothing here can credit
or change anything.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import html
import logging
from collections import OrderedDict

from aiohttp import web

from . import _core
from .routes import SESSION_ID, error

log = logging.getLogger("comfy_credits")

CACHE_MAX = 10_000  # receipt urls remembered (they never change once a charge exists)
METHOD_NAMES = {"card": "Card", "wechat_pay": "WeChat Pay", "alipay": "Alipay"}


def render_test_receipt(e: dict, account: dict) -> str:
    exp = _core.currency_exponent(e["currency"]) if e["currency"] else 0
    paid = f"{e['amount_minor'] / 10 ** exp:,.{exp}f} {e['currency'].upper()}" if e["currency"] else "—"
    when = dt.datetime.fromtimestamp(e["created_ms"] / 1000, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    method = METHOD_NAMES.get(e["method"], e["method"] or "—")
    esc = html.escape
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>TEST MODE receipt</title>
<style>body{{font:15px system-ui,sans-serif;background:#1b1b1f;color:#e8e8e8;display:flex;justify-content:center}}
main{{background:#26262c;margin:40px;padding:28px 32px;border-radius:10px;width:440px}}
.test{{background:#f5a524;color:#222;font-weight:700;padding:6px 10px;border-radius:6px;display:inline-block}}
td{{padding:3px 10px 3px 0}}</style></head><body><main>
<span class="test" data-testid="test-mode">TEST MODE — no real money was paid</span>
<h1>Receipt</h1><table>
<tr><td>Paid</td><td data-testid="paid">{esc(paid)}</td></tr>
<tr><td>Credits</td><td data-testid="credits">{esc(_core.format_credits(e['delta']))} TEST credits</td></tr>
<tr><td>Method</td><td data-testid="method">{esc(method)}</td></tr>
<tr><td>Date</td><td>{esc(when)}</td></tr>
<tr><td>Account</td><td>{esc(account['email'])}</td></tr>
<tr><td>Checkout</td><td><code>{esc(e['external_ref'])}</code></td></tr>
</table></main></body></html>"""


def register(routes, rt, payments, whoami) -> None:
    cache: OrderedDict[str, dict] = OrderedDict()

    def stripe_receipt(sid: str) -> dict:
        """Blocking: the session (for its PaymentIntent), then the intent with its latest charge."""
        if sid in cache:
            return cache[sid]
        s = payments.stripe.retrieve_checkout(sid)
        pi = s.get("payment_intent") or ""
        if not pi:
            return {"receipt_url": "", "method_used": s.get("method_used", "")}
        r = payments.stripe.payment_receipt(pi)
        if r["receipt_url"]:
            cache[sid] = r
            while len(cache) > CACHE_MAX:
                cache.popitem(last=False)
        return r

    @routes.get("/credits/receipt/{session_id}")
    async def receipt(request: web.Request):
        who, err = await whoami(request)
        if err:
            return err
        sid = request.match_info["session_id"]
        if not SESSION_ID.match(sid):
            return error(400, "invalid_argument", "Not a checkout session id.", "session_id")
        fmt = request.query.get("format", "html")
        if fmt not in ("html", "json"):
            return error(400, "invalid_argument", "format is html or json.", "format")
        try:
            e = await asyncio.to_thread(rt.ledger.entry, f"stripe:{sid}")
        except _core.NotFound:
            e = None
        me = who["account"]
        if e is None or e["kind"] not in ("purchase", "test") or (e["account_id"] != me["id"] and me["role"] != "admin"):
            return error(404, "not_found", "No purchase of yours has that checkout.", "session_id")
        owner = me if e["account_id"] == me["id"] else await asyncio.to_thread(rt.ledger.account, e["account_id"])
        if sid.startswith("cs_test_sandbox_"):
            if fmt == "json":
                return web.json_response({"test_mode": True, "receipt_url": f"/credits/receipt/{sid}",
                                          "method_used": e["method"]})
            return web.Response(text=render_test_receipt(e, owner), content_type="text/html")
        if not payments.stripe:
            return error(409, "unavailable", "Stripe is not configured on this server, so its receipt cannot be "
                                             "fetched.")
        try:
            r = await asyncio.to_thread(stripe_receipt, sid)
        except _core.CreditsError as exc:
            log.error("comfy-credits: reading the receipt of %s from Stripe failed: %s", sid, exc)
            return error(502, "stripe_unavailable", "Stripe did not answer; try again in a moment.")
        if not r["receipt_url"]:
            return error(404, "no_receipt", "Stripe has no receipt for this payment yet.")
        if fmt == "json":
            return web.json_response({"test_mode": e["kind"] == "test", "receipt_url": r["receipt_url"],
                                      "method_used": r["method_used"], "payment_intent": r.get("payment_intent", "")})
        raise web.HTTPFound(r["receipt_url"])
