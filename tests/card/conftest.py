"""Card tests: ``pcsc`` marks a test that needs pcscd + vpcd (started by scripts/services)."""

from __future__ import annotations

import pytest

import vcard_support


@pytest.fixture
def pcsc():
    vcard_support.require_pcsc()
