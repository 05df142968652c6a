"""Clock paths through the real daemons: a real centre, and `edge run` whose wall clock is shifted with
libfaketime while it runs or across a restart (the ``clock_stack`` fixture, tests/time/conftest.py).

The sample bundles are published 30 hours before the test starts, so the bundles' issue time is no
floor worth having, and no visit is journaled before the clock moves: the only trustworthy time the
counter holds is the centre's, as seen in its answers.

Written against the daemons as they were: the clock set back an hour (or a day across a restart)
ended in a full payment for "the cache age cannot be established", with nothing about the clock in
``/api/status``, `edge status` or the answer; after a week ahead during an outage and the correction,
the counter stayed 脱机 (its last failure was timed a week ahead) and never asked the centre again.
"""

from __future__ import annotations

import os

import pytest
import trio

from harness.demo import ITEMS, ZHANGSAN
from edge.journal import JournalStore

FIX = "校准电脑时间"


async def _ready(s, api) -> bool:
    st = await s.status(api)
    return len(st["cache"]["bundles"]) == 4 and st["cache"]["age_s"] is not None and st["online"]


def _visit(req: str) -> dict:
    return {"req": req, "med_type": "11", "items": ITEMS}


def _entries(s) -> list:
    with JournalStore.open(s.state_dir / "journal.db", signing_key=None, device=None) as j:
        return list(j.entries())


async def test_clock_set_back_an_hour_while_online_then_the_centre_stops(clock_stack):
    s = await clock_stack(region=None)
    await s.start_counter()
    async with s.client() as api:
        await s.until(lambda: _ready(s, api))
        await api.post("/api/card/simulate", json=ZHANGSAN)
        s.clock.set("-1h")
        r = await api.post("/api/settle", json=_visit("T-1H-1"))
        assert r.status_code == 409, r.text + s.log_tail()
        err = r.json()["error"]
        assert err["cause"] == "offline_limit" and FIX in err["zh"], err
        claim = await api.post("/api/claim", json=_visit("T-1H-1"))
        assert claim.status_code == 200 and claim.json()["mode"] == "full_payment", claim.text

        # The centre stops: the clock is still an hour off (the monotonic clock remembers the centre's time).
        s.stop_centre()
        r = await api.post("/api/settle", json=_visit("T-1H-2"))
        assert r.status_code == 409 and FIX in r.json()["error"]["zh"], r.text
        st = await s.status(api)
        # Status and receipts agree: not online, and the clerk is told to fix the clock.
        assert st["online"] is False
        assert st["clock"]["code"] in ("off_from_centre", "behind_floor") and FIX in st["clock"]["zh"], st
    shown = s.run_edge("status", "--config", str(s.config), "--url", s.url)
    assert FIX in shown.stdout, shown.stdout + shown.stderr
    await s.stop_counter()
    entries = _entries(s)
    assert [e.kind for e in entries] == ["claim"]
    assert entries[0].body["detail"].startswith("clock:")
    assert not any(e.body.get("mode") == "offline" for e in entries)


async def test_clock_set_back_a_day_across_a_restart(clock_stack):
    s = await clock_stack(region=None)
    await s.start_counter()
    async with s.client() as api:
        await s.until(lambda: _ready(s, api))
    await s.stop_counter()
    s.stop_centre()
    s.clock.set("-1d")
    await s.start_counter()
    async with s.client() as api:
        await api.post("/api/card/simulate", json=ZHANGSAN)
        r = await api.post("/api/settle", json=_visit("T-1D-1"))
        assert r.status_code == 409, r.text
        assert FIX in r.json()["error"]["zh"], r.json()
        st = await s.status(api)
        # behind_floor after a reboot; off_from_centre when the daemon restarts within the PC's boot (the
        # monotonic clock still carries the centre's time from before)
        assert st["clock"]["code"] in ("behind_floor", "off_from_centre") and FIX in st["clock"]["zh"], st
        claim = await api.post("/api/claim", json=_visit("T-1D-1"))
        assert claim.status_code == 200, claim.text
    diag = s.run_edge("diagnose", "--state-dir", str(s.state_dir), "--config", str(s.config), "--daemon", s.url,
                      "--only", "time_floor", "--json")
    assert FIX in diag.stdout, diag.stdout + diag.stderr
    await s.stop_counter()
    # Without the agent, diagnose works the floor out from the journal and cache (the centre's time saved).
    diag = s.run_edge("diagnose", "--state-dir", str(s.state_dir), "--config", str(s.config), "--daemon", s.url,
                      "--only", "time_floor", "--json")
    assert FIX in diag.stdout and "behind_floor" in diag.stdout, diag.stdout + diag.stderr
    times = [e.time for e in _entries(s)]
    assert times == sorted(times)


