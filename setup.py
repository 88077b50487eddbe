"""Builds comfy_credits_ext._core from src/*.c against Debian's -dev packages.

`pip install .` / `pip install -e .` / `python setup.py build_ext --inplace`.
Needs: libcurl4-openssl-dev libcjson-dev libsqlite3-dev libssl-dev pkg-config.
"""
import glob
import os
import shutil
import subprocess

from setuptools import Extension, setup

PKGS = ["libcjson", "sqlite3", "libcurl", "openssl"]


def pkg_config(flag):
    if not shutil.which("pkg-config"):
        return None
    try:
        out = subprocess.check_output(["pkg-config", flag, *PKGS], stderr=subprocess.STDOUT)
    except subprocess.CalledProcessError as exc:
        raise SystemExit(
            "comfy-credits: pkg-config cannot find %s.\n%s\nInstall them with:\n"
            "  apt-get install libcurl4-openssl-dev libcjson-dev libsqlite3-dev libssl-dev pkg-config"
            % (" ".join(PKGS), exc.output.decode(errors="replace"))
        )
    return out.decode().split()


cflags = pkg_config("--cflags") or []
libs = pkg_config("--libs") or ["-lcjson", "-lsqlite3", "-lcurl", "-lcrypto"]
here = os.path.dirname(os.path.abspath(__file__))
sources = sorted(os.path.relpath(p, here) for p in glob.glob(os.path.join(here, "src", "*.c")))

extra_compile = ["-std=c11", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Werror", "-Wno-missing-field-initializers"]
if os.environ.get("COMFY_CREDITS_SANITIZE"):
    extra_compile += ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined"]
    libs = libs + ["-fsanitize=address,undefined"]

setup(
    ext_modules=[
        Extension(
            "comfy_credits_ext._core",
            sources=sources,
            include_dirs=["src"],
            extra_compile_args=cflags + extra_compile,
            extra_link_args=libs + ["-lpthread"],
        )
    ],
)
