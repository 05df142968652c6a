"""The public surface of edge.journal is what docs/journal.md documents, and no more is needed."""

from __future__ import annotations

import argparse
from pathlib import Path

import edge.journal as journal
from edge.cli import build_parser
from sync.problem import Problem

DOC = (Path(__file__).resolve().parents[2] / "docs" / "journal.md").read_text(encoding="utf-8")

# Names other areas import today; keep them working (entry.py's original surface plus the store API).
PROMISED = {
    "make_entry", "decode", "Entry", "GENESIS", "KINDS", "canonical", "key_id", "signature_ok",
    "receipt_digest", "qr_payload", "parse_qr_payload", "EntryFormatError",
    "JournalStore", "Backlog", "create_device_key", "load_device_key", "public_key_b64", "verify_entries",
    "Report", "JournalError", "JournalFull", "JournalReadOnly", "JournalCorrupt", "KeyMissing",
    "KeyPermissions", "KeyCorrupt", "DuplicateRequest", "UnsentEntries", "write_export", "verify_export",
}


def test_public_names_are_exported():
    assert PROMISED <= set(journal.__all__)
    for name in journal.__all__:
        assert hasattr(journal, name), name


def test_public_names_are_documented():
    missing = [n for n in journal.__all__ if n not in DOC]
    assert missing == []


def test_store_methods_are_documented():
    methods = [m for m in vars(journal.JournalStore) if not m.startswith("_") and m not in ("closed",)]
    missing = [m for m in methods if f".{m}" not in DOC and f"{m}(" not in DOC]
    assert missing == []


def test_every_cli_action_is_documented():
    parser = build_parser()
    top = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    sub = next(a for a in top.choices["journal"]._actions if isinstance(a, argparse._SubParsersAction))
    assert sub.choices
    missing = [name for name in sub.choices if f"edge journal {name}" not in DOC]
    assert missing == []


def test_error_codes_are_documented():
    for name in journal.__all__:
        obj = getattr(journal, name)
        if isinstance(obj, type) and issubclass(obj, journal.JournalError):
            assert obj.code in DOC or obj.code.startswith("key_"), obj.code
            assert obj.hint
            # Each error speaks to the clerk in its own Chinese words (never an English hint).
            assert obj is journal.JournalError or obj.zh != journal.JournalError.zh, obj.code
            assert all(not ("a" <= ch.lower() <= "z") for ch in obj.zh), obj.zh
            assert issubclass(obj, Problem)
