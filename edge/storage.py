"""The edge's one transaction + migration helper, shared by the journal and the cache.

* :func:`atomic` is the only place on the edge that writes ``BEGIN``/``COMMIT``: ``BEGIN IMMEDIATE``
  (the write lock is taken up front, so what a transaction reads cannot move under it), ``COMMIT`` on
  success, ``ROLLBACK`` on any exception (``BaseException``: a cancelled thread or a KeyboardInterrupt
  leaves nothing half-written either). Nested use becomes a ``SAVEPOINT``, so a helper that needs a
  transaction can be called inside a bigger one and still rolls back only its own part.
* :func:`migrate` applies named migrations in order, each in its own transaction together with its
  row in ``_migrations``: a crash between two migrations leaves the file at a clean step, and a file
  created before migrations existed is adopted by a first step written with ``IF NOT EXISTS``.

Connections must be opened with ``isolation_level=None`` (the sqlite3 module then never opens a
transaction behind our back). Durability (``synchronous``, WAL) stays each store's own choice.
"""

from __future__ import annotations

import itertools
import sqlite3
import time
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

Migration = tuple[str, Callable[[sqlite3.Connection], None]]

_savepoints = itertools.count(1)


@contextmanager
def atomic(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One transaction (or, inside one, a savepoint) on ``conn``; rolls back on any exception."""
    if conn.in_transaction:
        name = f"sp_{next(_savepoints)}"
        conn.execute(f"SAVEPOINT {name}")
        try:
            yield conn
        except BaseException:
            _quietly(conn, f"ROLLBACK TO {name}")
            _quietly(conn, f"RELEASE {name}")
            raise
        conn.execute(f"RELEASE {name}")
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            _quietly(conn, "ROLLBACK")
        raise


def _quietly(conn: sqlite3.Connection, sql: str) -> None:
    try:
        conn.execute(sql)
    except sqlite3.Error:
        pass  # the original error says more; SQLite rolls back an open transaction on close anyway


def migrate(conn: sqlite3.Connection, migrations: Sequence[Migration]) -> list[str]:
    """Apply the migrations not yet recorded in ``_migrations``, one transaction each; returns their names."""
    conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at INTEGER NOT NULL)")
    done = {r[0] for r in conn.execute("SELECT name FROM _migrations")}
    applied = []
    for name, step in migrations:
        if name in done:
            continue
        with atomic(conn):
            # Checked again under the write lock: another process may have applied it meanwhile.
            if conn.execute("SELECT 1 FROM _migrations WHERE name = ?", (name,)).fetchone() is None:
                step(conn)
                conn.execute("INSERT INTO _migrations (name, applied_at) VALUES (?, ?)",
                             (name, time.time_ns() // 1_000_000))
                applied.append(name)
    return applied


def statements(script: str) -> list[str]:
    """Split a schema script into statements (``executescript`` would COMMIT the open transaction)."""
    return [s.strip() for s in script.split(";") if s.strip()]
