"""A loopback fake of Stripe's Checkout API that validates parameters the way
Stripe documents them (shared/reference/anchors.md §4; docs.stripe.com/api/
checkout/sessions/create, /api/metadata, /api/idempotent_requests, webhooks),
for testing the C client and the payment routes without the network.

Modelled: form bodies with bracket syntax; Bearer/Basic secret-key auth
(401 `authentication_required` style errors); API versions: the
`Stripe-Version` header, else the account's default version (the newest for
an account created in 2026); parameters checked PER VERSION against the
schema generated from Stripe's official Python SDK (tests/stripe_schema/,
see gen.py): unknown → 400 parameter_unknown naming `param`; missing →
parameter_missing; wrong types/values → parameter_invalid_*. On top of the
schema, what the SDK types cannot say: WeChat Pay needs
payment_method_options[wechat_pay][client] and a supported currency; Alipay
currencies; metadata limits; Idempotency-Key replay (Idempotent-Replayed:
true) and mismatch (idempotency_error); retrieve, expire (open only);
events with signed webhook delivery (t=,v1= HMAC-SHA256 over "t.body");
retrieve with expand[] (payment_intent, payment_intent.latest_charge), the
charge naming the method used (payment_method_details.type); on endive and
later allowed_payment_method_types filters the methods activated on the
account (dynamic payment methods). PaymentIntent retrieve
(docs.stripe.com/api/payment_intents/retrieve): only `expand` (an array,
expand[]=...) and `client_secret` are accepted, and only expandable fields
expand (docs.stripe.com/api/expanding_objects: "This property cannot be
expanded"); a paid charge carries receipt_url (a page this fake serves under
/receipts/payment/, like pay.stripe.com's).
Test controls live under /_fake/. Not modelled: everything else in Stripe.
"""
import asyncio
import contextvars
import hashlib
import hmac
import json
import re
from pathlib import Path
import secrets
import time
from urllib.parse import parse_qsl

import aiohttp
from aiohttp import web

KNOWN_CURRENCIES = {"usd", "eur", "gbp", "jpy", "krw", "cad", "aud", "chf", "cny", "hkd", "sgd", "sek", "nok",
                    "dkk", "nzd", "myr"}
WECHAT_CURRENCIES = {"aud", "cad", "cny", "eur", "gbp", "hkd", "jpy", "sgd", "usd", "dkk", "nok", "sek", "chf"}
ALIPAY_CURRENCIES = {"aud", "cad", "eur", "gbp", "hkd", "jpy", "nzd", "sgd", "usd", "myr"}
METHODS = {"card", "wechat_pay", "alipay", "link", "us_bank_account"}
SCHEMA_DIR = Path(__file__).resolve().parent / "stripe_schema"
SCHEMAS = {p.stem: json.loads(p.read_text()) for p in sorted(SCHEMA_DIR.glob("*.json"))}
VERSIONS = sorted(SCHEMAS)                       # ISO dates sort as strings
NEWEST = VERSIONS[-1]
SESSIONS_MAX = 10_000
# PaymentIntent fields Stripe lets expand[] expand (docs.stripe.com/api/payment_intents/object, "Expandable").
PAYMENT_INTENT_EXPANDABLE = {"application", "customer", "invoice", "latest_charge", "on_behalf_of", "payment_method",
                             "review", "source", "transfer_data.destination"}
REQUEST_VERSION = contextvars.ContextVar("stripe_version")  # the API version of the request being served
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class StripeError(Exception):
    def __init__(self, status, kind, code, message, param=None):
        self.status, self.kind, self.code, self.message, self.param = status, kind, code, message, param

    def response(self):
        err = {"type": self.kind, "code": self.code, "message": self.message}
        if self.param:
            err["param"] = self.param
        return web.json_response({"error": err}, status=self.status)


def invalid(code, message, param=None):
    return StripeError(400, "invalid_request_error", code, message, param)


