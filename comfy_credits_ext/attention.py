"""Paid Stripe sessions that could not be credited ("needs attention").

The C fulfilment (src/fulfil.c) decides; this keeps its verdict for the
operator, durably, in the ledger's own store (src/attention.h: a table of the
SQLite file, or of the PostgreSQL database in farm mode, so every server and
the operator see one list), so that a paid session is never answered
"rejected" and forgotten. The operator lists them
(`python -m comfy_credits_ext purchases attention`), settles each by hand
(e.g. `grant`), and marks it resolved with a note. Nothing here moves credits.
"""
from __future__ import annotations

import logging
from pathlib import Path

from . import _core

log = logging.getLogger("comfy_credits")

LIST_MAX = 10_000
TEXT_BYTES_MAX = 500


class Attention:
    def __init__(self, ledger):
        self._ledger = ledger

    def close(self) -> None:
        """Nothing to close: the ledger owns the storage."""

    def record(self, res: dict) -> dict:
        """Keeps (or refreshes) a needs-attention verdict from Ledger.fulfil_checkout."""
        return _core.attention_record(
            self._ledger, res["session_id"], account_id=max(int(res.get("account_id") or 0), 0),
            currency=res.get("currency") or "", amount_minor=int(res.get("amount_total") or 0),
            credits_micro=int(res.get("credits_micro") or 0), method=res.get("method_used") or "",
            reason=res.get("reason") or "unknown")

    def get(self, session_id: str) -> dict | None:
        return _core.attention_get(self._ledger, session_id)

    def list(self, include_resolved: bool = False, limit: int = LIST_MAX) -> list[dict]:
        return _core.attention_list(self._ledger, include_resolved=include_resolved,
                                    limit=min(max(limit, 1), LIST_MAX))

    def resolve(self, session_id: str, note: str) -> dict:
        """ValueError for an empty or too long note; LookupError unless the session is open."""
        note = note.strip()
        if not note or len(note.encode()) > TEXT_BYTES_MAX:
            raise ValueError(f"say how it was settled (1..{TEXT_BYTES_MAX} bytes)")
        return _core.attention_resolve(self._ledger, session_id, note)


def import_local_file(ledger, path: Path) -> int:
    """Farm mode used to keep this list in a local SQLite file per server: its open rows move into
    the shared ledger once (the file is then renamed *.imported, never deleted). Returns how many."""
    if not path.is_file():
        return 0
    import sqlite3  # only for this one-off move (farm mode), not at every start
    db = sqlite3.connect(str(path), timeout=10)
    try:
        cur = db.execute("SELECT session_id, account_id, currency, amount_minor, credits_micro, method, reason"
                         " FROM purchase_attention WHERE resolved_ms = 0")
        rows = cur.fetchall()
    except sqlite3.DatabaseError:
        return 0  # not one of ours
    finally:
        db.close()
    store = Attention(ledger)
    for sid, acct, cur_, minor, micro, method, reason in rows:
        store.record({"session_id": sid, "account_id": acct, "currency": cur_, "amount_total": minor,
                      "credits_micro": micro, "method_used": method, "reason": reason})
    path.rename(path.with_name(path.name + ".imported"))
    if rows:
        log.warning("comfy-credits: moved %d open needs-attention purchase(s) from %s into the shared ledger",
                    len(rows), path)
    return len(rows)
