"""Clock paths through the real counter API on loopback (hypercorn), with the daemon's injectable clock.

Written against the counter as it was: after a restart with the clock set back a day, the visit
settled offline and was journaled before its predecessor; status said nothing about the clock.
"""

from __future__ import annotations

import datetime as dt

import httpx

from counter.conftest import insert_card
from counter.helpers import ATORVASTATIN
from edge.counter import Clock, Counter, Settings, build_app, serve

HOUR = 3_600_000
T0 = 1_795_046_400_000
VISIT = {"med_type": "11", "acct_used_flag": False, "items": [{"med_list_codg": ATORVASTATIN, "cnt": "3", "pric": 2345}]}


class PCClock(Clock):
    """The PC's clocks, set by hand: ``wall`` (anyone can set it) and ``mono`` (this boot only)."""

    def __init__(self, wall: int, boot: str) -> None:
        super().__init__()
        self.wall, self.mono, self.boot_id = wall, 10**12, boot

    def wall_ms(self) -> int:
        return self.wall

    def mono_ns(self) -> int:
        return self.mono

    def today(self) -> dt.date:
        return dt.date(2026, 11, 24)


async def _post(counter, nursery, path, body):
    app = build_app(counter)
    urls = await nursery.start(serve, app, "127.0.0.1", 0)
    headers = getattr(getattr(app, "auth", None), "headers", None) or {}    # the API's credential
    async with httpx.AsyncClient(base_url=urls[0], trust_env=False, headers=headers) as client:
        r = await client.post(path, json=body)
        s = (await client.get("/api/status")).json()
    return r, s


async def test_clock_set_back_a_day_across_a_restart(cache, journal, cards, nursery):
    insert_card(cards)
    first = Counter(cache=cache, journal=journal, cards=cards, clock=PCClock(T0, "boot-1"), settings=Settings())
    first.mark_refreshed()
    first.clock.wall += 10 * HOUR
    first.clock.mono += 10 * HOUR * 1_000_000
    r, _ = await _post(first, nursery, "/api/settle", {"req": "POS-1", **VISIT})
    assert r.status_code == 200 and r.json()["mode"] == "offline"
    t1 = journal.get(1).time

    # Twenty hours later the PC restarts with its clock a day behind: it reads 6 h after the refresh.
    second = Counter(cache=cache, journal=journal, cards=cards, clock=PCClock(T0 + 6 * HOUR, "boot-2"),
                     settings=Settings())
    r, status = await _post(second, nursery, "/api/settle", {"req": "POS-2", **VISIT})
    body = r.json()
    assert body.get("mode") != "offline", body
    assert "时钟" in str(body), body
    assert status["clock"]["code"] == "behind_floor" and "校准电脑时间" in status["clock"]["zh"]
    # Nothing journaled goes back in time.
    times = [e.time for e in journal.entries()]
    assert times == sorted(times) and times[0] == t1
