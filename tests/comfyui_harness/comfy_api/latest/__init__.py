"""Mirrors comfy_api/latest: `from comfy_api.latest import io`."""
from . import _io as io  # noqa: F401


class ComfyExtension:
    async def on_load(self):
        pass

    async def get_node_list(self):
        return []
