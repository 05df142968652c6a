"""Self-contained journal exports: what an auditor checks with nothing but this file (and a public key).

An export is a CBOR sequence (RFC 8742), read and written as a stream::

    1. header   {"format": "ssj-journal-export", "v": 1, "manifest": <canonical CBOR bytes>, "sig": <64 bytes> | null}
                manifest = {"device", "key_id", "public_key": <32 bytes>, "first_seq", "last_seq", "count",
                            "first_prev": <32 bytes>, "head_hash": <32 bytes>, "acked_seq", "exported_at"}
    2. entries  one CBOR byte string per entry: the exact stored bytes, seq order
    3. trailer  {"end": "ssj-journal-export", "count": n}

The manifest is signed with the device key when the key is available (an export taken because the key
file broke is still useful: the entries carry their own signatures, and the verifier warns that the
manifest is unsigned). The signed manifest pins the count and head hash, so cutting entries off the
end is detected even at an entry boundary. ``--pubkey`` pins the key the auditor trusts; without it
the embedded key is used and the report says so.

:func:`write_export` reads through :class:`ExportSource`, the few read methods a journal offers (the
store satisfies it); the store imports this module, never the other way round.
"""

from __future__ import annotations

import errno
import io
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Protocol

import cbor2
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from .entry import GENESIS, Entry, canonical, key_id
from .errors import ExportError
from .verify import Report, verify_entries

class ExportSource(Protocol):
    """What an export reads from a journal (:class:`edge.journal.store.JournalStore` provides it)."""

    device: str
    verify_key: VerifyKey

    @property
    def key_id(self) -> str: ...

    @property
    def acked_seq(self) -> int: ...

    def head(self) -> tuple[int, bytes]: ...

    def get(self, seq: int) -> Entry | None: ...

    def raw_entries(self, from_seq: int = 1, to_seq: int | None = None) -> Iterator[bytes]: ...

    # Private on the store (only exports sign with the device key besides append), hence the underscore.
    def _sign(self, data: bytes) -> bytes | None:
        """Ed25519 signature over ``data`` with the device key; None when opened without it."""

FORMAT = "ssj-journal-export"
VERSION = 1


@dataclass(frozen=True)
class ExportSummary:
    path: Path
    device: str
    key_id: str
    first_seq: int
    last_seq: int
    count: int
    bytes: int


