"""Time-dependent behaviour on trio's autojump clock: three days of outage run in milliseconds."""

from __future__ import annotations

import datetime as dt

import pytest
import trio

from counter.conftest import insert_card
from counter.helpers import ATORVASTATIN
from edge.counter import Clock, Counter, Settings
from edge.counter.online import Connectivity
from edge.daemon import refresher

VISIT = {"med_type": "11", "items": [{"med_list_codg": ATORVASTATIN, "cnt": "3", "pric": 2345}]}
BASE_MS = 1_764_000_000_000


class TrioClock(Clock):
    """Wall and monotonic time from trio's (virtual) clock; ``wall_offset_ms`` moves the wall clock by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.boot_id = "boot-1"
        self.wall_offset_ms = 0

    def wall_ms(self) -> int:
        return BASE_MS + int(trio.current_time() * 1000) + self.wall_offset_ms

    def mono_ns(self) -> int:
        return int(trio.current_time() * 1e9)

    def today(self) -> dt.date:
        return dt.date(2026, 11, 24)


@pytest.fixture
def tcounter(cache, journal, cards):
    return Counter(cache=cache, journal=journal, cards=cards, clock=TrioClock(), settings=Settings())


async def test_cache_age_limit_after_72_hours_of_outage(tcounter, cards, autojump_clock):
    insert_card(cards)
    tcounter.mark_refreshed()
    await trio.sleep(72 * 3600)
    assert (await tcounter.presettle(VISIT))["mode"] == "offline"
    await trio.sleep(1)
    q = await tcounter.presettle(VISIT)
    assert q["mode"] == "full_payment" and q["decision"]["detail"].startswith("cache_age")
    assert q["decision"]["limits"]["cache_age_hours"] == [73, 72]


async def test_clock_set_back_makes_the_age_unknown_and_refuses_offline(tcounter, cards, autojump_clock):
    insert_card(cards)
    tcounter.mark_refreshed()
    await trio.sleep(10 * 3600)
    tcounter.clock.wall_offset_ms = -9 * 3600 * 1000    # someone turns the PC clock back 9 hours
    q = await tcounter.presettle(VISIT)
    assert q["mode"] == "full_payment" and "cannot be established" in q["decision"]["detail"]


async def test_never_refreshed_cache_is_not_used_offline(tcounter, cards, autojump_clock):
    insert_card(cards)
    q = await tcounter.presettle(VISIT)
    assert q["mode"] == "full_payment" and q["decision"]["cause"] == "offline_limit"


class FakeUplinkStatus:
    last_success_ms = None


class UplinkLike:
    """Just the status attribute the refresher reads (the real Uplink is exercised in test_daemon.py)."""

    def __init__(self) -> None:
        self.status = FakeUplinkStatus()


class SilentCentre:
    """A centre that never answers a health check (a hung link): the probe must give up on its own."""

    async def ping(self) -> bool:
        await trio.sleep_forever()


async def test_refresher_marks_refresh_after_a_sync_round_and_probes_reachability(tcounter, autojump_clock, nursery):
    tcounter.centre = SilentCentre()
    uplink = UplinkLike()
    await nursery.start(refresher, tcounter, uplink, 5.0)
    await trio.sleep(30)
    assert tcounter.link.online is False and tcounter.link.last_error
    uplink.status.last_success_ms = tcounter.clock.wall_ms()
    # The cache write runs in a worker thread, which the autojump clock does not wait for: poll.
    for _ in range(10_000):
        r = tcounter.cache.refreshed()
        if r is not None:
            break
        await trio.sleep(0.5)
    assert r.wall_ms == uplink.status.last_success_ms


def test_connectivity_skips_the_centre_shortly_after_a_failure():
    link = Connectivity()
    assert link.should_try(0, 30_000)
    link.failed(1000, "x")
    assert not link.should_try(20_000, 30_000) and link.should_try(31_000, 30_000)
    link.ok(40_000)
    assert link.online and link.should_try(40_001, 30_000)
