"""PriceTable binding: the shipped price table, worst-case holds, and actual()
precedence. Figures are written by hand: micro-credits = micro-USD x 211."""
import json
import os
import threading

import pytest

_core = pytest.importorskip("comfy_credits_ext._core")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = os.path.join(ROOT, "comfy_credits_ext", "prices.json")
LINK = ["5", 0]  # how a linked input appears in prompt JSON


def table(nodes, default='{"usd": "1"}'):
    return _core.PriceTable(
        '{"format": 1, "credits_per_usd": 211, "default": %s, "nodes": %s}' % (default, json.dumps(nodes)))


@pytest.fixture(scope="module")
def shipped():
    with open(SHIPPED, encoding="utf-8") as f:
        return _core.PriceTable(f.read())


def test_shipped_table_loads(shipped):
    assert len(shipped) == 102
    assert "OpenAIDalle3" in shipped
    assert "FluxKontextProImageNode" in shipped
    assert "NotAnApiNode" not in shipped
    assert 42 not in shipped


# One representative figure per family, computed by hand.
FAMILY_CASES = [
    ("OpenAIDalle3", {"size": "1024x1024", "quality": "hd"}, 16_880_000),        # $0.08
    ("OpenAIDalle2", {"size": "256x256", "n": 2}, 6_752_000),                      # $0.016 x 2
    ("OpenAIGPTImage1", {"quality": "medium", "n": 1}, 14_770_000),               # $0.07
    ("OpenAIVideoSora2", {"model": "sora-2", "size": "1280x720", "duration": 4}, 84_400_000),  # $0.10 x 4
    ("FluxProUltraImageNode", {"prompt": "x"}, 12_660_000),                       # $0.06
    ("IdeogramV3", {"rendering_speed": "QUALITY", "num_images": 2}, 37_980_000),  # $0.09 x 2
    ("KlingTextToVideoNode", {"mode": "standard mode / 10s duration / kling-v1-6"}, 118_160_000),  # $0.56
    ("LumaVideoNode", {"model": "ray-2", "resolution": "720p", "duration": "5s"}, 149_810_000),  # $0.71
    ("MinimaxHailuoVideoNode", {"resolution": "768P", "duration": 10}, 118_160_000),  # $0.56
    ("Veo3VideoGenerationNode", {"model": "veo-3.0-generate-001", "generate_audio": True}, 675_200_000),  # $3.20
    ("VeoVideoGenerationNode", {"duration_seconds": 5}, 527_500_000),             # $0.50 x 5
    ("RunwayImageToVideoNodeGen4", {"duration": 5}, 52_750_000),                  # $0.05 x 5
    ("PikaScenesV2_2", {"duration": 5, "resolution": "720p"}, 63_300_000),        # $0.30
    ("PixverseTextToVideoNode", {"quality": "720p", "duration_seconds": 5, "motion_mode": "fast"}, 253_200_000),
    ("RecraftTextToVectorNode", {"n": 3}, 50_640_000),                            # $0.08 x 3
    ("StabilityStableImageSD_3_5Node", {"model": "sd3.5-medium"}, 7_385_000),     # $0.035
    ("TripoTextToModelNode", {"style": "None", "quad": False, "texture": True}, 31_650_000),  # $0.15
    ("Rodin3D_Regular", {}, 84_400_000),                                          # $0.40
    ("MoonvalleyVideo2VideoNode", {}, 474_750_000),                               # $2.25
    ("ByteDanceTextToVideoNode", {"model": "seedance-1-0-lite-t2v-250428", "resolution": "1080p", "duration": 10},
     185_680_000),                                                                # $0.088 x 10
    ("WanImageToVideoApi", {"resolution": "720P", "duration": 10}, 211_000_000),  # $0.10 x 10
    ("ViduTextToVideoNode", {"model": "viduq1"}, 84_400_000),                     # $0.40
]


@pytest.mark.parametrize("node_class,inputs,micro", FAMILY_CASES, ids=[c[0] for c in FAMILY_CASES])
def test_shipped_family_figures(shipped, node_class, inputs, micro):
    r = shipped.estimate(node_class, inputs)
    assert r["micro"] == micro
    assert r["used_default"] is False
    assert r["rule"] == node_class
    assert r["family"]
    assert r["warning"] == ""


