"""The card session state machine, driven directly (h11 style) and paired with the card model."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings, strategies as st

import vcard_support
from edge.card import (
    CardError, CardMalformed, CardSession, CardStatusError, NotSocialSecurityCard, PinBlocked,
    SessionOrderError, WrongPin, profile,
)
from edge.card.session import ABSENT, IDENTIFIED, PIN_VERIFIED, PRESENT, SELECTED, STATES, TRANSITIONS

model = vcard_support.card_model()


def drive(session: CardSession, card) -> None:
    while (apdu := session.next_command()) is not None:
        session.receive(card.process(apdu))


def test_identity_read_walks_the_states():
    session = CardSession("R")
    assert session.state == ABSENT and session.next_command() is None
    card = model.CardModel(vcard_support.SAMPLE_CARD)
    session.inserted(card.atr())
    assert session.state == PRESENT
    assert session.next_command() == profile.select_aid()
    session.receive(card.process(session.next_command()))
    assert session.state == SELECTED
    drive(session, card)
    assert session.state == IDENTIFIED
    ident = session.identity
    assert (ident.card_id, ident.region, ident.card_no, ident.ssn, ident.name, ident.sex) == (
        "330300D15600000500A1B2C3D4E5F607", "330300", "A12345678", "330302199001011235", "张三", "1")
    assert ident.issued.isoformat() == "2021-03-15" and ident.expires.isoformat() == "2031-03-15"
    assert ident.spec_version == "3.00" and ident.reader == "R" and not ident.keyed_in
    assert ident.atr == card.atr().hex().upper()


def test_get_response_chains_are_followed():
    card = model.CardModel(vcard_support.SECOND_CARD)     # answers READ RECORD with 61xx
    session = CardSession()
    session.inserted(card.atr())
    sent = []
    while (apdu := session.next_command()) is not None:
        sent.append(apdu)
        session.receive(card.process(apdu))
    assert session.identity.name == "李四"
    assert sum(1 for a in sent if a[1] == 0xC0) == len(profile.IDENTITY_RECORDS)


def test_wrong_length_is_resent_with_the_cards_le():
    session = CardSession()
    session.inserted(b"\x3b\x00")
    session.next_command()
    session.receive(b"\x90\x00")                          # SELECT
    first = session.next_command()
    session.receive(b"\x6c\x22")
    assert session.next_command() == first[:-1] + b"\x22"


def test_pin_countdown_then_blocked_then_verified_on_another_card():
    card = model.CardModel(vcard_support.SAMPLE_CARD)
    session = CardSession()
    session.inserted(card.atr())
    drive(session, card)
    for tries_left in (2, 1):
        session.request_pin("999999")
        with pytest.raises(WrongPin) as info:
            drive(session, card)
        assert info.value.tries_left == tries_left and session.state == IDENTIFIED
        assert session.identity is not None                # a wrong PIN keeps the identity
    session.request_pin("999999")
    with pytest.raises(PinBlocked):
        drive(session, card)
    session.request_pin("123456")
    with pytest.raises(PinBlocked):                        # blocked stays blocked, right PIN or not
        drive(session, card)
    good = model.CardModel(vcard_support.SAMPLE_CARD)
    session2 = CardSession()
    session2.inserted(good.atr())
    session2.request_pin("123456")
    drive(session2, good)
    assert session2.state == PIN_VERIFIED and session2.identity is None   # PIN-only path: 2 APDUs


@pytest.mark.parametrize("state", STATES)
def test_illegal_events_raise_and_change_nothing(state):
    for event in ("inserted", "selected", "identified", "pin_verified", "removed", "reset"):
        session = CardSession()
        session.state = state
        if event in TRANSITIONS[state]:
            session._transition(event)
            assert session.state == TRANSITIONS[state][event]
        else:
            with pytest.raises(SessionOrderError) as info:
                session._transition(event)
            assert session.state == state and info.value.code == "session_order"


def test_response_without_a_command_is_a_session_error():
    session = CardSession()
    with pytest.raises(SessionOrderError):
        session.receive(b"\x90\x00")
    assert session.state == ABSENT
    with pytest.raises(SessionOrderError):
        session.request_pin("123456")


def test_removed_clears_identity_and_reset_goes_back_to_present():
    card = model.CardModel(vcard_support.SAMPLE_CARD)
    session = CardSession()
    session.inserted(card.atr())
    drive(session, card)
    session.reset()
    assert session.state == PRESENT and session.identity is None
    drive(session, card)
    session.removed()
    assert session.state == ABSENT and session.identity is None and session.atr == b""


@pytest.mark.parametrize("faults, error", [
    ({"sw": {"A4": "6A82"}}, NotSocialSecurityCard),
    ({"sw": {"B2": "6A83"}}, CardStatusError),
    ({"garbage": "tlv"}, CardMalformed),
    ({"garbage": "short"}, CardMalformed),
])
def test_faulty_cards_give_typed_errors_and_no_partial_identity(faults, error):
    card = model.CardModel(vcard_support.SAMPLE_CARD, faults)
    session = CardSession()
    session.inserted(card.atr())
    with pytest.raises(error):
        drive(session, card)
    assert session.identity is None and session._fields == {}


def test_endless_get_response_is_malformed_not_a_loop():
    session = CardSession()
    session.inserted(b"\x3b\x00")
    with pytest.raises(CardMalformed):
        for _ in range(100):
            session.next_command()
            session.receive(b"\x61\x10")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=48), min_size=1, max_size=24))
def test_arbitrary_answers_only_raise_card_errors(answers):
    session = CardSession()
    session.inserted(b"\x3b\x00")
    try:
        for answer in answers:
            if session.next_command() is None:
                break
            session.receive(answer)
    except CardError:
        assert session.identity is None or session.state == IDENTIFIED


GBK_HAN = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FA5).filter(
    lambda c: len(c.encode("gbk", errors="ignore")) == 2)


@settings(max_examples=150, deadline=None)
@given(name=st.text(GBK_HAN, min_size=1, max_size=15),
       issued=st.dates(min_value=dt.date(1999, 1, 1), max_value=dt.date(2040, 12, 31)),
       years=st.integers(0, 20),
       card_no=st.from_regex(r"[0-9A-Z]{9}", fullmatch=True),
       ssn17=st.from_regex(r"[0-9]{17}", fullmatch=True),
       sex=st.sampled_from("0129"),
       get_response=st.booleans())
def test_any_well_formed_card_reads_back_exactly(name, issued, years, card_no, ssn17, sex, get_response):
    expires = issued.replace(year=issued.year + years) if not (issued.month == 2 and issued.day == 29) else issued
    ssn = ssn17 + profile.ssn_check_char(ssn17)
    description = {**vcard_support.SAMPLE_CARD, "name": name, "issued": issued.isoformat(),
                   "expires": expires.isoformat(), "card_no": card_no, "ssn": ssn, "sex": sex,
                   "get_response": get_response}
    card = model.CardModel(description)
    session = CardSession("R")
    session.inserted(card.atr())
    drive(session, card)
    ident = session.identity
    assert (ident.name, ident.issued, ident.expires, ident.card_no, ident.ssn, ident.sex) == (
        name, issued, expires, card_no, ssn, sex)
