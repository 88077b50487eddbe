"""comfy-credits-core: builds comfy_credits_core._core from the repo's src/*
(flags in packaging/native_build.py), version = the pack's version.

setuptools accepts only sources inside this folder (no absolute or ../
paths), so the C sources are copied to csrc/ (ignored by git) first; a copy
rather than a symlink, so that the Windows build sees real files.
"""
import glob
import os
import shutil
import sys

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import native_build  # noqa: E402

csrc = os.path.join(HERE, "csrc")
shutil.rmtree(csrc, ignore_errors=True)
os.makedirs(csrc)
for f in glob.glob(os.path.join(native_build.REPO, "src", "*.[ch]")):
    shutil.copy2(f, csrc)

setup(version=native_build.version(),
      ext_modules=[native_build.extension("comfy_credits_core._core", HERE, src_dir=csrc)])
