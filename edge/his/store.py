"""The HIS drop-in's own small SQLite file (``his.db`` beside the journal): what a HIS's earlier
messages made, so that the next message can refer to it.

* ``his_msgs``: every answered msgid with its infno and the exact answer (a repeated msgid gets the same
  answer, money moves once), a digest of the request's ``input`` (the same msgid with another cart is
  refused, not answered as the first), the journal seq a settlement made (2601 reverses exactly that)
  and whether it was reversed.
* ``his_docs``: small JSON documents by (kind, key): sign-ins (``sign``), registered visits with their
  diagnoses and fee lines (``visit``). Money in them is integer fen.

Settlements themselves live only in the journal (through ``Counter``): this file never holds the
money of record, only the HIS's references to it. Transactions and migrations go through
:mod:`edge.storage`; ``synchronous=FULL`` because an answer stored here is what a HIS will be told
again.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from edge.storage import Migration, atomic, migrate, statements

SCHEMA_1 = """
CREATE TABLE IF NOT EXISTS his_msgs (
    msgid TEXT PRIMARY KEY,
    infno TEXT NOT NULL,
    answer TEXT NOT NULL,
    seq INTEGER,
    reversed_by TEXT,
    time_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS his_docs (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    doc TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    PRIMARY KEY (kind, key)
)
"""


def _v1(conn: sqlite3.Connection) -> None:
    for stmt in statements(SCHEMA_1):
        conn.execute(stmt)


def _v2(conn: sqlite3.Connection) -> None:
    # NULL for answers stored before: those keep being answered by msgid and infno alone.
    conn.execute("ALTER TABLE his_msgs ADD COLUMN digest TEXT")


MIGRATIONS: list[Migration] = [("his_1_msgs_docs", _v1), ("his_2_msg_digest", _v2)]


class HisStore:
    """One connection guarded by a lock (calls come from trio worker threads, one at a time mostly)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._lock = threading.Lock()
        with self._lock:
            migrate(self._conn, MIGRATIONS)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- msgids -------------------------------------------------------------------------------------
    def message(self, msgid: str) -> dict | None:
        with self._lock:
            row = self._conn.execute("SELECT infno, answer, seq, reversed_by, digest FROM his_msgs WHERE msgid = ?",
                                     (msgid,)).fetchone()
        if row is None:
            return None
        return {"infno": row[0], "answer": row[1], "seq": row[2], "reversed_by": row[3], "digest": row[4]}

    def remember(self, msgid: str, infno: str, answer: bytes, seq: int | None = None, digest: str | None = None) -> None:
        with self._lock, atomic(self._conn):
            self._conn.execute("INSERT OR IGNORE INTO his_msgs (msgid, infno, answer, seq, time_ms, digest) "
                               "VALUES (?, ?, ?, ?, ?, ?)", (msgid, infno, answer.decode("utf-8"), seq, _now(), digest))

    def mark_reversed(self, msgid: str, by: str, infno: str) -> None:
        """``msgid`` is reversed by 2601 ``by`` (a placeholder row if it never arrived: it is then refused)."""
        with self._lock, atomic(self._conn):
            self._conn.execute("INSERT OR IGNORE INTO his_msgs (msgid, infno, answer, seq, time_ms) "
                               "VALUES (?, ?, '', NULL, ?)", (msgid, infno, _now()))
            self._conn.execute("UPDATE his_msgs SET reversed_by = ? WHERE msgid = ?", (by, msgid))

    # -- documents ----------------------------------------------------------------------------------
    def get(self, kind: str, key: str) -> dict | None:
        with self._lock:
            row = self._conn.execute("SELECT doc FROM his_docs WHERE kind = ? AND key = ?", (kind, key)).fetchone()
        return None if row is None else json.loads(row[0])

    def put(self, kind: str, key: str, doc: dict[str, Any]) -> None:
        with self._lock, atomic(self._conn):
            self._conn.execute("INSERT INTO his_docs (kind, key, doc, time_ms) VALUES (?, ?, ?, ?) "
                               "ON CONFLICT (kind, key) DO UPDATE SET doc = excluded.doc, time_ms = excluded.time_ms",
                               (kind, key, json.dumps(doc, ensure_ascii=False), _now()))


def _now() -> int:
    return time.time_ns() // 1_000_000
