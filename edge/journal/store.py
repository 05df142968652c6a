"""The journal store: SQLite (WAL, synchronous=FULL), durable append + outbox in one transaction.

Theory of operation
-------------------
* ``entries`` holds each entry's exact bytes (``raw``, what is signed, hashed, sent and exported) keyed
  by ``seq``, with ``hash``, ``kind``, ``time`` and ``req`` (the caller's idempotency key, unique)
  copied out for lookups. ``outbox`` has one row per entry the centre has not acknowledged;
  a row carries a quarantine code/message once the centre rejected that entry.
* :meth:`JournalStore.append` opens one immediate transaction (:func:`edge.storage.atomic`: the head
  it reads cannot move), checks ``req``, signs the next entry on the head, inserts entry + outbox row
  and commits. With WAL and
  ``synchronous=FULL`` the commit has fsynced the WAL before ``append`` returns: the receipt may print.
  Any failure rolls the whole transaction back; nothing half-written ever exists.
* ``meta`` records the device id, key id and public key the journal was started with (opening it with
  another device or key is refused: entries of two keys in one chain could never verify) and
  ``acked_seq``, the highest seq the centre acknowledged. Acknowledging deletes outbox rows;
  :meth:`rewind_ack` (the centre restored a backup) puts them back from ``entries``.
* One connection, shared by threads under a lock (the daemon calls through ``trio.to_thread``).
* The schema is a list of named migrations (:func:`edge.storage.migrate`), applied when opened.
* sqlite3 and OS errors never escape: they become the :mod:`edge.journal.errors` tree.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, NamedTuple

import sqlite_utils
from nacl.signing import SigningKey, VerifyKey

from edge.storage import atomic, migrate

from .entry import GENESIS, Entry, EntryFormatError, decode, key_id, make_entry, signature_ok
from .errors import (
    AckBeyondHead, DuplicateRequest, ExportError, ExportRequired, JournalCorrupt, JournalError, JournalMismatch,
    JournalMissing, KeyMissing, UnknownEntry, UnsentEntries, map_sqlite_error,
)
from .export import verify_export, write_export
from .schema import check_body

if TYPE_CHECKING:
    from .verify import Report

MAX_ENTRY_BYTES = 512 * 1024  # far above a 500-line settlement (~40 KB); keeps one entry sendable in one batch
_PAGE = 512  # rows fetched per lock hold when iterating, so appends never wait behind a long read


class Backlog(NamedTuple):
    count: int  # type: ignore[assignment]  # shadows tuple.count on purpose: the public field name
    oldest_time_ms: int | None
    bytes: int


@dataclass(frozen=True)
class ResetReport:
    removed: int
    unsent: int
    exported_to: Path | None


def _migration_0001(conn: sqlite3.Connection) -> None:
    db = sqlite_utils.Database(conn)
    db.table("entries").create({"seq": int, "hash": bytes, "kind": str, "time": int, "req": str, "raw": bytes},
                         pk="seq", not_null={"hash", "kind", "time", "raw"})
    db.table("entries").create_index(["req"], index_name="entries_req", unique=True)
    db.table("outbox").create({"seq": int, "size": int, "time": int, "q_code": str, "q_message": str},
                        pk="seq", not_null={"size", "time"})
    db.table("meta").create({"key": str, "value": str}, pk="key", not_null={"value"})


MIGRATIONS = (("0001_initial", _migration_0001),)


class JournalStore:
    """See the module docstring. Create with :meth:`open`; use as a context manager or call close()."""

    def __init__(self, conn: sqlite3.Connection, path: Path, signing_key: SigningKey | None,
                 device: str, verify_key: VerifyKey) -> None:
        self._conn = conn
        self.path = path
        self._key = signing_key
        self.device = device
        self.verify_key = verify_key
        self._lock = threading.RLock()
        self._closed = False

    # -- opening ---------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike, *, signing_key: SigningKey | None, device: str | None,
             max_page_count: int | None = None) -> "JournalStore":
        """Open (creating/migrating) the journal at ``path``.

        ``signing_key`` None opens for reading only (verify, export, diagnostics): append refuses.
        ``device`` None takes the device id stored in the journal. ``max_page_count`` caps the file
        size in pages (tests simulate a full disk with it; see :meth:`set_max_page_count`).
        """
        path = Path(path)
        where = str(path)
        if signing_key is None and not path.exists():
            # Reading (verify, export, diagnostics) must never create an empty journal as a side effect.
            raise JournalMissing(f"there is no journal at {where}")
        try:
            if not path.parent.exists():
                path.parent.mkdir(parents=True, mode=0o700)
            created = not path.exists()
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise map_sqlite_error(exc, where) from exc
        try:
            conn.execute("PRAGMA busy_timeout = 5000")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise JournalError(f"the journal {where} cannot use write-ahead logging (mode {mode})",
                                   hint="Put the state directory on a local disk (not a network share).")
            conn.execute("PRAGMA synchronous = FULL")
            if max_page_count is not None:
                conn.execute(f"PRAGMA max_page_count = {int(max_page_count)}")
            migrate(conn, MIGRATIONS)
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            verify_key = _bind_identity(conn, meta, where, signing_key, device)
            stored_device = device or meta.get("device")
            if stored_device is None:
                raise JournalError(f"the journal {where} is empty and no device id was given",
                                   hint="Enrol the device first (`edge enroll`).")
            store = cls(conn, path, signing_key, stored_device, verify_key)
            if signing_key is not None:
                # Only before appending: a reader (verify, diagnostics) must still open a journal whose
                # last entry is damaged, to report which seq is bad and why.
                store._check_head()
            if created:
                _fsync_dir(path.parent)  # a new journal's directory entry must survive a power cut too
            return store
        except BaseException as exc:
            conn.close()
            if isinstance(exc, (sqlite3.Error, OSError)):
                raise map_sqlite_error(exc, where) from exc
            raise

    def _check_head(self) -> None:
        # Cheap sanity check on open: the last entry decodes and carries our signature. The full check
        # is `edge journal verify`; this catches a swapped or damaged file before the next append.
        row = self._conn.execute("SELECT seq, raw, hash FROM entries ORDER BY seq DESC LIMIT 1").fetchone()
        if row is None:
            return
        try:
            entry = decode(row[1])
        except ValueError as exc:
            raise JournalCorrupt(f"the last journal entry (seq {row[0]}) in {self.path} is damaged: {exc}") from exc
        if entry.seq != row[0] or entry.hash != row[2] or not signature_ok(entry, self.verify_key):
            raise JournalCorrupt(f"the last journal entry (seq {row[0]}) in {self.path} does not verify")

    # -- plumbing --------------------------------------------------------------------------------
    @contextmanager
    def _locked(self):
        with self._lock:
            if self._closed:
                raise JournalError("the journal is closed", hint="Restart the agent.")
            try:
                yield self._conn
            except (sqlite3.Error, OSError) as exc:
                raise map_sqlite_error(exc, str(self.path)) from exc

    @contextmanager
    def _transaction(self):
        """One transaction under the lock (:func:`edge.storage.atomic`): nothing half-written ever exists."""
        with self._locked() as conn, atomic(conn):
            yield conn

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()

    def __enter__(self) -> "JournalStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def key_id(self) -> str:
        return key_id(self.verify_key)

    def page_count(self) -> int:
        """Pages the database file uses now (with :meth:`set_max_page_count`: how much room is left)."""
        with self._locked() as conn:
            return conn.execute("PRAGMA page_count").fetchone()[0]

    def integrity_problems(self) -> list[str]:
        """SQLite's own structural check (``PRAGMA quick_check``): [] when the file is sound."""
        with self._locked() as conn:
            rows = [r[0] for r in conn.execute("PRAGMA quick_check")]
        return [] if rows == ["ok"] else rows

    def checkpoint(self) -> tuple[int, int]:
        """Copy WAL pages into the database file now (PASSIVE: never blocks appends); returns
        (pages in the WAL, pages checkpointed).

        SQLite otherwise checkpoints inside whichever commit crosses 1000 WAL pages, which adds a
        database fsync to that one append. Calling this when idle is optional (bench/RESULTS.md: it
        did not lower the tail on our disk). Uses its own short-lived connection, not the append lock.
        """
        if self._closed:
            raise JournalError("the journal is closed", hint="Restart the agent.")
        try:
            conn = sqlite3.connect(self.path, isolation_level=None)
            try:
                conn.execute("PRAGMA busy_timeout = 5000")
                _, wal_pages, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            finally:
                conn.close()
        except (sqlite3.Error, OSError) as exc:
            raise map_sqlite_error(exc, str(self.path)) from exc
        return max(0, wal_pages), max(0, done)

    def set_max_page_count(self, pages: int) -> int:
        """Cap (or raise the cap on) the file size in pages; returns the cap SQLite applied."""
        with self._locked() as conn:
            return conn.execute(f"PRAGMA max_page_count = {int(pages)}").fetchone()[0]

    # -- appending -------------------------------------------------------------------------------
    def append(self, kind: str, body: Mapping[str, Any], *, time_ms: int | None = None,
               mono_ns: int | None = None) -> Entry:
        """Sign and durably store the next entry; returns only after the commit (fsync) succeeded.

        Raises DuplicateRequest (``.entry``) when ``body["req"]`` was journaled before (nothing is
        written), EntryFormatError (a ValueError) when kind/body are not journalable, and the
        JournalError tree when the journal cannot be written. ``time_ms``/``mono_ns`` default to
        the wall and monotonic clocks.
        """
        if self._key is None:
            raise KeyMissing(f"the journal {self.path} was opened without the device key; cannot append")
        check_body(kind, body)
        if time_ms is None:
            time_ms = time.time_ns() // 1_000_000
        if mono_ns is None:
            mono_ns = time.monotonic_ns()
        req = body.get("req")
        req = req if isinstance(req, str) else None
        with self._transaction() as conn:
            if req is not None:
                row = conn.execute("SELECT raw FROM entries WHERE req = ?", (req,)).fetchone()
                if row is not None:
                    raise DuplicateRequest(decode(row[0]))
            seq, prev = self._head(conn)
            entry = make_entry(self._key, seq=seq + 1, prev=prev, device=self.device, time=time_ms,
                               mono=mono_ns, kind=kind, body=body)
            if len(entry.raw) > MAX_ENTRY_BYTES:  # raising here rolls back: nothing is written
                raise EntryFormatError(f"the {kind} entry is larger than {MAX_ENTRY_BYTES} bytes; an entry records "
                                       "one counter action (keep bulky data out of the journal)")
            conn.execute("INSERT INTO entries (seq, hash, kind, time, req, raw) VALUES (?, ?, ?, ?, ?, ?)",
                         (entry.seq, entry.hash, kind, time_ms, req, entry.raw))
            conn.execute("INSERT INTO outbox (seq, size, time) VALUES (?, ?, ?)",
                         (entry.seq, len(entry.raw), time_ms))
        return entry

    # -- reading ---------------------------------------------------------------------------------
    @staticmethod
    def _head(conn: sqlite3.Connection) -> tuple[int, bytes]:
        # Hash the stored bytes rather than trusting the hash column: the next entry's prev must link
        # to exactly what a verifier will hash.
        row = conn.execute("SELECT seq, raw FROM entries ORDER BY seq DESC LIMIT 1").fetchone()
        return (0, GENESIS) if row is None else (row[0], hashlib.sha256(row[1]).digest())

    def head(self) -> tuple[int, bytes]:
        """(seq, hash) of the last entry; (0, GENESIS) when the journal is empty."""
        with self._locked() as conn:
            return self._head(conn)

    def count(self) -> int:
        with self._locked() as conn:
            return conn.execute("SELECT count(*) FROM entries").fetchone()[0]

    def get(self, seq: int) -> Entry | None:
        with self._locked() as conn:
            row = conn.execute("SELECT raw FROM entries WHERE seq = ?", (seq,)).fetchone()
        return None if row is None else self._decode(row[0])

    def find_by_req(self, req: str) -> Entry | None:
        with self._locked() as conn:
            row = conn.execute("SELECT raw FROM entries WHERE req = ?", (req,)).fetchone()
        return None if row is None else self._decode(row[0])

    def _decode(self, raw: bytes) -> Entry:
        try:
            return decode(raw)
        except ValueError as exc:
            raise JournalCorrupt(f"a stored entry in {self.path} is damaged: {exc}") from exc

    def raw_entries(self, from_seq: int = 1, to_seq: int | None = None) -> Iterator[bytes]:
        """The stored bytes in seq order, unparsed (what verify and export read)."""
        last = from_seq - 1
        while True:
            with self._locked() as conn:
                rows = conn.execute(
                    "SELECT seq, raw FROM entries WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
                    (last, to_seq if to_seq is not None else 2**62, _PAGE)).fetchall()
            if not rows:
                return
            for seq, raw in rows:
                yield raw
            last = rows[-1][0]

    def entries(self, from_seq: int = 1, to_seq: int | None = None) -> Iterator[Entry]:
        for raw in self.raw_entries(from_seq, to_seq):
            yield self._decode(raw)

    def verify(self) -> "Report":
        """Verify the whole local journal (what `edge journal verify` and diagnostics report).

        On top of :func:`verify_entries` it notices what a chain alone cannot: rows whose seq column
        disagrees with their bytes, and entries cut from the end after the centre acknowledged them.
        """
        from dataclasses import replace

        from .verify import verify_entries

        report = verify_entries(self.raw_entries(), self.verify_key, device=self.device)
        if not report.ok:
            return report
        stored, acked = self.count(), self.acked_seq
        if stored != report.count:
            return replace(report, ok=False, first_bad_seq=report.head_seq + 1, reason="malformed",
                           detail=f"{stored} rows but {report.count} chained entries")
        if acked > report.head_seq:
            return replace(report, ok=False, first_bad_seq=report.head_seq + 1, reason="missing",
                           detail=f"the centre acknowledged up to seq {acked} but the journal ends at "
                                  f"{report.head_seq}")
        return report

    # -- outbox ----------------------------------------------------------------------------------
    def _acked(self, conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT value FROM meta WHERE key = 'acked_seq'").fetchone()
        return 0 if row is None else int(row[0])

    @property
    def acked_seq(self) -> int:
        """Highest seq the centre acknowledged (0 when none)."""
        with self._locked() as conn:
            return self._acked(conn)

    def pending(self, limit: int = 500, max_bytes: int = 256_000) -> list[Entry]:
        """Unacknowledged, unquarantined entries in seq order: at most ``limit`` entries and about
        ``max_bytes`` of entry bytes (always at least one entry when any is pending)."""
        with self._locked() as conn:
            rows = conn.execute(
                "SELECT e.raw FROM outbox o JOIN entries e ON e.seq = o.seq "
                "WHERE o.seq > ? AND o.q_code IS NULL ORDER BY o.seq LIMIT ?",
                (self._acked(conn), max(1, limit))).fetchall()
        out: list[Entry] = []
        total = 0
        for (raw,) in rows:
            if out and total + len(raw) > max_bytes:
                break
            out.append(self._decode(raw))
            total += len(raw)
        return out

    def mark_acked(self, upto_seq: int) -> None:
        """The centre durably holds every entry up to ``upto_seq``: drop them from the outbox.

        Acknowledgements only move forward (an older ack is a no-op); quarantined rows stay listed.
        """
        with self._transaction() as conn:
            head, _ = self._head(conn)
            if upto_seq > head:
                raise AckBeyondHead(f"the centre acknowledged seq {upto_seq} but this journal ends at {head}")
            if upto_seq <= self._acked(conn):
                return
            conn.execute("INSERT INTO meta (key, value) VALUES ('acked_seq', ?) "
                         "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (str(upto_seq),))
            conn.execute("DELETE FROM outbox WHERE seq <= ? AND q_code IS NULL", (upto_seq,))

    def rewind_ack(self, to_seq: int) -> None:
        """The centre was restored from a backup and holds only up to ``to_seq``: re-send the rest."""
        if to_seq < 0:
            raise ValueError("to_seq must be ≥ 0")
        with self._transaction() as conn:
            if to_seq >= self._acked(conn):
                return
            conn.execute("INSERT INTO meta (key, value) VALUES ('acked_seq', ?) "
                         "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (str(to_seq),))
            conn.execute("INSERT OR IGNORE INTO outbox (seq, size, time) "
                         "SELECT seq, length(raw), time FROM entries WHERE seq > ?", (to_seq,))

    def quarantine(self, seq: int, code: str, message: str) -> None:
        """The centre rejected entry ``seq``: keep it out of :meth:`pending` and list it for the technician."""
        with self._transaction() as conn:
            row = conn.execute("SELECT length(raw), time FROM entries WHERE seq = ?", (seq,)).fetchone()
            if row is None:
                raise UnknownEntry(f"there is no journal entry {seq} to quarantine")
            conn.execute("INSERT INTO outbox (seq, size, time, q_code, q_message) VALUES (?, ?, ?, ?, ?) "
                         "ON CONFLICT(seq) DO UPDATE SET q_code = excluded.q_code, q_message = excluded.q_message",
                         (seq, row[0], row[1], str(code), str(message)))

    def release(self, seq: int) -> None:
        """Take entry ``seq`` out of quarantine (it is pending again unless already acknowledged)."""
        with self._transaction() as conn:
            conn.execute("UPDATE outbox SET q_code = NULL, q_message = NULL WHERE seq = ?", (seq,))
            conn.execute("DELETE FROM outbox WHERE seq = ? AND seq <= ?", (seq, self._acked(conn)))

    def quarantined(self) -> list[tuple[int, str, str]]:
        with self._locked() as conn:
            return [tuple(r) for r in conn.execute(
                "SELECT seq, q_code, q_message FROM outbox WHERE q_code IS NOT NULL ORDER BY seq")]

    def backlog(self) -> Backlog:
        """What waits to be sent (unacknowledged, not quarantined): count, oldest time, bytes."""
        with self._locked() as conn:
            n, oldest, size = conn.execute(
                "SELECT count(*), min(time), coalesce(sum(size), 0) FROM outbox "
                "WHERE seq > ? AND q_code IS NULL", (self._acked(conn),)).fetchone()
        return Backlog(n, oldest, size)

    def unacknowledged(self) -> int:
        """Entries the centre has not acknowledged (quarantined ones included): what a reset would lose."""
        with self._locked() as conn:
            head, _ = self._head(conn)
            return max(0, head - self._acked(conn))

    # -- destructive actions ---------------------------------------------------------------------
    def guard_destructive(self, action: str, *, force: bool = False,
                          export_to: str | os.PathLike | None = None) -> Path | None:
        """Refuse ``action`` (reset, re-enrolment, uninstall) while entries are unacknowledged.

        Forced, it first writes a full export to ``export_to`` (required) and returns its path.
        Without unsent entries it allows the action (and still exports when asked).
        """
        unsent = self.unacknowledged()
        if unsent and not force:
            raise UnsentEntries(f"{action} refused: {unsent} journal entr{'y is' if unsent == 1 else 'ies are'} "
                                "not yet acknowledged by the centre", unsent=unsent)
        if unsent and export_to is None:
            raise ExportRequired(f"{action} with --force needs an export file for the {unsent} unsent entries")
        if export_to is None:
            return None
        summary = write_export(self, export_to)
        # Check what was written before anything is destroyed: the export is all that will be left.
        check = verify_export(summary.path, pubkey=self.verify_key)
        if not check.ok or check.report.count != summary.count:
            raise ExportError(f"{action} refused: the export {summary.path} does not verify "
                              f"({check.report.text()})", hint="Nothing was removed; call the field technician.")
        return summary.path

    def reset(self, *, force: bool = False, export_to: str | os.PathLike | None = None) -> ResetReport:
        """Empty the journal (before re-enrolling a device). Refuses while entries are unsent unless
        ``force`` with ``export_to`` (the export is written and fsynced first). Closes the store.

        The emptied journal refuses to reopen for the same device id or key (seq 1 again under the
        same id would be a fork at the centre): the next device must be newly enrolled."""
        unsent = self.unacknowledged()
        exported = self.guard_destructive("journal reset", force=force, export_to=export_to)
        with self._transaction() as conn:
            removed = conn.execute("SELECT count(*) FROM entries").fetchone()[0]
            # Remember the identity: restarting seq at 1 under the same device id would look like a
            # fork/replay at the centre, so the emptied journal only accepts a newly enrolled device.
            row = conn.execute("SELECT value FROM meta WHERE key = 'retired'").fetchone()
            retired = json.loads(row[0]) if row else []
            retired.append({"device": self.device, "key_id": self.key_id, "head": removed})
            conn.execute("DELETE FROM outbox")
            conn.execute("DELETE FROM entries")
            conn.execute("DELETE FROM meta")
            conn.execute("INSERT INTO meta (key, value) VALUES ('retired', ?)", (json.dumps(retired),))
        self.close()
        return ResetReport(removed=removed, unsent=unsent, exported_to=exported)

    def _sign(self, data: bytes) -> bytes | None:
        """Ed25519 signature over ``data`` with the device key (export manifests); None when read-only."""
        return self._key.sign(data).signature if self._key is not None else None

    def public_key_b64(self) -> str:
        return base64.b64encode(bytes(self.verify_key)).decode("ascii")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _bind_identity(conn: sqlite3.Connection, meta: dict, where: str, signing_key: SigningKey | None,
                   device: str | None) -> VerifyKey:
    """Record device and key in a new journal; refuse a journal that belongs to another device or key."""
    if "key_id" not in meta:
        for gone in json.loads(meta.get("retired", "[]")):
            if device == gone["device"] or (signing_key is not None
                                            and key_id(signing_key.verify_key) == gone["key_id"]):
                raise JournalMismatch(
                    f"the journal {where} was reset for device {gone['device']} (key {gone['key_id']}); "
                    "it starts again only for a newly enrolled device and key",
                    hint="Re-enrol the device (`edge enroll`): a new device id and key start a new chain.")
        if signing_key is None:
            raise KeyMissing(f"the journal {where} is empty and no device key was given")
        if device is None:
            raise JournalError(f"the journal {where} is empty and no device id was given",
                               hint="Enrol the device first (`edge enroll`).")
        verify_key = signing_key.verify_key
        with atomic(conn):
            conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", [
                ("device", device), ("key_id", key_id(verify_key)),
                ("public_key", base64.b64encode(bytes(verify_key)).decode("ascii")),
                ("created_at", str(time.time_ns() // 1_000_000))])
        return verify_key
    try:
        verify_key = VerifyKey(base64.b64decode(meta["public_key"]))
    except Exception as exc:
        raise JournalCorrupt(f"the journal {where} has a damaged public key record") from exc
    if key_id(verify_key) != meta["key_id"]:
        raise JournalCorrupt(f"the journal {where} has inconsistent key records")
    if device is not None and meta.get("device") != device:
        raise JournalMismatch(f"the journal {where} belongs to device {meta.get('device')}, not {device}")
    if signing_key is not None and key_id(signing_key.verify_key) != meta["key_id"]:
        raise JournalMismatch(f"the journal {where} was signed with key {meta['key_id']}, but the device key is "
                              f"{key_id(signing_key.verify_key)}")
    return verify_key