def parse_form(body: str):
    """Stripe's bracket syntax: a[b][0][c]=v -> {"a": {"b": [{"c": "v"}]}}."""
    root = {}
    for key, value in parse_qsl(body, keep_blank_values=True, strict_parsing=False):
        m = re.fullmatch(r"([A-Za-z0-9_]+)((?:\[[^\[\]]*\])*)", key)
        if not m:
            raise invalid("parameter_invalid", f"Invalid parameter name: {key}", key)
        parts = [m.group(1)] + re.findall(r"\[([^\[\]]*)\]", m.group(2))
        node = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(node, list):
                if part == "":
                    part = str(len(node))
                if not part.isdigit():
                    raise invalid("parameter_invalid", f"Invalid array index in {key}", key)
                idx = int(part)
                while len(node) <= idx:
                    node.append(None)
                if last:
                    node[idx] = value
                else:
                    if node[idx] is None:
                        node[idx] = [] if parts[i + 1].isdigit() or parts[i + 1] == "" else {}
                    node = node[idx]
            else:
                if last:
                    node[part] = value
                else:
                    if part not in node:
                        node[part] = [] if parts[i + 1].isdigit() or parts[i + 1] == "" else {}
                    node = node[part]
    return root


def as_int(v, param, lo=None, hi=None):
    if not isinstance(v, str) or not re.fullmatch(r"-?\d+", v):
        raise invalid("parameter_invalid_integer", f"Invalid integer: {v}", param)
    n = int(v)
    if (lo is not None and n < lo) or (hi is not None and n > hi):
        raise invalid("parameter_invalid_integer", f"This value must be between {lo} and {hi}.", param)
    return n


def as_url(v, param):
    if not isinstance(v, str) or not re.match(r"^https?://[^\s]+$", v):
        raise invalid("url_invalid", f"Not a valid URL: {v}", param)
    return v


def check_schema(value, t, path, types):
    """One value against a generated type (see stripe_schema/gen.py)."""
    if "anyOf" in t:
        errors = []
        for option in t["anyOf"]:
            try:
                return check_schema(value, option, path, types)
            except StripeError as e:
                errors.append(e)
        raise errors[-1]
    if "ref" in t:
        fields = types[t["ref"]]
        if not isinstance(value, dict):
            raise invalid("parameter_invalid_object", f"Invalid object: {path}", path)
        for k in value:
            if k not in fields:
                name = f"{path}[{k}]" if path else k
                raise invalid("parameter_unknown", f"Received unknown parameter: {name}", name)
        for k, f in fields.items():
            name = f"{path}[{k}]" if path else k
            if k in value:
                check_schema(value[k], f, name, types)
            elif f.get("required"):
                raise invalid("parameter_missing", f"Missing required param: {name}.", name)
        return
    if "enum" in t:
        if value not in t["enum"]:
            raise invalid("parameter_invalid_string", f"Invalid {path}: must be one of {', '.join(map(str, t['enum']))}",
                          path)
        return
    kind = t.get("type")
    if kind == "array":
        if isinstance(value, dict) and all(k.isdigit() for k in value):
            value = [value[k] for k in sorted(value, key=int)]
        if not isinstance(value, list) or any(v is None for v in value):
            raise invalid("parameter_invalid_array", f"Invalid array: {path}", path)
        for i, v in enumerate(value):
            check_schema(v, t["items"], f"{path}[{i}]", types)
    elif kind == "map":
        if not isinstance(value, dict):
            raise invalid("parameter_invalid_object", f"Invalid hash: {path}", path)
        for k, v in value.items():
            check_schema(v, t["values"], f"{path}[{k}]", types)
    elif kind == "string":
        if not isinstance(value, str):
            raise invalid("parameter_invalid_string", f"Invalid string: {path}", path)
    elif kind == "integer":
        as_int(value, path)
    elif kind == "boolean":
        if value not in ("true", "false"):
            raise invalid("parameter_invalid_boolean", f"Invalid boolean: {path}", path)
    elif kind == "decimal":
        if not isinstance(value, str) or not re.fullmatch(r"-?\d+(\.\d+)?", value):
            raise invalid("parameter_invalid_decimal", f"Invalid decimal: {path}", path)


