"""Identity, its redaction for logs, the keyed-in fallback and the expiry/hotlist checks."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import pytest

from edge.card import CardExpired, CardHotlisted, CardInputError, Identity, check_card, keyed_in_identity

ZHANG = Identity(card_id="330300D15600000500A1B2C3D4E5F607", region="330300", card_no="A12345678",
                 ssn="330302199001011235", name="张三", sex="1", spec_version="3.00",
                 issued=dt.date(2021, 3, 15), expires=dt.date(2031, 3, 15), atr="3B00", reader="R")


def test_identity_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        ZHANG.name = "李四"


def test_redacted_has_no_name_ssn_or_card_number_in_clear():
    red = ZHANG.redacted()
    text = json.dumps(red, ensure_ascii=False)
    for secret in ("张三", "330302199001011235", "A12345678", "19900101", "A1B2C3D4E5F6"):
        assert secret not in text
    assert red["name"] == "张*" and red["ssn"].startswith("330302") and red["ssn"].endswith("35")
    assert red["card_no"].endswith("678") and red["region"] == "330300" and red["keyed_in"] is False


def test_keyed_in_identity():
    ident = keyed_in_identity(" a12345678 ", "330303198506152625", region="330300")
    assert ident.keyed_in and ident.card_id is None and ident.card_no == "A12345678"
    assert ident.sex == "2" and ident.region == "330300" and ident.expires is None
    assert keyed_in_identity("A12345678", "33030219900101123" + "5").region is None


@pytest.mark.parametrize("card_no, ssn, region, field", [
    ("A1234567", "330302199001011235", None, "card_no"),
    ("A12345678", "33030219900101123", None, "ssn"),
    ("A12345678", "330302199001011236", None, "ssn"),     # check character typo
    ("A12345678", "330302199001011235", "3303", "region"),
])
def test_keyed_in_typos_are_caught(card_no, ssn, region, field):
    with pytest.raises(CardInputError) as info:
        keyed_in_identity(card_no, ssn, region=region)
    assert info.value.field == field and info.value.zh and info.value.retryable


def test_check_card_expiry_is_inclusive():
    check_card(ZHANG, dt.date(2031, 3, 15), {})
    with pytest.raises(CardExpired) as info:
        check_card(ZHANG, dt.date(2031, 3, 16), {})
    assert info.value.code == "card_expired" and "2031-03-15" in info.value.message and not info.value.retryable


@pytest.mark.parametrize("reason", ["lost", "reissued", "blocked"])
def test_hotlisted_card_is_refused_with_its_reason(reason):
    with pytest.raises(CardHotlisted) as info:
        check_card(ZHANG, dt.date(2026, 1, 1), {ZHANG.card_id: reason})
    assert info.value.reason == reason and info.value.to_dict()["code"] == "card_hotlisted"


def test_hotlist_wins_over_expiry_and_keyed_in_is_not_checked():
    with pytest.raises(CardHotlisted):
        check_card(ZHANG, dt.date(2040, 1, 1), {ZHANG.card_id: "lost"})
    check_card(keyed_in_identity("A12345678", "330302199001011235"), dt.date(2040, 1, 1), {"": "lost"})
