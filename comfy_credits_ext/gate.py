"""Queue-time gate: hooks ComfyUI's POST /prompt (and /api/prompt).

ComfyUI facts this relies on (see shared/reference/backend.md §1.4, §2):
- a middleware appended to PromptServer.instance.app.middlewares before the
  app is frozen sees both /prompt and /api/prompt (server.py add_routes);
- on_prompt handlers run inside the /prompt handler, in the same task, before
  validation, and may rewrite `prompt_id` and `extra_data`, but an exception
  there is swallowed (server.py trigger_on_prompt) — so refusals happen in
  the middleware, never in the handler;
- a non-200 JSON body {"error": {type, message, details, extra_info},
  "node_errors": {...}} is shown by the frontend as
  "<message>: <details>" plus each node's errors (api.ts PromptExecutionError).

The middleware authenticates (our session cookie, `Authorization: Bearer`
with a session or personal API key, or a personal key in
extra_data.api_key_comfy_org), prices every API node at its worst case and
refuses when the account's available credits do not cover the sum. It never
trusts the Comfy-User header, which anyone can set.

Admission reserves the prompt's worst case (every API node in it) under a
prompt id the server chooses, so no node of an admitted prompt is refused
for credits later, and the next prompt only sees credits nobody reserved.
What a prompt did not use returns when it ends, is cancelled or is deleted
from the queue (install_queue_hook: PromptServer.queue_updated, which
ComfyUI calls on every put/get/task_done/wipe/delete, execution.py
PromptQueue). The account of a run is the one bound to that server-chosen
id: a client can never pick the id of someone else's prompt.

Admission stays on the event loop (issue #14): the whole prompt is priced
in one call into C (PriceTable.hold_many), and the credential check and
the reservation run inline through calls that never wait (no GIL release,
no thread hop); only when one would have to wait (every ledger reader busy,
a hold of the account being committed) does it go to a thread. In farm mode
(a shared PostgreSQL ledger) both stay in a thread: a network round trip.
"""
from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import uuid
from urllib.parse import urlsplit

from aiohttp import web

from . import _core

log = logging.getLogger("comfy_credits")

SESSION_COOKIE = "comfy_credits_session"
PROMPT_PATHS = ("/prompt", "/api/prompt")
SECRET_EXTRA_KEYS = ("api_key_comfy_org", "auth_token_comfy_org")
WHERE_TO_SIGN_IN = "Sign in under Settings → User → Credits account"
WHERE_TO_BUY = "Buy credits in Settings → Credits"


class Admission:
    """A prompt admitted for an account: what it reserved (hold_micro) under a prompt id the server chose.

    nodes: per priced API node {node_id, class_type, micro, used_default}, made when first read (only
    refusals and tests read it; admitting a prompt does not need 50 dicts). Compares and prints as the
    dataclass it was."""

    __slots__ = ("account_id", "hold_micro", "prompt_id", "reserved", "key_id", "_nodes", "_priced")
    _FIELDS = ("account_id", "hold_micro", "nodes", "prompt_id", "reserved", "key_id")

    def __init__(self, account_id: int, hold_micro: int = 0, nodes: list | None = None, prompt_id: str | None = None,
                 reserved: bool = False, key_id: int | None = None):
        self.account_id = account_id
        self.hold_micro = hold_micro
        self._nodes = [] if nodes is None else nodes
        self._priced = None
        self.prompt_id = str(uuid.uuid4()) if prompt_id is None else prompt_id  # chosen by the server, never the client
        self.reserved = reserved
        self.key_id = key_id  # the personal API key it came with: its cap is checked with every hold

    def priced(self, node_ids: list, items: list, holds: list) -> None:
        """nodes, to be made from these when read: node ids, (class_type, inputs), (micro, used_default)."""
        self._nodes, self._priced = None, (node_ids, items, holds)

    @property
    def nodes(self) -> list:
        if self._nodes is None:
            ids, items, holds = self._priced
            self._nodes = [{"node_id": node_id, "class_type": cls, "micro": micro, "used_default": used_default}
                           for node_id, (cls, _), (micro, used_default) in zip(ids, items, holds)]
            self._priced = None
        return self._nodes

    @nodes.setter
    def nodes(self, value: list) -> None:
        self._nodes, self._priced = value, None

    def __eq__(self, other):
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in self._FIELDS)

    __hash__ = None

    def __repr__(self):
        return f"Admission({', '.join(f'{f}={getattr(self, f)!r}' for f in self._FIELDS)})"