def check_params(p, version, operation):
    schema = SCHEMAS[version]
    check_schema(p, {"ref": schema["operations"][operation]}, "", schema["types"])


def validate_create(p, version=NEWEST, activated=frozenset({"card", "wechat_pay", "alipay"})):
    check_params(p, version, "checkout.sessions.create")
    if "mode" not in p:
        raise invalid("parameter_missing", "Missing required param: mode.", "mode")
    if p["mode"] not in ("payment", "setup", "subscription"):
        raise invalid("parameter_invalid_string", "Invalid mode", "mode")
    if "success_url" not in p:
        raise invalid("parameter_missing", "Missing required param: success_url.", "success_url")
    as_url(p["success_url"], "success_url")
    if "cancel_url" in p:
        as_url(p["cancel_url"], "cancel_url")
    items = p.get("line_items")
    if p["mode"] == "payment" and not items:
        raise invalid("parameter_missing", "You must specify line_items in payment mode.", "line_items")
    if not isinstance(items, list) or any(i is None for i in items):
        raise invalid("parameter_invalid", "line_items must be an array", "line_items")
    currencies, total = set(), 0
    for n, it in enumerate(items):
        base = f"line_items[{n}]"
        if not isinstance(it, dict) or set(it) - {"quantity", "price_data", "price"}:
            bad = sorted(set(it) - {"quantity", "price_data", "price"}) if isinstance(it, dict) else ["?"]
            raise invalid("parameter_unknown", f"Received unknown parameter: {base}[{bad[0]}]", f"{base}[{bad[0]}]")
        qty = as_int(it.get("quantity", ""), f"{base}[quantity]", 1, 999_999)
        pd = it.get("price_data")
        if not isinstance(pd, dict):
            raise invalid("parameter_missing", "price or price_data is required", f"{base}[price_data]")
        extra = set(pd) - {"currency", "unit_amount", "product_data"}
        if extra:
            raise invalid("parameter_unknown", f"Received unknown parameter: {base}[price_data][{min(extra)}]")
        cur = pd.get("currency", "")
        if cur not in KNOWN_CURRENCIES:
            raise invalid("parameter_invalid_string", f"Invalid currency: {cur}", f"{base}[price_data][currency]")
        amount = as_int(pd.get("unit_amount", ""), f"{base}[price_data][unit_amount]", 1, 99_999_999)
        name = (pd.get("product_data") or {}).get("name") if isinstance(pd.get("product_data"), dict) else None
        if not name:
            raise invalid("parameter_missing", "Missing required param: product_data[name].",
                          f"{base}[price_data][product_data][name]")
        currencies.add(cur)
        total += amount * qty
    if len(currencies) > 1:
        raise invalid("parameter_invalid", "All line items must use the same currency.", "line_items")
    currency = currencies.pop()
    if "customer_email" in p and not EMAIL.match(p["customer_email"]):
        raise invalid("email_invalid", "Invalid email address", "customer_email")
    if len(p.get("client_reference_id", "")) > 200:
        raise invalid("parameter_invalid_string_too_long", "client_reference_id is too long", "client_reference_id")
    md = p.get("metadata", {})
    if not isinstance(md, dict) or len(md) > 50:
        raise invalid("parameter_invalid", "metadata can have up to 50 keys", "metadata")
    for k, v in md.items():
        if len(k) > 40 or "[" in k or "]" in k:
            raise invalid("parameter_invalid", f"Invalid metadata key {k}", f"metadata[{k}]")
        if len(v) > 500:
            raise invalid("parameter_invalid", "metadata values can be up to 500 characters", f"metadata[{k}]")
    if "payment_method_types" in p:        # before endive: an explicit static list
        types, param = p["payment_method_types"], "payment_method_types"
    elif "allowed_payment_method_types" in p:  # endive: a filter on the activated (dynamic) methods
        types = [t for t in p["allowed_payment_method_types"] if t in activated]
        param = "allowed_payment_method_types"
    else:
        types, param = [t for t in sorted(activated) if t != "wechat_pay" or "wechat_pay" in
                        (p.get("payment_method_options") or {})], "payment_method_types"
    if not types:
        raise invalid("payment_method_unactivated", "None of the allowed payment methods is activated", param)
    if not isinstance(types, list) or any(t not in METHODS for t in types):
        raise invalid("parameter_invalid_string", f"Invalid {param}", param)
    opts = p.get("payment_method_options", {})
    if "wechat_pay" in types:
        client = (opts.get("wechat_pay") or {}).get("client") if isinstance(opts, dict) else None
        if client not in ("web", "ios", "android"):
            raise invalid("parameter_missing", "payment_method_options[wechat_pay][client] is required",
                          "payment_method_options[wechat_pay][client]")
        if p["mode"] != "payment" or currency not in WECHAT_CURRENCIES:
            raise invalid("payment_method_unactivated", f"wechat_pay does not support {currency}", param)
    if "alipay" in types and currency not in ALIPAY_CURRENCIES:
        raise invalid("payment_method_unactivated", f"alipay does not support {currency}", param)
    if "expires_at" in p:
        now = int(time.time())
        as_int(p["expires_at"], "expires_at", now + 1800, now + 86400)
    return currency, total, types


