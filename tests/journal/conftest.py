"""Fixtures of the journal tests: a device key and a store on disk in a per-test temp dir."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from edge.journal import JournalStore

# The journal tests share journal_bodies.py (uniquely named) next to this file; pythonpath only has
# tests/. Appended, not prepended, so no other folder's imports can resolve to a module here.
if str(Path(__file__).parent) not in sys.path:
    sys.path.append(str(Path(__file__).parent))

from journal_bodies import DEVICE  # noqa: E402


@pytest.fixture
def key() -> SigningKey:
    return SigningKey(bytes(range(32)))


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "state" / "journal.db"


@pytest.fixture
def store(db_path, key):
    s = JournalStore.open(db_path, signing_key=key, device=DEVICE)
    yield s
    s.close()
