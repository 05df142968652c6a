"""Why the journal refused: one tree under :class:`sync.problem.Problem`, each error with a stable ``code``,
a ``message`` (English), a ``zh`` (Chinese, end to end, for the clerk) and a ``hint``.

    Problem                      (sync.problem) the project's one error base
    └── JournalError             base; the counter stops settling on any of these (never settle unjournaled)
        ├── JournalFull          journal_full: the disk (or the journal's size limit) is full
        ├── JournalReadOnly      journal_read_only: the journal file or its directory is not writable
        ├── JournalCorrupt       journal_corrupt: the database file is damaged or not a journal
        ├── JournalBusy          journal_busy: another program holds the journal locked (retryable)
        ├── JournalMismatch      journal_mismatch: this journal belongs to another device or key
        ├── JournalMissing       journal_missing: no journal file where one was expected (read-only open)
        ├── KeyMissing           key_missing: no device key file (enrol the device first)
        ├── KeyPermissions       key_permissions: the key file is readable by others (chmod 600)
        ├── KeyCorrupt           key_corrupt: the key file is not a 32-byte Ed25519 seed
        ├── KeyExists            key_exists: refusing to overwrite an existing device key
        ├── DuplicateRequest     duplicate_request: this ``req`` was journaled before (``.entry`` holds it)
        ├── UnsentEntries        unsent_entries: a destructive action would lose entries the centre lacks
        ├── ExportRequired       export_required: a forced destructive action needs an export file first
        ├── AckBeyondHead        ack_beyond_head: the centre acknowledged a seq this journal never wrote
        ├── UnknownEntry         unknown_entry: no entry with that seq
        └── ExportError          export_unreadable: an export file cannot be read or written

``message`` says what happened (logs, the technician); ``zh`` says it to the clerk in Chinese; ``hint``
says what to do next (for the field technician). ``retryable`` is True only where waiting and trying
again can help.
Foreign exceptions (sqlite3, OSError) are mapped to these at the store boundary with ``raise … from``.
"""

from __future__ import annotations

import errno
import sqlite3
from typing import Any, ClassVar

from sync.problem import Problem


class JournalError(Problem):
    code: ClassVar[str] = "journal_error"
    zh = "结算日志无法使用，已停止结算：请联系技术人员"
    hint = "Stop settling and call the field technician with this message."
    status = 503

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out.setdefault("hint", self.hint)
        return out


class JournalFull(JournalError):
    zh = "磁盘已满：请清理本机磁盘空间后重试"
    code = "journal_full"
    retryable = True
    hint = ("Free disk space on this PC (delete old downloads or temporary files), then try again; "
            "settlement is stopped until the journal can be written.")


class JournalReadOnly(JournalError):
    zh = "日志文件或其目录只读：请联系技术人员"
    code = "journal_read_only"
    hint = ("The journal file or its folder is read-only: check the disk is not write-protected and "
            "that the agent's user owns the state directory, then restart the agent.")


class JournalCorrupt(JournalError):
    zh = "日志文件已损坏：请勿删除任何文件，立即联系技术人员"
    code = "journal_corrupt"
    hint = ("Do not delete anything. Call the field technician: run `edge journal verify` and collect "
            "a support bundle; the centre holds every acknowledged entry.")


class JournalBusy(JournalError):
    zh = "日志正被其他程序占用：请稍候重试"
    code = "journal_busy"
    retryable = True
    hint = "Another program holds the journal; wait a moment and try again."


class JournalMismatch(JournalError):
    zh = "日志不属于本设备：请联系技术人员"
    code = "journal_mismatch"
    hint = ("The journal belongs to another device or key. Check the state directory; re-enrolling "
            "needs `edge journal reset --force --export FILE` first.")


class JournalMissing(JournalError):
    zh = "找不到日志文件：请联系技术人员"
    code = "journal_missing"
    hint = ("Check --state-dir / EDGE_STATE_DIR points at the agent's state directory; if this counter "
            "settled before, do not enrol again until the journal is found.")


class KeyMissing(JournalError):
    zh = "本机尚未登记（没有设备密钥）：请联系技术人员登记设备"
    code = "key_missing"
    hint = "This counter is not enrolled (no device key). Run `edge enroll` with a token from the centre."


class KeyPermissions(JournalError):
    zh = "设备密钥文件权限不安全：请联系技术人员"
    code = "key_permissions"
    hint = "Make the device key private to the agent's user: chmod 600 device.key, then restart."


class KeyCorrupt(JournalError):
    zh = "设备密钥文件已损坏：请停止结算并联系技术人员"
    code = "key_corrupt"
    hint = ("The device key file is damaged. Restore it from the site backup or re-enrol the device "
            "(after `edge journal export`); do not settle until then.")


class KeyExists(JournalError):
    zh = "设备密钥已存在，不会覆盖"
    code = "key_exists"
    hint = "A device key already exists; it is never overwritten. Remove it only as part of a reset."


class DuplicateRequest(JournalError):
    """The request id was journaled before; ``entry`` is the existing entry (answer with it, write nothing)."""

    zh = "该业务已结算过，请重打原凭证，不要重复结算"
    code = "duplicate_request"
    hint = "This request was already settled; reprint the earlier receipt instead of settling again."

    status = 409

    def __init__(self, entry: Any, *, message: str | None = None, **kw: Any) -> None:
        req = entry.body.get("req") if hasattr(entry.body, "get") else None
        super().__init__(message or f"request {req!r} is already journaled as entry {entry.seq}", **kw)
        self.entry = entry


class UnsentEntries(JournalError):
    zh = "还有结算记录未上传到医保中心，不能执行此操作"
    code = "unsent_entries"
    hint = ("Connect to the centre and wait until `edge journal status` shows nothing unsent, or force it "
            "with --force --export FILE (the export is written first and must be kept).")

    status = 409

    def __init__(self, message: str, *, unsent: int, **kw: Any) -> None:
        super().__init__(message, unsent=unsent, **kw)
        self.unsent = unsent


class ExportRequired(JournalError):
    zh = "强制执行前须先导出未上传的结算记录"
    code = "export_required"
    hint = "Give --export FILE with --force: unsent entries are written there before anything is destroyed."


class AckBeyondHead(JournalError):
    zh = "医保中心确认的记录超出本机日志：请联系技术人员核对设备登记"
    code = "ack_beyond_head"
    hint = "The centre acknowledged entries this journal never wrote: check the device id and enrolment."


class UnknownEntry(JournalError):
    zh = "没有该流水号的结算记录"
    code = "unknown_entry"
    hint = "Check the seq number against `edge journal status`."


class ExportError(JournalError):
    zh = "导出文件无法读取或写入：请检查文件名和磁盘空间后重试"
    code = "export_unreadable"
    hint = "Check the file name and that the disk has space, then try again."


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
