"""comfy-credits: per-user credits for paid ComfyUI API nodes.

The money logic lives in the C module `comfy_credits_ext._core`; this package
holds the Python glue (configuration, CLI, and later the ComfyUI hooks).
"""
__version__ = "0.1.0"