_admission: contextvars.ContextVar[Admission | None] = contextvars.ContextVar("comfy_credits_admission",
                                                                                default=None)


def is_api_node(cls) -> bool:
    return getattr(cls, "API_NODE", False) is True


BODY_READ_TIMEOUT_S = 30  # a body trickling in slower than this is cut off (slow-body DoS)


class BodyTimeout(Exception):
    pass


async def read_body(request: web.Request, timeout_s: float | None = None) -> bytes:
    """The request body (cached by aiohttp for later readers), within a time limit."""
    try:
        return await asyncio.wait_for(request.read(), timeout_s or BODY_READ_TIMEOUT_S)
    except asyncio.TimeoutError:
        raise BodyTimeout() from None


def same_origin(request: web.Request, public_url: str | None = None) -> bool:
    """False when the browser says this request comes from another origin.

    Browsers send Origin on every POST (and Sec-Fetch-Site on every request);
    a page on another origin, even a sibling subdomain that SameSite cookies
    count as the same site, cannot forge either. Scripts send neither and
    carry no ambient cookie, so they pass. The origin may be this server's
    Host or the operator's public_url (behind a reverse proxy)."""
    origin = request.headers.get("Origin")
    if origin:
        try:
            o = urlsplit(origin)
        except ValueError:
            return False
        if not o.netloc or o.scheme not in ("http", "https"):
            return False  # includes "null" (sandboxed frames, data: URLs)
        if o.netloc == request.host:
            return True
        if public_url:
            p = urlsplit(public_url)
            return (o.scheme, o.netloc.lower()) == (p.scheme, p.netloc.lower())
        return False
    return request.headers.get("Sec-Fetch-Site", "same-origin") in ("same-origin", "none")


def is_json(request: web.Request) -> bool:
    return request.content_type == "application/json"


def cookie_usable(request: web.Request, public_url: str | None = None) -> bool:
    """Our session cookie authenticates a write only when it is a same-origin
    JSON request: a cross-site form or text/plain fetch (no preflight) never
    acts as the signed-in person (CSRF)."""
    return same_origin(request, public_url) and is_json(request)


def request_token(request: web.Request, body: dict | None = None, cookie: bool = True) -> str | None:
    """The credential the client presented: cookie (unless cookie=False),
    bearer, or personal key."""
    tok = request.cookies.get(SESSION_COOKIE) if cookie else None
    if tok:
        return tok
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        cand = auth[7:].strip()
        if cand.startswith(("ccs_", "cck_")):
            return cand
    if body is not None:
        extra = body.get("extra_data")
        if isinstance(extra, dict):
            key = extra.get("api_key_comfy_org")
            if isinstance(key, str) and key.startswith("cck_"):
                return key
    return None


def prompt_error(kind: str, message: str, details: str, node_errors: dict | None = None,
                 status: int = 400, extra: dict | None = None) -> web.Response:
    body = {"error": {"type": kind, "message": message, "details": details, "extra_info": extra or {}},
            "node_errors": node_errors or {}}
    return web.json_response(body, status=status)


def credits(micro: int) -> str:
    return _core.format_credits(micro, 2)


CAP_KEYS = ("daily", "monthly", "own_daily", "own_monthly")


async def cap_refusal(rt, adm, account: dict, total: int) -> web.Response | None:
    """A spending cap (src/caps.c) refuses the prompt before anything runs, in the words the ledger
    uses at hold time: which cap, its window, when it resets. Queued prompts' reservations count.
    An account without any cap (as read with its credential) costs no extra read: the ledger still
    checks every hold against the caps stored then."""
    caps = account.get("caps") or {}
    if all(caps.get(k) is None for k in CAP_KEYS):
        return None
    try:
        await asyncio.to_thread(_core.cap_check, rt.ledger, adm.account_id, total + rt.runs.reserved(adm.account_id))
        return None
    except _core.InsufficientCredits as exc:
        node_errors = {n["node_id"]: {"errors": [{"type": "credits_cap_reached", "message": "Spending cap reached",
                                                  "details": str(exc), "extra_info": {"cap": exc.field}}],
                                      "dependent_outputs": [], "class_type": n["class_type"]} for n in adm.nodes}
        return prompt_error("credits_cap_reached", "Spending cap reached", str(exc), node_errors,
                            extra={"cap": exc.field, "needed_micro": total})


