"""The signed, hash-chained journal (DOMAIN.md section 5)."""

from .entry import (
    GENESIS, KINDS, Entry, EntryFormatError, canonical, decode, key_id, make_entry, parse_qr_payload,
    qr_payload, receipt_digest, signature_ok,
)

__all__ = [
    "GENESIS", "KINDS", "Entry", "EntryFormatError", "canonical", "decode", "key_id", "make_entry",
    "parse_qr_payload", "qr_payload", "receipt_digest", "signature_ok",
]
