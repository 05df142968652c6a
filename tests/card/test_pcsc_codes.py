"""PC/SC result codes map to typed CardErrors (the adapter's boundary), for every code pyscard knows."""

from __future__ import annotations

import pytest
from smartcard import scard  # a project dependency (pyproject); scripts/setup installs it

from edge.card import (
    CardError, CardMalformed, CardMute, CardRemoved, NoCard, NoReader, PcscUnavailable, ReaderProblem,
)
from edge.card import pcsc


def test_every_pcsc_code_becomes_a_card_error_with_both_languages():
    codes = [getattr(scard, n) for n in dir(scard) if n.startswith(("SCARD_E_", "SCARD_W_", "SCARD_F_"))]
    assert len(codes) > 40
    for code in codes:
        for during in ("establish", "list", "connect", "transmit", "status"):
            err = pcsc.error_for(code, reader="R", during=during)
            assert isinstance(err, CardError) and err.message and err.zh and err.code


@pytest.mark.parametrize("name, during, expected", [
    ("SCARD_E_NO_SERVICE", "establish", PcscUnavailable),
    ("SCARD_E_SERVICE_STOPPED", "transmit", PcscUnavailable),
    ("SCARD_E_NO_READERS_AVAILABLE", "list", NoReader),
    ("SCARD_E_UNKNOWN_READER", "connect", NoReader),
    ("SCARD_E_NO_SMARTCARD", "connect", NoCard),
    ("SCARD_W_REMOVED_CARD", "connect", NoCard),
    ("SCARD_W_REMOVED_CARD", "transmit", CardRemoved),
    ("SCARD_W_UNRESPONSIVE_CARD", "connect", CardMute),
    ("SCARD_E_TIMEOUT", "transmit", CardMute),
    ("SCARD_W_UNSUPPORTED_CARD", "connect", CardMalformed),
    ("SCARD_E_SHARING_VIOLATION", "connect", ReaderProblem),
    ("SCARD_F_COMM_ERROR", "status", PcscUnavailable),      # pcscd died under a status call
    ("SCARD_W_SECURITY_VIOLATION", "list", PcscUnavailable),
    ("SCARD_F_COMM_ERROR", "transmit", CardMute),
])
def test_specific_codes(name, during, expected):
    assert type(pcsc.error_for(getattr(scard, name), reader="R", during=during)) is expected
