"""The card path end to end: pyscard -> pcscd -> vpcd -> our virtual card process."""

from __future__ import annotations

import datetime as dt

import pytest
import trio

import vcard_support
from vcard_support import EXPIRED_CARD, SAMPLE_CARD, SECOND_CARD, virtual_card
from edge.card import (
    CardExpired, CardHotlisted, CardMalformed, CardMute, CardRemoved, CardStatusError, NoCard, NoReader,
    NotSocialSecurityCard, PinBlocked, WrongPin, check_card, list_readers, read_identity, verify_pin,
)

pytestmark = [pytest.mark.pcsc, pytest.mark.usefixtures("pcsc")]


async def test_readers_are_listed():
    names = await list_readers()
    assert vcard_support.reader_for_slot(0) in names and vcard_support.reader_for_slot(1) in names


async def test_identity_read():
    with virtual_card(SAMPLE_CARD) as card:
        ident = await read_identity()
    assert ident.reader == card.reader
    assert (ident.card_id, ident.region, ident.card_no, ident.ssn, ident.name, ident.sex, ident.spec_version) == (
        SAMPLE_CARD["card_id"], "330300", "A12345678", "330302199001011235", "张三", "1", "3.00")
    assert ident.issued == dt.date(2021, 3, 15) and ident.expires == dt.date(2031, 3, 15)
    assert ident.atr.startswith("3B") and not ident.keyed_in


async def test_wrong_pin_counts_down_then_blocks():
    with virtual_card(SAMPLE_CARD) as card:
        await verify_pin(card.reader, "123456")
        tries = []
        for _ in range(2):
            with pytest.raises(WrongPin) as info:
                await verify_pin(card.reader, "000000")
            tries.append(info.value.tries_left)
        assert tries == [2, 1]
        with pytest.raises(PinBlocked):
            await verify_pin(card.reader, "000000")
        with pytest.raises(PinBlocked):
            await verify_pin(card.reader, "123456")
        # The identity is still readable: a blocked PIN only stops what needs the PIN.
        assert (await read_identity(card.reader)).name == "张三"


async def test_blocked_pin_fault():
    with virtual_card(SAMPLE_CARD, faults={"pin_blocked": True}) as card:
        with pytest.raises(PinBlocked) as info:
            await verify_pin(card.reader, "123456")
    assert info.value.sw == 0x6983 and info.value.code == "pin_blocked"


async def test_card_pulled_mid_read_gives_card_removed():
    with virtual_card(SAMPLE_CARD, faults={"pull_after": 4}) as card:
        with pytest.raises(CardRemoved) as info:
            await read_identity(card.reader)
        card.wait_gone()
    assert info.value.retryable and info.value.zh


async def test_card_pulled_by_switching_the_fault_mid_session():
    with virtual_card(SAMPLE_CARD) as card:
        assert (await read_identity(card.reader)).name == "张三"
        card.set_faults({"pull_after": 2})
        with pytest.raises(CardRemoved):
            await read_identity(card.reader)
        card.wait_gone()
    with pytest.raises(NoCard):
        await read_identity(card.reader)


async def test_expired_card_is_refused():
    with virtual_card(EXPIRED_CARD):
        ident = await read_identity()
    assert ident.name == "欧阳建国" and ident.expires == dt.date(2022, 5, 20)
    with pytest.raises(CardExpired):
        check_card(ident, dt.date.today(), {})


async def test_expired_fault_makes_the_card_expire_yesterday():
    with virtual_card(SAMPLE_CARD, faults={"expired": True}):
        ident = await read_identity()
    assert ident.expires == dt.date.today() - dt.timedelta(days=1)
    with pytest.raises(CardExpired):
        check_card(ident, dt.date.today(), {})


async def test_hotlisted_card_is_refused():
    with virtual_card(SAMPLE_CARD):
        ident = await read_identity()
    with pytest.raises(CardHotlisted) as info:
        check_card(ident, dt.date.today(), {SAMPLE_CARD["card_id"]: "reissued"})
    assert info.value.reason == "reissued"
    check_card(ident, dt.date.today(), {SECOND_CARD["card_id"]: "lost"})


async def test_mute_card_times_out_as_card_mute():
    with virtual_card(SAMPLE_CARD, faults={"mute": True}) as card:
        with trio.fail_after(10):          # the test's own guard: never hang the suite
            with pytest.raises(CardMute) as info:
                await read_identity(card.reader)
    assert info.value.retryable and info.value.code == "card_mute"


@pytest.mark.parametrize("faults, error", [
    ({"garbage": "tlv"}, CardMalformed),
    ({"garbage": "short"}, CardMalformed),
    ({"garbage": "bytes"}, (CardMalformed, CardStatusError)),
    ({"sw": {"A4": "6A82"}}, NotSocialSecurityCard),
    ({"sw": {"B2": "6581"}}, CardStatusError),
])
async def test_garbage_and_wrong_status_words_fail_typed(faults, error):
    with virtual_card(SAMPLE_CARD, faults=faults) as card:
        with trio.fail_after(10):
            with pytest.raises(error) as info:
                await read_identity(card.reader)
    assert info.value.message and info.value.zh


async def test_slow_card_still_reads():
    with virtual_card(SAMPLE_CARD, faults={"delay_ms": 40}):
        assert (await read_identity()).name == "张三"


async def test_two_readers_two_cards():
    with virtual_card(SAMPLE_CARD, slot=0) as a, virtual_card(SECOND_CARD, slot=1) as b:
        async with trio.open_nursery() as nursery:
            results = {}

            async def read(reader):
                results[reader] = await read_identity(reader)
            nursery.start_soon(read, a.reader)
            nursery.start_soon(read, b.reader)
        assert results[a.reader].name == "张三" and results[b.reader].name == "李四"
        assert results[b.reader].sex == "2" and results[b.reader].reader == b.reader
        # Default choice: the first reader with a card.
        assert (await read_identity()).reader == a.reader
        assert (await read_identity("00 01")).name == "李四"     # a unique part of the name works
    with virtual_card(SECOND_CARD, slot=1) as b:
        assert (await read_identity()).reader == b.reader       # the only reader with a card


async def test_no_card_and_unknown_reader():
    with pytest.raises(NoCard):
        await read_identity()
    with pytest.raises(NoCard):
        await read_identity(vcard_support.reader_for_slot(0))
    with pytest.raises(NoReader) as info:
        await read_identity("No Such Reader 99")
    assert "No Such Reader 99" in info.value.message
