"""Queue-time admission (gate.admit, issue #14): the whole prompt priced in one call into C
and the reservation made inline must decide exactly what pricing node by node and
reserving in a thread decided: same nodes, prices, refusals and reservations."""
import asyncio
import math
import sqlite3
import threading
import time

import pytest
from aiohttp.test_utils import make_mocked_request

from comfy_credits_ext import _core, gate


class ApiNode:
    API_NODE = True


class LocalNode:
    pass


CLASSES = {"OpenAIDalle3": ApiNode, "OpenAIDalle2": ApiNode, "OpenAIChatNode": ApiNode, "IdeogramV3": ApiNode,
           "SomeThirdPartyApiNode": ApiNode, "CLIPTextEncode": LocalNode}


def account(rt, micro):
    acct = rt.ledger.create_account(f"a{time.monotonic_ns()}@example.com")["id"]
    if micro:
        rt.ledger.grant(f"fund-{acct}", acct, micro)
    key = rt.ledger.create_credential(acct, "api_key")["token"]
    req = make_mocked_request("POST", "/prompt", headers={"Authorization": f"Bearer {key}",
                                                          "Content-Type": "application/json"})
    return acct, req


def prompt(n=12, odd=None):
    p = {"100": {"class_type": "CLIPTextEncode", "inputs": {"text": "a fox"}}}
    shapes = [("OpenAIDalle3", {"size": "1792x1024", "quality": ["100", 0]}),
              ("OpenAIDalle2", {"size": "512x512", "n": 3}),
              ("OpenAIChatNode", {"model": "gpt-5", "prompt": "hello " * 50, "max_output_tokens": 2000}),
              ("IdeogramV3", {"num_images": 2, "rendering_speed": "QUALITY"}),
              ("SomeThirdPartyApiNode", {"x": 1})]
    for i in range(n):
        cls, inputs = shapes[i % len(shapes)]
        p[str(i)] = {"class_type": cls, "inputs": dict(inputs, seed=i)}
    for node_id, (cls, inputs) in (odd or {}).items():
        p[node_id] = {"class_type": cls, "inputs": inputs}
    return {"prompt": p}


def per_node(rt, body):
    """What admission decided node by node before issue #14 (estimate() per node)."""
    nodes, errors = [], {}
    for node_id, cls, inputs in gate.find_api_nodes(body["prompt"], CLASSES):
        try:
            est = rt.prices.estimate(cls, inputs)
        except _core.InvalidArgument as exc:
            errors[node_id] = str(exc)
            continue
        nodes.append({"node_id": node_id, "class_type": cls, "micro": est["micro"],
                      "used_default": est["used_default"]})
    return nodes, errors


def admit(rt, req, body):
    return asyncio.run(gate.admit(rt, req, body, CLASSES))


def test_admitted_prompt_is_priced_and_reserved_as_node_by_node(rt):
    acct, req = account(rt, 10**12)
    body = prompt(12)
    want, errors = per_node(rt, body)
    assert errors == {} and len(want) == 12
    adm = admit(rt, req, body)
    assert isinstance(adm, gate.Admission) and adm.reserved
    assert adm.nodes == want
    assert adm.hold_micro == sum(n["micro"] for n in want)
    assert rt.runs.reservation(adm.prompt_id) == adm.hold_micro
    assert rt.runs.reserved(acct) == adm.hold_micro


def test_nodes_that_cannot_be_priced_are_refused_as_node_by_node(rt):
    _, req = account(rt, 10**12)
    body = prompt(6, odd={"50": ("OpenAIDalle2", {"n": 2_000_000}), "51": ("OpenAIDalle2", {"n": math.nan}),
                          "52": ("OpenAIChatNode", {"prompt": "p" * (1 << 20)})})
    want_nodes, want_errors = per_node(rt, body)
    assert set(want_errors) == {"50", "51", "52"}
    resp = admit(rt, req, body)
    assert resp.status == 400
    import json
    got = json.loads(resp.body)
    assert got["error"]["type"] == "credits_price_error"
    assert {k: v["errors"][0]["details"] for k, v in got["node_errors"].items()} == want_errors
    assert rt.runs.counts()["reservations"] == 0


def test_refusal_for_credits_is_unchanged(rt):
    acct, req = account(rt, 0)
    body = prompt(4)
    want, _ = per_node(rt, body)
    total = sum(n["micro"] for n in want)
    rt.ledger.grant("some", acct, total - 1)  # one micro-credit short
    resp = admit(rt, req, body)
    assert resp.status == 400
    import json
    got = json.loads(resp.body)
    assert got["error"]["type"] == "insufficient_credits"
    assert got["error"]["extra_info"]["needed_micro"] == total
    assert got["error"]["extra_info"]["available_micro"] == total - 1
    parts = ", ".join(f"{n['class_type']} (#{n['node_id']}) up to {gate.credits(n['micro'])}" for n in want)
    assert got["error"]["details"].startswith(f"This workflow needs up to {gate.credits(total)} credits ({parts}); ")
    assert {k: v["errors"][0]["extra_info"]["estimate_micro"] for k, v in got["node_errors"].items()} == \
        {n["node_id"]: n["micro"] for n in want}
    assert rt.runs.reserved(acct) == 0
    rt.ledger.grant("one-more", acct, 1)
    assert admit(rt, req, body).reserved


def test_reserve_without_waiting(rt):
    acct, _ = account(rt, 10_000_000)
    assert rt.runs.reserve("p1", acct, 4_000_000, wait=False) is True
    assert rt.runs.reserve("p2", acct, 4_000_000) is True
    with pytest.raises(_core.InsufficientCredits):
        rt.runs.reserve("p3", acct, 4_000_000, wait=False)
    with pytest.raises(_core.InvalidArgument):
        rt.runs.reserve("", acct, 1, wait=False)
    assert rt.runs.release("p1") == 4_000_000
    assert rt.runs.reserve("p3", acct, 4_000_000, wait=False) is True


