"""API-node wrapping: every class metered under its own name whichever of a
parent and its subclass is wrapped first (V1 and V3), one run when a subclass
calls its parent's method, and one node instance per account. Runs against
the real run state machine and ledger; node classes from the contract
harness's comfy_api (tests/comfyui_harness)."""
import asyncio
import concurrent.futures
import os
import sys
import types

import pytest

from comfy_credits_ext import _core, api_nodes

HARNESS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "comfyui_harness")
if HARNESS not in sys.path:
    sys.path.append(HARNESS)

import comfy_api.internal  # noqa: E402,F401  (first, as ComfyUI imports it)
from comfy_api.latest import io  # noqa: E402
from comfy_execution.utils import CurrentNodeContext  # noqa: E402

C = _core.MICRO
PRICES = ('{"format": 1, "credits_per_usd": 211, "default": {"usd": "2"}, "nodes": {'
          '"ParentV1": {"family": "OpenAI", "usd": "0.01"}, "ChildV1": {"family": "OpenAI", "usd": "0.10"},'
          '"ParentV3": {"family": "BFL", "usd": "0.02"}, "ChildV3": {"family": "BFL", "usd": "0.20"}}}')


@pytest.fixture
def rt(ledger, account):
    ledger.grant("g", account, 1000 * C)
    prices = _core.PriceTable(PRICES)
    pool = concurrent.futures.ThreadPoolExecutor(2)
    r = types.SimpleNamespace(ledger=ledger, prices=prices, runs=_core.Runs(ledger, prices, 60_000, 1_000),
                              finish_pool=pool, prompt_account=lambda pid: account if pid else None,
                              prompt_key=lambda pid: None)
    yield r
    pool.shutdown()
    r.runs.close()


def v1_pair():
    class ParentV1:
        API_NODE = True
        FUNCTION = "api_call"

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"x": ("INT", {})}, "hidden": {"comfy_api_key": "API_KEY_COMFY_ORG"}}

        async def api_call(self, x, comfy_api_key=None):
            return (f"{type(self).__name__}:{comfy_api_key[:5]}",)

    class ChildV1(ParentV1):
        async def api_call(self, x, comfy_api_key=None):  # calls its (also wrapped) parent
            return await super().api_call(x, comfy_api_key=comfy_api_key)
    return ParentV1, ChildV1


def v3_pair():
    class ParentV3(io.ComfyNode):
        NODE_ID = "ParentV3"

        @classmethod
        def define_schema(cls):
            return io.Schema(node_id=cls.NODE_ID, is_api_node=True, inputs=[io.Input("x")])

        @classmethod
        async def execute(cls, x):
            return io.NodeOutput(f"{cls.NODE_ID}:{cls.hidden.api_key_comfy_org[:5]}")

    class ChildV3(ParentV3):
        NODE_ID = "ChildV3"
    return ParentV3, ChildV3


def run_node(name, cls, prompt_id="p1"):
    async def go():
        with CurrentNodeContext(prompt_id, "7", 0):
            if api_nodes.is_v3(cls):
                clone = cls.PREPARE_CLASS_CLONE({})
                return await clone.EXECUTE_NORMALIZED_ASYNC(x=1)
            return await getattr(cls(), cls.FUNCTION)(x=1)
    return asyncio.run(go())


def holds(ledger, account):
    return [(e["node_class"], e["amount"]) for e in reversed(ledger.history(account, kinds=["hold"])["entries"])]


@pytest.mark.parametrize("pair", [v1_pair, v3_pair])
@pytest.mark.parametrize("parent_first", [True, False])
def test_each_class_is_metered_under_its_own_name(rt, ledger, account, pair, parent_first):
    parent, child = pair()
    order = [(parent.__name__, parent), (child.__name__, child)]
    if not parent_first:
        order.reverse()
    assert sorted(api_nodes.wrap_all(rt, dict(order))) == sorted([parent.__name__, child.__name__])
    assert api_nodes.wrap_all(rt, dict(order)) == []  # once
    out_c = run_node(child.__name__, child)
    out_p = run_node(parent.__name__, parent)
    assert str(getattr(out_c, "result", out_c)[0]).endswith(":cct1.")  # ran with a run token
    assert str(getattr(out_p, "result", out_p)[0]).endswith(":cct1.")
    price = {"ParentV1": 2_110_000, "ChildV1": 21_100_000, "ParentV3": 4_220_000, "ChildV3": 42_200_000}
    # One hold each (the child's call of its parent's method is the same run), each under its own name and price.
    assert holds(ledger, account) == [(child.__name__, price[child.__name__]), (parent.__name__, price[parent.__name__])]


def test_a_prompt_without_an_account_is_refused(rt):
    parent, _ = v1_pair()
    api_nodes.wrap_all(rt, {"ParentV1": parent})
    with pytest.raises(api_nodes.CreditsRefused, match="not linked to a signed-in Credits account"):
        run_node("ParentV1", parent, prompt_id="")


def test_each_account_gets_its_own_node_instance(rt, ledger):
    bob = ledger.create_account("bob@example.com")["id"]
    carol = ledger.create_account("carol@example.com")["id"]
    for a in (bob, carol):
        ledger.grant(f"g{a}", a, 1000 * C)

    class Stateful:
        API_NODE = True
        FUNCTION = "chat"

        def __init__(self):
            self.seen = []

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"x": ("STRING", {})}, "hidden": {"comfy_api_key": "API_KEY_COMFY_ORG"}}

        async def chat(self, x, comfy_api_key=None):
            self.seen.append(x)
            return ("|".join(self.seen),)

    api_nodes.wrap_all(rt, {"Stateful": Stateful})
    shared = Stateful()  # ComfyUI keeps this one instance for the node id across prompts
    who = {}
    rt.prompt_account = lambda pid: who[pid]

    def call(pid, account, x):
        who[pid] = account

        async def go():
            with CurrentNodeContext(pid, "1", 0):
                return await shared.chat(x=x)
        return asyncio.run(go())[0]
    assert call("a", bob, "bob-secret") == "bob-secret"
    assert call("b", carol, "hi") == "hi"  # nothing of Bob's
    assert call("c", bob, "more") == "bob-secret|more"
    assert shared.seen == []  # the shared instance itself never runs


def test_tensor_inputs_are_priced_by_their_batch_size():
    class Tensor:  # what the glue reads of a torch tensor: its shape
        def __init__(self, *shape):
            self.shape = shape
    got = api_nodes.pricing_inputs({"image": Tensor(3, 64, 64, 3), "mask": Tensor(2, 64, 64), "n": 2,
                                    "scalar": Tensor(), "model": object(), "text": "x", "none": None})
    assert got == {"image": ["comfy_credits_batch", 3], "mask": ["comfy_credits_batch", 2], "n": 2,
                   "scalar": api_nodes.LINKED, "model": api_nodes.LINKED, "text": "x"}
