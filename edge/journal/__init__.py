"""The signed, hash-chained journal (DOMAIN.md section 5).

    entry    deterministic CBOR entries, hash chain, Ed25519 (pure)
    schema   body shapes of settlement / cancel / claim / refusal (pure mirror of journal.cddl)
    keys     the device key file (create once, 0600, load with typed errors)
    store    JournalStore: SQLite WAL + synchronous=FULL, durable append + outbox in one transaction
    verify   verify_entries -> Report (first bad seq and why)
    export   write_export / verify_export: self-contained files for auditors (reads an ExportSource)
    errors   the JournalError tree
"""

from .entry import (
    GENESIS, KINDS, Entry, EntryFormatError, canonical, decode, key_id, make_entry, parse_qr_payload,
    qr_payload, receipt_digest, signature_ok,
)
from .errors import (
    AckBeyondHead, DuplicateRequest, ExportError, ExportRequired, JournalBusy, JournalCorrupt, JournalError,
    JournalFull, JournalMismatch, JournalMissing, JournalReadOnly, KeyCorrupt, KeyExists, KeyMissing, KeyPermissions,
    UnknownEntry, UnsentEntries,
)
from .export import ExportReport, ExportSummary, verify_export, write_export
from .keys import create_device_key, load_device_key, public_key_b64, verify_key_from_text
from .schema import check_body
from .store import Backlog, JournalStore, ResetReport
from .verify import REASONS, Report, verify_entries

__all__ = [
    "GENESIS", "KINDS", "Entry", "EntryFormatError", "canonical", "decode", "key_id", "make_entry",
    "parse_qr_payload", "qr_payload", "receipt_digest", "signature_ok",
    "AckBeyondHead", "DuplicateRequest", "ExportError", "ExportRequired", "JournalBusy", "JournalCorrupt",
    "JournalError", "JournalFull", "JournalMismatch", "JournalMissing", "JournalReadOnly", "KeyCorrupt",
    "KeyExists", "KeyMissing",
    "KeyPermissions", "UnknownEntry", "UnsentEntries",
    "ExportReport", "ExportSummary", "verify_export", "write_export",
    "create_device_key", "load_device_key", "public_key_b64", "verify_key_from_text",
    "check_body",
    "Backlog", "JournalStore", "ResetReport",
    "REASONS", "Report", "verify_entries",
]