def test_result_shape_and_model_name(shipped):
    r = shipped.estimate("OpenAIChatNode", {"model": "gpt-4.1-nano", "prompt": "hi"})
    assert set(r) == {"micro", "used_default", "from_usage", "rule", "family", "model", "warning"}
    assert r["model"] == "gpt-4.1-nano" and r["family"] == "OpenAI"
    # in 4,098 tok x $0.10/1M -> 86,467.8 -> 86,468; out 32,768 x $0.40/1M -> 2,765,619.2 -> 2,765,619
    assert r["micro"] == 2_852_087
    assert isinstance(r["micro"], int) and r["from_usage"] is False


def test_linked_inputs_are_priced_at_worst_case(shipped):
    # linked quality with a literal size: max over that size's entries ($0.12)
    assert shipped.estimate("OpenAIDalle3", {"size": "1792x1024", "quality": LINK})["micro"] == 25_320_000
    # linked multiplier: n at its max 8 -> $0.02 x 8
    assert shipped.estimate("OpenAIDalle2", {"size": "1024x1024", "n": LINK})["micro"] == 33_760_000
    # a connected character image raises Ideogram V3's price ($0.15 vs $0.06)
    assert shipped.estimate("IdeogramV3", {"character_image": LINK})["micro"] == 31_650_000
    assert shipped.estimate("IdeogramV3", {})["micro"] == 12_660_000


def test_unmatched_literal_is_never_free(shipped):
    r = shipped.estimate("MinimaxHailuoVideoNode", {"resolution": "1080P", "duration": 10})
    assert r["micro"] == 118_160_000  # table max $0.56
    assert r["warning"]


def test_unknown_class_uses_default_rule(shipped):
    r = shipped.estimate("BrandNewPartnerNode", {"x": 1})
    assert r["used_default"] is True
    assert r["rule"] == "default"
    assert r["micro"] == 422_000_000  # $2.00


def test_actual_precedence(shipped):
    inputs = {"model": "gpt-5", "prompt": "hi"}
    hold = shipped.estimate("OpenAIChatNode", inputs)["micro"]
    # 1. the upstream's credits header wins
    r = shipped.actual("OpenAIChatNode", inputs, {"credits_used_micro": 1234, "input_tokens": 10**6}, hold)
    assert (r["micro"], r["from_usage"]) == (1234, True)
    # 2. counters x unit prices: 2,000 in x $1.25/1M = 527,500; 1,000 out x $10/1M = 2,110,000
    r = shipped.actual("OpenAIChatNode", inputs, {"input_tokens": 2000, "output_tokens": 1000}, hold)
    assert (r["micro"], r["from_usage"]) == (2_637_500, True)
    # 3. nothing reported (missing keys) -> the hold
    r = shipped.actual("OpenAIChatNode", inputs, {}, hold)
    assert (r["micro"], r["from_usage"]) == (hold, False)
    # counters the rule has no unit price for -> the hold
    r = shipped.actual("OpenAIDalle3", {"size": "1024x1024"}, {"images": 1}, 8_440_000)
    assert (r["micro"], r["from_usage"]) == (8_440_000, False)


def test_float_price_is_refused_with_field():
    with pytest.raises(_core.InvalidArgument) as ei:
        table({"OpenAIDalle3": {"usd": 0.04}})
    assert isinstance(ei.value, ValueError)
    assert ei.value.field == "usd"
    assert "OpenAIDalle3" in str(ei.value) and "decimal string" in str(ei.value)


@pytest.mark.parametrize("text", [
    "", "{", "[]", "null",
    '{"format": 1, "credits_per_usd": 211, "nodes": {}}',                              # no default
    '{"format": 2, "credits_per_usd": 211, "default": {"usd": "1"}, "nodes": {}}',
    '{"format": 1, "credits_per_usd": 211, "default": {"usd": "1"}, "nodes": {"X": {"usd": "0"}}}',
    '{"format": 1, "credits_per_usd": 211, "default": {"usd": "1"}, "nodes": {"X": {"usd": "1", "mutliply": []}}}',
    '{"format": 1, "credits_per_usd": 211, "default": {"usd": "1"}, "nodes": {"X": {"usd": "1e400"}}}',
    "[" * 100000,
])
def test_malformed_tables_are_refused(text):
    with pytest.raises(_core.InvalidArgument):
        _core.PriceTable(text)


