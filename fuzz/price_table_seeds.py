"""Writes the seed corpus of fuzz_price_table from the shipped price table.

One seed per node rule: a table holding the shipped "default" rule and that
one rule, then 0xff, then node inputs that match the rule's first table entry
(its defaults, multipliers and token inputs filled in), so every rule shape the
product uses is a starting point. Plus one table with a few rules of different
shapes (sorting, lookups), and the small hand-made seeds (kept as they are).

Why not the whole table as one seed: libFuzzer sizes its inputs from the
largest seed (-max_len), so a 54 KB seed made every execution parse ~54 KB of
JSON (~7,800 allocations under ASan): ~1,000 exec/s. These seeds are < 3 KB
each, so inputs stay at libFuzzer's 4 KB default.

    python3 fuzz/price_table_seeds.py      (after a change to prices.json)
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PRICES = os.path.join(HERE, "..", "comfy_credits_ext", "prices.json")
OUT = os.path.join(HERE, "corpus", "fuzz_price_table")
SEED_BYTES_MAX = 4000  # below libFuzzer's default -max_len (4096)


def inputs_for(rule):
    inputs = dict(rule.get("defaults", {}))
    entries = rule.get("table", {}).get("entries", [])
    if entries:
        for k, v in entries[0]["when"].items():
            if isinstance(v, dict):
                if v.get("present"):
                    inputs[k] = "x"
            elif v != "*":
                inputs[k] = v
    for m in rule.get("multiply", []) + (entries[0].get("multiply", []) if entries else []):
        inputs.setdefault(m["input"], m.get("default", m["max"]))
    if "units_by_model" in rule and rule.get("model_input"):
        inputs.setdefault(rule["model_input"], next(iter(rule["units_by_model"])))
    tokens = rule.get("tokens", {})
    for k in tokens.get("input_text", []):
        inputs.setdefault(k, "hello world")
    for k in tokens.get("input_present", {}):
        inputs.setdefault(k, "x")
    if tokens.get("max_output_input"):
        inputs.setdefault(tokens["max_output_input"], 1000)
    if rule.get("calls_per_batch_of"):
        inputs.setdefault(rule["calls_per_batch_of"], 2)
    return inputs


def seed(table, inputs):
    data = json.dumps(table, separators=(",", ":")).encode() + b"\xff" + json.dumps(inputs).encode()
    assert len(data) <= SEED_BYTES_MAX, (list(table["nodes"]), len(data))
    return data


def main():
    with open(PRICES) as f:
        shipped = json.load(f)
    head = {"format": shipped["format"], "credits_per_usd": shipped["credits_per_usd"], "default": shipped["default"]}
    os.makedirs(OUT, exist_ok=True)
    for name in os.listdir(OUT):
        if name.startswith("rule-") or name in ("seed00", "several-rules"):
            os.remove(os.path.join(OUT, name))
    shapes = {}
    for i, (name, rule) in enumerate(shipped["nodes"].items()):
        with open(os.path.join(OUT, "rule-%03d" % i), "wb") as f:
            f.write(seed(dict(head, nodes={name: rule}), inputs_for(rule)))
        shapes.setdefault(tuple(sorted(rule)), (name, rule))
    several = dict(list(shapes.values())[:6])
    with open(os.path.join(OUT, "several-rules"), "wb") as f:
        first = next(iter(several.values()))
        f.write(seed(dict(head, nodes=several), inputs_for(first)))
    print("wrote %d seeds into %s" % (len(shipped["nodes"]) + 1, OUT), file=sys.stderr)


if __name__ == "__main__":
    main()
