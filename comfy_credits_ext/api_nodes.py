"""Execution-time gate: wraps every API node class (core and third-party).

ComfyUI facts this relies on (shared/reference/backend.md §3, §4):
- API nodes are classes with `API_NODE is True` in nodes.NODE_CLASS_MAPPINGS;
  every pack is loaded before app.on_startup runs, so wrapping there covers
  third-party packs too;
- V1 nodes: execution calls getattr(instance, cls.FUNCTION)(**inputs); hidden
  inputs AUTH_TOKEN_COMFY_ORG / API_KEY_COMFY_ORG arrive as keyword args
  named in INPUT_TYPES()["hidden"];
- V3 nodes: execution calls cls.execute on a locked per-run clone whose
  `hidden` holder carries auth_token_comfy_org / api_key_comfy_org
  (comfy_api/latest/_io.py PREPARE_CLASS_CLONE); the FUNCTION classproperty
  checks inspect.iscoroutinefunction(cls.execute), so async stays async;
- comfy_execution.utils.get_executing_context() names the prompt and node;
- the output cache reuses results when IS_CHANGED / fingerprint_inputs
  (execution.py IsChangedCache) returns the same value, so we fold the
  account into it: one account's paid result is never handed to another;
- the API client sends `X-API-KEY: <api_key>` when there is no auth token
  (comfy_api_nodes/apis/client.py), so the per-hold token we inject there is
  what reaches our gateway.

Each run goes through the C state machine (src/run.c): begin places the
worst-case hold for the node's actual inputs and mints a token bound to the
run and its provider's paths; the gateway counts every call; finish applies
one policy (pay what the upstream billed, up to the hold) and resolves the
hold once, whether the node succeeded, failed or was interrupted. Refusals use our own wording, never Comfy.org's
"Payment Required: ..." (that string opens Comfy.org's top-up dialog).
"""
from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import math
import threading
import uuid
import weakref
from collections import OrderedDict

from . import _core

log = logging.getLogger("comfy_credits")

WRAPPED_MARK = "__comfy_credits_wrapped__"  # on a wrapper: the class it was made for
ORIGINAL_ATTR = "__comfy_credits_original__"  # on a wrapper: the function it wraps
LINKED = ["comfy_credits_linked", 0]  # stands for a non-literal input when pricing
BATCH_MARK = "comfy_credits_batch"  # [BATCH_MARK, n]: a tensor input of batch n (src/pricing.h)
INTERRUPT_POLL_S = 0.1  # how often a running API node looks at ComfyUI's interrupt flag


class CreditsRefused(Exception):
    """An API node was not allowed to run; the message says why and what to do."""


def _executing():
    try:
        from comfy_execution.utils import get_executing_context
    except ImportError:  # pragma: no cover - very old ComfyUI
        return None, None
    ctx = get_executing_context()
    if ctx is None:
        return None, None
    return ctx.prompt_id, ctx.node_id


def batch_size(v) -> int | None:
    """The batch size of a tensor input (IMAGE is [B, H, W, C], MASK [B, H, W]:
    the first dimension, as nodes_recraft.py reads `image.shape[0]`), or None."""
    shape = getattr(v, "shape", None)
    try:
        return int(shape[0]) if shape is not None and len(shape) >= 1 else None
    except (TypeError, ValueError, IndexError):
        return None


def pricing_inputs(kwargs: dict) -> dict:
    """Literal widget values as they are; a tensor as its batch size (a node
    that calls the upstream once per image is held for every image,
    pricing.h calls_per_batch_of); anything else (linked values) is priced
    as a link, i.e. at its worst case."""
    out = {}
    for k, v in kwargs.items():
        if isinstance(v, bool) or isinstance(v, (int, str)):
            out[k] = v
        elif isinstance(v, float) and math.isfinite(v):
            out[k] = int(v) if v.is_integer() else v
        elif v is None:
            continue
        elif (n := batch_size(v)) is not None:
            out[k] = [BATCH_MARK, n]
        else:
            out[k] = LINKED
    return out


