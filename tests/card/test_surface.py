"""The public surface of edge.card (others build on these names) and the profile document."""

from __future__ import annotations

import re
from pathlib import Path

import edge.card
from edge.card import profile, status

ROOT = Path(__file__).resolve().parents[2]

PUBLIC = {
    "Identity", "keyed_in_identity", "check_card", "CardSession", "profile", "session",
    "list_readers", "reader_status", "read_identity", "verify_pin", "watch_cards", "CardEvent",
    "CARD_ANSWER_SECONDS", "CardError", "ReaderProblem", "PcscUnavailable", "NoReader", "NoCard",
    "CardRemoved", "CardMute", "CardMalformed", "NotSocialSecurityCard", "CardStatusError", "WrongPin",
    "PinBlocked", "CardRefused", "CardExpired", "CardHotlisted", "HOTLIST_REASONS", "CardInputError",
    "SessionOrderError",
}


def test_public_names_are_exported():
    assert set(edge.card.__all__) == PUBLIC
    for name in PUBLIC:
        assert hasattr(edge.card, name), name


def test_every_error_has_a_distinct_code():
    errors = [getattr(edge.card, n) for n in PUBLIC if isinstance(getattr(edge.card, n), type)
              and issubclass(getattr(edge.card, n), edge.card.CardError)]
    codes = [e.code for e in errors]
    assert len(codes) == len(set(codes)), codes


def test_profile_document_covers_every_status_word_and_the_apdus():
    text = (ROOT / "firmware-interfaces" / "card-profile.md").read_text(encoding="utf-8")
    for sw in status.STATUS_WORDS:
        assert f"{sw:04X}" in text, f"card-profile.md does not document {sw:04X}"
    for family in ("61xx", "6Cxx", "63Cx"):
        assert family in text
    assert profile.select_aid().hex().upper() in text.replace(" ", "")
    for spec in profile.IDENTITY_RECORDS:
        assert re.search(rf"EF0{spec.sfi}\b", text)
