"""comfy-credits-core: builds comfy_credits_ext's C core as comfy_credits_core._core.

From the repo (scripts/build-wheel, cibuildwheel): the C sources, the build
flags (packaging/native_build.py) and the pack's version are copied into
csrc/ first, since setuptools accepts only sources inside this folder (a copy,
not a symlink, so that the Windows build sees real files). From the sdist on
PyPI (pip's fallback where no wheel fits): csrc/ is already there.
"""
import glob
import os
import shutil
import sys

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join(HERE, "csrc")
REPO = os.path.dirname(os.path.dirname(HERE))

if os.path.isfile(os.path.join(REPO, "src", "py_module.c")):  # building from the repo
    sys.path.insert(0, os.path.dirname(HERE))
    import native_build

    shutil.rmtree(CSRC, ignore_errors=True)
    os.makedirs(CSRC)
    for f in glob.glob(os.path.join(REPO, "src", "*.[ch]")):
        shutil.copy2(f, CSRC)
    shutil.copy2(native_build.__file__, CSRC)
    with open(os.path.join(CSRC, "VERSION"), "w", encoding="utf-8") as fh:
        fh.write(native_build.version() + "\n")
    sys.path.pop(0)
    del sys.modules["native_build"]

sys.path.insert(0, CSRC)
import native_build  # noqa: E402  (the copy in csrc/)

with open(os.path.join(CSRC, "VERSION"), encoding="utf-8") as fh:
    VERSION = fh.read().strip()

setup(version=VERSION,
      ext_modules=[native_build.extension("comfy_credits_core._core", HERE, src_dir=CSRC, ver=VERSION)])
