"""Why the journal refused: one tree, each error with a stable ``code``, a ``message`` and a ``hint``.

    JournalError                 base; the counter stops settling on any of these (never settle unjournaled)
    ├── JournalFull              journal_full: the disk (or the journal's size limit) is full
    ├── JournalReadOnly          journal_read_only: the journal file or its directory is not writable
    ├── JournalCorrupt           journal_corrupt: the database file is damaged or not a journal
    ├── JournalBusy              journal_busy: another program holds the journal locked (retryable)
    ├── JournalMismatch          journal_mismatch: this journal belongs to another device or key
    ├── JournalMissing           journal_missing: no journal file where one was expected (read-only open)
    ├── KeyMissing               key_missing: no device key file (enrol the device first)
    ├── KeyPermissions           key_permissions: the key file is readable by others (chmod 600)
    ├── KeyCorrupt               key_corrupt: the key file is not a 32-byte Ed25519 seed
    ├── KeyExists                key_exists: refusing to overwrite an existing device key
    ├── DuplicateRequest         duplicate_request: this ``req`` was journaled before (``.entry`` holds it)
    ├── UnsentEntries            unsent_entries: a destructive action would lose entries the centre lacks
    ├── ExportRequired           export_required: a forced destructive action needs an export file first
    ├── AckBeyondHead            ack_beyond_head: the centre acknowledged a seq this journal never wrote
    ├── UnknownEntry             unknown_entry: no entry with that seq
    └── ExportError              export_unreadable: an export file cannot be read or written

``message`` says what happened in words a clerk can read; ``hint`` says what to do next (for the clerk
or the field technician). ``retryable`` is True only where waiting and trying again can help.
Foreign exceptions (sqlite3, OSError) are mapped to these at the store boundary with ``raise … from``.
"""

from __future__ import annotations

import errno
import sqlite3
from typing import Any


class JournalError(Exception):
    code = "journal_error"
    retryable = False
    default_hint = "Stop settling and call the field technician with this message."

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint or self.default_hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "hint": self.hint, "retryable": self.retryable}


class JournalFull(JournalError):
    code = "journal_full"
    retryable = True
    default_hint = ("Free disk space on this PC (delete old downloads or temporary files), then try again; "
                    "settlement is stopped until the journal can be written.")


class JournalReadOnly(JournalError):
    code = "journal_read_only"
    default_hint = ("The journal file or its folder is read-only: check the disk is not write-protected and "
                    "that the agent's user owns the state directory, then restart the agent.")


class JournalCorrupt(JournalError):
    code = "journal_corrupt"
    default_hint = ("Do not delete anything. Call the field technician: run `edge journal verify` and collect "
                    "a support bundle; the centre holds every acknowledged entry.")


class JournalBusy(JournalError):
    code = "journal_busy"
    retryable = True
    default_hint = "Another program holds the journal; wait a moment and try again."


class JournalMismatch(JournalError):
    code = "journal_mismatch"
    default_hint = ("The journal belongs to another device or key. Check the state directory; re-enrolling "
                    "needs `edge journal reset --force --export FILE` first.")


class JournalMissing(JournalError):
    code = "journal_missing"
    default_hint = ("Check --state-dir / EDGE_STATE_DIR points at the agent's state directory; if this counter "
                    "settled before, do not enrol again until the journal is found.")


class KeyMissing(JournalError):
    code = "key_missing"
    default_hint = "This counter is not enrolled (no device key). Run `edge enroll` with a token from the centre."


class KeyPermissions(JournalError):
    code = "key_permissions"
    default_hint = "Make the device key private to the agent's user: chmod 600 device.key, then restart."


class KeyCorrupt(JournalError):
    code = "key_corrupt"
    default_hint = ("The device key file is damaged. Restore it from the site backup or re-enrol the device "
                    "(after `edge journal export`); do not settle until then.")


class KeyExists(JournalError):
    code = "key_exists"
    default_hint = "A device key already exists; it is never overwritten. Remove it only as part of a reset."


class DuplicateRequest(JournalError):
    """The request id was journaled before; ``entry`` is the existing entry (answer with it, write nothing)."""

    code = "duplicate_request"
    default_hint = "This request was already settled; reprint the earlier receipt instead of settling again."

    def __init__(self, entry, *, message: str | None = None) -> None:
        req = entry.body.get("req") if hasattr(entry.body, "get") else None
        super().__init__(message or f"request {req!r} is already journaled as entry {entry.seq}")
        self.entry = entry


class UnsentEntries(JournalError):
    code = "unsent_entries"
    default_hint = ("Connect to the centre and wait until `edge journal status` shows nothing unsent, or force it "
                    "with --force --export FILE (the export is written first and must be kept).")

    def __init__(self, message: str, *, unsent: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.unsent = unsent


class ExportRequired(JournalError):
    code = "export_required"
    default_hint = "Give --export FILE with --force: unsent entries are written there before anything is destroyed."


class AckBeyondHead(JournalError):
    code = "ack_beyond_head"
    default_hint = "The centre acknowledged entries this journal never wrote: check the device id and enrolment."


class UnknownEntry(JournalError):
    code = "unknown_entry"
    default_hint = "Check the seq number against `edge journal status`."


class ExportError(JournalError):
    code = "export_unreadable"
    default_hint = "Check the file name and that the disk has space, then try again."


# SQLite primary result codes (sqlite3.h); extended codes carry the primary one in the low byte.
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_READONLY, _SQLITE_IOERR = 5, 6, 8, 10
_SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_CANTOPEN, _SQLITE_NOTADB = 11, 13, 14, 26


def map_sqlite_error(exc: BaseException, path: str) -> JournalError:
    """Turn a sqlite3/OS exception into the JournalError a clerk can act on (used with ``raise … from``)."""
    if isinstance(exc, JournalError):
        return exc
    if isinstance(exc, OSError):
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return JournalFull(f"the disk holding the journal {path} is full")
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return JournalReadOnly(f"the journal {path} cannot be written ({exc.strerror})")
        return JournalError(f"the journal {path} cannot be used: {exc}")
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    text = str(exc).lower()
    if primary == _SQLITE_FULL or "disk is full" in text:
        return JournalFull(f"the journal {path} is full: the entry was not written and earlier entries are intact")
    if primary == _SQLITE_READONLY or "readonly" in text:
        return JournalReadOnly(f"the journal {path} is read-only: the entry was not written")
    if primary in (_SQLITE_CORRUPT, _SQLITE_NOTADB) or "malformed" in text or "not a database" in text:
        return JournalCorrupt(f"the journal {path} is damaged ({exc})")
    if primary in (_SQLITE_BUSY, _SQLITE_LOCKED) or "locked" in text:
        return JournalBusy(f"the journal {path} is locked by another program")
    if primary == _SQLITE_CANTOPEN or "unable to open" in text:
        return JournalReadOnly(f"the journal {path} cannot be opened: check the state directory exists and is "
                               "writable")
    if primary == _SQLITE_IOERR:
        return JournalError(f"the disk failed while writing the journal {path} ({exc})",
                            hint="The disk may be failing: call the field technician before settling again.")
    if isinstance(exc, sqlite3.Error):
        return JournalError(f"the journal {path} failed: {exc}")
    return JournalError(f"the journal {path} failed: {exc!r}")