# Path prefixes each provider family's nodes call (ComfyUI 0.3.64
# comfy_api_nodes/nodes_*.py). A run token reaches only its family's paths
# plus uploads; a node of unknown family (third-party, default price) may call
# any /proxy/ path, and every creating call it makes is counted and charged.
FAMILY_PATHS = {
    "BFL": ("/proxy/bfl/",), "ByteDance": ("/proxy/byteplus/",), "Google": ("/proxy/vertexai/", "/proxy/veo/"),
    "Ideogram": ("/proxy/ideogram/",), "Kling": ("/proxy/kling/",), "Luma": ("/proxy/luma/",),
    "MiniMax": ("/proxy/minimax/",), "Moonvalley": ("/proxy/moonvalley/",), "OpenAI": ("/proxy/openai/",),
    "Pika": ("/proxy/pika/",), "PixVerse": ("/proxy/pixverse/",), "Recraft": ("/proxy/recraft/",),
    "Rodin": ("/proxy/rodin/",), "Runway": ("/proxy/runway/",), "Stability AI": ("/proxy/stability/",),
    "Tripo": ("/proxy/tripo/",), "Vidu": ("/proxy/vidu/",), "Wan": ("/proxy/wan/",),
}
UNKNOWN_FAMILY_PATHS = ("/proxy/",)
UPLOAD_PATH = "/customers/storage"  # apinode_utils.py upload_file_to_comfy_api
SUCCESS_FINISH_WAIT_S = 30.0  # a failed/interrupted run's finish is not awaited longer than this

# The run a wrapped call belongs to: a subclass method that calls its
# parent's (also wrapped) method is one run, not two.
_current_run: contextvars.ContextVar[dict | None] = contextvars.ContextVar("comfy_credits_run", default=None)


def path_prefixes(rt, node_class: str) -> str:
    try:
        family = rt.prices.family(node_class)
    except Exception:
        family = ""
    return "\n".join(FAMILY_PATHS.get(family, UNKNOWN_FAMILY_PATHS) + (UPLOAD_PATH,))


class Metered:
    """One API-node class: its runs go through the C run state machine
    (src/run.c): begin = hold + run + token, finish = one policy, once."""

    def __init__(self, rt, node_class: str):
        self.rt = rt
        self.node_class = node_class
        self.prefixes = path_prefixes(rt, node_class)

    def account(self, prompt_id):
        account_id = self.rt.prompt_account(prompt_id)
        if account_id is None:
            raise CreditsRefused(
                f"{self.node_class} is a paid API node, and this run is not linked to a signed-in Credits "
                "account. Sign in under Settings → User → Credits account and queue the workflow again.")
        return account_id

    def begin(self, kwargs: dict, prompt_id, node_id, account_id):
        """Places the hold (worst case for these inputs) and mints the run's token."""
        inputs = pricing_inputs(kwargs)
        key = f"run:{prompt_id}:{node_id}:{uuid.uuid4().hex}"
        try:
            info = self.rt.runs.begin(key, account_id, str(prompt_id)[:64], str(node_id)[:64],
                                      self.node_class[:128], inputs, self.prefixes,
                                      key_id=self.rt.prompt_key(str(prompt_id)))
        except _core.InsufficientCredits as exc:
            if (exc.field or "").startswith("cap_") or exc.field == "key_cap":  # a spending cap: its own words
                raise CreditsRefused(f"Spending cap reached for {self.node_class}: {exc}") from None
            raise CreditsRefused(f"Not enough credits to run {self.node_class}: {exc}. "
                                 "Buy credits in Settings → Credits.") from None
        except _core.InvalidState as exc:
            if exc.field == "key":  # the prompt's API key expired or was revoked since it was queued
                raise CreditsRefused(f"{self.node_class} was refused: {exc}. Create a new key under "
                                     "Settings → Credits.") from None
            raise CreditsRefused(f"This Credits account cannot run API nodes: {exc}") from None
        except _core.InvalidArgument as exc:  # e.g. a batch larger than any hold covers (src/pricing.h)
            raise CreditsRefused(f"{self.node_class} cannot run with these inputs: {exc}") from None
        if info["used_default"]:
            log.warning("comfy-credits: no price rule for API node %s; held the default %s credits",
                        self.node_class, _core.format_credits(info["hold_micro"]))
        return info

    def finish(self, info: dict, outcome: str) -> dict | None:
        """Resolves the run once (src/run.c); never raises: a failure is
        logged and the hold is released by expiry, never charged twice."""
        try:
            res = self.rt.runs.finish(info["run_id"], outcome)
        except _core.CreditsError:
            log.exception("comfy-credits: could not resolve run %s of %s", info["run_id"], self.node_class)
            return None
        if res["hold_lost"]:
            log.error("comfy-credits: run %s of %s outlived its hold; %s credits billed upstream went uncollected",
                      info["run_id"], self.node_class, _core.format_credits(res["billed"]))
        elif res["uncollected"]:
            log.warning("comfy-credits: run %s of %s: the upstream billed %s credits, above the %s held; "
                        "%s recorded as uncollected", info["run_id"], self.node_class,
                        _core.format_credits(res["billed"]), _core.format_credits(res["hold_micro"]),
                        _core.format_credits(res["uncollected"]))
        return res