def key_cap_refusal(adm, cred: dict, total: int) -> web.Response | None:
    """A personal API key's own cap (auth.h cc_ledger_key_limits), as the key was read with the request: the
    prompt is refused before anything runs when its worst case does not fit what the key has left. The ledger
    checks every hold against the key again."""
    cap = cred.get("cap_micro")
    if cap is None or cred.get("kind") != "api_key":
        return None
    left = max(0, cap - cred.get("cap_used", 0))
    if total <= left:
        return None
    details = (f"API key spending cap reached: this key ({cred.get('hint', '')}…) may spend {credits(cap)} credits "
               f"in all; {credits(left)} are left and this workflow needs up to {credits(total)}. Raise its cap "
               "under Settings → Credits → API keys, or use another key.")
    node_errors = {n["node_id"]: {"errors": [{"type": "credits_cap_reached", "message": "Spending cap reached",
                                              "details": details, "extra_info": {"cap": "key_cap"}}],
                                  "dependent_outputs": [], "class_type": n["class_type"]} for n in adm.nodes}
    return prompt_error("credits_cap_reached", "Spending cap reached", details, node_errors,
                        extra={"cap": "key_cap", "needed_micro": total, "key_left_micro": left})


def find_api_nodes(prompt: dict, node_classes: dict) -> list[tuple[str, str, dict]]:
    ids, items = api_node_items(prompt, node_classes)
    return [(node_id, cls, inputs) for node_id, (cls, inputs) in zip(ids, items)]


def api_node_items(prompt: dict, node_classes: dict, prices=None) -> tuple[list, list]:
    """The prompt's API nodes as find_api_nodes() finds them, in two lists: node ids, and the
    (class_type, inputs) pairs PriceTable.hold_many() takes (admission builds no third list).
    With prices (a PriceTable) and a plain dict prompt (what json.loads gives), the walk over the
    nodes runs in C (PriceTable.api_nodes), asking Python once per class whether it is an API node."""
    if prices is not None and type(prompt) is dict:
        def is_api(class_type):
            cls = node_classes.get(class_type)
            return cls is not None and is_api_node(cls)
        return prices.api_nodes(prompt, is_api)
    ids, items = [], []
    api = {}  # class_type -> is an API node: looked up once per class in the prompt, not per node
    for node_id, node in prompt.items():
        if not isinstance(node, dict):
            continue
        class_type = node.get("class_type")
        yes = api.get(class_type)
        if yes is None:
            cls = node_classes.get(class_type)
            yes = api[class_type] = cls is not None and is_api_node(cls)
        if yes:
            inputs = node.get("inputs")
            ids.append(node_id if type(node_id) is str else str(node_id))
            items.append((class_type, inputs if isinstance(inputs, dict) else {}))
    return ids, items