async def test_clock_a_week_ahead_during_an_outage_then_corrected(clock_stack, nursery):
    s = await clock_stack(region=None)
    await s.start_counter()
    async with s.client() as api:
        await s.until(lambda: _ready(s, api))
        await api.post("/api/card/simulate", json=ZHANGSAN)
        s.stop_centre()

        async def offline():
            return (await s.status(api))["online"] is False

        await s.until(offline)
        s.clock.set("+7d")
        r = await api.post("/api/settle", json=_visit("T-7D-1"))
        assert r.status_code == 409, r.text       # a week on the clock: nothing settles offline
        assert (await api.post("/api/claim", json=_visit("T-7D-1"))).status_code == 200

        # Corrected, and the centre is back: the counter is online again at once, not in a week.
        s.clock.set("+0")
        await s.restart_centre(nursery)

        async def back():
            st = await s.status(api)
            return st["online"] is True and st["clock"] is None

        await s.until(back)
        r = await api.post("/api/settle", json=_visit("T-7D-2"))
        assert r.status_code == 200 and r.json()["mode"] == "online", r.text
    # Across a restart too: the centre's time, seen again, outranks the entries timed a week ahead.
    await s.stop_counter()
    await s.start_counter()
    async with s.client() as api:
        await s.until(lambda: _ready(s, api))
        assert (await s.status(api))["clock"] is None
        await api.post("/api/card/simulate", json=ZHANGSAN)
        r = await api.post("/api/settle", json=_visit("T-7D-3"))
        assert r.status_code == 200 and r.json()["mode"] == "online", r.text
    await s.stop_counter()
    times = [e.time for e in _entries(s) if e.kind in ("settlement", "claim")]
    assert len(times) == 3 and times == sorted(times), [(e.seq, e.kind, e.time) for e in _entries(s)]


def _page_banner(url: str) -> dict:
    """Log in at the counter page in Debian's headless Chromium and read the clock banner."""
    from playwright.sync_api import sync_playwright

    from harness.demo import CLERK

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                    args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(locale="zh-CN")
            page.goto(url + "/")
            page.wait_for_selector("#login", state="visible")
            page.fill("#loginid", CLERK["operator"])
            page.fill("#loginpw", CLERK["password"])
            page.click("#loginbtn")
            page.wait_for_selector("#login", state="hidden")
            page.wait_for_selector("#clockbad", state="visible", timeout=15_000)
            return {"clock": page.inner_text("#clockbad"), "offline_shown": page.is_visible("#offline"),
                    "net": page.inner_text("#netstate")}
        finally:
            browser.close()


@pytest.mark.browser
async def test_the_counter_page_tells_the_clerk_to_fix_the_clock(clock_stack):
    import support

    support.require("Debian's chromium at /usr/bin/chromium", os.path.exists("/usr/bin/chromium"))
    s = await clock_stack(region=None)
    await s.start_counter()
    async with s.client() as api:
        await s.until(lambda: _ready(s, api))
        s.clock.set("-1h")

        async def fault():
            return (await s.status(api))["clock"] is not None
        await s.until(fault)
    seen = await trio.to_thread.run_sync(_page_banner, s.url)
    assert FIX in seen["clock"] and "电脑时钟" in seen["clock"], seen
    assert not seen["offline_shown"] and "时钟" in seen["net"], seen
