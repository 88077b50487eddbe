"""The admission glue's fast paths (issue #14) against the plain Python they replace: the same nodes,
prices and refusals, whatever the prompt holds.

- gate.api_node_items with a PriceTable walks the prompt in C (PriceTable.api_nodes); without one, in
  Python (find_api_nodes' loop): both must give the same node ids and (class_type, inputs) pairs, and
  raise alike.
- Runtime.hold_total sums hold_many() in one pass when every node has a rule; with default-priced or
  unpriceable nodes it logs and refuses as hold_many's callers did.
- Admission.nodes is made when first read: the same dicts as before, settable, and an Admission compares
  and prints as the dataclass it was.
"""
import logging
import random

import pytest

from comfy_credits_ext import _core, gate


class Api:
    API_NODE = True


class NotApi:
    API_NODE = "yes"  # only True itself counts (gate.is_api_node)


class Local:
    pass


CLASSES = {"OpenAIDalle3": Api, "KlingTextToVideoNode": Api, "IdeogramV3": Api, "Fake": NotApi,
           "CLIPTextEncode": Local, "Unpriced": Api}


def both(prompt, prices):
    return gate.api_node_items(prompt, CLASSES, prices), gate.api_node_items(prompt, CLASSES)


def random_prompt(rng):
    prompt = {}
    for i in range(rng.randrange(0, 60)):
        key = str(i) if rng.random() < 0.9 else f"{i}:sub"
        kind = rng.random()
        if kind < 0.05:
            prompt[key] = rng.choice([None, 3, "text", ["a"], ("t",)])  # not a node
            continue
        node = {}
        if rng.random() < 0.95:
            node["class_type"] = rng.choice(list(CLASSES) + ["Unknown", "", None, 7])
        r = rng.random()
        if r < 0.8:
            node["inputs"] = {"prompt": "a fox", "seed": rng.randrange(100), "size": "1024x1024",
                              "n": rng.choice([1, 2, 3.5, True, None, [1, 0]])}
        elif r < 0.9:
            node["inputs"] = rng.choice([None, [], "x", 5])
        prompt[key] = node
    return prompt


def test_api_nodes_in_c_are_the_python_walk(rt):
    rng = random.Random(1414)
    for _ in range(500):
        prompt = random_prompt(rng)
        fast, slow = both(prompt, rt.prices)
        assert fast == slow
        ids, items = fast
        assert all(type(i) is str for i in ids) and all(type(p) is tuple and len(p) == 2 for p in items)
        assert [(i, c, x) for i, (c, x) in zip(ids, items)] == gate.find_api_nodes(prompt, CLASSES)


def test_api_nodes_edge_cases(rt):
    # a non-str key is str()-ed; inputs that are not a dict become {}; a subclass of dict is a dict
    class D(dict):
        pass
    prompt = {5: {"class_type": "OpenAIDalle3", "inputs": D(a=1)}, "6": D(class_type="IdeogramV3"),
              "7": {"class_type": "Fake"}, "8": {"class_type": "CLIPTextEncode"}}
    fast, slow = both(prompt, rt.prices)
    assert fast == slow == (["5", "6"], [("OpenAIDalle3", {"a": 1}), ("IdeogramV3", {})])
    # an unhashable class_type raises TypeError both ways (the middleware does not catch it either)
    for bad in ({"1": {"class_type": ["x"]}}, {"1": {"class_type": {"x": 1}}}):
        with pytest.raises(TypeError):
            gate.api_node_items(bad, CLASSES, rt.prices)
        with pytest.raises(TypeError):
            gate.api_node_items(bad, CLASSES)
    # the class question is asked once per class, and whatever it answers is read as a bool
    asked = []

    def is_api(ct):
        asked.append(ct)
        return 1 if ct == "A" else 0
    ids, items = rt.prices.api_nodes({str(i): {"class_type": "AB"[i % 2]} for i in range(10)}, is_api)
    assert sorted(asked) == ["A", "B"] and ids == ["0", "2", "4", "6", "8"]
    # an exception in the question propagates; the prompt must be a plain dict
    with pytest.raises(ZeroDivisionError):
        rt.prices.api_nodes({"1": {"class_type": "A"}}, lambda ct: 1 / 0)
    with pytest.raises(TypeError):
        rt.prices.api_nodes([], is_api)
    # a subclass of dict as the whole prompt takes the Python walk (gate) and gives the same
    assert gate.api_node_items(D(prompt), CLASSES, rt.prices) == slow


def test_hold_total_sums_and_refuses_as_before(rt, caplog):
    items = [("OpenAIDalle3", {"size": "1024x1024", "quality": "hd"}), ("IdeogramV3", {"num_images": 2})]
    holds = rt.prices.hold_many(items)
    assert rt.hold_total(items) == (sum(h[0] for h in holds), holds)
    assert rt.hold_many(items) == holds
    with caplog.at_level(logging.WARNING, logger="comfy_credits"):
        total, h2 = rt.hold_total(items + [("Unpriced", {})])
    assert h2[2][1] is True and total == sum(h[0] for h in h2)  # the default price, logged
    assert "no price rule for API node Unpriced" in caplog.text
    total, h3 = rt.hold_total(items + [("OpenAIDalle2", {"n": 2_000_000})])  # larger than any multiplier
    assert total is None and isinstance(h3[2], _core.InvalidArgument) and h3[:2] == holds


def test_admission_nodes_are_made_when_read_and_compare_as_before():
    a = gate.Admission(account_id=3)
    assert a.nodes == [] and a.hold_micro == 0 and not a.reserved and a.key_id is None
    assert len(a.prompt_id) == 36 and a.prompt_id != gate.Admission(account_id=3).prompt_id
    a.nodes.append({"node_id": "1"})
    assert a.nodes == [{"node_id": "1"}]
    b = gate.Admission(account_id=3, prompt_id="p")
    b.priced(["1", "2"], [("A", {}), ("B", {"x": 1})], [(5, False), (7, True)])
    want = [{"node_id": "1", "class_type": "A", "micro": 5, "used_default": False},
            {"node_id": "2", "class_type": "B", "micro": 7, "used_default": True}]
    assert b.nodes == want and b.nodes is b.nodes
    c = gate.Admission(account_id=3, nodes=list(want), prompt_id="p")
    assert b == c and repr(b) == repr(c) and b != gate.Admission(account_id=4, nodes=list(want), prompt_id="p")
    assert repr(c) == ("Admission(account_id=3, hold_micro=0, nodes=" + repr(want) +
                       ", prompt_id='p', reserved=False, key_id=None)")
    b.nodes = []
    assert b.nodes == []