def test_bad_inputs_and_arguments(shipped):
    with pytest.raises(_core.InvalidArgument):
        shipped.estimate("OpenAIDalle2", {"n": 2_000_000})  # larger than any multiplier
    with pytest.raises(_core.InvalidArgument):
        shipped.estimate("OpenAIDalle2", "[1, 2]")          # inputs must be an object
    with pytest.raises(_core.InvalidArgument):
        shipped.actual("OpenAIDalle2", {}, {}, -1)
    with pytest.raises(_core.InvalidArgument):
        shipped.actual("OpenAIChatNode", {"model": "gpt-5"}, {"input_tokens": 2**63 - 1}, 0)
    # a number too large for an integer is not a count: priced at the max, with a warning
    r = shipped.estimate("OpenAIDalle2", {"size": "1024x1024", "n": 10**30})
    assert r["micro"] == 33_760_000 and r["warning"]


def test_exact_conversion_and_credits_prices():
    t = table({"A": {"usd": "0.000001"}, "B": {"credits": "12.66"}, "C": {"usd": 3}})
    assert t.estimate("A", {})["micro"] == 211          # one micro-USD
    assert t.estimate("B", {})["micro"] == 12_660_000
    assert t.estimate("C", {})["micro"] == 633_000_000
    assert t.estimate("C", '{"x": 1}')["micro"] == 633_000_000  # inputs as JSON text


def test_shared_between_threads(shipped):
    cases = [(c, i, m) for c, i, m in FAMILY_CASES] * 20
    errors = []

    def work():
        for c, i, m in cases:
            if shipped.estimate(c, i)["micro"] != m:
                errors.append(c)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []


# ---- estimate_many (the queue gate prices a whole prompt in one call) must be estimate(), node by node

def _outcome(fn):
    """estimate()'s answer, or its exception as (type, message, code, field)."""
    try:
        return fn()
    except _core.CreditsError as exc:
        return (type(exc).__name__, str(exc), exc.code, exc.field)


def _many_outcome(r):
    if isinstance(r, BaseException):
        assert isinstance(r, _core.CreditsError), r
        return (type(r).__name__, str(r), r.code, r.field)
    return r


def _hold(outcome):
    """What hold_many() gives for an estimate() outcome: (micro, used_default), or the same error."""
    return (outcome["micro"], outcome["used_default"]) if isinstance(outcome, dict) else outcome


def _rule_inputs(rule):
    """Input names and literal values the rule looks at (conditions, multipliers, defaults, tokens)."""
    vals = {}

    def add(name, v):
        vals.setdefault(name, []).append(v)
    for e in (rule.get("table") or {}).get("entries", []):
        for k, v in e["when"].items():
            add(k, v)
        for m in e.get("multiply", []):
            add(m["input"], m["max"])
    for m in rule.get("multiply", []):
        add(m["input"], m["max"])
        add(m["input"], m.get("min", 1))
    for k, v in (rule.get("defaults") or {}).items():
        add(k, v)
    tok = rule.get("tokens") or {}
    for k in tok.get("input_text", []):
        add(k, "a prompt")
    for k in tok.get("input_present", {}):
        add(k, LINK)
    if tok.get("max_output_input"):
        add(tok["max_output_input"], 77)
    if rule.get("model_input"):
        for m in rule.get("units_by_model", {}):
            add(rule["model_input"], m)
    return vals


ODD_VALUES = [
    None, True, False, 0, -1, 1, 2, 3, 5, 10, 2**53 + 1, -(2**63), 2**63 - 1, 2**63, 10**30, -10**30,
    1.0, 2.5, -0.0, 1e300, 5.000000000000001, float("nan"), float("inf"), float("-inf"),
    "", "5", "-3", "true", "1e3", " 5", "h\u00e9llo", "\U0001F98A fox", "\ud800", "a\x00b", "\u2028",
    "x" * 1000, LINK, ["1", 0, 2], [1, 0], ["1", 0.5], [], {}, {"a": [1, {"b": None}]}, ("5", 0), [[[[["deep"]]]]],
]


def _random_inputs(rng, names_vals):
    inputs = {}
    for name, vals in names_vals.items():
        roll = rng.random()
        if roll < 0.15:
            continue                              # absent
        if roll < 0.6:
            inputs[name] = rng.choice(vals)       # a value the rule knows
        else:
            inputs[name] = rng.choice(ODD_VALUES)
    if rng.random() < 0.3:
        inputs[rng.choice(["seed", "prompt", "extra", "\u00e9t\u00e9"])] = rng.choice(ODD_VALUES)
    return inputs


