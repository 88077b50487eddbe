"""Invite links (issue #11): the operator lets one email create its account,
even where sign-up is closed. `python -m comfy_credits_ext invite EMAIL` or
POST /credits/admin/invites makes the link; it opens ComfyUI with the sign-up
form filled in (?credits_invite=...).

The invite itself is signed and checked in C (src/invite.c) with the
server's invite key, a 32-byte file beside the ledger (mode 0600) that the
CLI and the server share. One use: the sign-up creates the account for the
invited email, so a second use meets that account and is told to sign in.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import quote

from . import _core

KEY_FILE = "invite.key"
DAYS_DEFAULT = 7
DAYS_MAX = _core.INVITE_TTL_MS_MAX // 86_400_000
LINK_BASE_DEFAULT = "http://127.0.0.1:8188"


ENV_KEY = "COMFY_CREDITS_INVITE_KEY"  # 64 hex digits; required in farm mode (every server needs the same key)


def key(cfg) -> bytes:
    """The server's invite key: $COMFY_CREDITS_INVITE_KEY, else a file beside a SQLite ledger made on first
    use (atomically, readable by its owner only). Raises InvalidState when there is none to use."""
    env = os.environ.get(ENV_KEY, "").strip()
    if env:
        try:
            data = bytes.fromhex(env)
        except ValueError:
            data = b""
        if len(data) != 32:
            raise _core.InvalidState(f"{ENV_KEY} must be 64 hex digits (32 bytes)")
        return data
    if getattr(cfg, "farm", False):
        raise _core.InvalidState(f"invites in farm mode need the same {ENV_KEY} (64 hex digits) on every server "
                                 "and for the CLI")
    path = Path(cfg.database).parent / KEY_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{KEY_FILE}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_bytes(32))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # never replaces a key another process made meanwhile
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
        data = path.read_bytes()
    if len(data) != 32:
        raise _core.InvalidState(f"{path} is not an invite key (32 bytes); delete it to make a new one "
                                 "(links made with the old key stop working)")
    return data


def make(cfg, email: str, days: int = DAYS_DEFAULT, base: str | None = None) -> dict:
    """A new invite for a normalised email: {invite, url, email, expires_ms}."""
    if not 1 <= days <= DAYS_MAX:
        raise _core.InvalidArgument(f"an invite lives 1 to {DAYS_MAX} days")
    invite = _core.invite_mint(key(cfg), email, days * 86_400_000)
    info = _core.invite_verify(key(cfg), invite)
    root = (base or cfg.public_url or LINK_BASE_DEFAULT).rstrip("/")
    return {"invite": invite, "url": f"{root}/?credits_invite={quote(invite, safe='')}", "email": info["email"],
            "expires_ms": info["expires_ms"]}
