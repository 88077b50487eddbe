"""How the C core is compiled into a CPython extension: shared by the pack's
setup.py (in-place build of comfy_credits_ext._core, for developers and for
install.py's build from source) and packaging/core/setup.py (the
comfy-credits-core wheel, comfy_credits_core._core).

Needs a C compiler, the Python headers and the -dev packages of libcurl,
cJSON, SQLite and OpenSSL (found with pkg-config where it exists).
"""
import glob
import os
import re
import shutil
import subprocess

from setuptools import Extension

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKGS = ["libcjson", "sqlite3", "libcurl", "openssl"]
DEB_PACKAGES = "gcc libcurl4-openssl-dev libcjson-dev libsqlite3-dev libssl-dev pkg-config"
# Optional: PostgreSQL (farm mode, src/store_pg.c) when libpq-dev is there;
# without it a postgresql:// database is refused with a message saying so.
PQ_PKG = "libpq"


def _have_libpq():
    if os.environ.get("COMFY_CREDITS_NO_LIBPQ") or not shutil.which("pkg-config"):
        return False
    return subprocess.call(["pkg-config", "--exists", PQ_PKG]) == 0


def version():
    """The pack's version, the single source (comfy_credits_ext/__init__.py)."""
    with open(os.path.join(REPO, "comfy_credits_ext", "__init__.py"), encoding="utf-8") as f:
        m = re.search(r'^__version__ = "([0-9]+\.[0-9]+\.[0-9]+)"$', f.read(), re.M)
    assert m, "comfy_credits_ext/__init__.py must set __version__"
    return m.group(1)


def _pkg_config(flag):
    if not shutil.which("pkg-config"):
        return None
    pkgs = PKGS + ([PQ_PKG] if _have_libpq() else [])
    try:
        out = subprocess.check_output(["pkg-config", flag, *pkgs], stderr=subprocess.STDOUT)
    except subprocess.CalledProcessError as exc:
        raise SystemExit(
            "comfy-credits: pkg-config cannot find %s.\n%s\nInstall them with:\n  apt-get install %s"
            % (" ".join(PKGS), exc.output.decode(errors="replace"), DEB_PACKAGES))
    return out.decode().split()


def extension(module_name, relative_to, src_dir=None, ver=None):
    """The Extension for `module_name` from the C files in src_dir (default:
    the repo's src/), given relative to `relative_to` as setuptools wants;
    `ver` defaults to the pack's (the sdist passes the one it carries)."""
    cflags = _pkg_config("--cflags") or []
    libs = _pkg_config("--libs") or ["-lcjson", "-lsqlite3", "-lcurl", "-lcrypto"]
    src = src_dir or os.path.join(REPO, "src")
    rel = lambda p: os.path.relpath(p, relative_to)  # noqa: E731
    sources = sorted(rel(p) for p in glob.glob(os.path.join(src, "*.c")))
    extra = ["-std=c11", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Werror", "-Wno-missing-field-initializers"]
    if os.environ.get("COMFY_CREDITS_SANITIZE"):
        extra += ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined"]
        libs = libs + ["-fsanitize=address,undefined"]
    return Extension(
        module_name,
        sources=sources,
        include_dirs=[rel(src)],
        define_macros=[("CC_VERSION", '"%s"' % (ver or version()))] + ([("CC_HAVE_LIBPQ", "1")] if _have_libpq() else []),
        extra_compile_args=cflags + extra,
        extra_link_args=libs + ["-lpthread"],
    )
