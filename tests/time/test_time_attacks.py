"""Attacks on the counter's time floor from outside: the real centre, `edge run` (under libfaketime where
the PC clock moves), and a proxy between them that rewrites the centre's ``Date`` header (a lying or
compromised proxy, or a centre whose clock is wrong). Each test is a finding or an attack that held.
"""

from __future__ import annotations

import json
import re
import time

import trio

from edge.journal import JournalStore
from harness.demo import ITEMS, ZHANGSAN

FIX = "校准电脑时间"
DAY_MS = 86_400_000


class DateLiar:
    """A TCP proxy to the centre that replaces the ``Date`` header of every answer with ``self.date``
    (None: passes answers through untouched)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.date: str | None = None
        self.port = 0

    def _rewrite(self, data: bytes) -> bytes:
        if self.date is None:
            return data
        return re.sub(rb"(?im)^date: [^\r\n]*\r\n", b"date: " + self.date.encode() + b"\r\n", data)

    async def _handle(self, client) -> None:
        async with client:
            try:
                upstream = await trio.open_tcp_stream(*self.target)
            except OSError:
                return
            async with upstream:
                async def pump(src, dst, rewrite: bool) -> None:
                    try:
                        while data := await src.receive_some(65536):
                            await dst.send_all(self._rewrite(data) if rewrite else data)
                        await dst.send_eof()
                    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                        pass

                async with trio.open_nursery() as n:
                    n.start_soon(pump, client, upstream, False)
                    n.start_soon(pump, upstream, client, True)

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self)
        await trio.serve_listeners(self._handle, listeners)


async def _behind_liar(s, nursery) -> DateLiar:
    """Point the enrolled counter at a :class:`DateLiar` in front of the real centre."""
    liar = await nursery.start(DateLiar(("127.0.0.1", s.centre_port)).run)
    path = s.state_dir / "device.json"
    doc = json.loads(path.read_text(encoding="utf-8"))
    doc["centre_url"] = f"http://127.0.0.1:{liar.port}"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return liar


def _visit(req: str) -> dict:
    return {"req": req, "med_type": "11", "items": ITEMS}


def _entries(s) -> list:
    with JournalStore.open(s.state_dir / "journal.db", signing_key=None, device=None) as j:
        return list(j.entries())


async def _ready(s, api) -> bool:
    st = await s.status(api)
    return len(st["cache"]["bundles"]) == 4 and st["cache"]["age_s"] is not None and st["online"]


async def test_a_proxy_lying_about_the_date_does_not_pin_entry_times_in_the_future(daemon_stack, nursery):
    """A proxy answers with a Date far in the future: the counter fails closed (full payment, the clerk
    told to fix the clock). When the proxy tells the truth again the counter recovers, and no journal
    entry carries the lie: an entry timed at the lie would stay the chain's time for every later entry
    (entry times never decrease) and the centre refuses times past 2100 (``bad_time``)."""
    s = await daemon_stack(region=None)
    liar = await _behind_liar(s, nursery)
    await s.start_counter()
    async with s.client() as api:
        await s.until(lambda: _ready(s, api))
        await api.post("/api/card/simulate", json=ZHANGSAN)
        liar.date = "Fri, 01 Jan 2150 00:00:00 GMT"

        async def faulted():
            st = await s.status(api)
            return st["clock"] is not None and st["online"] is False

        await s.until(faulted)
        st = await s.status(api)
        assert FIX in st["clock"]["zh"], st
        # The centre itself (its true clock) still settles online: the entry is journaled meanwhile.
        r = await api.post("/api/settle", json=_visit("LIE-1"))
        assert r.status_code == 200 and r.json()["mode"] == "online", r.text

        liar.date = None

        async def recovered():
            st = await s.status(api)
            return st["clock"] is None and st["online"] is True

        await s.until(recovered)
        r = await api.post("/api/settle", json=_visit("LIE-3"))
        assert r.status_code == 200 and r.json()["mode"] == "online", r.text
    await s.stop_counter()
    true_now = time.time_ns() // 1_000_000
    entries = _entries(s)
    assert [e.kind for e in entries if e.kind in ("settlement", "claim")] == ["settlement", "settlement"]
    # at most as far ahead as the centre itself accepts a clock (5 min), never at the lie
    assert all(e.time <= true_now + 360_000 for e in entries), [(e.seq, e.kind, e.time) for e in entries]


async def test_deleting_the_saved_centre_time_does_not_hide_a_clock_set_back(clock_stack):
    """The centre's time seen is kept in the cache (``centre_seen``); an operator who deletes it while the
    counter is stopped (or a save that failed: it is best effort) must not leave a clock set back a day
    looking right. The cache's last refresh was timed by a clock the centre accepted, so it is a floor
    too: the clerk is told to fix the clock (not a bare full payment for "the cache age cannot be
    established")."""
    import sqlite3

    s = await clock_stack(region=None)
    await s.start_counter()
    async with s.client() as api:
        await s.until(lambda: _ready(s, api))
    await s.stop_counter()
    s.stop_centre()
    with sqlite3.connect(s.state_dir / "cache.db") as db:
        assert db.execute("DELETE FROM meta WHERE key = 'centre_seen'").rowcount == 1
    s.clock.set("-1d")
    await s.start_counter()
    async with s.client() as api:
        await api.post("/api/card/simulate", json=ZHANGSAN)
        st = await s.status(api)
        assert st["clock"] is not None and FIX in st["clock"]["zh"], st
        r = await api.post("/api/settle", json=_visit("DEL-1"))
        assert r.status_code == 409 and FIX in r.json()["error"]["zh"], r.text
    await s.stop_counter()
    diag = s.run_edge("diagnose", "--state-dir", str(s.state_dir), "--config", str(s.config),
                      "--only", "time_floor", "--json")
    assert "behind_floor" in diag.stdout, diag.stdout + diag.stderr


async def test_a_date_far_in_the_past_or_garbage_from_a_proxy(daemon_stack, nursery):
    """Held: a Date that is not a date (or none) is ignored (the counter stays online, no fault); a Date
    far in the past is a clock fault the clerk is told about (the PC clock reads as ahead), and the
    counter recovers at the next true answer."""
    s = await daemon_stack(region=None)
    liar = await _behind_liar(s, nursery)
    await s.start_counter()
    async with s.client() as api:
        await s.until(lambda: _ready(s, api))
        liar.date = "not a date"
        await api.post("/api/card/simulate", json=ZHANGSAN)
        r = await api.post("/api/settle", json=_visit("PAST-1"))
        assert r.status_code == 200 and r.json()["mode"] == "online", r.text
        assert (await s.status(api))["clock"] is None

        liar.date = "Mon, 01 Jan 2001 00:00:00 GMT"

        async def faulted():
            return (await s.status(api))["clock"] is not None

        await s.until(faulted)
        st = await s.status(api)
        assert st["online"] is False and st["clock"]["code"] == "off_from_centre" and "快" in st["clock"]["zh"], st

        liar.date = None

        async def recovered():
            st = await s.status(api)
            return st["clock"] is None and st["online"] is True

        await s.until(recovered)
    await s.stop_counter()
    true_now = time.time_ns() // 1_000_000
    assert all(abs(e.time - true_now) < DAY_MS for e in _entries(s))


async def test_a_clock_a_year_ahead_while_the_centre_answers(clock_stack):
    """The PC clock moved a year ahead while the centre answers: nothing settles offline, and the full
    payment journaled meanwhile is timed and dated by the centre's clock, not the wrong one (a claim dated
    next year is reimbursed against next year's totals, and its time would hold every later entry of the
    chain a year ahead). Set right again, the counter settles online at once."""
    import datetime as dt

    s = await clock_stack(region=None)
    await s.start_counter()
    async with s.client() as api:
        await s.until(lambda: _ready(s, api))
        await api.post("/api/card/simulate", json=ZHANGSAN)
        s.clock.set("+365d")
        r = await api.post("/api/settle", json=_visit("YEAR-1"))
        assert r.status_code == 409 and FIX in r.json()["error"]["zh"], r.text
        claim = await api.post("/api/claim", json=_visit("YEAR-1"))
        assert claim.status_code == 200 and claim.json()["mode"] == "full_payment", claim.text
        s.clock.set("+0")

        async def back():
            st = await s.status(api)
            return st["clock"] is None and st["online"] is True

        await s.until(back)
        r = await api.post("/api/settle", json=_visit("YEAR-2"))
        assert r.status_code == 200 and r.json()["mode"] == "online", r.text
    await s.stop_counter()
    true_now = time.time_ns() // 1_000_000
    today = dt.date.today().isoformat()
    entries = [e for e in _entries(s) if e.kind in ("claim", "settlement")]
    assert [e.kind for e in entries] == ["claim", "settlement"]
    assert all(abs(e.time - true_now) < DAY_MS for e in entries), [(e.seq, e.kind, e.time) for e in entries]
    assert entries[0].body["visit"]["date"] == today, entries[0].body


async def test_a_clock_set_back_with_a_proxy_that_agrees(clock_stack, nursery):
    """The PC clock set back a day and a proxy that forges the centre's Date to agree with it (so the floor
    from the journal and the centre's earlier answers is dropped as "a clock that was ahead"). The centre
    itself refuses the skewed signatures and nothing settles offline; entry times do not go back (held).
    Found: /api/status said online with no clock fault while every visit became a full payment; the
    centre's own refusal (401 stale_request) is now a clock fault until it accepts a request again."""
    import email.utils

    s = await clock_stack(region=None)
    liar = await _behind_liar(s, nursery)
    await s.start_counter()
    async with s.client() as api:
        await s.until(lambda: _ready(s, api))
        await api.post("/api/card/simulate", json=ZHANGSAN)
        r = await api.post("/api/settle", json=_visit("AGREE-1"))
        assert r.status_code == 200 and r.json()["mode"] == "online", r.text
        liar.date = email.utils.formatdate(time.time() - 86_400, usegmt=True)
        s.clock.set("-1d")
        for n in range(2, 5):
            r = await api.post("/api/settle", json=_visit(f"AGREE-{n}"))
            assert r.status_code == 409 and r.json()["error"]["cause"] == "offline_limit", r.text
            assert FIX in r.json()["error"]["zh"], r.text
            assert (await api.post("/api/claim", json=_visit(f"AGREE-{n}"))).status_code == 200
        # The page and status agree with the receipts: not 联网, and the clerk is told to fix the clock.
        st = await s.status(api)
        assert st["online"] is False and st["clock"] is not None and FIX in st["clock"]["zh"], st
        # Set right (and the proxy honest): the next visit settles online and the fault is gone.
        s.clock.set("+0")
        liar.date = None
        r = await api.post("/api/settle", json=_visit("AGREE-5"))
        assert r.status_code == 200 and r.json()["mode"] == "online", r.text
        assert (await s.status(api))["clock"] is None
    await s.stop_counter()
    entries = [e for e in _entries(s) if e.kind in ("settlement", "claim")]
    assert [e.kind for e in entries] == ["settlement", "claim", "claim", "claim", "settlement"]
    assert not any(e.body.get("mode") == "offline" for e in entries)
    times = [e.time for e in entries]
    assert times == sorted(times), times
