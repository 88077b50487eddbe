"""Mirrors execution.py: validation, and the worker-thread executor.

What the pack depends on, modelled faithfully:
- PromptExecutor.execute runs asyncio.run(execute_async(...)) on the worker
  thread: each prompt gets its own event loop (execution.py PromptExecutor).
- V1 nodes: an instance's FUNCTION is called with the inputs plus the hidden
  inputs (AUTH_TOKEN_COMFY_ORG / API_KEY_COMFY_ORG from extra_data, UNIQUE_ID)
  (get_input_data, execution.py:138-201).
- V3 nodes: PREPARE_CLASS_CLONE(hidden) then make_locked_method_func(cls,
  FUNCTION, clone) (_async_map_node_over_list, execution.py:217-281).
- Async node functions run as tasks inside CurrentNodeContext; unfinished
  ones are awaited together, so API nodes of one prompt overlap
  (execution.py:262-276, pending_async_nodes).
- Output cache across prompts keyed by class, literal inputs, the inputs'
  own keys and IS_CHANGED / fingerprint_inputs (IsChangedCache, caching.py
  get_immediate_node_signature); a hit skips the function.
- V1 node instances are kept across prompts, one per (node id, class)
  (execution.py:454-457 caches.objects, a HierarchicalCache(CacheKeySetID)):
  whatever a node stores on self survives into the next prompt.
- A node exception ends the prompt with execution_error and cancels the other
  pending tasks (asyncio.run exiting); an interrupt gives
  execution_interrupted (handle_execution_error).
- History entries drop SENSITIVE_EXTRA_DATA_KEYS (execution.py:136, 1123).
"""
import asyncio
import inspect
import json
import logging
import time
import traceback

import comfy.model_management
import nodes
from comfy_api.internal import _ComfyNodeInternal, first_real_override, make_locked_method_func
from comfy_execution.utils import CurrentNodeContext

SENSITIVE_EXTRA_DATA_KEYS = ("auth_token_comfy_org", "api_key_comfy_org")


def is_link(v):
    return isinstance(v, list) and len(v) == 2 and isinstance(v[0], str) and isinstance(v[1], int)


def _err(kind, message, details="", extra=None):
    return {"type": kind, "message": message, "details": details, "extra_info": extra or {}}


async def validate_prompt(prompt_id, prompt, partial_execution_list=None):
    """Returns (ok, error, good_outputs, node_errors) like execution.validate_prompt."""
    outputs = []
    for node_id, node in prompt.items():
        if not isinstance(node, dict) or "class_type" not in node:
            return (False, _err("invalid_prompt", "Cannot execute because a node is missing the class_type property.",
                                f"Node ID '#{node_id}'"), [], {})
        cls = nodes.NODE_CLASS_MAPPINGS.get(node["class_type"])
        if cls is None:
            # checked on ComfyUI 0.3.64: {"type": "invalid_prompt", "message": "Cannot execute because node
            # Nope does not exist.", "details": "Node ID '#1'"} (newer builds say missing_node_type)
            return (False, _err("invalid_prompt", f"Cannot execute because node {node['class_type']} does not exist.",
                                f"Node ID '#{node_id}'"), [], {})
        if getattr(cls, "OUTPUT_NODE", False):
            outputs.append(node_id)
    if not outputs:
        return False, _err("prompt_no_outputs", "Prompt has no outputs", ""), [], {}
    node_errors = {}
    for node_id, node in prompt.items():
        cls = nodes.NODE_CLASS_MAPPINGS[node["class_type"]]
        required = (cls.INPUT_TYPES() or {}).get("required", {})
        missing = [k for k in required if k not in node.get("inputs", {})]
        if missing:
            node_errors[node_id] = {"errors": [_err("required_input_missing", "Required input is missing",
                                                     missing[0], {"input_name": missing[0]})],
                                    "dependent_outputs": outputs, "class_type": node["class_type"]}
    if node_errors:
        return (False, _err("prompt_outputs_failed_validation", "Prompt outputs failed validation", ""), [],
                node_errors)
    return True, None, outputs, {}


