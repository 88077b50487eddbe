"""Buying credits: Stripe Checkout, or the sandbox checkout (TEST MODE) when no
Stripe key is configured. Hooks ComfyUI's routes under /credits/.

The money rules are in C: conversion (_core.convert), which methods a
currency may offer (_core.payment_methods: WeChat Pay and Alipay only in USD),
the Stripe client and webhook signature check (_core.Stripe,
_core.verify_webhook) and exactly-once fulfilment keyed by the session id
(Ledger.fulfil_checkout). Both the signed webhook and the user's return call
the same fulfilment, so whichever comes first credits and the other sees
"already_credited". There is no refund route.

A session is priced once, when it is created (credits, amount, currency and
rate in its metadata); fulfilment credits exactly that. Neither path trusts
an event body: the webhook takes only the session id from the signed event
and reads the session from Stripe (expanded to the charge, which names the
method used) at the pinned Stripe-Version. A paid session that cannot be
credited is kept for the operator (attention.py) and the buyer is told it is
being reviewed. A retried create reuses its Idempotency-Key, derived from the
account and the request id the browser sends.

The sandbox plays Stripe's part with the same session and event shapes: its
page completes a session, then delivers a *signed* checkout.session.completed
event to our own webhook route over loopback, so the sandbox exercises the
real verification and fulfilment path.
"""
from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import hmac
import html
import json
import logging
import secrets
import time
import re
import uuid
from collections import OrderedDict

from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from . import _core
from .attention import Attention, import_local_file
from .gate import BodyTimeout, read_body
# routes.py (error, read_json, same_origin, signed_in_write) is imported where a route is made, not here:
# Payments is made at start-up, the routes' modules load at their first request (pack.py LAZY_ROUTES).

log = logging.getLogger("comfy_credits")

SANDBOX_SESSIONS_MAX = 10_000
SESSION_PARAM = "credits_checkout"
PRESETS_USD = (5, 10, 20, 50, 100)
REQUEST_ID = re.compile(r"^[A-Za-z0-9_-]{8,100}$")
REVIEW_MESSAGE = ("Your payment was received. The purchase is being reviewed by the operator; the credits are added "
                  "once it is resolved, nothing more is charged.")


class RequestReused(Exception):
    """The same purchase request id with other parameters."""


