"""The clerk's day: today's visits (search, reprint, cancel) and the shift close (交班/日结) per operator,
printable, in Debian's Chromium at both counter screen sizes."""

from __future__ import annotations

import pytest
import trio

from harness.demo import ITEMS, ITEMS_B, ZHANGSAN

from .test_counter_keyboard import VIEWPORTS, _shot
from .test_receipt_print import MM_PX, NO_OVERFLOW

pytestmark = pytest.mark.browser


async def _day(api) -> dict:
    """Three settlements and a cancel: cash ¥35.60 (then cancelled), account ¥35.60, cash ¥70.35."""
    base = {"med_type": "11", "card_id": ZHANGSAN["card_id"]}
    seqs = []
    for n, (items, acct) in enumerate([(ITEMS, False), (ITEMS, True), (ITEMS_B, False)]):
        body = {**base, "req": f"S-{n}", "items": items, "acct_used_flag": acct}
        if acct:
            body["pin"] = "123456"
        r = await api.post("/api/settle", json=body)
        assert r.status_code == 200, r.text
        seqs.append(r.json()["seq"])
    c = await api.post(f"/api/settlements/{seqs[0]}/cancel", json={"reason": "柜台撤销"})
    assert c.status_code == 200, c.text
    return {"seqs": seqs, "cancel": c.json()["seq"]}


def _pages(url: str, size: str, seqs: list[int]) -> dict:
    from playwright.sync_api import sync_playwright

    from .test_counter_page import _browser, login

    got: dict = {}
    with sync_playwright() as p:
        browser = _browser(p)
        try:
            page = browser.new_page(viewport=VIEWPORTS[size], locale="zh-CN")
            login(page, url)
            page.click("#navvisits")
            page.wait_for_selector("#visits tbody tr")
            got["rows"] = page.locator("#visits tbody tr").count()
            got["visits"] = page.inner_text("#visits")
            page.fill("#q", "阿托伐他汀")
            page.press("#q", "Enter")
            page.wait_for_function("document.querySelectorAll('#visits tbody tr').length === 1")
            got["found"] = page.inner_text("#visits tbody")
            _shot(page, f"visits-{size}")
            page.click("#visits tbody tr a.reprint")
            page.wait_for_url(f"**/receipt/{seqs[2]}")
            page.goto(url + "/")
            page.click("#navshift")
            page.wait_for_selector("#shift")
            got["shift"] = page.inner_text("#shift")
            got["handover"] = page.inner_text("#handover")
            _shot(page, f"shift-{size}")
            page.set_viewport_size({"width": int(80 * MM_PX), "height": 900})
            page.emulate_media(media="print")
            got["print_overflow"] = page.evaluate(NO_OVERFLOW)
            _shot(page, f"shift-{size}-print80")
        finally:
            browser.close()
    return got


@pytest.mark.parametrize("size", list(VIEWPORTS))
async def test_todays_visits_and_the_shift_close(stack, size):
    day = await _day(stack.api)
    got = await trio.to_thread.run_sync(_pages, stack.daemon.url, size, day["seqs"])
    assert got["rows"] == 4 and "已撤销" in got["visits"] and "张*" in got["visits"]
    assert "阿托伐他汀" in got["found"]
    shift = got["shift"]
    for text in ("结算 3 笔", "撤销 1 笔", "¥35.60", "¥70.35"):
        assert text in shift, text
    assert got["handover"] == "¥70.35"                   # cash in, less the cancelled visit's cash back
    o = got["print_overflow"]
    assert o["scroll"] <= o["client"] and not o["wide"], o