def is_v3(cls):
    return isinstance(cls, type) and issubclass(cls, _ComfyNodeInternal)


def hidden_values(cls, node_id, extra_data):
    """get_input_data's hidden inputs: V1 keyword names, V3 Hidden keys."""
    src = {"AUTH_TOKEN_COMFY_ORG": extra_data.get("auth_token_comfy_org"),
           "API_KEY_COMFY_ORG": extra_data.get("api_key_comfy_org"), "UNIQUE_ID": node_id}
    hidden = (cls.INPUT_TYPES() or {}).get("hidden", {})
    if is_v3(cls):
        return {}, {v: src.get(v) for v in hidden.values()}
    return {name: src.get(kind) for name, kind in hidden.items()}, None


def full_type_name(klass):
    module = klass.__module__
    return klass.__qualname__ if module == "builtins" else module + "." + klass.__qualname__


def declared_inputs(cls):
    """The names in INPUT_TYPES()'s required and optional sections (None if unknown)."""
    try:
        types = cls.INPUT_TYPES()
    except Exception:
        return None
    if not isinstance(types, dict):
        return None
    return {name for section in ("required", "optional") for name in (types.get(section) or {})}


class PromptExecutor:
    def __init__(self, server):
        self.server = server
        self.outputs_cache = {}  # signature -> outputs; survives across prompts like ComfyUI's caches
        self.objects = {}  # (node id, class) -> V1 instance, kept across prompts (caches.objects)
        self.status_messages = []
        self.success = True
        self.history_result = {}

    def add_message(self, event, data, broadcast=False):
        data = {**data, "timestamp": int(time.time() * 1000)}
        self.status_messages.append((event, data))
        self.server.send_sync(event, data, self.server.client_id)

    def execute(self, prompt, prompt_id, extra_data={}, execute_outputs=[]):
        asyncio.run(self.execute_async(prompt, prompt_id, extra_data, execute_outputs))

    async def _is_changed(self, prompt_id, node_id, cls, literal):
        name = None
        if is_v3(cls) and first_real_override(cls, "fingerprint_inputs") is not None:
            name = "fingerprint_inputs"
        elif not is_v3(cls) and hasattr(cls, "IS_CHANGED"):
            name = "IS_CHANGED"
        if name is None:
            return False
        try:
            if is_v3(cls):
                f = make_locked_method_func(cls, name, cls.PREPARE_CLASS_CLONE(None))
            else:
                f = getattr(cls, name)
            with CurrentNodeContext(prompt_id, node_id, 0):
                r = f(**literal)
            if inspect.isawaitable(r):
                r = await r
            return repr(r)
        except Exception as e:
            logging.warning("WARNING: {}".format(e))
            return "NaN"

    async def _call(self, prompt_id, node_id, cls, inputs, extra_data):
        kw_hidden, v3_hidden = hidden_values(cls, node_id, extra_data)
        if is_v3(cls):
            f = make_locked_method_func(cls, cls.FUNCTION, cls.PREPARE_CLASS_CLONE(v3_hidden))
        else:
            obj = self.objects.get((node_id, cls))
            if obj is None:
                obj = self.objects[(node_id, cls)] = cls()
            f = getattr(obj, cls.FUNCTION)
        args = {**inputs, **kw_hidden}
        nodes.before_node_execution()
        if inspect.iscoroutinefunction(f):
            async def async_wrapper():
                with CurrentNodeContext(prompt_id, node_id, 0):
                    return await f(**args)
            task = asyncio.create_task(async_wrapper())
            await asyncio.sleep(0)
            return task
        with CurrentNodeContext(prompt_id, node_id, 0):
            return f(**args)

    @staticmethod
    def _outputs(result):
        if hasattr(result, "result") and not isinstance(result, (dict, tuple)):
            return list(result.result), None
        if isinstance(result, dict):
            return list(result.get("result", ())), result.get("ui")
        return list(result or ()), None

    async def execute_async(self, prompt, prompt_id, extra_data={}, execute_outputs=[]):
        nodes.interrupt_processing(False)
        self.server.client_id = extra_data.get("client_id")
        self.status_messages = []
        self.success = True
        self.history_result = {"outputs": {}, "meta": {}}
        self.add_message("execution_start", {"prompt_id": prompt_id})
        needed, stack = set(), list(execute_outputs)
        while stack:
            nid = stack.pop()
            if nid in needed:
                continue
            needed.add(nid)
            stack.extend(v[0] for v in prompt[nid].get("inputs", {}).values() if is_link(v))
        done, sigs = {}, {}
        cached = []
        pending = {}
        try:
            while len(done) < len(needed):
                ready = [n for n in needed if n not in done and n not in pending and all(
                    v[0] in done for v in prompt[n].get("inputs", {}).values() if is_link(v))]
                for nid in ready:
                    node = prompt[nid]
                    cls = nodes.NODE_CLASS_MAPPINGS[node["class_type"]]
                    raw = node.get("inputs", {})
                    literal = {k: v for k, v in raw.items() if not is_link(v)}
                    changed = await self._is_changed(prompt_id, nid, cls, literal)
                    sig = json.dumps([node["class_type"], changed, sorted(literal.items(), key=str),
                                      sorted((k, sigs[v[0]], v[1]) for k, v in raw.items() if is_link(v))],
                                     default=str)
                    sigs[nid] = sig
                    if sig in self.outputs_cache:
                        done[nid] = self.outputs_cache[sig]
                        cached.append(nid)
                        continue
                    # execution.py get_input_data (0.3.64 execution.py:138-184): a literal input the
                    # class does not declare has no input_category and is not passed (e.g. the
                    # frontend's "preview" widget value on PreviewAny).
                    declared = declared_inputs(cls)
                    inputs = {k: (done[v[0]][0][v[1]] if is_link(v) else v) for k, v in raw.items()
                              if is_link(v) or declared is None or k in declared}
                    self.server.last_node_id = nid
                    self.add_message("executing", {"node": nid, "display_node": nid, "prompt_id": prompt_id})
                    try:
                        r = await self._call(prompt_id, nid, cls, inputs, extra_data)
                    except Exception as ex:
                        raise _NodeFailure(nid, node["class_type"], ex) from None
                    if isinstance(r, asyncio.Task):
                        pending[nid] = r
                    else:
                        self._finish(nid, sig, r, done)
                if pending:
                    finished, _ = await asyncio.wait(pending.values(), return_when=asyncio.FIRST_COMPLETED)
                    for nid, t in list(pending.items()):
                        if t in finished:
                            del pending[nid]
                            if t.exception() is not None:
                                raise _NodeFailure(nid, prompt[nid]["class_type"], t.exception())
                            self._finish(nid, sigs[nid], t.result(), done)
                elif not ready:
                    break
            self.add_message("execution_success", {"prompt_id": prompt_id})
        except _NodeFailure as f:
            self.success = False
            for t in pending.values():
                t.cancel()  # what asyncio.run does to the prompt's other tasks when it exits
            if pending:
                await asyncio.gather(*pending.values(), return_exceptions=True)
            if isinstance(f.ex, comfy.model_management.InterruptProcessingException):
                self.add_message("execution_interrupted", {"prompt_id": prompt_id, "node_id": f.node_id,
                                                           "node_type": f.class_type, "executed": list(done)})
            else:
                self.add_message("execution_error", {
                    "prompt_id": prompt_id, "node_id": f.node_id, "node_type": f.class_type,
                    "executed": list(done), "exception_message": str(f.ex),
                    "exception_type": full_type_name(type(f.ex)),
                    "traceback": traceback.format_exception(f.ex)})
        self.add_message("executing", {"node": None, "prompt_id": prompt_id})

    def _finish(self, nid, sig, result, done):
        outs, ui = self._outputs(result)
        done[nid] = (outs,)
        self.outputs_cache[sig] = (outs,)
        if ui:
            self.history_result["outputs"][nid] = ui


class _NodeFailure(Exception):
    def __init__(self, node_id, class_type, ex):
        self.node_id, self.class_type, self.ex = node_id, class_type, ex