def now_ms() -> int:
    import time
    return int(time.time() * 1000)


def _interrupt_api():
    """ComfyUI's interrupt flag (POST /interrupt sets it; comfy/model_management.py)."""
    try:
        import comfy.model_management as mm
    except ImportError:  # outside ComfyUI
        return None
    return mm


async def _await_interruptible(awaitable):
    """Awaits the node's call, cancelling it as soon as the user interrupts the
    prompt: ComfyUI's API client does not look at the flag while a request is
    in flight. The gateway keeps waiting for the upstream's answer on its
    own, so what the upstream accepted is still counted (src/run.c)."""
    mm = _interrupt_api()
    task = asyncio.ensure_future(awaitable)
    if mm is None:
        return await task
    while True:
        done, _ = await asyncio.wait({task}, timeout=INTERRUPT_POLL_S)
        if done:
            return task.result()
        if mm.processing_interrupted():
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
            raise mm.InterruptProcessingException()


def _outcome(exc: BaseException | None) -> str:
    if exc is None:
        return "succeeded"
    mm = _interrupt_api()
    if isinstance(exc, asyncio.CancelledError) or (mm is not None and isinstance(exc, mm.InterruptProcessingException)):
        return "interrupted"
    return "failed"


async def run_metered(meter: Metered, kwargs: dict, inject, call):
    if _current_run.get() is not None:  # a parent's wrapped method called from a wrapped subclass
        return await call(None)
    prompt_id, node_id = _executing()
    account_id = meter.account(prompt_id)
    info = await asyncio.to_thread(meter.begin, kwargs, prompt_id, node_id, account_id)
    reset = _current_run.set(info)
    exc = None
    try:
        inject(info["token"])
        return await _await_interruptible(call(account_id))
    except BaseException as e:
        exc = e
        raise
    finally:
        _current_run.reset(reset)
        outcome = _outcome(exc)
        # Resolved in the pack's own threads: asyncio.run() of the prompt does
        # not wait for them, and a cancelled prompt cannot stop them.
        fut = asyncio.get_running_loop().run_in_executor(meter.rt.finish_pool, meter.finish, info, outcome)
        if outcome == "succeeded":
            await asyncio.shield(fut)
        else:
            # A call still in flight is waited for in the background (its
            # answer decides the charge); the prompt ends now.
            try:
                await asyncio.wait_for(asyncio.shield(fut), timeout=0.5)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                pass