def write_export(store: ExportSource, path: str | os.PathLike, *, from_seq: int = 1) -> ExportSummary:
    """Write entries ``from_seq``…head to ``path`` atomically (temp file, fsync, rename, fsync dir)."""
    path = Path(path)
    last_seq, head_hash = store.head()
    first_seq = max(1, from_seq)
    if first_seq > 1:
        before = store.get(first_seq - 1)
        first_prev = before.hash if before is not None else GENESIS
    else:
        first_prev = GENESIS
    count = max(0, last_seq - first_seq + 1)
    manifest = {"device": store.device, "key_id": store.key_id, "public_key": bytes(store.verify_key),
                "first_seq": first_seq, "last_seq": last_seq, "count": count, "first_prev": first_prev,
                "head_hash": head_hash if count else first_prev, "acked_seq": store.acked_seq,
                "exported_at": time.time_ns() // 1_000_000}
    manifest_bytes = canonical(manifest)
    sig = store._sign(manifest_bytes)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    written = 0
    try:
        with open(tmp, "wb") as f:
            f.write(canonical({"format": FORMAT, "v": VERSION, "manifest": manifest_bytes, "sig": sig}))
            for raw in store.raw_entries(first_seq, last_seq):
                f.write(cbor2.dumps(raw))
                written += 1
            f.write(canonical({"end": FORMAT, "count": written}))
            f.flush()
            os.fsync(f.fileno())
        if written != count:
            raise ExportError(f"the journal changed while exporting ({written} entries, expected {count})",
                              hint="The journal is damaged: run `edge journal verify`.")
        os.replace(tmp, path)
        fd = os.open(path.parent if str(path.parent) else ".", os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        why = "the disk is full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else (exc.strerror or str(exc))
        raise ExportError(f"cannot write the export {path}: {why}",
                          hint="Choose a folder that exists and is writable (a USB stick is fine), then try "
                               "again; nothing in the journal was changed.") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return ExportSummary(path, store.device, store.key_id, first_seq, last_seq, count, path.stat().st_size)


@dataclass(frozen=True)
class ExportReport:
    report: Report
    device: str | None
    key_id: str | None
    pinned: bool            # True when the caller gave the public key (not just the embedded one)

    @property
    def ok(self) -> bool:
        return self.report.ok

    def text(self) -> str:
        who = f"device {self.device}, key {self.key_id}" if self.device else "unknown device"
        return f"{who}\n{self.report.text()}"

    def to_dict(self) -> dict:
        return {**self.report.to_dict(), "device": self.device, "key_id": self.key_id, "pinned": self.pinned}


def _fail(reason: str, detail: str, *, seq: int | None = None, device=None, kid=None, pinned=False) -> ExportReport:
    return ExportReport(Report(False, 0, seq, reason, detail), device, kid, pinned)


def verify_export(path: str | os.PathLike, *, pubkey: VerifyKey | None = None) -> ExportReport:
    """Check an export with nothing else: manifest, every entry, chain, count and end of file."""
    path = Path(path)
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise ExportError(f"cannot read the export {path}: {exc.strerror}") from exc
    with f:
        return _verify_stream(f, pubkey)


def _verify_stream(f: io.BufferedReader, pubkey: VerifyKey | None) -> ExportReport:
    decoder = cbor2.CBORDecoder(f)
    try:
        header = decoder.decode()
        manifest = cbor2.loads(header["manifest"])
        embedded = VerifyKey(manifest["public_key"])
        device, kid = str(manifest["device"]), str(manifest["key_id"])
        first_seq, first_prev = int(manifest["first_seq"]), bytes(manifest["first_prev"])
        count, head_hash = int(manifest["count"]), bytes(manifest["head_hash"])
        if header.get("format") != FORMAT or header.get("v") != VERSION:
            return _fail("manifest", "not a journal export (wrong format marker or version)")
    except Exception as exc:  # any shape error in the header means "not an export we can trust"
        return _fail("manifest", f"the export header cannot be read ({type(exc).__name__})")
    pinned = pubkey is not None
    key = pubkey if pubkey is not None else embedded
    if bytes(key) != bytes(embedded) or key_id(embedded) != kid:
        return _fail("key_mismatch", f"the export names key {kid}, the given public key is {key_id(key)}",
                     device=device, kid=kid, pinned=pinned)
    warnings: list[str] = []
    if header.get("sig") is None:
        warnings.append("the manifest is unsigned (exported without the device key): the entry count "
                        "is not protected, a cut exactly at an entry boundary would look complete")
    else:
        try:
            key.verify(header["manifest"], header["sig"])
        except (BadSignatureError, TypeError, ValueError):
            return _fail("manifest", "the manifest signature does not match the device key",
                         device=device, kid=kid, pinned=pinned)
    if first_seq > 1:
        warnings.append(f"partial export: it starts at seq {first_seq}; entries before it are not in this file")
    if not pinned:
        warnings.append("no --pubkey given: checked against the key inside the export (compare its key id "
                        f"{kid} with the centre's record)")

    state: dict[str, Any] = {"trailer": None, "truncated": False}

    def entries() -> Iterator[bytes]:
        while True:
            if not f.peek(1):
                return  # end of file without a trailer: truncated
            try:
                item = decoder.decode()
            except cbor2.CBORDecodeEOF:
                state["truncated"] = True
                return
            except Exception:
                yield b"\xff"  # undecodable item: verify_entries reports it as malformed at its seq
                return
            if isinstance(item, dict) and item.get("end") == FORMAT:
                state["trailer"] = item
                return
            yield item if isinstance(item, bytes) else b"\xff"

    report = verify_entries(entries(), key, device=device, first_seq=first_seq, first_prev=first_prev)
    if not report.ok:
        return ExportReport(report, device, kid, pinned)
    nxt = report.head_seq + 1
    if state["truncated"] or state["trailer"] is None:
        bad = replace(report, ok=False, first_bad_seq=nxt, reason="truncated",
                      detail=f"the file ends after entry {report.head_seq} of {first_seq + count - 1}")
        return ExportReport(bad, device, kid, pinned)
    if report.count != count or report.head_hash != head_hash:
        detail = (f"the manifest promises {count} entries ending in seq {first_seq + count - 1}, the file has "
                  f"{report.count} ending in seq {report.head_seq}")
        reason = "truncated" if report.count < count else "manifest"
        return ExportReport(replace(report, ok=False, first_bad_seq=nxt, reason=reason, detail=detail),
                            device, kid, pinned)
    if f.peek(1):
        return ExportReport(replace(report, ok=False, first_bad_seq=nxt, reason="manifest",
                                    detail="data follows the end marker"), device, kid, pinned)
    return ExportReport(replace(report, warnings=tuple(warnings) + report.warnings), device, kid, pinned)
