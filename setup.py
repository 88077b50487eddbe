"""Builds comfy_credits_ext._core from src/*.c against Debian's -dev packages.

`python setup.py build_ext --inplace` (developers, scripts/setup-dev, and
install.py when no prebuilt comfy-credits-core wheel fits this machine).
Needs: gcc libcurl4-openssl-dev libcjson-dev libsqlite3-dev libssl-dev pkg-config.
Users normally get the prebuilt wheel instead (requirements.txt,
packaging/core). The compile flags live in packaging/native_build.py.
"""
import os
import sys

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "packaging"))
import native_build  # noqa: E402

setup(ext_modules=[native_build.extension("comfy_credits_ext._core", HERE)])
