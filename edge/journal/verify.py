"""Offline verification of a run of journal entries. Pure: bytes and a public key in, a Report out.

Rules, checked entry by entry in the order given (the first failure is reported and ends the run):

    malformed       the bytes are not a canonical journal entry (a changed byte that breaks CBOR)
    missing         entry N is absent: the next one has a higher seq and N never appears later
    out_of_order    entry N appears, but later than it should (entries were reordered)
    duplicate       an entry with a seq already seen appears again (a copy or a fork)
    wrong_device    the entry names another device than the journal's
    prev_mismatch   ``prev`` is not the hash of the entry before (an earlier entry was replaced)
    bad_signature   not signed by this device's key (a changed byte, or signed by another key)
    schema          the body lacks what docs/entries.md requires for its kind

``first_bad_seq`` is the seq where the journal stops being trustworthy: for a missing or reordered
entry it is the seq that should have come next; otherwise the offending entry's own seq.
Export files add ``truncated`` and manifest checks on top (:mod:`edge.journal.export`).
Warnings (not failures): the wall clock stepping back more than a minute between entries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Iterator

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from .entry import GENESIS, Entry, EntryFormatError, decode, signature_ok, unsigned_bytes
from .schema import check_body

CLOCK_BACK_MS = 60_000   # a wall clock stepping back more than this is reported as a warning
MAX_WARNINGS = 20

REASONS = {
    "malformed": "the entry bytes are damaged or not a journal entry",
    "missing": "an entry is missing (deleted)",
    "out_of_order": "entries are out of order",
    "duplicate": "an entry appears twice",
    "wrong_device": "the entry belongs to another device",
    "prev_mismatch": "the hash chain is broken (the entry before was changed or replaced)",
    "bad_signature": "the signature does not match the device key (changed, or signed by another key)",
    "schema": "the entry body does not follow the contract",
    "truncated": "the export file is cut short",
    "manifest": "the export manifest is damaged or does not match its entries",
    "key_mismatch": "the export was made with another key than the one given",
}


@dataclass(frozen=True)
class Report:
    ok: bool
    count: int                      # entries that verified before the first failure (all, when ok)
    first_bad_seq: int | None = None
    reason: str | None = None       # a code from REASONS
    detail: str = ""                # readable detail: which field, which seqs
    head_seq: int = 0               # last good entry
    head_hash: bytes = GENESIS
    warnings: tuple[str, ...] = field(default=())

    def text(self) -> str:
        if self.ok:
            tail = f" up to seq {self.head_seq}" if self.count else ""
            warn = "".join(f"\nwarning: {w}" for w in self.warnings)
            return f"OK: {self.count} entries verified{tail}{warn}"
        return (f"FAILED at seq {self.first_bad_seq}: {self.reason} — {REASONS.get(self.reason or '', '')}"
                f"{': ' + self.detail if self.detail else ''} ({self.count} entries verified before it)")

    def to_dict(self) -> dict:
        return {"ok": self.ok, "count": self.count, "first_bad_seq": self.first_bad_seq, "reason": self.reason,
                "detail": self.detail, "head_seq": self.head_seq, "head_hash": self.head_hash.hex(),
                "warnings": list(self.warnings)}


def _signed_by(entry: Entry, verify_key: VerifyKey) -> bool:
    message = unsigned_bytes(entry.raw)  # entry came from decode(): canonical, so the cut is exact
    if message is None:
        return signature_ok(entry, verify_key)
    try:
        verify_key.verify(message, entry.sig)
        return True
    except BadSignatureError:
        return False


def _seq_of(item) -> int | None:
    try:
        return item.seq if isinstance(item, Entry) else decode(item).seq
    except EntryFormatError:
        return None


def verify_entries(items: Iterable[bytes | Entry], verify_key: VerifyKey, *, device: str | None = None,
                   first_seq: int = 1, first_prev: bytes = GENESIS, check_schema: bool = True) -> Report:
    """Verify entries (raw bytes or :class:`Entry`) that should run ``first_seq``, ``first_seq+1``…"""
    expected, prev, count = first_seq, first_prev, 0
    it: Iterator = iter(items)
    warnings: list[str] = []
    last_time: int | None = None

    def bad(seq: int, reason: str, detail: str) -> Report:
        return Report(False, count, seq, reason, detail, expected - 1, prev, tuple(warnings))

    for item in it:
        raw = item.raw if isinstance(item, Entry) else item
        try:
            entry = decode(raw)
        except EntryFormatError as exc:
            return bad(expected, "malformed", f"entry {expected}: {exc}")
        if entry.seq != expected:
            if entry.seq < expected:
                # Every seq below `expected` was already accepted once: this is a second copy
                # (identical bytes, or a conflicting fork of that seq).
                same = " (identical bytes)" if entry.hash == prev else ""
                return bad(entry.seq, "duplicate", f"entry {entry.seq} appears again after entry {expected - 1}{same}")
            # A higher seq: reordered if the expected one still comes later, else deleted.
            later = any(_seq_of(rest) == expected for rest in it)
            if later:
                return bad(expected, "out_of_order", f"entry {entry.seq} comes before entry {expected}")
            return bad(expected, "missing", f"entry {expected} is missing (the next entry is {entry.seq})")
        if device is not None and entry.device != device:
            return bad(entry.seq, "wrong_device", f"entry {entry.seq} names device {entry.device}, not {device}")
        if entry.prev != prev:
            return bad(entry.seq, "prev_mismatch", f"entry {entry.seq} does not link to entry {entry.seq - 1}")
        if not _signed_by(entry, verify_key):
            return bad(entry.seq, "bad_signature", f"entry {entry.seq} does not carry the device's signature")
        if check_schema:
            try:
                check_body(entry.kind, entry.body)
            except EntryFormatError as exc:
                return bad(entry.seq, "schema", str(exc))
        if last_time is not None and entry.time < last_time - CLOCK_BACK_MS and len(warnings) < MAX_WARNINGS:
            # Not an error (clocks get corrected), but an auditor weighing offline cache ages wants to know.
            warnings.append(f"wall clock went back {(last_time - entry.time) // 1000} s at seq {entry.seq}")
        last_time = entry.time
        prev = entry.hash
        count += 1
        expected += 1
    return Report(True, count, head_seq=expected - 1, head_hash=prev, warnings=tuple(warnings))
