"""Fixtures for the counter: a real journal, a real cache with signed sample bundles, the real API
served by hypercorn's trio worker on loopback (port 0), and an httpx client."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest
from nacl.signing import SigningKey

from counter.helpers import CARD_ID, CERTNO, Centre
from edge.cache import Cache
from edge.counter import Clock, Counter, Settings, SimulatedCards, build_app, serve, simulated_identity
from edge.journal import JournalStore

DEVICE = "D-S330300001-1"


class FixedDayClock(Clock):
    """Real clocks, but a fixed visit date (the sample catalogue is valid from 2026-01-01)."""

    def today(self) -> dt.date:
        return dt.date(2026, 11, 24)


@pytest.fixture
def centre():
    return Centre()


@pytest.fixture
def journal(tmp_path):
    j = JournalStore.open(tmp_path / "journal.db", signing_key=SigningKey.generate(), device=DEVICE)
    yield j
    j.close()


@pytest.fixture
def cache(tmp_path, centre):
    c = Cache.open(tmp_path / "cache.db")
    for raw in centre.sample():
        c.apply_bundle(raw, centre.verify_key, now_ms=1)
    yield c
    c.close()


@pytest.fixture
def cards():
    return SimulatedCards(pin="123456")


@pytest.fixture
def counter(cache, journal, cards):
    c = Counter(cache=cache, journal=journal, cards=cards, clock=FixedDayClock(), settings=Settings(level="village"))
    c.mark_refreshed()
    return c


def insert_card(cards, card_id=CARD_ID, certno=CERTNO, name="张三"):
    cards.insert(simulated_identity(card_id=card_id, ssn=certno, name=name))


@pytest.fixture
async def api(counter, nursery):
    app = build_app(counter)
    urls = await nursery.start(serve, app, "127.0.0.1", 0)
    # The installation token (an app without a state directory makes one up): the API answers nobody else.
    async with httpx.AsyncClient(base_url=urls[0], trust_env=False, headers=app.auth.headers) as client:
        yield client
    nursery.cancel_scope.cancel()
