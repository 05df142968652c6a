"""Backup and restore at the store: the restore epoch, what a restore invalidates, and the raw file work.

The **restore epoch** is a random id the centre hands every device on each feed page. It changes only
when ``centre restore`` puts an older copy of the database back (:meth:`Restores.begin`); a device that
sees another epoch than the one it saved knows the downlink it followed is gone and reads it again
from the start (docs/sync.md, "Restored centre"). ``started_ms`` is when that restore happened (0 for
a centre never restored): requests signed before it are refused, because the nonces that would catch
their replay were lost with the newer database.

:meth:`Restores.begin` also voids every unspent enrolment token (a token spent after the backup looks
unspent in it) and lifts the feed's id sequence above anything the lost database can have handed out,
so a feed id never names two different messages (counters deduplicate notices by id).

The module-level functions are the few file-level operations ``sync.centre.backup`` needs that speak
SQL (the online backup API, the integrity check, "is anyone else connected?").
"""

from __future__ import annotations

import secrets
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from sync.errors import StoreError

from .db import Database


@dataclass(frozen=True, slots=True)
class Epoch:
    id: str
    started_ms: int     # when the restore that began this epoch ran; 0 = never restored


class Restores:
    """The restore epoch (table ``restore_epoch``, one row) and the history of restores."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._epoch: Epoch | None = None

    def epoch(self) -> Epoch:
        """The current epoch; created (random id, never restored) on first use. Cached: a restore
        happens only while the centre is stopped, so a running process never sees it change."""
        if self._epoch is None:
            self.db.execute("INSERT INTO restore_epoch (name, epoch, started_ms) VALUES ('current', ?, 0) "
                            "ON CONFLICT DO NOTHING", (secrets.token_hex(8),))
            row = self.db.query_one("SELECT epoch, started_ms FROM restore_epoch WHERE name = 'current'")
            assert row is not None  # inserted just above
            self._epoch = Epoch(row["epoch"], row["started_ms"])
        return self._epoch

    def begin(self, *, now: int, backup_created_ms: int, backup_sha256: str, feed_floor: int) -> Epoch:
        """Start a new epoch after the data was restored: void unspent tokens, lift the feed ids."""
        new = Epoch(secrets.token_hex(8), now)
        with self.db.transaction():
            self.db.execute("INSERT INTO restore_epoch (name, epoch, started_ms) VALUES ('current', ?, ?) "
                            "ON CONFLICT (name) DO UPDATE SET epoch = excluded.epoch, started_ms = excluded.started_ms",
                            (new.id, new.started_ms))
            self.db.execute("INSERT INTO restores (epoch, restored_ms, backup_created_ms, backup_sha256) "
                            "VALUES (?, ?, ?, ?)", (new.id, now, backup_created_ms, backup_sha256))
            self.db.execute("UPDATE enrol_tokens SET expires_ms = ? WHERE used_by IS NULL AND expires_ms >= ?",
                            (now - 1, now))
            top = max(feed_floor, self.db.scalar("SELECT coalesce(max(id), 0) FROM feed"))
            if self.db.backend == "sqlite":
                self.db.execute("INSERT INTO sqlite_sequence (name, seq) SELECT 'feed', 0 WHERE NOT EXISTS "
                                "(SELECT 1 FROM sqlite_sequence WHERE name = 'feed')")
                self.db.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'feed'", (top,))
            else:
                self.db.query_one("SELECT setval(pg_get_serial_sequence('feed', 'id'), ?)", (top,))
            # Positions (the cursor devices hold) too: rows the backup caught unpublished would otherwise
            # be numbered from the old clock and reuse positions the lost timeline gave other notices.
            self.db.execute("UPDATE feed_clock SET last = ? WHERE name = 'feed' AND last < ?", (top, top))
        self._epoch = new
        return new

    def history(self) -> list[dict]:
        return self.db.query("SELECT epoch, restored_ms, backup_created_ms, backup_sha256 FROM restores ORDER BY id")


# -- file-level work for sync.centre.backup -------------------------------------------------------------
def sqlite_copy(src: Path, dst: Path) -> None:
    """A consistent copy of a live SQLite database (online backup API: WAL content included, writers
    not blocked), as a self-contained file: journal mode DELETE, so no -wal belongs with it."""
    with sqlite3.connect(f"file:{src}?mode=ro", uri=True) as a, sqlite3.connect(dst) as b:
        a.backup(b)
        b.execute("PRAGMA journal_mode=DELETE")
    a.close()
    b.close()


def sqlite_check(path: Path) -> str | None:
    """None when ``path`` is a sound SQLite database, else what is wrong."""
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as c:
            rows = c.execute("PRAGMA integrity_check").fetchall()
        c.close()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    return None if rows == [("ok",)] else "; ".join(str(r[0]) for r in rows[:5])


def sqlite_in_use(path: Path) -> bool:
    """True when another connection (a running centre) has ``path`` open: WAL-mode connections hold a
    shared lock on the file for as long as they are open, so an exclusive lock is refused."""
    if not path.exists():
        return False
    c = sqlite3.connect(path, timeout=0.2, isolation_level=None)
    try:
        c.execute("PRAGMA locking_mode=EXCLUSIVE")
        c.execute("BEGIN EXCLUSIVE")
        c.execute("COMMIT")
        return False
    except sqlite3.OperationalError:
        return True
    finally:
        c.close()


def other_sessions(db: Database) -> int:
    """PostgreSQL: other sessions connected to this database (a running centre, a psql)."""
    return db.scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                     "AND pid <> pg_backend_pid()")


def clear_schema(db: Database) -> None:
    """PostgreSQL: drop every table of the centre (schema public) before pg_restore fills it again,
    so tables created after the backup by newer migrations do not survive beside it."""
    if db.backend != "postgres":
        raise StoreError("clear_schema is for PostgreSQL")
    db.execute("DROP SCHEMA public CASCADE")
    db.execute("CREATE SCHEMA public")


def sqlite_migration_names(path: Path) -> list[str] | None:
    """The migrations a SQLite centre file records (sorted), None when it has no migration table."""
    import sqlite3

    try:
        c = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return sorted(r[0] for r in c.execute("SELECT name FROM schema_migrations"))
        finally:
            c.close()
    except sqlite3.DatabaseError:
        return None


def last_restore_ms(db: Database) -> int:
    """When this database was last restored (0 when never)."""
    return int(db.scalar("SELECT coalesce(max(restored_ms), 0) FROM restores") or 0)
