"""Runs ComfyUI-Manager's own install routine on a pack folder, as Manager
does right after it clones the pack or unzips its Registry archive:
`UnifiedManager.execute_install_script` from the comfyui-manager package on
PyPI (comfyui_manager/glob/manager_core.py): one `pip install <line>` per
requirements.txt line, then `python install.py`, with THIS interpreter (as
ComfyUI's) and the pack folder as the current directory.

usage: python manager_install.py COMFYUI_MODULES_DIR COMFYUI_DIR PACK_DIR
Exit 0 when Manager reports the install succeeded.
"""
import os
import subprocess
import sys

modules, comfy, pack = sys.argv[1:4]
os.environ["COMFYUI_PATH"] = comfy  # how Manager finds ComfyUI (common/context.py)
sys.path.insert(0, modules)  # ComfyUI's modules (the contract harness): comfy.cli_args, folder_paths

from comfyui_manager.common import cm_global  # noqa: E402
from comfyui_manager.glob import manager_core  # noqa: E402

# What Manager's prestartup_script.py sets when ComfyUI starts (lines 25-26, 112;
# cm_cli/__main__.py does the same), before any install runs.
cm_global.pip_blacklist = {"torch", "torchaudio", "torchsde", "torchvision"}
cm_global.pip_downgrade_blacklist = ["torch", "torchaudio", "torchsde", "torchvision", "transformers", "safetensors",
                                     "kornia"]
cm_global.pip_overrides = {}

try:
    ok = manager_core.unified_manager.execute_install_script(
        "https://github.com/comfy-credits/comfy-credits", pack, instant_execution=True)
except subprocess.CalledProcessError as exc:  # the default run_script (cm-cli's) is check_call
    print(f"manager-install: step failed: {exc.cmd}", flush=True)
    ok = False
print("manager-install:", "OK" if ok else "FAILED", flush=True)
sys.exit(0 if ok else 1)