async def admit(rt, request: web.Request, body: dict, node_classes: dict):
    """Returns an Admission, None (nothing to track), or a refusal response."""
    node_ids, items = api_node_items(body["prompt"], node_classes, rt.prices)
    cookie_ok = cookie_usable(request, rt.cfg.public_url)
    token = request_token(request, body, cookie=cookie_ok)
    if token is None:
        if not node_ids:
            return None
        if not cookie_ok and request.cookies.get(SESSION_COOKIE):
            return prompt_error(
                "credits_cross_site", "Cross-site request refused",
                "Paid API nodes run only from this server's own page (a same-origin JSON request) or with a "
                "personal API key; your Credits session was not used.", status=403)
        names = ", ".join(sorted({c for c, _ in items}))
        return prompt_error(
            "credits_sign_in_required", "Sign in to run API nodes",
            f"This workflow uses paid API nodes ({names}). {WHERE_TO_SIGN_IN}, or send a personal API key.",
            {nid: {"errors": [{"type": "credits_sign_in_required", "message": "Sign in to run this API node",
                               "details": WHERE_TO_SIGN_IN, "extra_info": {}}],
                   "dependent_outputs": [], "class_type": cls} for nid, (cls, _) in zip(node_ids, items)})
    # Inline only on a local SQLite ledger (a short read that never waits: no thread hop); a shared
    # PostgreSQL (farm mode) is a network round trip, never made on the event loop.
    inline = not getattr(rt.cfg, "farm", False)
    try:
        who = rt.ledger.check_credential(token, wait=False) if inline else None
        if who is None:  # farm mode, or every reader connection is busy
            who = await asyncio.to_thread(rt.ledger.check_credential, token)
    except (_core.NotFound, _core.InvalidState, _core.InvalidArgument) as exc:
        if not node_ids:
            return None  # a stale cookie must not block workflows that cost nothing
        if isinstance(exc, _core.InvalidArgument):  # e.g. a NUL in a personal key
            return prompt_error("credits_bad_credential", "The Credits session or API key is malformed",
                                f"{WHERE_TO_SIGN_IN}, or send a valid personal API key.", status=401)
        if isinstance(exc, _core.NotFound):
            if exc.field == "revoked" and token.startswith("cck_"):
                return prompt_error("credits_key_revoked", "This personal API key was revoked",
                                    "Create a new key under Settings → Credits.", status=401)
            if token.startswith("cck_") and exc.field == "expired":
                return prompt_error("credits_key_expired", "This personal API key has expired",
                                    "Create a new key, or extend this one, under Settings → Credits.", status=401)
            if token.startswith("cck_"):
                return prompt_error("credits_bad_credential", "This personal API key is not valid",
                                    "Check the key, or create a new one under Settings → Credits.", status=401)
            return prompt_error("credits_sign_in_required", "Your Credits session has expired",
                                f"{WHERE_TO_SIGN_IN} again.", status=401)
        return prompt_error("credits_account_disabled", "This Credits account is disabled",
                            "Ask the operator of this server to enable it.", status=403)
    account = who["account"]
    cred = who.get("credential") or {}
    adm = Admission(account_id=account["id"], key_id=cred["id"] if cred.get("kind") == "api_key" else None)
    if not node_ids:
        return adm
    # The whole prompt in one call into C (hold_many: node by node estimate()'s micro and used_default).
    total, holds = rt.hold_total(items)
    if total is None:  # a node could not be priced
        node_errors = {}
        for node_id, (cls, _), est in zip(node_ids, items, holds):
            if type(est) is not tuple:
                if not isinstance(est, _core.InvalidArgument):
                    raise est
                node_errors[node_id] = {"errors": [{"type": "credits_price_error",
                                                    "message": "Cannot price this node",
                                                    "details": str(est), "extra_info": {}}],
                                        "dependent_outputs": [], "class_type": cls}
        return prompt_error("credits_price_error", "Cannot price the API nodes in this workflow",
                            "See the nodes marked in red.", node_errors)
    adm.priced(node_ids, items, holds)
    adm.hold_micro = total
    capped = await cap_refusal(rt, adm, account, total) or key_cap_refusal(adm, cred, total)
    if capped:
        return capped
    try:
        # Inline when it cannot wait (no thread hop); else in a thread (src/run.h cc_runs_reserve_nowait).
        if not (inline and rt.reserve_prompt(adm.prompt_id, adm.account_id, total, wait=False)):
            await asyncio.to_thread(rt.reserve_prompt, adm.prompt_id, adm.account_id, total)
        adm.reserved = True
        return adm
    except _core.InsufficientCredits:
        pass
    except _core.InvalidState:
        return prompt_error("credits_account_disabled", "This Credits account is disabled",
                            "Ask the operator of this server to enable it.", status=403)
    try:  # the account as it is now: the one read with the credential can be older than the refusal
        account = await asyncio.to_thread(rt.ledger.account, adm.account_id)
    except _core.CreditsError:
        pass
    try:
        reserved = await rt.reserved_now(adm.account_id)
    except _core.CreditsError:
        reserved = rt.runs.reserved(adm.account_id)
    available = account["balance"] - account["held"] - reserved
    parts = ", ".join(f"{n['class_type']} (#{n['node_id']}) up to {credits(n['micro'])}" for n in adm.nodes)
    queued = f" ({credits(reserved)} are reserved by your queued prompts)" if reserved else ""
    details = (f"This workflow needs up to {credits(total)} credits ({parts}); you have "
               f"{credits(max(0, available))} available{queued}. {WHERE_TO_BUY}.")
    node_errors = {n["node_id"]: {"errors": [{"type": "insufficient_credits",
                                               "message": "Not enough credits for this API node",
                                               "details": f"needs up to {credits(n['micro'])} credits",
                                               "extra_info": {"estimate_micro": n["micro"]}}],
                                  "dependent_outputs": [], "class_type": n["class_type"]}
                   for n in adm.nodes}
    return prompt_error("insufficient_credits", "Not enough credits", details, node_errors,
                        extra={"needed_micro": total, "available_micro": max(0, available),
                               "reserved_micro": reserved, "buy": "settings:credits"})