class FakeStripe:
    def __init__(self, secret_key="sk_test_fake", webhook_secret="whsec_fake", account_version=NEWEST):
        self.secret_key, self.webhook_secret = secret_key, webhook_secret
        self.account_version = account_version  # the account's default API version
        self.activated = {"card", "wechat_pay", "alipay"}
        self.intents = {}
        self.sessions, self.events, self.pending, self.requests = {}, [], [], []
        self.idem = {}
        self.fail_next = None
        self.webhook_url = None
        self.url_pad = 0          # > 0: session urls get that many more characters (long-field tests)

    def expanded(self, s, expand):
        """Stripe's expand[]: ids become objects along each dotted path."""
        out = dict(s)
        for path in expand:
            if path not in ("payment_intent", "payment_intent.latest_charge"):
                raise invalid("parameter_invalid", f"This property cannot be expanded ({path}).", "expand")
            pi = self.intents.get(s.get("payment_intent"))
            if pi is None:
                continue  # null stays null
            pi = dict(pi)
            if path == "payment_intent.latest_charge" and pi["latest_charge"]:
                pi["latest_charge"] = dict(pi["charges"][pi["latest_charge"]])
            pi.pop("charges")
            out["payment_intent"] = pi
        return out

    def auth_ok(self, request):
        h = request.headers.get("Authorization", "")
        if h.startswith("Bearer "):
            return h[7:] == self.secret_key
        if h.startswith("Basic "):
            import base64
            try:
                return base64.b64decode(h[6:]).decode().split(":")[0] == self.secret_key
            except Exception:
                return False
        return False

    def event(self, kind, session):
        ev = {"id": "evt_" + secrets.token_hex(12), "object": "event", "type": kind, "created": int(time.time()),
              "api_version": self.account_version, "livemode": False,
              "data": {"object": json.loads(json.dumps(session))}}
        self.events.append(ev)
        self.pending.append(ev)
        return ev

    def sign(self, body: bytes, t=None, secret=None, extra_v1=None):
        t = int(time.time()) if t is None else t
        mac = hmac.new((secret or self.webhook_secret).encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
        sig = f"t={t},v1={mac}"
        if extra_v1:
            sig += f",v1={extra_v1}"
        return sig

    def app(self):
        routes = web.RouteTableDef()

        async def api(request, fn):
            raw = (await request.read()).decode()
            params = {}
            try:
                if not self.auth_ok(request):
                    raise StripeError(401, "invalid_request_error", "api_key_invalid", "Invalid API Key provided")
                params = parse_form(raw if raw else request.query_string)
                version = request.headers.get("Stripe-Version", self.account_version)
                self.requests.append({"method": request.method, "path": request.path, "params": params,
                                      "idempotency_key": request.headers.get("Idempotency-Key"),
                                      "stripe_version": request.headers.get("Stripe-Version")})
                if version not in SCHEMAS:
                    raise invalid("invalid_api_version", f"Invalid Stripe API version: {version}")
                REQUEST_VERSION.set(version)
                if self.fail_next:
                    f, self.fail_next = self.fail_next, None
                    raise StripeError(f.get("status", 500), f.get("type", "api_error"), f.get("code", "internal"),
                                      f.get("message", "An unknown error occurred"))
                return await fn(request, params)
            except StripeError as e:
                return e.response()

        @routes.post("/v1/checkout/sessions")
        async def create(request):
            async def go(request, p):
                key = request.headers.get("Idempotency-Key")
                if key is not None and len(key) > 255:
                    raise invalid("idempotency_key_too_long", "Idempotency-Key is too long")
                if key and key in self.idem:
                    saved_params, saved = self.idem[key]
                    if saved_params != p:
                        raise invalid("idempotency_error", "Keys for idempotent requests can only be used with the "
                                                           "same parameters they were first used with.")
                    return web.json_response(saved, headers={"Idempotent-Replayed": "true"})
                currency, total, types = validate_create(p, REQUEST_VERSION.get(), frozenset(self.activated))
                if len(self.sessions) >= SESSIONS_MAX:
                    raise StripeError(429, "rate_limit_error", "rate_limit", "Too many sessions in the fake")
                sid = "cs_test_" + secrets.token_hex(16)
                now = int(time.time())
                s = {"id": sid, "object": "checkout.session", "mode": p["mode"], "status": "open",
                     "payment_status": "unpaid", "currency": currency, "amount_total": total,
                     "amount_subtotal": total, "customer_email": p.get("customer_email"),
                     "client_reference_id": p.get("client_reference_id"), "metadata": p.get("metadata", {}),
                     "payment_method_types": types, "success_url": p["success_url"],
                     "cancel_url": p.get("cancel_url"), "created": now,
                     "expires_at": int(p.get("expires_at", now + 86400)), "livemode": False, "payment_intent": None,
                     "url": f"{request.scheme}://{request.host}/pay/{sid}" +
                            ("?" + "x" * (self.url_pad - 1) if self.url_pad > 0 else "")}
                self.sessions[sid] = s
                if key:
                    self.idem[key] = (p, s)
                return web.json_response(s)
            return await api(request, go)

        @routes.get("/v1/checkout/sessions/{sid}")
        async def retrieve(request):
            async def go(request, p):
                check_params(p, REQUEST_VERSION.get(), "checkout.sessions.retrieve")
                s = self.sessions.get(request.match_info["sid"])
                if not s:
                    raise StripeError(404, "invalid_request_error", "resource_missing",
                                      f"No such checkout.session: '{request.match_info['sid']}'", "session")
                return web.json_response(self.expanded(s, p.get("expand", [])))
            return await api(request, go)

        @routes.get("/v1/payment_intents/{pid}")
        async def retrieve_intent(request):
            async def go(request, p):
                unknown = sorted(set(p) - {"expand", "client_secret"})
                if unknown:
                    raise invalid("parameter_unknown", f"Received unknown parameter: {unknown[0]}", unknown[0])
                expand = p.get("expand", [])
                if not isinstance(expand, list) or not all(isinstance(x, str) for x in expand):
                    raise invalid("parameter_invalid", "Invalid array", "expand")
                for path in expand:
                    if path not in PAYMENT_INTENT_EXPANDABLE:
                        raise invalid("parameter_invalid", f"This property cannot be expanded ({path}).", "expand")
                pi = self.intents.get(request.match_info["pid"])
                if not pi:
                    raise StripeError(404, "invalid_request_error", "resource_missing",
                                      f"No such payment_intent: '{request.match_info['pid']}'", "intent")
                out = {k: v for k, v in pi.items() if k != "charges"}
                if "latest_charge" in expand and pi["latest_charge"]:
                    out["latest_charge"] = dict(pi["charges"][pi["latest_charge"]])
                return web.json_response(out)
            return await api(request, go)

        @routes.get("/receipts/payment/{token}")
        async def receipt_page(request):
            for pi in self.intents.values():
                for ch in pi["charges"].values():
                    if ch.get("receipt_url", "").endswith("/" + request.match_info["token"]):
                        return web.Response(text=f"<h1>Receipt</h1><p>{ch['id']}: {pi['amount']} {pi['currency']}</p>",
                                            content_type="text/html")
            return web.Response(status=404, text="no such receipt")

        @routes.post("/v1/checkout/sessions/{sid}/expire")
        async def expire(request):
            async def go(request, p):
                s = self.sessions.get(request.match_info["sid"])
                if not s:
                    raise StripeError(404, "invalid_request_error", "resource_missing", "No such checkout.session")
                if s["status"] != "open":
                    raise invalid("checkout_session_not_open", "Only open sessions can be expired.")
                s["status"] = "expired"
                self.event("checkout.session.expired", s)
                return web.json_response(s)
            return await api(request, go)

        @routes.post("/_fake/sessions/{sid}/pay")
        async def pay(request):
            body = await request.json()
            s = self.sessions[request.match_info["sid"]]
            outcome = body.get("outcome", "paid")
            method = body.get("method", s["payment_method_types"][0])
            if method not in s["payment_method_types"]:
                return web.json_response({"error": f"{method} is not offered by this session"}, status=400)
            if outcome in ("paid", "async_pending"):
                pid, cid = "pi_" + secrets.token_hex(8), "ch_" + secrets.token_hex(8)
                receipt = f"{request.scheme}://{request.host}/receipts/payment/{secrets.token_urlsafe(24)}"
                self.intents[pid] = {"id": pid, "object": "payment_intent", "amount": s["amount_total"],
                                     "currency": s["currency"], "payment_method_types": [method],
                                     "status": "succeeded" if outcome == "paid" else "processing",
                                     "livemode": self.secret_key.startswith("sk_live_"),
                                     "latest_charge": cid,
                                     "charges": {cid: {"id": cid, "object": "charge", "payment_intent": pid,
                                                       "paid": outcome == "paid", "receipt_url": receipt,
                                                       "payment_method_details": {"type": method, method: {}}}}}
                s["payment_intent"] = pid
            if outcome == "paid":
                s.update(status="complete", payment_status="paid")
                self.event("checkout.session.completed", s)
            elif outcome == "async_pending":
                s.update(status="complete", payment_status="unpaid")
                self.event("checkout.session.completed", s)
            elif outcome == "async_succeeded":
                s.update(payment_status="paid")
                self.event("checkout.session.async_payment_succeeded", s)
            elif outcome == "async_failed":
                self.event("checkout.session.async_payment_failed", s)
            return web.json_response(s)

        @routes.post("/_fake/sessions/{sid}/update")
        async def update(request):
            """Changes a session as the Dashboard or a bug on Stripe's side could (e.g. amount_total)."""
            s = self.sessions[request.match_info["sid"]]
            s.update(await request.json())
            return web.json_response(s)

        @routes.post("/_fake/fail_next")
        async def fail_next(request):
            self.fail_next = await request.json()
            return web.json_response({"ok": True})

        @routes.get("/_fake/requests")
        async def list_requests(request):
            return web.json_response(self.requests)

        @routes.post("/_fake/deliver")
        async def deliver(request):
            """Delivers pending events (options: repeat N times, stale timestamp, wrong secret)."""
            opts = await request.json()
            results = []
            async with aiohttp.ClientSession() as http:
                for ev in list(self.pending):
                    body = json.dumps(ev).encode()
                    t = int(time.time()) - (400 if opts.get("stale") else 0)
                    sig = self.sign(body, t=t, secret=opts.get("secret"))
                    for _ in range(int(opts.get("repeat", 1))):
                        async with http.post(opts["url"], data=body, headers={"Stripe-Signature": sig,
                                                                              "Content-Type": "application/json"}) as r:
                            results.append({"event": ev["type"], "status": r.status,
                                            "body": await r.json(content_type=None)})
                if not opts.get("keep"):
                    self.pending.clear()
            return web.json_response(results)

        app = web.Application(client_max_size=1 << 20)
        app.add_routes(routes)
        return app
