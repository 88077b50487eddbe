"""How the C core is compiled into a CPython extension: shared by the pack's
setup.py (in-place build of comfy_credits_ext._core, for developers and for
install.py's build from source) and packaging/core/setup.py (the
comfy-credits-core wheel, comfy_credits_core._core).

Needs a C compiler, the Python headers and the -dev packages of libcurl,
cJSON, SQLite and OpenSSL (found with pkg-config where it exists; on
Windows, vcpkg's x64-windows folder).
"""
import glob
import os
import re
import shutil
import subprocess
import sys


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


def _windows_deps():
    """MSVC build (the release workflow's Windows job): the libraries come
    from vcpkg's x64-windows triplet (DLLs that delvewheel then bundles),
    whose folder is COMFY_CREDITS_DEPS_PREFIX (default: %VCPKG_ROOT% or
    C:/vcpkg, /installed/x64-windows). Import libraries are found by name,
    as vcpkg's ports have spelled them differently over time."""
    prefix = os.environ.get("COMFY_CREDITS_DEPS_PREFIX") or os.path.join(
        os.environ.get("VCPKG_ROOT") or os.environ.get("VCPKG_INSTALLATION_ROOT") or "C:/vcpkg",
        "installed", "x64-windows")
    libdir = os.path.join(prefix, "lib")
    wanted = {"libcurl": ["libcurl", "libcurl_imp", "curl"], "cJSON": ["cjson"], "SQLite": ["sqlite3"],
              "OpenSSL libcrypto": ["libcrypto", "crypto"]}
    libs, missing = [], []
    for what, names in wanted.items():
        found = [n for n in names if os.path.isfile(os.path.join(libdir, n + ".lib"))]
        (libs.append(found[0]) if found else missing.append(what))
    if missing:
        raise SystemExit("comfy-credits: %s not found in %s (vcpkg install curl[openssl] cjson sqlite3 openssl "
                         "--triplet x64-windows, or set COMFY_CREDITS_DEPS_PREFIX)" % (", ".join(missing), libdir))
    return [os.path.join(prefix, "include")], [libdir], libs


def extension(module_name, relative_to, src_dir=None, ver=None):
    """The Extension for `module_name` from the C files in src_dir (default:
    the repo's src/), given relative to `relative_to` as setuptools wants;
    `ver` defaults to the pack's (the sdist passes the one it carries).
    Per platform (src/cc_platform.h holds the C side of the differences):
      - Linux (gcc): pkg-config, -Werror, -lpthread;
      - macOS (clang): pkg-config (Homebrew's keg-only curl/openssl through
        PKG_CONFIG_PATH), -Werror, and -headerpad_max_install_names so that
        delocate can rewrite the libraries' install names to the bundled
        copies (the ld64 flag; libpthread is part of libSystem);
      - libpq (farm mode) where pkg-config finds it; not on Windows yet;
      - Windows (MSVC): vcpkg's folders (_windows_deps), /std:c11 (VS 2019
        16.8 or newer), /W3 without /WX (never compiled by MSVC before the
        first release run: a warning must not fail that run; mingw-w64
        checks the code with -Werror -Wpedantic in CI), no pthreads (Win32
        threads in cc_platform.c)."""
    src = src_dir or os.path.join(REPO, "src")
    rel = lambda p: os.path.relpath(p, relative_to)  # noqa: E731
    sources = sorted(rel(p) for p in glob.glob(os.path.join(src, "*.c")))
    major, minor, patch = (ver or version()).split(".")
    macros = [("CC_VERSION_MAJOR", major), ("CC_VERSION_MINOR", minor), ("CC_VERSION_PATCH", patch)]
    include_dirs, library_dirs, libraries = [rel(src)], [], []
    if sys.platform == "win32":
        inc, libdirs, libraries = _windows_deps()
        include_dirs += inc
        library_dirs += libdirs
        macros += [("_CRT_SECURE_NO_WARNINGS", "1"), ("_CRT_NONSTDC_NO_DEPRECATE", "1")]
        compile_args, link_args = ["/std:c11", "/W3", "/utf-8"], []
    else:
        cflags = _pkg_config("--cflags") or []
        libs = _pkg_config("--libs") or ["-lcjson", "-lsqlite3", "-lcurl", "-lcrypto"]
        compile_args = cflags + ["-std=c11", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Werror",
                                 "-Wno-missing-field-initializers"]
        if _have_libpq():
            macros.append(("CC_HAVE_LIBPQ", "1"))
        if sys.platform == "darwin":
            link_args = libs + ["-Wl,-headerpad_max_install_names"]
        else:
            link_args = libs + ["-lpthread"]
        sanitize = os.environ.get("COMFY_CREDITS_SANITIZE")
        if sanitize:  # "thread": ThreadSanitizer (scripts/tsan-pytest); anything else: ASan + UBSan
            kinds = "thread" if sanitize == "thread" else "address,undefined"
            compile_args += ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=" + kinds]
            link_args += ["-fsanitize=" + kinds]
    from setuptools import Extension  # only here: install.py imports this module for version(), and a
    # ComfyUI Python (a 3.12 venv) may have no setuptools at all

    return Extension(
        module_name,
        sources=sources,
        include_dirs=include_dirs,
        library_dirs=library_dirs,
        libraries=libraries,
        define_macros=macros,
        extra_compile_args=compile_args,
        extra_link_args=link_args,
    )
