"""How the pack behaves when its native module is missing, broken or of
another version (a fresh Manager install where no wheel fits, a `git pull`
over an old local build), and the versions and HTTPS trust it relies on."""
import importlib.util
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from comfy_credits_ext import _core
from test_integration import ROOT, Comfy, dalle

UNAVAILABLE = "Credits are unavailable on this server — ask the operator"


def pack_copy(dest, with_native=False, version=None):
    """The pack's tracked files (what `git clone` gives Manager), without any local build."""
    files = subprocess.check_output(["git", "-C", ROOT, "ls-files"], text=True).split()
    for f in files:
        if os.path.exists(os.path.join(ROOT, f)):
            os.makedirs(os.path.join(dest, os.path.dirname(f)), exist_ok=True)
            shutil.copy2(os.path.join(ROOT, f), os.path.join(dest, f))
    if with_native:
        shutil.copy2(_core.__file__, os.path.join(dest, "comfy_credits_ext", os.path.basename(_core.__file__)))
    if version:
        p = os.path.join(dest, "comfy_credits_ext", "__init__.py")
        with open(p, encoding="utf-8") as fh:
            text = fh.read()
        with open(p, "w", encoding="utf-8") as fh:
            fh.write(re.sub(r'^__version__ = ".*"$', f'__version__ = "{version}"', text, flags=re.M))
    return dest


def assert_failed_closed(c, tmp_path, reason_part, pack_version=_core.__version__):
    log = c.boot_log
    line = next(ln for ln in log.splitlines() if "comfy-credits DISABLED" in ln)
    assert reason_part in line and "Fix: in ComfyUI-Manager use 'Try fix'" in line, line
    assert "comfy-credits-core==" + pack_version in line
    assert "IMPORT FAILED: " + str(tmp_path / "custom_nodes" / "comfy-credits") in log
    st, body = c.queue(dalle())  # an API node: refused, nothing reaches the upstream
    assert st == 503 and body["error"]["message"] == UNAVAILABLE, body
    for path in ("/credits/session", "/api/credits/status", "/credits/balance"):
        st, body = c.http("GET", path)
        assert st == 503 and body["error"]["message"] == UNAVAILABLE and body["available"] is False
    st, body = c.http("POST", "/api/credits/session", {"email": "a@b.co", "password": "x"})
    assert st == 503
    raw = json.dumps(body, ensure_ascii=False)
    assert "/" not in raw.replace("/credits", ""), raw  # no file-system path in what a client sees
    # Our web/ extension is not served, so the frontend shows no sign-in form that cannot work.
    st, ext = c.http("GET", "/extensions")
    assert st == 200 and not any("comfy_credits" in e for e in ext), ext
    st, _ = c.queue({"1": {"class_type": "PrimitiveString", "inputs": {"value": "x"}},
                     "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}})
    assert st == 200  # workflows without API nodes keep working
    assert c.upstream_requests() == []


def test_versions_agree():
    sys.path.insert(0, os.path.join(ROOT, "packaging"))
    try:
        import native_build
    finally:
        sys.path.pop(0)
    with open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8") as fh:
        pyproject = re.search(r'^version = "(.*)"$', fh.read(), re.M).group(1)
    with open(os.path.join(ROOT, "requirements.txt"), encoding="utf-8") as fh:
        req = [ln.strip() for ln in fh if ln.strip() and not ln.startswith("#")]
    import comfy_credits_ext
    assert pyproject == comfy_credits_ext.__version__ == native_build.version() == _core.__version__
    assert req == [f"comfy-credits-core=={pyproject}"]  # one plain PyPI line: Manager 4.x drops anything else


def test_no_native_module_fails_closed_and_visibly(tmp_path):
    if importlib.util.find_spec("comfy_credits_core") is not None:
        pytest.skip("comfy-credits-core is installed in this Python; tests/test_manager_install.py covers it")
    pack = pack_copy(tmp_path / "pack")
    c = Comfy(tmp_path, pack=pack)
    try:
        assert_failed_closed(c, tmp_path, "the native module is not installed for this Python")
    finally:
        c.close()


def test_old_local_build_is_refused_by_version(tmp_path):
    if importlib.util.find_spec("comfy_credits_core") is not None:
        pytest.skip("comfy-credits-core is installed in this Python")
    pack = pack_copy(tmp_path / "pack", with_native=True, version="9.9.9")
    c = Comfy(tmp_path, pack=pack)
    try:
        assert_failed_closed(c, tmp_path, f"the locally built module is version {_core.__version__}, the pack is 9.9.9",
                             pack_version="9.9.9")
    finally:
        c.close()


def test_status_route_when_loaded(tmp_path):
    c = Comfy(tmp_path)
    try:
        st, body = c.http("GET", "/api/credits/status")
        assert st == 200 and body == {"available": True, "version": _core.__version__}
    finally:
        c.close()


# ------------------------------------------------------------------ HTTPS trust (src/tls.h)

@pytest.fixture(scope="module")
def https_server(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    run = lambda *a: subprocess.run(["openssl", *a], cwd=d, check=True, capture_output=True)  # noqa: E731
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=comfy-credits test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=127.0.0.1")
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "srv.pem",
        "-days", "2", "-extfile", "ext.cnf")

    class H(BaseHTTPRequestHandler):
        def do_GET(self):  # what Stripe answers for GET /v1/checkout/sessions/{id}
            body = json.dumps({"id": "cs_tls", "object": "checkout.session", "status": "open",
                               "payment_status": "unpaid", "amount_total": 100, "currency": "usd",
                               "metadata": {"account_id": "1", "credits_micro": "1000000"},
                               "client_reference_id": "1", "url": "https://x/pay"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(d / "srv.pem", d / "srv.key")
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{srv.server_address[1]}", str(d / "ca.pem")
    srv.shutdown()


def test_https_trusts_exactly_the_configured_ca_bundle(https_server):
    base, ca = https_server
    before = _core.ca_bundle()
    try:
        _core.set_ca_bundle(ca)
        assert _core.ca_bundle() == ca
        assert _core.Stripe(base, "sk_test_x").retrieve_checkout("cs_tls")["id"] == "cs_tls"
        # Another bundle (certifi's, or the system's) does not know our CA: verification fails, nothing is trusted.
        import certifi
        _core.set_ca_bundle(certifi.where())
        with pytest.raises(_core.CreditsError) as ei:
            _core.Stripe(base, "sk_test_x").retrieve_checkout("cs_tls")
        assert "certificate" in str(ei.value).lower() or "ssl" in str(ei.value).lower(), ei.value
        with pytest.raises(_core.InvalidArgument):
            _core.set_ca_bundle("/nonexistent/ca.pem")
        assert _core.ca_bundle() == certifi.where()  # a bad path changes nothing
    finally:
        _core.set_ca_bundle(before)


def test_ca_bundle_comes_from_the_environment(https_server):
    base, ca = https_server
    code = ("from comfy_credits_ext import _core; import sys; print(_core.ca_bundle());"
            f"print(_core.Stripe({base!r}, 'sk_test_x').retrieve_checkout('cs_tls')['id'])")
    env = dict(os.environ, COMFY_CREDITS_CA_BUNDLE=ca, PYTHONPATH=os.environ["COMFY_CREDITS_IMPORT_ROOT"])
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd="/")
    assert out.returncode == 0 and out.stdout.split() == [ca, "cs_tls"], out.stderr
    env["COMFY_CREDITS_CA_BUNDLE"] = ""
    out = subprocess.run([sys.executable, "-c", "from comfy_credits_ext import _core; import certifi;"
                          "assert _core.ca_bundle() == certifi.where()"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