def run_metered_sync(meter: Metered, kwargs: dict, inject, call):
    if _current_run.get() is not None:
        return call(None)
    prompt_id, node_id = _executing()
    account_id = meter.account(prompt_id)
    info = meter.begin(kwargs, prompt_id, node_id, account_id)
    reset = _current_run.set(info)
    exc = None
    try:
        inject(info["token"])
        return call(account_id)
    except BaseException as e:
        exc = e
        raise
    finally:
        _current_run.reset(reset)
        meter.finish(info, _outcome(exc))


# ---- node state per account (ComfyUI keeps one V1 instance per node id
# between prompts: execution.py caches.objects; the OpenAI chat node keeps
# previous_response_id and its history on it). Each account gets its own
# instance of a V1 API node, made like ComfyUI makes them (class_def()).
ACCOUNT_INSTANCES_MAX = 64  # per shared instance; the oldest is dropped

_instances: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_instances_lock = threading.Lock()


def instance_for(shared, account_id):
    if account_id is None:
        return shared
    try:
        with _instances_lock:
            per = _instances.get(shared)
            if per is None:
                per = _instances[shared] = OrderedDict()
            inst = per.get(account_id)
            if inst is None:
                inst = per[account_id] = type(shared)()
                while len(per) > ACCOUNT_INSTANCES_MAX:
                    per.popitem(last=False)
            else:
                per.move_to_end(account_id)
            return inst
    except TypeError:  # not weak-referenceable: a fresh instance each run (no state kept at all)
        return type(shared)()


def _hidden_kwarg_names(cls) -> tuple[str | None, str | None]:
    """V1: which keyword arguments carry the Comfy.org token and API key."""
    try:
        hidden = (cls.INPUT_TYPES() or {}).get("hidden", {}) or {}
    except Exception:
        return None, None
    auth = key = None
    for name, kind in hidden.items():
        if kind == "AUTH_TOKEN_COMFY_ORG":
            auth = name
        elif kind == "API_KEY_COMFY_ORG":
            key = name
    return auth, key


def _original(f):
    """The node's own function behind one of our wrappers (or f itself)."""
    return getattr(f, ORIGINAL_ATTR, f)


def _wrapped_here(cls, attr: str) -> bool:
    """True when `attr` on this very class (not a parent) is our wrapper."""
    raw = cls.__dict__.get(attr)
    f = raw.__func__ if isinstance(raw, classmethod) else raw
    return getattr(f, WRAPPED_MARK, None) is cls


def _mark(wrapper, cls, original):
    setattr(wrapper, WRAPPED_MARK, cls)
    setattr(wrapper, ORIGINAL_ATTR, original)
    return wrapper


def _fingerprint(rt, original):
    """IS_CHANGED / fingerprint_inputs that folds in the account of the run."""
    def fingerprint(cls, *args, **kwargs):
        prompt_id, _ = _executing()
        account = rt.prompt_account(prompt_id)
        base = None
        if original is not None:
            base = original(cls, *args, **kwargs)
        # Unknown account: never reuse a cached paid result.
        return ("comfy-credits", account if account is not None else uuid.uuid4().hex, base)
    setattr(fingerprint, ORIGINAL_ATTR, original)
    return fingerprint


def _inherited_classmethod(cls, attr: str):
    """The node's own classmethod function for attr (through the MRO), with
    any fingerprint of ours peeled off; None when there is none."""
    raw = inspect.getattr_static(cls, attr, None)
    fn = raw.__func__ if isinstance(raw, classmethod) else None
    while fn is not None and hasattr(fn, ORIGINAL_ATTR):
        fn = getattr(fn, ORIGINAL_ATTR)
    return fn