def test_estimate_many_is_estimate_node_by_node(shipped):
    import random
    rng = random.Random(14)
    with open(SHIPPED, encoding="utf-8") as f:
        rules = json.load(f)["nodes"]
    items = []
    for name, rule in sorted(rules.items()):
        nv = _rule_inputs(rule)
        items.append((name, {}))
        items.append((name, None))
        for _ in range(40):
            items.append((name, _random_inputs(rng, nv)))
    for _ in range(20):
        items.append(("SomeFutureApiNode", _random_inputs(rng, {"x": [1]})))
    got = shipped.estimate_many(items)
    assert len(got) == len(items)
    mismatches = [(c, i) for (c, i), g in zip(items, got)
                  if _many_outcome(g) != _outcome(lambda: shipped.estimate(c, i))]
    assert mismatches == []
    errors = sum(isinstance(g, BaseException) for g in got)
    assert 0 < errors < len(items) // 2  # the corpus does reach both answers
    # hold_many (what admission calls): estimate()'s micro and used_default, or its error, node by node
    holds = shipped.hold_many(items)
    assert len(holds) == len(items)
    mismatches = [(c, i) for (c, i), h in zip(items, holds)
                  if _many_outcome(h) != _hold(_outcome(lambda: shipped.estimate(c, i)))]
    assert mismatches == []
    assert all(type(h) is tuple and type(h[0]) is int and type(h[1]) is bool
               for h in holds if not isinstance(h, BaseException))
    assert sum(isinstance(h, tuple) and h[1] for h in holds) >= 20  # the unknown class took the default


def test_estimate_many_edge_cases_take_estimates_own_path(shipped):
    """Inputs the one-pass tree does not build itself (big ints, NaN, lone surrogates, NUL,
    non-dict containers, subclasses, non-str keys, deep nesting, texts near the 1 MiB limit)
    still get exactly estimate()'s answer."""
    from collections import OrderedDict

    class Str(str):
        pass
    deep = "x"
    for _ in range(70):
        deep = [deep]
    limit = 1024 * 1024
    cases = [
        ("OpenAIDalle2", {"n": 10**30}),
        ("OpenAIDalle2", {"n": float("nan")}),
        ("OpenAIDalle2", {"size": "\ud800"}),
        ("OpenAIDalle2", {"size": "1024\x00x1024"}),
        ("OpenAIDalle2", OrderedDict(n=2, size="256x256")),
        ("OpenAIDalle2", {"n": (2,)}),
        ("OpenAIDalle2", {Str("n"): 2}),
        ("OpenAIDalle2", {1: 2, "n": 3}),
        ("OpenAIDalle2", {"n": deep}),
        ("OpenAIDalle2", '{"n": 3}'),
        ("OpenAIDalle2", "[1]"),
        ("OpenAIDalle2", "{not json"),
        ("OpenAIDalle2", 42),
        ("OpenAIDalle2", {"n": object()}),
        (42, {}),
        ("", {}),
        ("OpenAIChatNode", {"model": "gpt-5", "prompt": "p" * (limit - 40)}),   # text just under the limit
        ("OpenAIChatNode", {"model": "gpt-5", "prompt": "p" * (limit - 20)}),   # just over
        ("OpenAIChatNode", {"model": "gpt-5", "prompt": "\u00e9" * 170_000}),   # 1,020,000 chars of \u00e9
        ("OpenAIChatNode", {"model": "gpt-5", "prompt": "\u00e9" * 180_000}),   # over once escaped
        ("OpenAIChatNode", {"model": "gpt-5", "prompt": "\U0001F98A" * 80_000}),
    ]
    got = shipped.estimate_many(cases)
    for (c, i), g in zip(cases, got):
        want = _outcome(lambda: shipped.estimate(c, i))
        assert _many_outcome(g) == want, (c, str(i)[:80])
    # both sides of the size limit are reached
    assert isinstance(got[16], dict) and isinstance(got[17], _core.InvalidArgument)
    holds = shipped.hold_many(cases)
    for (c, i), h in zip(cases, holds):
        assert _many_outcome(h) == _hold(_outcome(lambda: shipped.estimate(c, i))), (c, str(i)[:80])
    for many in (shipped.estimate_many, shipped.hold_many):
        with pytest.raises(_core.InvalidArgument):
            many([("OpenAIDalle2", {}, 3)])
        with pytest.raises(TypeError):
            many(5)
        assert many([]) == []
