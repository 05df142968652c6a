"""The pure card profile: APDU builders, TLV/BCD/GBK parsers, status words."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings, strategies as st

from edge.card import (
    CardError, CardInputError, CardMalformed, CardStatusError, NotSocialSecurityCard, PinBlocked, WrongPin,
    profile,
)
from edge.card import status
from edge.card.profile import IDENTITY_RECORDS


def test_select_is_the_documented_apdu():
    assert profile.select_aid().hex().upper() == "00A404000F7378312E73682EC9E7BBE1B1A3D5CF"
    assert profile.AID.decode("gbk") == "sx1.sh.社会保障"


def test_read_record_p2_encodes_the_sfi():
    assert profile.read_record(5, 1).hex().upper() == "00B2012C00"
    assert profile.read_record(6, 2).hex().upper() == "00B2023400"
    with pytest.raises(ValueError):
        profile.read_record(5, 0)


def test_verify_packs_the_pin_as_bcd():
    assert profile.verify_pin("123456").hex().upper() == "0020000003123456"
    for bad in ("12345", "12a456", "", "1" * 14, "１２３４５６"):
        with pytest.raises(CardInputError) as info:
            profile.verify_pin(bad)
        assert info.value.field == "pin" and info.value.zh


def test_other_builders():
    assert profile.get_response(0x1A).hex().upper() == "00C000001A"
    assert profile.get_challenge().hex().upper() == "0084000008"
    assert profile.external_authenticate(bytes(8), 1).hex().upper() == "0082000108" + "00" * 8


def test_tlv_value_and_padding():
    assert profile.parse_tlv(bytes([1, 3]) + b"abc", 1) == b"abc"
    assert profile.parse_tlv(bytes([1, 3]) + b"abc\x00\xff", 1) == b"abc"
    assert profile.parse_tlv(bytes([2, 0x81, 2]) + b"xy", 2) == b"xy"
    for bad, tag in ((b"\x01", 1), (bytes([2, 3]) + b"abc", 1), (bytes([1, 5]) + b"abc", 1),
                     (bytes([1, 1]) + b"ab", 1), (bytes([1, 0x82, 0, 1]), 1)):
        with pytest.raises(CardMalformed):
            profile.parse_tlv(bad, tag)


def test_bcd_dates():
    assert profile.decode_bcd_date(bytes.fromhex("20310315"), "d") == dt.date(2031, 3, 15)
    for bad in ("2031031", "20311315", "2031AB15", "20230229"):
        with pytest.raises(CardMalformed):
            profile.decode_bcd_date(bytes.fromhex(bad.ljust(8, "0")) if len(bad) == 8 else bad.encode(), "d")


def test_gbk_name_padding_and_garbage():
    assert profile.decode_gbk("张三".encode("gbk") + b" " * 26, "name") == "张三"
    assert profile.decode_gbk("欧阳建国".encode("gbk") + b"\x00" * 22, "name") == "欧阳建国"
    rare = "王𠀀".encode("gb18030")                       # a four-byte GB 18030 character
    assert profile.decode_gbk(rare + b" " * 4, "name") == "王𠀀"
    with pytest.raises(CardMalformed):
        profile.decode_gbk(b"\x81\x20", "name")          # a lead byte with no trail byte
    with pytest.raises(CardMalformed):
        profile.decode_gbk(b"ab\x07", "name")


def test_status_words_map_to_typed_errors():
    assert isinstance(profile.error_for_sw(0x6A82, command="select"), NotSocialSecurityCard)
    wrong = profile.error_for_sw(0x63C2, command="verify")
    assert isinstance(wrong, WrongPin) and wrong.tries_left == 2 and "2 tries" in wrong.message
    assert isinstance(profile.error_for_sw(0x63C0, command="verify"), PinBlocked)
    assert isinstance(profile.error_for_sw(0x6983, command="verify"), PinBlocked)
    generic = profile.error_for_sw(0x6A83, command="record")
    assert type(generic) is CardStatusError and generic.sw == 0x6A83 and "Record not found" in generic.message
    odd = profile.error_for_sw(0x6789)
    assert "6789" in odd.message and "6789" in odd.zh


def test_every_status_word_has_english_and_chinese():
    for sw, (en, zh) in status.STATUS_WORDS.items():
        assert en and zh, f"{sw:04X}"
        assert any("\u4e00" <= c <= "\u9fff" for c in zh), f"{sw:04X} has no Chinese text"


# ---- Hypothesis: arbitrary bytes from the card raise only typed CardErrors ---------------------

@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64), st.sampled_from(IDENTITY_RECORDS))
def test_record_parser_only_raises_card_errors(data, spec):
    try:
        profile.decode_field(spec, data)
    except CardError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(IDENTITY_RECORDS), st.binary(max_size=40))
def test_well_framed_records_with_arbitrary_values(spec, value):
    data = bytes([spec.record, len(value)]) + value
    try:
        profile.decode_field(spec, data)
    except CardError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=8), st.sampled_from(["select", "record", "verify", ""]))
def test_response_split_and_sw_mapping_only_raise_card_errors(rapdu, command):
    try:
        _data, sw = profile.split_response(rapdu)
    except CardError:
        return
    err = profile.error_for_sw(sw, command=command)
    assert isinstance(err, CardError) and err.message and err.zh and err.code
