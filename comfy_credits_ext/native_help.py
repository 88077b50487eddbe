"""What a person must install so that pip can build comfy-credits-core from
source, where no prebuilt wheel fits their platform: one line, for the
platform this runs on. Used by the pack's loader (the IMPORT FAILED log
line) and by install.py. Never sent to a browser."""
import sys


def _os_ids():
    ids = ""
    try:
        with open("/etc/os-release", encoding="utf-8") as f:
            for line in f:
                if line.startswith(("ID=", "ID_LIKE=")):
                    ids += " " + line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return ids


def what_to_install(version):
    pyver = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if sys.platform == "win32":
        return (f"on Windows use a 64-bit Python 3.10-3.13 (ComfyUI portable is one) so that pip finds the "
                f"prebuilt comfy-credits-core=={version} wheel; building it from source is not supported there")
    if sys.platform == "darwin":
        return "`xcode-select --install` and `brew install curl cjson sqlite openssl@3 pkg-config`"
    ids = _os_ids()
    if "debian" in ids or "ubuntu" in ids:
        return ("(as an administrator) `apt-get install gcc pkg-config python3-dev libcurl4-openssl-dev "
                "libcjson-dev libsqlite3-dev libssl-dev`")
    if "fedora" in ids or "rhel" in ids or "centos" in ids:
        return ("(as an administrator) `dnf install gcc pkgconf python3-devel libcurl-devel cjson-devel "
                "sqlite-devel openssl-devel`")
    if "arch" in ids:
        return "(as an administrator) `pacman -S gcc pkgconf curl cjson sqlite openssl`"
    return (f"a C compiler, pkg-config, the Python {pyver} headers and the development files of libcurl, cJSON, "
            "SQLite and OpenSSL")