def test_admission_while_a_hold_is_being_committed(rt, tmp_path):
    """A run's hold waiting on the disk neither blocks admission on the event loop nor
    changes its answer: what surely fits is admitted inline; what does not fit while the
    hold is in flight is decided in a thread once the hold committed (exact, as before)."""
    acct, req = account(rt, 0)
    dalle = rt.prices.estimate("OpenAIDalle3", {"size": "1024x1024", "quality": "hd"})["micro"]  # 16.88
    rt.ledger.grant("fund", acct, dalle + 3_000_000)
    lock = sqlite3.connect(str(tmp_path / "ledger.db"), isolation_level=None, check_same_thread=False)
    lock.execute("BEGIN IMMEDIATE")  # the ledger's next commit waits for this write lock
    began = {}

    def run_begin():
        began["info"] = rt.runs.begin("run:x:1:k", acct, "x", "1", "OpenAIDalle3",
                                      {"size": "1024x1024", "quality": "hd"}, "/proxy/openai/")
    th = threading.Thread(target=run_begin)
    th.start()
    # Until the run's hold is being placed, all of the account's credits can be reserved; once it is,
    # that is no longer decided without waiting.
    deadline, streak = time.monotonic() + 20, 0
    while streak < 2:  # twice in a row, 20 ms apart: not just the begin's own check holding the lock
        if rt.runs.reserve("probe", acct, dalle + 3_000_000, wait=False):
            rt.runs.release("probe")
            streak = 0
        else:
            streak += 1
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert th.is_alive()  # its commit is waiting
    small = {"prompt": {"1": {"class_type": "OpenAIDalle2", "inputs": {"size": "256x256", "n": 1}}}}  # 3.376
    tiny = {"prompt": {"1": {"class_type": "OpenAIDalle2", "inputs": {"size": "256x256", "n": 1}}}}
    t = time.perf_counter()
    hops = []
    orig = asyncio.to_thread

    async def spy(f, *a, **k):
        hops.append(getattr(f, "__name__", f))
        return await orig(f, *a, **k)
    gate.asyncio.to_thread = spy
    try:
        # 3.376 > the 3.00 left once the hold is in: decided after the commit, in a thread
        threading.Timer(0.3, lock.execute, ("ROLLBACK",)).start()
        resp = admit(rt, req, small)
        assert "reserve_prompt" in hops
        assert resp.status == 400
        import json
        err = json.loads(resp.body)["error"]
        assert err["type"] == "insufficient_credits"
        # the refusal shows the account as it is now, the run's hold included (not as read with the key)
        assert err["extra_info"]["available_micro"] == 3_000_000
        assert rt.runs.reserved(acct) == 0
        assert time.perf_counter() - t >= 0.25
        th.join()
        assert began["info"]["hold_micro"] == dalle
        # nothing in flight: inline, no thread hop for the reservation
        hops.clear()
        rt.ledger.grant("more", acct, 1_000_000)
        adm = admit(rt, req, tiny)
        assert adm.reserved and "reserve_prompt" not in hops
    finally:
        gate.asyncio.to_thread = orig
        lock.close()
    rt.runs.finish(began["info"]["run_id"], "failed")


def test_credential_check_without_waiting_answers_as_the_waiting_one(rt):
    acct, _ = account(rt, 1)
    key = rt.ledger.create_credential(acct, "api_key")["token"]
    sess = rt.ledger.create_credential(acct, "session", "browser", 60_000)["token"]
    assert rt.ledger.check_credential(key, wait=False) == rt.ledger.check_credential(key)
    assert rt.ledger.check_credential(sess, wait=False) == rt.ledger.check_credential(sess)
    rt.ledger.revoke_credential(acct, "api_key")
    for tok in (key, "cck_" + "0" * 60, "ccs_nope", "x"):
        errs = []
        for wait in (False, True):
            try:
                rt.ledger.check_credential(tok, wait=wait)
            except _core.CreditsError as exc:
                errs.append((type(exc), str(exc), exc.field))
        assert len(errs) == 2 and errs[0] == errs[1], tok
    with pytest.raises(_core.InvalidArgument):
        rt.ledger.check_credential(None, wait=False)


def test_admission_makes_no_thread_hop_when_nothing_waits(rt, monkeypatch):
    _, req = account(rt, 10**12)
    hops = []
    orig = asyncio.to_thread

    async def spy(f, *a, **k):
        hops.append(getattr(f, "__name__", f))
        return await orig(f, *a, **k)
    monkeypatch.setattr(gate.asyncio, "to_thread", spy)
    adm = admit(rt, req, prompt(50))
    assert adm.reserved and len(adm.nodes) == 50
    assert hops == []


def test_farm_mode_keeps_ledger_calls_off_the_event_loop(rt, monkeypatch):
    """With a shared PostgreSQL ledger a read is a network round trip: the credential check
    and the reservation go to a thread, never inline on the event loop."""
    import dataclasses
    _, req = account(rt, 10**12)
    monkeypatch.setattr(rt, "cfg", dataclasses.replace(rt.cfg, database="postgresql://u@h/db"))
    assert rt.cfg.farm
    hops = []
    orig = asyncio.to_thread

    async def spy(f, *a, **k):
        hops.append(getattr(f, "__name__", f))
        return await orig(f, *a, **k)
    monkeypatch.setattr(gate.asyncio, "to_thread", spy)
    adm = admit(rt, req, prompt(5))
    assert adm.reserved
    assert hops == ["check_credential", "reserve_prompt"]