def make_middleware(rt, node_classes: dict):
    @web.middleware
    async def comfy_credits_gate(request: web.Request, handler):
        if request.method != "POST" or request.path not in PROMPT_PATHS:
            return await handler(request)
        try:
            raw = await read_body(request)  # aiohttp caches the body: the handler reads it again
        except BodyTimeout:
            return prompt_error("request_timeout", "The request body arrived too slowly",
                                f"Send the whole body within {BODY_READ_TIMEOUT_S} s.", status=408)
        try:
            body = json.loads(raw)
        except Exception:
            return await handler(request)  # ComfyUI answers malformed bodies itself
        if not isinstance(body, dict) or not isinstance(body.get("prompt"), dict):
            return await handler(request)
        try:
            decision = await admit(rt, request, body, node_classes)
        except _core.StorageError as exc:
            # The ledger (e.g. a shared PostgreSQL) is unreachable: paid API
            # nodes are refused, workflows that cost nothing still run.
            log.warning("comfy-credits: ledger unavailable, API-node prompt refused: %s", exc)
            if find_api_nodes(body["prompt"], node_classes):
                return prompt_error("credits_unavailable", "Credits are unavailable right now",
                                    "The credits ledger cannot be reached, so paid API nodes are refused until it "
                                    "is back. Nothing was charged; try again shortly.", status=503)
            decision = None
        if isinstance(decision, web.StreamResponse):
            return decision
        reset = _admission.set(decision)
        queued = False
        try:
            resp = await handler(request)
            queued = resp.status == 200
            return resp
        finally:
            _admission.reset(reset)
            if decision is not None and decision.reserved and not queued:
                rt.release_prompt(decision.prompt_id)  # refused by validation: nothing stays reserved
    return comfy_credits_gate


def make_on_prompt(rt):
    def comfy_credits_on_prompt(json_data: dict) -> dict:
        adm = _admission.get()
        extra = json_data.get("extra_data")
        if isinstance(extra, dict):
            # A personal key or a Comfy.org token must not sit in GET /queue;
            # API nodes get a per-hold token at execution time instead.
            for k in SECRET_EXTRA_KEYS:
                extra.pop(k, None)
        if adm is None:
            # Admitted without an account: its API nodes are refused. A client
            # id that names a prompt we bound to an account is replaced, so
            # nobody runs on someone else's prompt (and account).
            cid = json_data.get("prompt_id")
            if cid is not None and rt.knows_prompt(str(cid)):
                json_data["prompt_id"] = str(uuid.uuid4())
            return json_data
        prompt_id = adm.prompt_id  # forced: clients cannot pick or collide ids
        json_data["prompt_id"] = prompt_id
        if not isinstance(extra, dict):
            extra = json_data["extra_data"] = {}
        # GET /queue and /history are public: an opaque per-server pseudonym, never the account number.
        extra["comfy_credits_run_by"] = rt.account_pseudonym(adm.account_id)
        rt.remember_prompt(prompt_id, adm.account_id, adm.key_id)
        return json_data
    return comfy_credits_on_prompt


def install_queue_hook(server, rt) -> None:
    """Releases what ended, cancelled or deleted prompts had reserved:
    ComfyUI calls PromptServer.queue_updated() after every queue change
    (execution.py PromptQueue put/get/task_done/wipe_queue/delete_queue_item)."""
    original = server.queue_updated

    def queue_updated(*args, **kwargs):
        try:
            return original(*args, **kwargs)
        finally:
            try:
                q = server.prompt_queue
                snap = getattr(q, "get_current_queue_volatile", None) or q.get_current_queue
                running, pending = snap()
                rt.reconcile_reservations({item[1] for item in list(running) + list(pending)})
            except Exception:  # never break ComfyUI's queue; unseen reservations age out
                log.exception("comfy-credits: could not reconcile prompt reservations")
    server.queue_updated = queue_updated


def make_storage_middleware():
    """A /credits/* route whose ledger call failed in storage (e.g. the shared
    PostgreSQL of farm mode is unreachable) answers 503 credits_unavailable
    with one clear line instead of ComfyUI's bare 500."""
    @web.middleware
    async def comfy_credits_storage(request: web.Request, handler):
        path = request.path[4:] if request.path.startswith("/api/") else request.path
        if not (path == "/credits" or path.startswith("/credits/")):
            return await handler(request)
        try:
            return await handler(request)
        except _core.StorageError as exc:
            log.warning("comfy-credits: ledger unavailable for %s %s: %s", request.method, path, exc)
            return web.json_response({"error": {"type": "credits_unavailable",
                                                "message": "Credits are unavailable right now (the ledger cannot be "
                                                           "reached); nothing was changed. Try again shortly."}},
                                     status=503)
    return comfy_credits_storage
