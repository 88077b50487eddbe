"""Mirrors comfy_api/feature_flags.py (ComfyUI 0.3.64): the server's
capabilities, served to the frontend by GET /features and by the websocket
reply to the client's first "feature_flags" message (server.py). Packs may add
keys to SERVER_FEATURE_FLAGS; get_server_features() copies it per call."""
from typing import Any, Dict

from comfy.cli_args import args

SERVER_FEATURE_FLAGS: Dict[str, Any] = {
    "supports_preview_metadata": True,
    "max_upload_size": args.max_upload_size * 1024 * 1024,  # MB to bytes
}


def get_connection_feature(sockets_metadata, sid, feature_name, default=False):
    if sid not in sockets_metadata:
        return default
    return sockets_metadata[sid].get("feature_flags", {}).get(feature_name, default)


def supports_feature(sockets_metadata, sid, feature_name):
    return get_connection_feature(sockets_metadata, sid, feature_name, False) is True


def get_server_features() -> Dict[str, Any]:
    return SERVER_FEATURE_FLAGS.copy()
