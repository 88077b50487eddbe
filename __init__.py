"""ComfyUI entry point of the comfy-credits pack (loaded from custom_nodes/).

The credits engine (comfy_credits_ext._core) is built by `bash scripts/setup`.
The ComfyUI hooks (queue gate, API-node wrappers, metering gateway, web UI)
arrive with the integration work; until then the pack registers no nodes.
"""
NODE_CLASS_MAPPINGS = {}
NODE_DISPLAY_NAME_MAPPINGS = {}
