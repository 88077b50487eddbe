"""comfy-credits-core: builds comfy_credits_core._core from the repo's src/*.c
(flags in packaging/native_build.py), version = the pack's version."""
import os
import sys

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import native_build  # noqa: E402

setup(version=native_build.version(), ext_modules=[native_build.extension("comfy_credits_core._core", HERE)])
