"""Paid Stripe sessions that could not be credited ("needs attention").

The C fulfilment (src/fulfil.c) decides; this keeps its verdict for the
operator, durably, in a table of the ledger's own SQLite file, so that a paid
session is never answered "rejected" and forgotten. The operator lists them
(`python -m comfy_credits_ext purchases attention`), settles each by hand
(e.g. `grant`), and marks it resolved with a note. Nothing here moves credits.
"""
from __future__ import annotations

import sqlite3
import threading
import time

SCHEMA = """CREATE TABLE IF NOT EXISTS purchase_attention(
  session_id TEXT PRIMARY KEY, account_id INTEGER NOT NULL, currency TEXT NOT NULL,
  amount_minor INTEGER NOT NULL, credits_micro INTEGER NOT NULL, method TEXT NOT NULL,
  reason TEXT NOT NULL, first_ms INTEGER NOT NULL, last_ms INTEGER NOT NULL, reports INTEGER NOT NULL,
  resolved_ms INTEGER NOT NULL DEFAULT 0, resolution TEXT NOT NULL DEFAULT '')"""
LIST_MAX = 10_000
TEXT_BYTES_MAX = 500


class Attention:
    def __init__(self, db_path: str):
        self._db = sqlite3.connect(db_path, timeout=10, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA busy_timeout=10000")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def record(self, res: dict) -> dict:
        """Keeps (or refreshes) a needs-attention verdict from Ledger.fulfil_checkout."""
        now = int(time.time() * 1000)
        row = (res["session_id"], int(res.get("account_id") or 0), res.get("currency") or "",
               int(res.get("amount_total") or 0), int(res.get("credits_micro") or 0),
               res.get("method_used") or "", (res.get("reason") or "unknown")[:TEXT_BYTES_MAX], now, now)
        with self._lock:
            self._db.execute(
                "INSERT INTO purchase_attention(session_id, account_id, currency, amount_minor, credits_micro, method,"
                " reason, first_ms, last_ms, reports) VALUES (?,?,?,?,?,?,?,?,?,1)"
                " ON CONFLICT(session_id) DO UPDATE SET reason=excluded.reason, last_ms=excluded.last_ms,"
                " reports=reports+1", row)
        return self.get(res["session_id"])

    def get(self, session_id: str) -> dict | None:
        with self._lock:
            cur = self._db.execute("SELECT * FROM purchase_attention WHERE session_id=?", (session_id,))
            r = cur.fetchone()
            return dict(zip([d[0] for d in cur.description], r)) if r else None

    def list(self, include_resolved: bool = False, limit: int = LIST_MAX) -> list[dict]:
        q = "SELECT * FROM purchase_attention" + ("" if include_resolved else " WHERE resolved_ms=0")
        with self._lock:
            cur = self._db.execute(q + " ORDER BY first_ms LIMIT ?", (min(max(limit, 1), LIST_MAX),))
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r)) for r in cur.fetchall()]

    def resolve(self, session_id: str, note: str) -> dict:
        if not note.strip() or len(note.encode()) > TEXT_BYTES_MAX:
            raise ValueError(f"say how it was settled (1..{TEXT_BYTES_MAX} bytes)")
        with self._lock:
            cur = self._db.execute("UPDATE purchase_attention SET resolved_ms=?, resolution=? WHERE session_id=?"
                                   " AND resolved_ms=0", (int(time.time() * 1000), note.strip(), session_id))
            changed = cur.rowcount
        if not changed:
            raise LookupError(f"no open needs-attention purchase {session_id}")
        return self.get(session_id)
