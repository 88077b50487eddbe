"""The pack installed the way ComfyUI-Manager installs it, on a machine with
no compiler, no -dev packages and no libcurl/cJSON (tests/no_toolchain.sh):
a fresh venv as ComfyUI's Python, Manager's own execute_install_script
(comfyui-manager from PyPI), the comfy-credits-core wheel served from a local
wheelhouse standing in for PyPI. Then the contract harness loads the pack
with that Python: it must start, not fail closed, and meter an API node. When
no wheel fits, Manager reports the failure, install.py names what to
install, and the pack fails closed and visibly.

Needs root (unshare -m) and PyPI for the venv's packages; scripts/setup-test
installs the rest. Set COMFY_CREDITS_WHEELHOUSE to reuse built wheels."""
import glob
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

from test_install import assert_failed_closed, pack_copy
from test_integration import ROOT, C, Comfy, dalle, user

# What comfyui_manager.glob.manager_core imports (its other dependencies,
# transformers and friends, serve features this test does not touch).
MANAGER_IMPORTS = ["GitPython", "tqdm", "PyYAML", "rich", "packaging", "toml", "requests", "huggingface_hub", "chardet"]
HARNESS = os.path.join(ROOT, "tests", "comfyui_harness")
SANDBOX = os.path.join(ROOT, "tests", "no_toolchain.sh")

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"),
                                reason="needs root for unshare -m (CI runs as root)")


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory):
    d = os.environ.get("COMFY_CREDITS_WHEELHOUSE")
    if not d:
        d = str(tmp_path_factory.mktemp("wheelhouse"))
        r = subprocess.run(["bash", os.path.join(ROOT, "scripts", "build-wheel")], cwd=ROOT, capture_output=True,
                           text=True, env=dict(os.environ, WHEELHOUSE=d, PYTHON=sys.executable))
        assert r.returncode == 0, r.stdout + r.stderr
    tag = "cp%d%d" % sys.version_info[:2]
    assert glob.glob(os.path.join(d, f"comfy_credits_core-*-{tag}-*manylinux*.whl")), os.listdir(d)
    # comfy-credits-core's one dependency, so that the wheelhouse alone satisfies it.
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", d, "certifi"], check=True)
    return d


