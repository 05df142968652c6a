"""watch_cards: insert/remove events from pcscd, as the daemon sees them."""

from __future__ import annotations

from functools import partial

import pytest
import trio

from vcard_support import SAMPLE_CARD, SECOND_CARD, open_virtual_card, virtual_card
from edge.card import CardEvent, NotSocialSecurityCard, watch_cards

pytestmark = [pytest.mark.pcsc, pytest.mark.usefixtures("pcsc")]


async def next_event(receive: trio.MemoryReceiveChannel) -> CardEvent:
    with trio.fail_after(10):
        return await receive.receive()


async def test_insert_and_remove_events_carry_the_identity():
    send, receive = trio.open_memory_channel(0)
    async with trio.open_nursery() as nursery:
        await nursery.start(watch_cards, send)
        async with open_virtual_card(SAMPLE_CARD) as card:
            ev = await next_event(receive)
            assert (ev.kind, ev.reader, ev.identity.name, ev.error) == ("inserted", card.reader, "张三", None)
        ev = await next_event(receive)
        assert (ev.kind, ev.reader, ev.identity) == ("removed", card.reader, None)
        async with open_virtual_card(SECOND_CARD, slot=1) as other:
            ev = await next_event(receive)
            assert (ev.kind, ev.reader, ev.identity.name) == ("inserted", other.reader, "李四")
        assert (await next_event(receive)).kind == "removed"
        nursery.cancel_scope.cancel()


async def test_card_already_present_is_reported_at_start():
    with virtual_card(SAMPLE_CARD) as card:
        send, receive = trio.open_memory_channel(1)
        async with trio.open_nursery() as nursery:
            await nursery.start(watch_cards, send)
            ev = await next_event(receive)
            assert (ev.kind, ev.reader, ev.identity.card_no) == ("inserted", card.reader, "A12345678")
            nursery.cancel_scope.cancel()


async def test_unreadable_card_is_an_error_event_and_the_watcher_goes_on():
    send, receive = trio.open_memory_channel(0)
    async with trio.open_nursery() as nursery:
        await nursery.start(watch_cards, send)
        async with open_virtual_card(SAMPLE_CARD, faults={"sw": {"A4": "6A82"}}) as card:
            ev = await next_event(receive)
            assert ev.kind == "error" and ev.reader == card.reader and ev.identity is None
            assert isinstance(ev.error, NotSocialSecurityCard)
        assert (await next_event(receive)).kind == "removed"
        async with open_virtual_card(SAMPLE_CARD):
            assert (await next_event(receive)).kind == "inserted"
        nursery.cancel_scope.cancel()


async def test_watcher_closes_its_channel_when_cancelled():
    send, receive = trio.open_memory_channel(0)
    async with trio.open_nursery() as nursery:
        await nursery.start(watch_cards, send)
        nursery.cancel_scope.cancel()
    with pytest.raises(trio.EndOfChannel):
        await receive.receive()


async def test_a_pin_check_resetting_the_card_is_not_a_removal():
    from edge.card import verify_pin

    send, receive = trio.open_memory_channel(0)
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(watch_cards, send, poll_interval=0.05))
        async with open_virtual_card(SAMPLE_CARD) as card:
            assert (await next_event(receive)).kind == "inserted"
            await verify_pin(card.reader, "123456")     # disconnects with SCARD_RESET_CARD
            with trio.move_on_after(1.0):               # > two pcscd polls: a bounce would show
                ev = await receive.receive()
                pytest.fail(f"unexpected {ev.kind} event after a PIN check")
        assert (await next_event(receive)).kind == "removed"
        nursery.cancel_scope.cancel()


async def test_mute_card_is_an_error_event_not_a_hang():
    send, receive = trio.open_memory_channel(0)
    async with trio.open_nursery() as nursery:
        await nursery.start(watch_cards, send)
        async with open_virtual_card(SAMPLE_CARD, faults={"mute": True}) as card:
            ev = await next_event(receive)
            assert (ev.kind, ev.reader, ev.error.code) == ("error", card.reader, "card_mute")
        assert (await next_event(receive)).kind == "removed"
        async with open_virtual_card(SAMPLE_CARD):            # the reader works again afterwards
            assert (await next_event(receive)).identity.name == "张三"
        nursery.cancel_scope.cancel()
