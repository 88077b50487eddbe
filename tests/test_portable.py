"""Portability of the C core, in pytest so that every helper sees it before
landing (scripts/check-portable does the work):
  - every core file that needs no Python compiles with Debian's mingw-w64
    (Windows x86_64) under -Wall -Wextra -Werror, the way MSVC sees it (no
    __int128, no overflow builtins, no <pthread.h>/<strings.h>/<unistd.h>):
    platform differences belong in src/cc_platform.h;
  - the C suites that need no libcurl/SQLite/OpenSSL/cJSON run as a Windows
    .exe under wine, with the 128-bit fallback and the Win32 thread backend;
  - the CPython module builds against each CPython 3.10-3.13 found here,
    loads through the pack's loader (version check) and runs a ledger smoke
    test. A version not found is reported SKIPPED by the script, and this test
    then requires at least 3.10 and 3.12 only where pyenv has them."""
import glob
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.skipif(not shutil.which("x86_64-w64-mingw32-gcc"), reason="mingw-w64 missing (scripts/setup-test)")
def test_core_is_portable_and_the_module_runs_on_python_3_10_to_3_13():
    r = subprocess.run(["bash", os.path.join(ROOT, "scripts", "check-portable")], cwd=ROOT, capture_output=True,
                       text=True, timeout=900)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    n = len([f for f in glob.glob(os.path.join(ROOT, "src", "*.c")) if not os.path.basename(f).startswith("py_")])
    assert f"mingw-w64 compiled {n} core files, all MSVC-like" in out, out
    if shutil.which("wine64") or shutil.which("wine") or os.path.exists("/usr/lib/wine/wine64"):
        assert "platform: i128=fallback overflow=plain threads=win32" in out, out
        assert "Windows .exe under wine OK" in out, out
    elif os.environ.get("CI"):
        pytest.fail("wine64 missing in CI (scripts/setup-test installs it)\n" + out)
    pyenv = os.path.join(os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv")), "versions")
    for minor in (10, 11, 12, 13):
        if glob.glob(os.path.join(pyenv, f"3.{minor}.*", "include", f"python3.{minor}", "Python.h")):
            assert f"Python 3.{minor} OK" in out, out
