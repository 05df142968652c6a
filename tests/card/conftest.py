"""Card tests: ``pcsc`` marks a test that needs pcscd + vpcd (started by scripts/services)."""

from __future__ import annotations

import pytest

import vcard_support


@pytest.fixture
def pcsc():
    """pcscd + vpcd present (else skip naming them; fail in CI), and every vpcd slot ours for the
    test: these tests look at all readers (default reader choice, watchers, "no card")."""
    vcard_support.require_pcsc()
    with vcard_support.exclusive_readers():
        yield
