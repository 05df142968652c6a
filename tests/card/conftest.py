"""Card tests: ``pcsc`` marks a test that needs pcscd + vpcd (started by scripts/services)."""

from __future__ import annotations

import pytest

import support
import vcard_support


@pytest.fixture
def pcsc():
    support.require("pcscd with the vsmartcard vpcd readers (Debian: pcscd vsmartcard-vpcd)",
                    vcard_support.pcsc_available())