class Sandbox:
    """An in-process stand-in for Stripe Checkout (TEST MODE only)."""

    def __init__(self, self_base: str | None):
        # Where deliver() posts the signed event: the pack's private plain-HTTP loopback listener
        # (pack.py sets it at start-up), never ComfyUI's own listener, whose TLS certificate (if any)
        # names another host than the loopback address this process would use.
        self.self_base = self_base.rstrip("/") if self_base else None
        self.webhook_secret = "whsec_sandbox_" + secrets.token_hex(24)
        self.sessions: OrderedDict[str, dict] = OrderedDict()
        self.by_key: OrderedDict[str, tuple] = OrderedDict()
        self.events_sent = 0

    def create(self, *, currency, amount_minor, credits_micro, account_id, customer_email, success_url,
               cancel_url, methods, page_base, rate_micro, idempotency_key, **_):
        # Stripe's idempotency: the same key with the same parameters answers
        # the first session; with other parameters it is refused.
        params = (currency, amount_minor, credits_micro, account_id, tuple(methods), rate_micro)
        seen = self.by_key.get(idempotency_key)
        if seen and seen[1] in self.sessions:
            if seen[0] != params:
                raise RequestReused("this request id was already used for another purchase")
            return self.public(self.sessions[seen[1]])
        sid = "cs_test_sandbox_" + secrets.token_hex(12)
        now = int(time.time())
        s = {"id": sid, "object": "checkout.session", "mode": "payment", "status": "open",
             "payment_status": "unpaid", "currency": currency, "amount_total": amount_minor,
             "client_reference_id": str(account_id), "customer_email": customer_email,
             "metadata": {"account_id": str(account_id), "credits_micro": str(credits_micro),
                          "amount_minor": str(amount_minor), "currency": currency, "rate_micro": str(rate_micro),
                          "method": ",".join(methods)}, "payment_intent": None,
             "payment_method_types": list(methods), "success_url": success_url, "cancel_url": cancel_url,
             "created": now, "expires_at": now + 24 * 3600, "livemode": False,
             "url": f"{page_base}/credits/sandbox/checkout/{sid}"}
        self.sessions[sid] = s
        self.by_key[idempotency_key] = (params, sid)
        while len(self.sessions) > SANDBOX_SESSIONS_MAX:
            self.sessions.popitem(last=False)
        while len(self.by_key) > SANDBOX_SESSIONS_MAX:
            self.by_key.popitem(last=False)
        return self.public(s)

    def public(self, s: dict) -> dict:
        return _core.parse_checkout_session(json.dumps(s).encode())

    def get(self, sid: str) -> dict | None:
        s = self.sessions.get(sid)
        if s and s["status"] == "open" and s["expires_at"] < time.time():
            s["status"] = "expired"
        return s

    def signed_event(self, s: dict, kind: str) -> tuple[bytes, str]:
        ev = {"id": "evt_sandbox_" + secrets.token_hex(12), "object": "event", "type": kind,
              "created": int(time.time()), "livemode": False, "api_version": "2024-06-20",
              "data": {"object": s}}
        body = json.dumps(ev).encode()
        t = int(time.time())
        mac = hmac.new(self.webhook_secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
        return body, f"t={t},v1={mac}"

    async def deliver(self, s: dict, kind: str) -> dict:
        """Posts the signed event to our webhook route; {"status": 0, "error": ...} when it cannot be
        delivered (the buyer's return to ComfyUI still credits the session, as with Stripe)."""
        if not self.self_base:
            return {"status": 0, "error": "the webhook listener is not started"}
        body, sig = self.signed_event(s, kind)
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
                async with http.post(f"{self.self_base}/credits/stripe/webhook", data=body,
                                     headers={"Stripe-Signature": sig, "Content-Type": "application/json"}) as r:
                    self.events_sent += 1
                    return {"status": r.status, "body": await r.json(content_type=None)}
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:
            return {"status": 0, "error": f"{type(exc).__name__}: {exc}"}


class Payments:
    def __init__(self, rt, self_base: str | None = None):
        self.rt = rt
        cfg = rt.cfg
        self.stripe = None
        self.sandbox = None
        if cfg.stripe_key:
            try:
                self.stripe = _core.Stripe(cfg.stripe_api_base, cfg.stripe_key, api_version=cfg.stripe_api_version)
            except _core.InvalidArgument as exc:  # a typo must not take API nodes down with it
                log.error("comfy-credits: STRIPE_SECRET_KEY is not usable (%s); buying credits is DISABLED", exc)
            if not cfg.stripe_webhook_secret:
                log.warning("comfy-credits: STRIPE_WEBHOOK_SECRET is not set; purchases are credited only when the "
                            "buyer returns to ComfyUI")
        elif cfg.sandbox_enabled:
            self.sandbox = Sandbox(self_base)
            log.warning("comfy-credits: no STRIPE_SECRET_KEY: purchases use the SANDBOX checkout (TEST MODE, no "
                        "real money); its TEST credits pay only for the simulated upstream.")
        else:
            log.info("comfy-credits: buying credits is off (no STRIPE_SECRET_KEY; the sandbox checkout runs only "
                     "with the simulated upstream or \"sandbox_checkout\": true)")
        self.test_credits = cfg.test_credits_sold
        self.min_micro = _core.convert("usd", cfg.purchase_min_usd_cents, cfg.rates_micro)
        self.max_micro = _core.convert("usd", cfg.purchase_max_usd_cents, cfg.rates_micro)
        self.attention = Attention(rt.ledger)
        if cfg.farm:  # the list used to be a local file per server
            try:
                import_local_file(rt.ledger, Path(cfg.attention_path))
            except _core.CreditsError as exc:  # the ledger is unreachable now: the file stays for next time
                log.error("comfy-credits: could not move the local needs-attention list: %s", exc)

    @property
    def enabled(self) -> bool:
        return bool(self.stripe or self.sandbox)

    def options(self) -> dict:
        cfg = self.rt.cfg
        currencies = []
        for code, micro in sorted(cfg.rates_micro.items()):
            exp = _core.currency_exponent(code)
            currencies.append({"code": code, "exponent": exp, "credits_per_unit": _core.format_credits(micro, 0),
                               "methods": _core.payment_methods(code)})
        return {"enabled": self.enabled, "test_mode": bool(self.test_credits and self.enabled),
                "min_usd_cents": cfg.purchase_min_usd_cents, "max_usd_cents": cfg.purchase_max_usd_cents,
                "min_credits_micro": self.min_micro, "max_credits_micro": self.max_micro,
                "presets_usd": list(PRESETS_USD), "currencies": currencies,
                "methods_note": "WeChat Pay and Alipay are available only when paying in USD."}

    def fulfil(self, session_json: bytes) -> dict:
        """Credits a paid session once; keeps one that cannot be credited for the operator."""
        res = self.rt.ledger.fulfil_checkout(session_json, test=self.test_credits)
        if res["state"] == "needs_attention":
            log.error("comfy-credits: paid checkout %s NEEDS ATTENTION (nothing credited): %s; see "
                      "`python -m comfy_credits_ext purchases attention`", res["session_id"], res["reason"])
            self.attention.record(res)
        return res

    def fetch_session(self, sid: str) -> bytes | None:
        """The session as Stripe (or the sandbox) has it now, as JSON; None if unknown.
        Raises _core.CreditsError when Stripe cannot be reached."""
        if self.sandbox:
            raw = self.sandbox.get(sid)
            return json.dumps(raw).encode() if raw else None
        if not self.stripe:
            raise _core.InvalidState("buying credits is not enabled on this server")
        try:
            s = self.stripe.retrieve_checkout(sid)
        except _core.InvalidArgument as exc:
            if exc.field in ("session", "session_id") or "resource_missing" in str(exc):
                return None
            log.error("comfy-credits: reading checkout %s from Stripe failed: %s", sid, exc)
            raise _core.StorageError(f"reading checkout {sid} failed: {exc}") from None
        return json.dumps(_stripe_shape(s)).encode()


def public_base(request: web.Request, cfg) -> str | None:
    """Where browsers reach this server, for every absolute link we hand out
    (Stripe return URLs, the sandbox page): public_url when set; else the
    request's own Host only when it is loopback or in allowed_hosts. Never an
    arbitrary Host header, which anyone can send."""
    if cfg.public_url:
        return cfg.public_url
    host = request.host or ""
    name = (urlsplit("//" + host).hostname or "").lower()
    try:
        loopback = ipaddress.ip_address(name).is_loopback
    except ValueError:
        loopback = name == "localhost"
    if loopback or name in cfg.allowed_hosts or host.lower() in cfg.allowed_hosts:
        return f"{request.scheme}://{host}"
    return None


def register(routes, rt, payments: Payments, whoami) -> None:
    from .routes import error, read_json, signed_in_write
    @routes.get("/credits/checkout/options")
    async def options(request):
        return web.json_response(payments.options())

    @routes.post("/credits/checkout")
    async def create(request):
        who, _, err = await signed_in_write(request, whoami)
        if err:
            return err
        body = await read_json(request)
        if body is None:
            return error(400, "bad_json", "Send a JSON object (Content-Type: application/json).")
        if not payments.enabled:
            return error(503, "purchases_disabled", "Buying credits is not enabled on this server.")
        currency = body.get("currency", "usd")
        method = body.get("method")  # None: the checkout page offers every method the currency allows
        amount = body.get("amount_minor")
        if not isinstance(currency, str) or currency.lower() not in rt.cfg.rates_micro:
            return error(400, "invalid_argument", f"currency must be one of {', '.join(rt.cfg.rates_micro)}",
                         "currency")
        currency = currency.lower()
        if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
            return error(400, "invalid_argument", "amount_minor must be a positive integer (cents, or yen for JPY)",
                         "amount_minor")
        allowed = _core.payment_methods(currency)
        if method is not None and method not in ("card", "wechat_pay", "alipay"):
            return error(400, "invalid_argument", "method must be card, wechat_pay or alipay", "method")
        if method is not None and method not in allowed:
            return error(400, "method_not_available",
                         "WeChat Pay and Alipay are only available when paying in USD.", "method")
        request_id = body.get("request_id")
        if request_id is not None and (not isinstance(request_id, str) or not REQUEST_ID.match(request_id)):
            return error(400, "invalid_argument", "request_id must be 8..100 letters, digits, - or _", "request_id")
        try:
            credits = _core.convert(currency, amount, rt.cfg.rates_micro)
        except _core.InvalidArgument as exc:
            return error(400, "invalid_argument", str(exc), exc.field)
        if not payments.min_micro <= credits <= payments.max_micro:
            lo, hi = rt.cfg.purchase_min_usd_cents / 100, rt.cfg.purchase_max_usd_cents / 100
            return error(400, "amount_out_of_range",
                         f"A purchase must be worth between ${lo:,.2f} and ${hi:,.2f} "
                         f"({_core.format_credits(payments.min_micro, 0)}–{_core.format_credits(payments.max_micro, 0)}"
                         " credits).", "amount_minor")
        least = _core.stripe_min_charge(currency)
        if amount < least:
            return error(400, "amount_below_minimum",
                         f"Stripe's minimum charge in {currency.upper()} is "
                         f"{least / 10 ** _core.currency_exponent(currency):,.{_core.currency_exponent(currency)}f} "
                         f"{currency.upper()}.", "amount_minor")
        account = who["account"]
        base = public_base(request, rt.cfg)
        if base is None:
            log.error("comfy-credits: a checkout was asked for through host %r, which is not this server's "
                      "public_url and not in allowed_hosts; set public_url in the config", request.host)
            return error(400, "unknown_host", "This server does not know its public address; the operator must set "
                         "public_url (or allowed_hosts).")
        # One purchase attempt = one key: a retry of the same create (same
        # request id from the browser) gets the same session, never a second one.
        idem = "cc-checkout-" + hashlib.sha256(
            f"{account['id']}\0{request_id or uuid.uuid4()}".encode()).hexdigest()[:48]
        params = dict(currency=currency, amount_minor=amount, credits_micro=credits, account_id=account["id"],
                      customer_email=account["email"], rate_micro=rt.cfg.rates_micro[currency], idempotency_key=idem,
                      success_url=f"{base}/?{SESSION_PARAM}={{CHECKOUT_SESSION_ID}}",
                      cancel_url=f"{base}/?{SESSION_PARAM}=cancelled",
                      methods=[method] if method else allowed)
        try:
            if payments.stripe:
                s = await asyncio.to_thread(payments.stripe.create_checkout,
                                            product_name=f"{_core.format_credits(credits, 0)} ComfyUI credits",
                                            **params)
            else:
                s = payments.sandbox.create(page_base=base, **params)
        except RequestReused as exc:
            return error(409, "request_reused", f"{exc}; start a new purchase.", "request_id")
        except _core.InvalidArgument as exc:
            if "idempotency_error" in str(exc):
                return error(409, "request_reused", "This request id was already used for another purchase; start "
                             "a new purchase.", "request_id")
            return error(400, "invalid_argument", str(exc), exc.field)
        except _core.CreditsError as exc:
            log.error("comfy-credits: creating a checkout failed: %s", exc)
            return error(502, "checkout_unavailable", "The payment provider could not be reached; try again.")
        return web.json_response({"checkout_url": s["url"], "session_id": s["id"], "credits_micro": credits,
                                  "credits": _core.format_credits(credits, 0), "test_mode": bool(payments.test_credits)})

    @routes.get("/credits/checkout/{session_id}")
    async def status(request):
        who, err = await whoami(request)
        if err:
            return err
        sid = request.match_info["session_id"]
        if not payments.enabled:
            return error(503, "purchases_disabled", "Buying credits is not enabled on this server.")
        try:
            session_json = await asyncio.to_thread(payments.fetch_session, sid)
        except _core.CreditsError:
            return error(502, "checkout_unavailable", "The payment provider could not be reached; try again.")
        if session_json is None:
            return error(404, "not_found", "No such checkout.")
        s = _core.parse_checkout_session(session_json)
        if s["account_id"] != who["account"]["id"]:
            return error(404, "not_found", "No such checkout.")  # never reveal other accounts' purchases
        try:
            res = await asyncio.to_thread(payments.fulfil, session_json)
        except _core.CreditsError as exc:
            log.error("comfy-credits: fulfilling %s failed: %s", sid, exc)
            return error(409, "fulfilment_failed", str(exc))
        acct = await asyncio.to_thread(rt.ledger.account, who["account"]["id"])
        out = {"state": res["state"], "session_id": sid, "credits_micro": s["credits_micro"],
               "method": res["method_used"], "balance_micro": acct["balance"],
               "balance": _core.format_credits(acct["balance"])}
        if res["state"] == "needs_attention":
            out["message"] = REVIEW_MESSAGE
        return web.json_response(out)

    routes.post("/credits/stripe/webhook")(make_webhook(rt, payments))
    if payments.sandbox:
        register_sandbox(routes, rt, payments)


def make_webhook(rt, payments: Payments):
    """The Stripe webhook route's handler. ComfyUI's server serves it (Stripe posts there); with the
    sandbox checkout the pack's private loopback listener serves it too (Sandbox.deliver posts there)."""

    async def webhook(request):
        from .routes import error  # at the first event: with the sandbox this handler is made at start-up
        try:
            body = await read_body(request)
        except BodyTimeout:
            return error(408, "request_timeout", "The body arrived too slowly.")
        secret = payments.sandbox.webhook_secret if payments.sandbox else rt.cfg.stripe_webhook_secret
        if not secret:
            return error(503, "webhooks_disabled", "No webhook signing secret is configured.")
        try:
            _core.verify_webhook(secret, request.headers.get("Stripe-Signature", ""), body)
        except (_core.InvalidArgument, _core.InvalidState) as exc:
            return error(400, "bad_signature", str(exc))
        try:
            event = json.loads(body)
        except ValueError:
            return error(400, "bad_json", "The event is not JSON.")
        kind = event.get("type") if isinstance(event, dict) else None
        if kind in ("checkout.session.completed", "checkout.session.async_payment_succeeded"):
            obj = (event.get("data") or {}).get("object") if isinstance(event.get("data"), dict) else None
            sid = obj.get("id") if isinstance(obj, dict) else None
            if not isinstance(sid, str) or not sid.startswith("cs_"):
                return error(400, "bad_event", "The event carries no Checkout Session id.")
            # The signed event only names the session; its content is read from
            # Stripe at our pinned version (with the charge: the method used).
            try:
                session_json = await asyncio.to_thread(payments.fetch_session, sid)
            except _core.CreditsError as exc:
                log.warning("comfy-credits: webhook for %s: Stripe unreachable (%s); Stripe will retry", sid, exc)
                return error(503, "checkout_unavailable", "Stripe could not be reached; retry later.")
            if session_json is None:
                log.error("comfy-credits: webhook names checkout %s, which Stripe does not know under this key", sid)
                return error(404, "unknown_session", "No such checkout under this Stripe key.")
            try:
                res = await asyncio.to_thread(payments.fulfil, session_json)
            except _core.CreditsError as exc:
                log.error("comfy-credits: webhook for %s could not be recorded: %s", sid, exc)
                return error(500, "storage_error", "The purchase could not be recorded yet; retry later.")
            out = {"received": True, "state": res["state"]}
            if res["state"] == "needs_attention":
                out["reason"] = res["reason"]
            return web.json_response(out)
        if kind == "checkout.session.async_payment_failed":
            log.info("comfy-credits: a delayed payment failed; nothing is credited")
        return web.json_response({"received": True, "state": "ignored"})

    return webhook


def _stripe_shape(s: dict) -> dict:
    """A session dict from _core.Stripe back into Stripe's JSON shape."""
    pi = s["payment_intent"] or None
    if pi and s["method_used"]:
        pi = {"id": pi, "latest_charge": {"payment_method_details": {"type": s["method_used"]}}}
    md = {"credits_micro": str(s["credits_micro"]), "method": s["methods_offered"]}
    if s["priced_amount_minor"]:
        md.update(amount_minor=str(s["priced_amount_minor"]), currency=s["priced_currency"],
                  rate_micro=str(s["rate_micro"]))
    return {"object": "checkout.session", "id": s["id"], "url": s["url"], "status": s["status"],
            "payment_status": s["payment_status"], "currency": s["currency"], "amount_total": s["amount_total"],
            "client_reference_id": str(s["account_id"]), "customer_email": s["customer_email"],
            "created": s["created_s"], "metadata": md, "payment_intent": pi}


def register_sandbox(routes, rt, payments: Payments) -> None:
    from .routes import same_origin
    sandbox = payments.sandbox

    @routes.get("/credits/sandbox/checkout/{session_id}")
    async def page(request):
        s = sandbox.get(request.match_info["session_id"])
        if s is None:
            return web.Response(status=404, text="No such checkout.")
        return web.Response(text=render_page(s, request.query.get("msg", "")), content_type="text/html")

    @routes.post("/credits/sandbox/checkout/{session_id}")
    async def act(request):
        if not same_origin(request, rt.cfg.public_url):
            return web.Response(status=403, text="Cross-site requests are not accepted.")
        s = sandbox.get(request.match_info["session_id"])
        if s is None:
            return web.Response(status=404, text="No such checkout.")
        form = await request.post()
        action, method = form.get("action"), form.get("method", "card")
        if s["status"] != "open":
            raise web.HTTPSeeOther(f"{request.path}?msg=This+checkout+is+{s['status']}.")
        if action == "cancel":
            raise web.HTTPSeeOther(s["cancel_url"])
        if method not in s["payment_method_types"]:
            raise web.HTTPSeeOther(f"{request.path}?msg=That+payment+method+is+not+offered+here.")
        if action == "fail":
            raise web.HTTPSeeOther(f"{request.path}?msg=Your+payment+was+declined+(test+card).+Nothing+was+charged.")
        if action != "pay":
            return web.Response(status=400, text="Unknown action.")
        s["status"], s["payment_status"] = "complete", "paid"
        # As Stripe has it: the charge names the method used; metadata keeps the offer.
        s["payment_intent"] = {"id": "pi_sandbox_" + secrets.token_hex(12), "object": "payment_intent",
                               "latest_charge": {"id": "ch_sandbox_" + secrets.token_hex(12), "object": "charge",
                                                 "payment_method_details": {"type": method}}}
        result = await sandbox.deliver(s, "checkout.session.completed")
        if result["status"] != 200:
            log.error("comfy-credits: sandbox webhook was not delivered: %s (the buyer's return credits it)", result)
        raise web.HTTPSeeOther(s["success_url"].replace("{CHECKOUT_SESSION_ID}", s["id"]))


def render_page(s: dict, msg: str) -> str:
    """The sandbox checkout page: the same choices as Stripe Checkout here."""
    exp = _core.currency_exponent(s["currency"])
    amount = s["amount_total"] / (10 ** exp) if exp else s["amount_total"]
    shown = f"{amount:,.{exp}f} {s['currency'].upper()}"
    credits = _core.format_credits(int(s["metadata"]["credits_micro"]), 0)
    labels = {"card": "Card", "wechat_pay": "WeChat Pay", "alipay": "Alipay"}
    methods = "".join(
        f'<label class="m"><input type="radio" name="method" value="{m}"{" checked" if i == 0 else ""}> '
        f"{labels[m]}</label>" for i, m in enumerate(s["payment_method_types"]))
    only_usd = "" if s["currency"] == "usd" else \
        '<p class="note">WeChat Pay and Alipay are only available when paying in USD.</p>'
    note = f'<p class="msg" role="alert">{html.escape(msg)}</p>' if msg else ""
    sid = html.escape(s["id"])
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>TEST MODE checkout</title>
<style>body{{font:15px system-ui,sans-serif;background:#1b1b1f;color:#e8e8e8;display:flex;justify-content:center}}
main{{background:#26262c;margin:40px;padding:28px 32px;border-radius:10px;width:420px}}
.test{{background:#f5a524;color:#222;font-weight:700;padding:6px 10px;border-radius:6px;display:inline-block}}
.amount{{font-size:28px;margin:12px 0 4px}} .m{{display:block;margin:6px 0}} button{{margin:8px 8px 0 0;padding:9px 16px;
border-radius:6px;border:0;cursor:pointer}} .pay{{background:#4f7cff;color:#fff}} .qr{{display:none;margin:10px 0;
width:140px;height:140px;background:repeating-linear-gradient(45deg,#fff 0 6px,#000 6px 12px)}}
.msg{{background:#5a2323;padding:8px;border-radius:6px}} .note{{color:#aaa;font-size:13px}}
.locked{{width:300px;padding:7px 9px;border-radius:6px;border:1px solid #555;background:#1f1f24;color:#bbb;font:inherit}}</style></head>
<body><main><span class="test">TEST MODE — no real money moves</span>
<div class="amount" data-testid="amount">{shown}</div><div>for <b>{credits} credits</b></div>{note}
<form method="post" action="/credits/sandbox/checkout/{sid}">
<p><label for="email">Email</label><br>
<input id="email" data-testid="email" type="email" value="{html.escape(s["customer_email"])}" readonly aria-readonly="true"
 aria-describedby="email-note" class="locked"> <span aria-hidden="true">&#128274;</span><br>
<span class="note" id="email-note">Your account's email on this server, as Stripe Checkout shows it: it cannot be
changed here.</span></p>
<fieldset><legend>Payment method</legend>{methods}</fieldset>{only_usd}
<div class="qr" id="qr" aria-label="QR code (test)"></div>
<button class="pay" name="action" value="pay" id="pay">Pay</button>
<button type="button" id="genqr" style="display:none">Generate QR Code</button>
<button name="action" value="fail" id="fail">Simulate a declined payment</button>
<button name="action" value="cancel" id="cancel" formnovalidate>Cancel</button></form>
<script>
const pay=document.getElementById('pay'),gen=document.getElementById('genqr'),qr=document.getElementById('qr');
function sync(){{const m=document.querySelector('input[name=method]:checked');const w=m&&m.value==='wechat_pay';
gen.style.display=w?'':'none';pay.textContent=w?'I scanned it: pay':'Pay';pay.style.display=w&&qr.style.display!=='block'?'none':'';}}
document.querySelectorAll('input[name=method]').forEach(e=>e.addEventListener('change',()=>{{qr.style.display='none';sync();}}));
gen.addEventListener('click',()=>{{qr.style.display='block';sync();}});sync();
</script></main></body></html>"""
