"""Every route is in the OpenAPI document, and schemathesis finds no server
error and no answer that breaks the document."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from appserver import Server

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "comfy_credits_ext", "openapi.json")


@pytest.fixture
def srv(tmp_path):
    s = Server(tmp_path, {"sandbox_checkout": True})  # every route, the sandbox's included
    yield s
    s.close()


def test_every_route_is_documented(srv):
    doc = json.load(open(DOC))
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    served = set()
    for r in srv.app.router.routes():
        info = r.resource.get_info() if r.resource else {}
        path = info.get("path") or info.get("formatter")
        if path and path.startswith("/credits") and r.method != "HEAD":
            served.add((r.method, path))
    assert served == documented, (served ^ documented)


@pytest.mark.skipif(shutil.which("st") is None and shutil.which("schemathesis") is None,
                    reason="schemathesis is installed by scripts/setup")
def test_schemathesis_finds_no_server_error(srv, tmp_path):
    exe = shutil.which("st") or shutil.which("schemathesis")
    report = tmp_path / "junit.xml"
    p = subprocess.run(
        [exe, "run", f"{srv.base}/credits/openapi.json", "--url", srv.base,
         "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
                     "response_schema_conformance",
         "--header", f"Authorization: Bearer {srv.key}", "--max-examples", "25", "--seed", "1",
         "--report", "junit", "--report-junit-path", str(report)],
        capture_output=True, text=True, timeout=900)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-6000:]
    assert "passed" in out.lower()
