"""Run by ComfyUI-Manager after it installs requirements.txt, with ComfyUI's
own Python and the pack folder as the current directory (manager_core.py
execute_install_script). Also fine to run by hand: `python install.py`.

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
import platform
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


def check():
    """(ok, text): does the pack's loader accept a native module? Fresh process each time."""
    r = subprocess.run([sys.executable, "-c", CHECK], cwd=HERE, capture_output=True, text=True)
    if r.returncode == 0:
        return True, r.stdout.strip()
    last = (r.stderr.strip().splitlines() or ["unknown error"])[-1]
    return False, last


def missing_build_tools():
    """What a build from source lacks here (empty list: it can be tried)."""
    missing = []
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if not (shutil.which(cc) or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")):
        missing.append("a C compiler")
    inc = sysconfig.get_paths().get("include") or ""
    if not os.path.isfile(os.path.join(inc, "Python.h")):
        missing.append(f"the Python {sys.version_info[0]}.{sys.version_info[1]} headers")
    try:
        import setuptools  # noqa: F401
    except ImportError:
        missing.append("setuptools (pip install setuptools)")
    if shutil.which("pkg-config"):
        r = subprocess.run(["pkg-config", "--exists", "libcjson", "sqlite3", "libcurl", "openssl"])
        if r.returncode != 0:
            missing.append("the libcurl, cJSON, SQLite and OpenSSL development files")
    else:
        missing.append("pkg-config and the libcurl, cJSON, SQLite and OpenSSL development files")
    return missing


def what_to_install():
    if sys.platform == "win32":
        return ("Windows: use a 64-bit Python 3.10-3.13 (ComfyUI portable is one) so pip finds the prebuilt "
                f"comfy-credits-core=={version()} wheel; building from source is not supported there")
    if sys.platform == "darwin":
        return "macOS: `xcode-select --install` and `brew install curl cjson sqlite openssl@3 pkg-config`"
    ids = ""
    try:
        with open("/etc/os-release", encoding="utf-8") as f:
            for line in f:
                if line.startswith(("ID=", "ID_LIKE=")):
                    ids += " " + line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    pyver = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if "debian" in ids or "ubuntu" in ids:
        return ("Debian/Ubuntu (as an administrator): `apt-get install gcc pkg-config python3-dev "
                "libcurl4-openssl-dev libcjson-dev libsqlite3-dev libssl-dev`")
    if "fedora" in ids or "rhel" in ids or "centos" in ids:
        return ("Fedora/RHEL (as an administrator): `dnf install gcc pkgconf python3-devel libcurl-devel "
                "cjson-devel sqlite-devel openssl-devel`")
    if "arch" in ids:
        return "Arch (as an administrator): `pacman -S gcc pkgconf curl cjson sqlite openssl`"
    return (f"a C compiler, pkg-config, the Python {pyver} headers and the development files of "
            "libcurl, cJSON, SQLite and OpenSSL")


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
          f"be built here (missing: {', '.join(missing)}). Install {what_to_install()}; then use 'Try fix' on "
          "comfy-credits in ComfyUI-Manager (or run this install.py again) and restart ComfyUI. Until then paid "
          "API nodes are refused.", flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main())
