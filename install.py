"""Run by ComfyUI-Manager after it installs requirements.txt, with ComfyUI's
own Python and the pack folder as the current directory (manager_core.py
execute_install_script). Also fine to run by hand: `python install.py`.
Manager runs it only when every requirements.txt line installed: when pip
found neither a wheel nor a way to build comfy-credits-core, Manager stops
before this script (`res and try_install_script(...)`), and the pack's
IMPORT FAILED log line says what to install.

1. If the native module imports (the comfy-credits-core wheel from
   requirements.txt, or an earlier local build) and its version is the
   pack's: say so, exit 0.
2. Otherwise, where a C compiler, Python's headers, setuptools and the C
   libraries are all present: build it from source into this folder.
3. Otherwise: print ONE message naming what to install, exit 1 (Manager shows
   the install as failed; ComfyUI then lists the pack as IMPORT FAILED and
   paid API nodes stay refused).
Never uses root, never installs anything system-wide, never installs test tools.
"""
import os
import shutil
import subprocess
import sys
import sysconfig

HERE = os.path.dirname(os.path.abspath(__file__))
TAG = "comfy-credits install:"
CHECK = ("import comfy_credits_ext as p, os; "
         "print(p._core.__version__, 'local build' if os.path.dirname(p._core.__file__) == "
         "os.path.join(os.getcwd(), 'comfy_credits_ext') else 'comfy-credits-core wheel')")


def version():
    sys.path.insert(0, os.path.join(HERE, "packaging"))
    import native_build
    return native_build.version()


def what_to_install(ver):
    sys.path.insert(0, os.path.join(HERE, "comfy_credits_ext"))
    from native_help import what_to_install as text  # no package import: it would load the native module
    return text(ver)


def check():
    """(ok, text): does the pack's loader accept a native module? Fresh process each time."""
    r = subprocess.run([sys.executable, "-c", CHECK], cwd=HERE, capture_output=True, text=True)
    if r.returncode == 0:
        return True, r.stdout.strip()
    last = (r.stderr.strip().splitlines() or ["unknown error"])[-1]
    return False, last


def _compiles(cc, code, flags=()):
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "probe.c")
        with open(src, "w", encoding="utf-8") as f:
            f.write(code)
        try:
            r = subprocess.run([*cc, *flags, "-c", src, "-o", os.path.join(d, "probe.o")], capture_output=True)
        except OSError:
            return False
        return r.returncode == 0


def missing_build_tools():
    """What a build from source lacks here, found by compiling small probes (empty list: try the build)."""
    cc = (sysconfig.get_config_var("CC") or "cc").split()
    if not shutil.which(cc[0]):
        cc = [next((c for c in ("cc", "gcc", "clang") if shutil.which(c)), "cc")]
    if not _compiles(cc, "int main(void) { return 0; }\n"):
        return ["a C compiler", f"the Python {sys.version_info[0]}.{sys.version_info[1]} headers",
                "the libcurl, cJSON, SQLite and OpenSSL development files"]
    missing = []
    if not _compiles(cc, "#include <Python.h>\n", ["-I" + (sysconfig.get_paths().get("include") or "")]):
        missing.append(f"the Python {sys.version_info[0]}.{sys.version_info[1]} headers")
    flags = []
    if shutil.which("pkg-config"):
        r = subprocess.run(["pkg-config", "--cflags", "libcjson", "sqlite3", "libcurl", "openssl"],
                           capture_output=True, text=True)
        flags = r.stdout.split() if r.returncode == 0 else []
    else:
        missing.append("pkg-config")
    for header, what in (("curl/curl.h", "libcurl"), ("cjson/cJSON.h", "cJSON"), ("sqlite3.h", "SQLite"),
                         ("openssl/evp.h", "OpenSSL")):
        if not _compiles(cc, f"#include <{header}>\n", flags):
            missing.append(f"the {what} development files")
    try:
        import setuptools  # noqa: F401
    except ImportError:
        missing.append("setuptools (pip install setuptools)")
    return missing


def main():
    ver = version()
    ok, text = check()
    if ok:
        print(f"{TAG} native module {text}: OK")
        return 0
    print(f"{TAG} no usable native module ({text})")
    missing = missing_build_tools()
    if not missing:
        print(f"{TAG} building it from source (a C compiler and the libraries are here)")
        log = os.path.join(HERE, "build", "install-build.log")
        os.makedirs(os.path.dirname(log), exist_ok=True)
        with open(log, "w", encoding="utf-8") as f:
            r = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=HERE,
                               stdout=f, stderr=subprocess.STDOUT)
        ok, text = check()
        if r.returncode == 0 and ok:
            print(f"{TAG} native module {text}: OK")
            return 0
        with open(log, encoding="utf-8", errors="replace") as f:
            tail = f.read()[-3000:]
        print(tail)
        missing = [f"a working build (it failed: see {log})"]
    plat = f"Python {sys.version_info[0]}.{sys.version_info[1]}, {sysconfig.get_platform()}"
    print(f"{TAG} FAILED: no prebuilt comfy-credits-core=={ver} wheel fits this machine ({plat}) and it cannot "
          f"be built here (missing: {', '.join(missing)}). Install {what_to_install(ver)}; then use 'Try fix' on "
          "comfy-credits in ComfyUI-Manager (or run this install.py again) and restart ComfyUI. Until then paid "
          "API nodes are refused.", flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main())
