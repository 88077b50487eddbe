"""Generates the per-API-version parameter schemas that tests/fake_stripe.py
validates against, from Stripe's official Python SDK (PyPI `stripe`).

Each SDK release is generated from Stripe's OpenAPI spec and pinned to one API
version (`stripe/_api_version.py`). Its typed request parameters
(TypedDicts for checkout.Session.create / retrieve) are read here with `ast`
(the SDK is never imported or copied) and written as a small JSON type tree:

    python3 tests/stripe_schema/gen.py            # the default SDK releases
    python3 tests/stripe_schema/gen.py 16.1.0     # one release

Needs only pip access to PyPI. The output is data (parameter names, types,
enums, required flags), one file per API version, committed next to this script.
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
# 10.12.1 is the last release pinned to 2024-06-20 (10.0.0 .. 10.12.1 all are);
# 16.1.0 is the newest release on PyPI at generation time (2026-10-28.endive).
DEFAULT_SDKS = ("10.12.1", "16.1.0")
SCALARS = {"str": {"type": "string"}, "int": {"type": "integer"}, "bool": {"type": "boolean"},
           "float": {"type": "decimal"}, "Decimal": {"type": "decimal"}}


def download(version: str, into: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "-d", str(into), f"stripe=={version}"], check=True)
    wheels = list(into.glob(f"stripe-{version}-*.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"no wheel for stripe=={version}")
    return wheels[0]


def api_version(zf: zipfile.ZipFile) -> str:
    tree = ast.parse(zf.read("stripe/_api_version.py"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "CURRENT" for t in node.targets):
            return node.value.value
    raise SystemExit("no _ApiVersion.CURRENT in the SDK")


def classes_of(zf: zipfile.ZipFile) -> tuple[dict[str, ast.ClassDef], dict[str, str]]:
    """Parameter classes by name, and the root class of each operation."""
    names = set(zf.namelist())
    out: dict[str, ast.ClassDef] = {}
    if "stripe/params/checkout/_session_create_params.py" in names:  # SDK >= 13: one module per operation
        for f in ("_session_create_params.py", "_session_retrieve_params.py"):
            for node in ast.parse(zf.read("stripe/params/checkout/" + f)).body:
                if isinstance(node, ast.ClassDef):
                    out[node.name] = node
        return out, {"checkout.sessions.create": "SessionCreateParams",
                     "checkout.sessions.retrieve": "SessionRetrieveParams"}
    tree = ast.parse(zf.read("stripe/checkout/_session.py"))  # older SDKs: nested in class Session
    session = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Session")
    for node in session.body:
        if isinstance(node, ast.ClassDef) and (node.name.startswith("CreateParams") or node.name == "RetrieveParams"):
            out[node.name] = node
    return out, {"checkout.sessions.create": "CreateParams", "checkout.sessions.retrieve": "RetrieveParams"}


def type_of(node: ast.AST, classes: dict) -> dict:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):  # a forward reference
        return type_of(ast.parse(node.value, mode="eval").body, classes)
    if isinstance(node, ast.Name):
        if node.id in SCALARS:
            return dict(SCALARS[node.id])
        if node.id in classes:
            return {"ref": node.id}
        return {"type": "any", "note": node.id}
    if isinstance(node, ast.Attribute):  # Session.CreateParamsX
        if node.attr in classes:
            return {"ref": node.attr}
        return {"type": "any", "note": ast.unparse(node)}
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return union([node.left, node.right], classes)
    if isinstance(node, ast.Subscript):
        head = ast.unparse(node.value).split(".")[-1]
        args = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if head == "Literal":
            return {"enum": [a.value for a in args]}
        if head == "List":
            return {"type": "array", "items": type_of(args[0], classes)}
        if head == "Dict":
            return {"type": "map", "values": type_of(args[1], classes)}
        if head == "Union":
            return union(args, classes)
        if head in ("Optional",):
            return type_of(args[0], classes)
        if head == "UntypedStripeObject":
            return {"type": "map", "values": type_of(args[0], classes) if args else {"type": "any"}}
    return {"type": "any", "note": ast.unparse(node)}


def union(parts, classes) -> dict:
    flat = []
    for p in parts:
        t = type_of(p, classes)
        flat.extend(t["anyOf"] if "anyOf" in t else [t])
    enums = [t for t in flat if "enum" in t]
    rest = [t for t in flat if "enum" not in t]
    # The SDK writes enums as Literal[...] | str so old clients accept new values;
    # Stripe's server still takes only the listed ones.
    if enums and all(t == {"type": "string"} for t in rest):
        return {"enum": sorted({v for t in enums for v in t["enum"]}, key=str)}
    options = []
    if enums:
        options.append({"enum": sorted({v for t in enums for v in t["enum"]}, key=str)})
    options.extend(t for t in rest if t not in options)
    return options[0] if len(options) == 1 else {"anyOf": options}


def fields_of(cls: ast.ClassDef, classes: dict) -> dict:
    out = {}
    for node in cls.body:
        if not isinstance(node, ast.AnnAssign) or not isinstance(node.target, ast.Name):
            continue
        ann, required = node.annotation, True
        if isinstance(ann, ast.Subscript) and ast.unparse(ann.value).endswith("NotRequired"):
            ann, required = ann.slice, False
        out[node.target.id] = {"required": required, **type_of(ann, classes)}
    return out


def generate(sdk: str, workdir: Path) -> Path:
    with zipfile.ZipFile(download(sdk, workdir)) as zf:
        version = api_version(zf)
        classes, roots = classes_of(zf)
    types: dict[str, dict] = {}
    todo = list(roots.values())
    while todo:
        name = todo.pop()
        if name in types:
            continue
        types[name] = fields_of(classes[name], classes)
        for spec in json.dumps(types[name]).split('"ref": "')[1:]:
            todo.append(spec.split('"', 1)[0])
    doc = {"api_version": version, "generated_from": f"PyPI stripe=={sdk} (typed request params)",
           "operations": roots, "types": dict(sorted(types.items()))}
    out = HERE / f"{version}.json"
    out.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n")
    return out


def main(argv: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for sdk in argv or DEFAULT_SDKS:
            path = generate(sdk, Path(tmp))
            print(f"stripe=={sdk} -> {path.relative_to(HERE.parent.parent)}")


if __name__ == "__main__":
    main(sys.argv[1:])
