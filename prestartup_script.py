"""Runs before ComfyUI imports any node (main.py execute_prestartup_script).

Fail closed: until comfy-credits has fully started and replaced it, every
API-node call goes to an address that refuses connections, so no API node
can reach the paid upstream ungated - not even if the pack fails to import.
"""
import logging

REFUSING_BASE = "http://127.0.0.1:9/comfy-credits-not-loaded/"  # port 9 (discard): connection refused

try:
    from comfy.cli_args import args

    args.comfy_api_base = REFUSING_BASE
    logging.getLogger("comfy_credits").info(
        "comfy-credits: API-node calls are held closed until the credits extension is up")
except Exception:  # noqa: BLE001
    logging.getLogger("comfy_credits").exception("comfy-credits: prestartup could not close the API base")
