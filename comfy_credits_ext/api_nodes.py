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

Each run: hold the worst-case price, mint a token bound to the hold, inject
it, run the node, settle with what the gateway metered (or the estimate when
the upstream reported nothing), and void in `finally` on failure or
cancellation. Refusals use our own wording, never Comfy.org's
"Payment Required: ..." (that string opens Comfy.org's top-up dialog).
"""
from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import math
import uuid

from . import _core

log = logging.getLogger("comfy_credits")

WRAPPED_MARK = "__comfy_credits_wrapped__"
LINKED = ["comfy_credits_linked", 0]  # stands for a non-literal input when pricing
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


def pricing_inputs(kwargs: dict) -> dict:
    """Literal widget values as they are; anything else (tensors, images,
    linked values) is priced as a link, i.e. at its worst case."""
    out = {}
    for k, v in kwargs.items():
        if isinstance(v, bool) or isinstance(v, (int, str)):
            out[k] = v
        elif isinstance(v, float) and math.isfinite(v):
            out[k] = int(v) if v.is_integer() else v
        elif v is None:
            continue
        else:
            out[k] = LINKED
    return out


class Metered:
    """Hold → run → settle/void for one node execution."""

    def __init__(self, rt, node_class: str):
        self.rt = rt
        self.node_class = node_class

    def begin(self, kwargs: dict, prompt_id, node_id):
        """Places the hold and mints its token. Blocking but short."""
        account_id = self.rt.prompt_account(prompt_id)
        if account_id is None:
            raise CreditsRefused(
                f"{self.node_class} is a paid API node, and this run is not linked to a signed-in Credits "
                "account. Sign in under Settings → User → Credits account and queue the workflow again.")
        inputs = pricing_inputs(kwargs)
        est = self.rt.estimate(self.node_class, inputs)
        key = f"run:{prompt_id}:{node_id}:{uuid.uuid4().hex}"
        try:
            hold = self.rt.ledger.hold(
                key, account_id, est["micro"], self.rt.cfg.hold_ttl_ms, prompt_id=str(prompt_id)[:64],
                node_id=str(node_id)[:64], node_class=self.node_class[:128], model=est["model"][:128])
        except _core.InsufficientCredits as exc:
            raise CreditsRefused(
                f"Not enough credits to run {self.node_class}: it needs up to "
                f"{_core.format_credits(est['micro'])} credits. Buy credits in Settings → Credits. ({exc})") from None
        except _core.InvalidState as exc:
            raise CreditsRefused(f"This Credits account cannot run API nodes: {exc}") from None
        token = self.rt.tokens.mint(hold["hold_id"], account_id, now_ms() + self.rt.cfg.hold_ttl_ms)
        return hold, token, inputs

    def finish(self, hold: dict, inputs: dict, failed: bool) -> None:
        """Settles or voids. Blocking but short. A hold resolves once: a second
        call (cancellation racing completion) finds it resolved and stops."""
        usage = self.rt.meter.take(hold["hold_id"])
        calls = usage.pop("calls", 0)
        hid = hold["hold_id"]
        try:
            if failed and not (self.rt.cfg.charge_failed_runs and calls and usage):
                self.rt.ledger.void(f"void:{hid}", hid, note="run failed or was cancelled")
                return
            actual = self.rt.prices.actual(self.node_class, inputs, usage, hold["amount"])
            self.rt.ledger.settle(
                f"settle:{hid}", hid, actual["micro"], tokens_in=usage.get("input_tokens"),
                tokens_out=usage.get("output_tokens"), images=usage.get("images"),
                seconds_ms=usage.get("seconds_ms"))
        except _core.InvalidState:
            pass  # already resolved (expired, or resolved by the other path)


def now_ms() -> int:
    import time
    return int(time.time() * 1000)


def _resolve_sync(meter, hold, inputs, failed):
    try:
        meter.finish(hold, inputs, failed)
    except Exception:  # logged; expiry releases the hold later, it is never charged twice
        log.exception("comfy-credits: could not resolve hold %s", hold.get("hold_id"))
        if not failed:
            raise


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
    in flight, so without this a cancelled run would wait for, and pay for,
    an answer nobody wants."""
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


async def run_metered(meter: Metered, kwargs: dict, inject, call):
    prompt_id, node_id = _executing()
    hold, token, inputs = await asyncio.to_thread(meter.begin, kwargs, prompt_id, node_id)
    try:
        inject(token)
        result = await _await_interruptible(call())
    except asyncio.CancelledError:
        # The prompt is being torn down: resolve now, synchronously (a few ms).
        _resolve_sync(meter, hold, inputs, True)
        raise
    except BaseException:
        await asyncio.to_thread(_resolve_sync, meter, hold, inputs, True)
        raise
    try:
        await asyncio.shield(asyncio.to_thread(meter.finish, hold, inputs, False))
    except asyncio.CancelledError:
        _resolve_sync(meter, hold, inputs, False)
        raise
    return result


def run_metered_sync(meter: Metered, kwargs: dict, inject, call):
    prompt_id, node_id = _executing()
    hold, token, inputs = meter.begin(kwargs, prompt_id, node_id)
    try:
        inject(token)
        result = call()
    except BaseException:
        _resolve_sync(meter, hold, inputs, True)
        raise
    meter.finish(hold, inputs, False)
    return result


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
    return fingerprint


def wrap_v1(rt, name: str, cls) -> None:
    fname = getattr(cls, "FUNCTION", None)
    original = getattr(cls, fname, None) if fname else None
    if original is None:
        log.warning("comfy-credits: API node %s has no FUNCTION; it is left unwrapped and refused", name)
        return
    auth_kw, key_kw = _hidden_kwarg_names(cls)
    meter = Metered(rt, name)

    def make_call(self, kwargs):
        def inject(token):
            if auth_kw:
                kwargs[auth_kw] = None
            if key_kw:
                kwargs[key_kw] = token
            else:
                log.warning("comfy-credits: %s declares no API_KEY_COMFY_ORG input; its calls cannot be metered",
                            name)
        return inject, (lambda: original(self, **kwargs))

    if inspect.iscoroutinefunction(original):
        @functools.wraps(original)
        async def wrapper(self, **kwargs):
            inject, call = make_call(self, kwargs)
            return await run_metered(meter, kwargs, inject, call)
    else:
        @functools.wraps(original)
        def wrapper(self, **kwargs):
            inject, call = make_call(self, kwargs)
            return run_metered_sync(meter, kwargs, inject, call)
    setattr(wrapper, WRAPPED_MARK, True)
    setattr(cls, fname, wrapper)
    prev = cls.__dict__.get("IS_CHANGED")
    prev_fn = prev.__func__ if isinstance(prev, classmethod) else None
    cls.IS_CHANGED = classmethod(_fingerprint(rt, prev_fn))


def wrap_v3(rt, name: str, cls) -> None:
    raw = inspect.getattr_static(cls, "execute", None)
    func = raw.__func__ if isinstance(raw, classmethod) else None
    if func is None:
        log.warning("comfy-credits: API node %s has no classmethod execute; it is left unwrapped and refused", name)
        return
    meter = Metered(rt, name)

    def make(clone, kwargs):
        def inject(token):
            hidden = getattr(clone, "hidden", None)
            if hidden is None:
                raise CreditsRefused(f"{name}: cannot pass the run's token to this node")
            hidden.auth_token_comfy_org = None
            hidden.api_key_comfy_org = token
        return inject, (lambda: func(clone, **kwargs))

    if inspect.iscoroutinefunction(func):
        @functools.wraps(func)
        async def execute(clone, **kwargs):
            inject, call = make(clone, kwargs)
            return await run_metered(meter, kwargs, inject, call)
    else:
        @functools.wraps(func)
        def execute(clone, **kwargs):
            inject, call = make(clone, kwargs)
            return run_metered_sync(meter, kwargs, inject, call)
    setattr(execute, WRAPPED_MARK, True)
    cls.execute = classmethod(execute)
    prev = inspect.getattr_static(cls, "fingerprint_inputs", None)
    prev_fn = prev.__func__ if isinstance(prev, classmethod) else None
    try:
        from comfy_api.internal import first_real_override
        if prev_fn is not None and first_real_override(cls, "fingerprint_inputs") is None:
            prev_fn = None  # only the V3 base class's placeholder, which raises
    except ImportError:
        pass
    cls.fingerprint_inputs = classmethod(_fingerprint(rt, prev_fn))


def is_v3(cls) -> bool:
    try:
        from comfy_api.internal import _ComfyNodeInternal
    except ImportError:
        return False
    return isinstance(cls, type) and issubclass(cls, _ComfyNodeInternal)


def wrap_all(rt, node_classes: dict) -> list[str]:
    """Wraps every API node class once; returns the names wrapped now."""
    done = []
    for name, cls in list(node_classes.items()):
        if getattr(cls, "API_NODE", False) is not True:
            continue
        if is_v3(cls):
            target = inspect.getattr_static(cls, "execute", None)
            if getattr(getattr(target, "__func__", None), WRAPPED_MARK, False):
                continue
            wrap_v3(rt, name, cls)
        else:
            fname = getattr(cls, "FUNCTION", None)
            if fname and getattr(getattr(cls, fname, None), WRAPPED_MARK, False):
                continue
            wrap_v1(rt, name, cls)
        done.append(name)
    return done
