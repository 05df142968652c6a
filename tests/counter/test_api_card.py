"""The card path through the API: pcscd + vsmartcard vpcd + our virtual card, the real card watcher,
the PIN verified on the card, and a card pulled out before confirm (nothing journaled)."""

from __future__ import annotations

import httpx
import pytest
import trio

import vcard_support
from counter.conftest import FixedDayClock
from counter.helpers import ATORVASTATIN, VCARD_ID
from edge.counter import CardDesk, Counter, Settings, build_app, serve
from edge.daemon import card_service

pytestmark = pytest.mark.pcsc
VISIT = {"med_type": "11", "items": [{"med_list_codg": ATORVASTATIN, "cnt": "3", "pric": 2345}]}


@pytest.fixture
async def card_api(cache, journal, nursery):
    vcard_support.require_pcsc()
    desk = CardDesk()
    counter = Counter(cache=cache, journal=journal, cards=desk, clock=FixedDayClock(), settings=Settings())
    counter.mark_refreshed()
    await nursery.start(card_service, desk, 0.1)
    app = build_app(counter)
    urls = await nursery.start(serve, app, "127.0.0.1", 0)
    async with httpx.AsyncClient(base_url=urls[0], trust_env=False, headers=app.auth.headers) as client:
        yield client


async def _present(api, reader, want=True):
    with trio.fail_after(15):
        while (await api.get("/api/card", params={"reader": reader})).json()["present"] is not want:
            await trio.sleep(0.1)
    return (await api.get("/api/card", params={"reader": reader})).json()


async def test_full_visit_with_the_virtual_card_and_its_pin(card_api, journal):
    async with vcard_support.open_virtual_card(vcard_support.SAMPLE_CARD) as card:
        c = await _present(card_api, card.reader)
        assert c["card"]["card_id"] == VCARD_ID and c["card"]["psn_name"] == "张三"
        assert c["person"]["psn_no"] == "P0004"
        body = {**VISIT, "reader": card.reader, "card_id": VCARD_ID, "acct_used_flag": True}
        r = await card_api.post("/api/settle", json={**body, "req": "C-1", "pin": "000000"})
        assert r.status_code == 409 and r.json()["error"]["code"] == "wrong_pin"
        assert r.json()["error"]["tries_left"] == 2 and journal.count() == 0
        r = await card_api.post("/api/settle", json={**body, "req": "C-2", "pin": "123456"})
        assert r.status_code == 200, r.text
        assert r.json()["setlinfo"]["acct_pay"] > 0 and journal.count() == 1


async def test_card_removed_before_confirm_journals_nothing(card_api, journal):
    async with vcard_support.open_virtual_card(vcard_support.SAMPLE_CARD) as card:
        await _present(card_api, card.reader)
        body = {**VISIT, "reader": card.reader, "card_id": VCARD_ID}
        assert (await card_api.post("/api/presettle", json=body)).json()["mode"] == "offline"
        await trio.to_thread.run_sync(card.pull)
    r = await card_api.post("/api/settle", json={**body, "req": "C-RM"})
    assert r.status_code == 409 and r.json()["error"]["code"] in ("no_card", "card_removed")
    assert journal.count() == 0
