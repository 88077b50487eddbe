"""comfy-credits: per-user credits for paid ComfyUI API nodes.

The money logic lives in the C module `comfy_credits_ext._core`; this package
holds the Python glue (configuration, CLI and the ComfyUI hooks).

Where `_core` comes from, first match wins:
  1. a module built in place (`comfy_credits_ext/_core*.so`: developers,
     `install.py` building from source), if its version equals ours;
  2. the prebuilt wheel `comfy-credits-core` (requirements.txt), same check.
A module of another version is never used (a `git pull` or Registry update
keeps an old local build): CoreUnavailable says which version was found.

HTTPS: the CA bundle given to libcurl is COMFY_CREDITS_CA_BUNDLE (a file, or
"system" for libcurl's compiled-in default), else certifi's when installed.
"""
import importlib as _importlib
import os as _os
import sys as _sys

__version__ = "0.1.0"
CORE_DISTRIBUTION = "comfy-credits-core"


class CoreUnavailable(ImportError):
    """The native module is missing, broken or of another version.

    `.reason` is one line for the log (may name local paths: never send it to
    a client); `.fix` is what a ComfyUI-Manager user can do about it."""

    def __init__(self, reason, fix):
        super().__init__(f"{reason} Fix: {fix}")
        self.reason, self.fix = reason, fix


def _fix_text(installed):
    text = (f"in ComfyUI-Manager use 'Try fix' on comfy-credits, which installs {CORE_DISTRIBUTION}=={__version__} "
            f"(or run `{_sys.executable} -m pip install {CORE_DISTRIBUTION}=={__version__}`)")
    if not installed:  # pip found no wheel for this platform before, so it will build from source this time
        from .native_help import what_to_install
        text += f"; where no prebuilt wheel fits, pip builds it from source, which needs {what_to_install(__version__)}"
    return text + "; then restart ComfyUI"


def _load_core():
    found = []
    for name, label in ((__name__ + "._core", "the locally built module"),
                        ("comfy_credits_core._core", f"the {CORE_DISTRIBUTION} package")):
        try:
            mod = _importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name not in (name, "comfy_credits_core"):
                found.append(f"{label} cannot load ({exc})")
            continue
        except ImportError as exc:  # present but broken: a missing shared library, wrong Python, ...
            found.append(f"{label} cannot load ({exc})")
            continue
        have = getattr(mod, "__version__", "unknown")
        if have == __version__:
            _sys.modules[__name__ + "._core"] = mod
            return mod
        found.append(f"{label} is version {have}, the pack is {__version__}")
    if not found:
        reason = (f"the native module is not installed for this Python "
                  f"({_sys.version_info[0]}.{_sys.version_info[1]}, {_sys.platform}).")
    else:
        reason = "the native module is unusable: " + "; ".join(found) + "."
    raise CoreUnavailable(reason, _fix_text(installed=bool(found)))


def _apply_ca_bundle(core):
    want = _os.environ.get("COMFY_CREDITS_CA_BUNDLE", "").strip()
    if want == "system":
        core.set_ca_bundle(None)
    elif want:
        core.set_ca_bundle(want)  # InvalidArgument when it is not a readable file: say so at start
    else:
        try:
            import certifi
        except ImportError:
            return
        core.set_ca_bundle(certifi.where())


_core = _load_core()
_apply_ca_bundle(_core)