@pytest.fixture(scope="module")
def comfy_python(tmp_path_factory):
    """A fresh venv standing in for ComfyUI's Python: aiohttp (ComfyUI has it) and comfyui-manager."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    pip = [py, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run(pip + ["aiohttp>=3.9", *MANAGER_IMPORTS], check=True)
    subprocess.run(pip + ["--no-deps", "comfyui-manager"], check=True)
    return py


def sandboxed(py, *cmd):
    return ["unshare", "-m", "--propagation", "private", "bash", SANDBOX, py, *cmd]


def manager_install(comfy_python, tmp_path, wheelhouse):
    """Copy the pack into custom_nodes/ (as Manager's clone does) and run Manager's routine in the sandbox."""
    nodes = tmp_path / "custom_nodes"
    pack = pack_copy(nodes / "comfy-credits")
    env = dict(os.environ, PIP_NO_INDEX="1", PIP_FIND_LINKS=wheelhouse, PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.pop("PYTHONPATH", None)
    t = time.monotonic()
    r = subprocess.run(sandboxed(comfy_python, comfy_python, os.path.join(ROOT, "tests", "manager_install.py"),
                                 HARNESS, str(tmp_path), str(pack)),
                       capture_output=True, text=True, env=env, timeout=600)
    return r, time.monotonic() - t


def harness_python(tmp_path, comfy_python):
    """What Comfy() starts as `python main.py ...`: ComfyUI's Python, in the same sandbox."""
    w = tmp_path / "comfy-python"
    w.write_text(f"#!/bin/sh\nexec unshare -m --propagation private bash {SANDBOX} {comfy_python} {comfy_python} \"$@\"\n")
    w.chmod(0o755)
    return str(w)


def test_sandbox_really_has_no_toolchain(comfy_python):
    r = subprocess.run(sandboxed(comfy_python, "bash", "-c",
                                 "echo 'int main(void){return 0;}' > /tmp/cc-probe.c; "
                                 "gcc -c /tmp/cc-probe.c -o /tmp/cc-probe.o && echo CC-WORKS; "
                                 "test -e /usr/include/stdio.h && echo HEADERS; "
                                 f"{comfy_python} -c 'import ctypes; ctypes.CDLL(\"libcurl.so.4\")' 2>/dev/null "
                                 "&& echo LIBCURL; echo done"), capture_output=True, text=True)
    assert r.stdout.split() == ["done"], r.stdout + r.stderr


def test_manager_installs_the_wheel_and_the_pack_meters_api_nodes(tmp_path, wheelhouse, comfy_python):
    r, secs = manager_install(comfy_python, tmp_path, wheelhouse)
    out = r.stdout + r.stderr
    assert r.returncode == 0 and "manager-install: OK" in out, out
    assert "Successfully installed" in out and "comfy-credits-core-" in out, out  # from the wheelhouse, by pip
    assert "comfy-credits install: native module 0.1.0 comfy-credits-core wheel: OK" in out, out
    assert not glob.glob(str(tmp_path / "custom_nodes" / "comfy-credits" / "comfy_credits_ext" / "_core*"))
    print(f"Manager install (pip + install.py): {secs:.1f} s")
    c = Comfy(tmp_path, python=harness_python(tmp_path, comfy_python))
    try:
        assert re.search(r"comfy-credits: ready; [1-9][0-9]* API node classes metered", c.boot_log), c.boot_log
        assert "IMPORT FAILED" not in c.boot_log and "DISABLED" not in c.boot_log
        st, body = c.http("GET", "/api/credits/status")
        assert st == 200 and body["available"] is True
        acct, key = user(c, "wheel@example.com", 20 * C)
        st, body = c.queue(dalle(), key, extra={"api_key_comfy_org": key})
        assert st == 200, body
        h = c.wait(body["prompt_id"])
        assert h["status"]["status_str"] == "success", h["status"]
        with c.ledger() as led:
            assert led.account(acct)["balance"] == 20 * C - 8_440_000  # DALL·E 3 standard 1024: $0.04 x 211
        assert len(c.upstream_requests()) == 1
    finally:
        c.close()


def test_no_wheel_fits_manager_reports_it_and_the_pack_fails_closed(tmp_path, wheelhouse, comfy_python):
    # The venv is shared with the test above: start from a Python without the wheel.
    subprocess.run([comfy_python, "-m", "pip", "uninstall", "-q", "-y", "comfy-credits-core"], check=True)
    only_certifi = tmp_path / "wheelhouse"
    only_certifi.mkdir()
    for f in glob.glob(os.path.join(wheelhouse, "certifi-*")):
        shutil.copy2(f, only_certifi)
    r, _ = manager_install(comfy_python, tmp_path, str(only_certifi))
    out = r.stdout + r.stderr
    assert r.returncode == 1 and "manager-install: FAILED" in out, out
    assert "No matching distribution found for comfy-credits-core==0.1.0" in out, out
    # Manager stops at the failed requirement: install.py does not run (manager_core.py `res and ...`).
    assert "comfy-credits install:" not in out
    # Run by hand (or by a later 'Try fix'), install.py says in one line what is missing and what to install.
    pack = tmp_path / "custom_nodes" / "comfy-credits"
    r = subprocess.run(sandboxed(comfy_python, comfy_python, "install.py"), cwd=pack, capture_output=True, text=True)
    line = next(ln for ln in r.stdout.splitlines() if "comfy-credits install: FAILED" in ln)
    assert r.returncode == 1 and "no prebuilt comfy-credits-core==0.1.0 wheel fits this machine" in line
    assert "a C compiler" in line and "headers" in line and "apt-get install gcc" in line, line
    c = Comfy(tmp_path, python=harness_python(tmp_path, comfy_python))
    try:
        assert_failed_closed(c, tmp_path, "the native module is not installed for this Python")
        line = next(ln for ln in c.boot_log.splitlines() if "comfy-credits DISABLED" in ln)
        assert "pip builds it from source, which needs (as an administrator) `apt-get install gcc" in line, line
    finally:
        c.close()


def test_no_wheel_but_a_compiler_pip_builds_the_sdist(tmp_path, wheelhouse, comfy_python):
    """Where no wheel fits but a compiler and the -dev packages exist, Manager's pip builds comfy-credits-core
    from its sdist (the release publishes one) and the pack works. Not sandboxed: this machine has the toolchain."""
    subprocess.run([comfy_python, "-m", "pip", "uninstall", "-q", "-y", "comfy-credits-core"], check=True)
    sdist_only = tmp_path / "wheelhouse"
    sdist_only.mkdir()
    for pat in ("certifi-*", "comfy[-_]credits[-_]core-*.tar.gz"):
        for f in glob.glob(os.path.join(wheelhouse, pat)):
            shutil.copy2(f, sdist_only)
    # pip's isolated build environment needs setuptools and wheel from the "index" too.
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "-d", str(sdist_only), "setuptools>=64", "wheel"],
                   check=True)
    nodes = tmp_path / "custom_nodes"
    pack = pack_copy(nodes / "comfy-credits")
    env = dict(os.environ, PIP_NO_INDEX="1", PIP_FIND_LINKS=str(sdist_only), PIP_DISABLE_PIP_VERSION_CHECK="1")
    r = subprocess.run([comfy_python, os.path.join(ROOT, "tests", "manager_install.py"), HARNESS, str(tmp_path),
                        str(pack)], capture_output=True, text=True, env=env, timeout=900)
    out = r.stdout + r.stderr
    assert r.returncode == 0 and "Building wheel for comfy-credits-core" in out, out
    assert "comfy-credits install: native module 0.1.0 comfy-credits-core wheel: OK" in out, out
    c = Comfy(tmp_path, python=comfy_python)
    try:
        assert re.search(r"comfy-credits: ready; [1-9][0-9]* API node classes metered", c.boot_log), c.boot_log
    finally:
        c.close()