def wrap_v1(rt, name: str, cls) -> None:
    fname = getattr(cls, "FUNCTION", None)
    original = _original(getattr(cls, fname, None)) if fname else None
    if original is None:
        log.warning("comfy-credits: API node %s has no FUNCTION; it is left unwrapped and refused", name)
        return
    auth_kw, key_kw = _hidden_kwarg_names(cls)
    meter = Metered(rt, name)

    def make_call(self, args, kwargs):
        def inject(token):
            if auth_kw:
                kwargs[auth_kw] = None
            if key_kw:
                kwargs[key_kw] = token
            else:
                log.warning("comfy-credits: %s declares no API_KEY_COMFY_ORG input; its calls cannot be metered",
                            name)
        # account None: a parent's method called from a wrapped subclass, on the instance already chosen.
        return inject, (lambda account: original(self if account is None else instance_for(self, account),
                                                 *args, **kwargs))

    if inspect.iscoroutinefunction(original):
        @functools.wraps(original)
        async def wrapper(self, *args, **kwargs):  # ComfyUI passes keywords; a subclass's super() call may not
            inject, call = make_call(self, args, kwargs)
            return await run_metered(meter, kwargs, inject, call)
    else:
        @functools.wraps(original)
        def wrapper(self, *args, **kwargs):
            inject, call = make_call(self, args, kwargs)
            return run_metered_sync(meter, kwargs, inject, call)
    setattr(cls, fname, _mark(wrapper, cls, original))
    cls.IS_CHANGED = classmethod(_fingerprint(rt, _inherited_classmethod(cls, "IS_CHANGED")))


def wrap_v3(rt, name: str, cls) -> None:
    raw = inspect.getattr_static(cls, "execute", None)
    func = _original(raw.__func__) if isinstance(raw, classmethod) else None
    if func is None:
        log.warning("comfy-credits: API node %s has no classmethod execute; it is left unwrapped and refused", name)
        return
    meter = Metered(rt, name)

    def make(clone, args, kwargs):
        def inject(token):
            hidden = getattr(clone, "hidden", None)
            if hidden is None:
                raise CreditsRefused(f"{name}: cannot pass the run's token to this node")
            hidden.auth_token_comfy_org = None
            hidden.api_key_comfy_org = token
        # V3 nodes run on a locked per-run clone of the class: no instance state to keep apart.
        return inject, (lambda account: func(clone, *args, **kwargs))

    if inspect.iscoroutinefunction(func):
        @functools.wraps(func)
        async def execute(clone, *args, **kwargs):
            inject, call = make(clone, args, kwargs)
            return await run_metered(meter, kwargs, inject, call)
    else:
        @functools.wraps(func)
        def execute(clone, *args, **kwargs):
            inject, call = make(clone, args, kwargs)
            return run_metered_sync(meter, kwargs, inject, call)
    cls.execute = classmethod(_mark(execute, cls, func))
    prev_fn = _inherited_classmethod(cls, "fingerprint_inputs")
    if prev_fn is not None and (getattr(prev_fn, "__module__", "") or "").startswith("comfy_api."):
        prev_fn = None  # only the V3 base class's placeholder, which raises (first_real_override finds none)
    cls.fingerprint_inputs = classmethod(_fingerprint(rt, prev_fn))


def is_v3(cls) -> bool:
    try:
        from comfy_api.internal import _ComfyNodeInternal
    except ImportError:
        return False
    return isinstance(cls, type) and issubclass(cls, _ComfyNodeInternal)


def wrap_all(rt, node_classes: dict) -> list[str]:
    """Wraps every API node class once, each under its own name: a subclass
    gets a wrapper of its own (never its parent's, whose name and price
    would be used), whichever of the two is wrapped first."""
    done = []
    for name, cls in list(node_classes.items()):
        if getattr(cls, "API_NODE", False) is not True:
            continue
        if is_v3(cls):
            if _wrapped_here(cls, "execute"):
                continue
            wrap_v3(rt, name, cls)
        else:
            fname = getattr(cls, "FUNCTION", None)
            if fname and _wrapped_here(cls, fname):
                continue
            wrap_v1(rt, name, cls)
        done.append(name)
    return done
