"""The printed receipt: thermal paper (58 mm and 80 mm) in print media, what a Chinese receipt names, the
cancel receipt against its original, and a Chinese page for a receipt that does not exist."""

from __future__ import annotations

import pytest
import trio

from harness.demo import ITEMS, ZHANGSAN

from .test_counter_keyboard import VIEWPORTS, _shot

pytestmark = pytest.mark.browser
MM_PX = 96 / 25.4                                # CSS px per millimetre
NO_OVERFLOW = """() => { const d = document.documentElement;
  const wide = [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > d.clientWidth + 0.5);
  return {scroll: d.scrollWidth, client: d.clientWidth, wide: wide.map(e => e.tagName + '#' + e.id).slice(0, 5)}; }"""
HIDDEN = "(sel) => [...document.querySelectorAll(sel)].every(e => getComputedStyle(e).display === 'none')"


def _print_pages(url: str, seq: int, cancel_seq: int) -> dict:
    from playwright.sync_api import sync_playwright

    from .test_counter_page import _browser, login

    got: dict = {}
    with sync_playwright() as p:
        browser = _browser(p)
        try:
            for paper in ("58", "80"):
                page = browser.new_page(viewport={"width": int(int(paper) * MM_PX), "height": 900}, locale="zh-CN")
                login(page, url)           # the receipt names a patient: a clerk's page
                page.emulate_media(media="print")
                page.goto(f"{url}/receipt/{seq}?paper={paper}")
                page.wait_for_selector("#digest")
                got[f"overflow{paper}"] = page.evaluate(NO_OVERFLOW)
                got[f"hidden{paper}"] = page.evaluate(HIDDEN, "a, button, .noprint")
                _shot(page, f"receipt-{paper}mm-print")
                page.close()
            page = browser.new_page(viewport=VIEWPORTS["1366x768"], locale="zh-CN")
            login(page, url)
            page.goto(f"{url}/receipt/{seq}")
            got["original"] = page.inner_text("body")
            got["cancel_button"] = page.locator("#cancel").count()
            _shot(page, "receipt-original-cancelled")
            page.goto(f"{url}/receipt/{cancel_seq}?paper=58")
            got["cancel"] = page.inner_text("body")
            _shot(page, "receipt-cancel")
            r = page.goto(f"{url}/receipt/999")
            got["unknown_status"] = r.status
            got["unknown"] = page.inner_text("body")
            page.close()
        finally:
            browser.close()
    return got


async def test_receipt_prints_on_58mm_and_80mm_and_names_what_a_receipt_must(stack):
    s = stack
    r = await s.api.post("/api/settle", json={"req": "R-1", "med_type": "11", "acct_used_flag": False,
                                              "card_id": ZHANGSAN["card_id"], "items": ITEMS})
    assert r.status_code == 200, r.text
    seq = r.json()["seq"]
    c = await s.api.post(f"/api/settlements/{seq}/cancel", json={"reason": "柜台撤销"})
    assert c.status_code == 200, c.text
    got = await trio.to_thread.run_sync(_print_pages, s.daemon.url, seq, c.json()["seq"])
    for paper in ("58", "80"):
        o = got[f"overflow{paper}"]
        assert o["scroll"] <= o["client"] and not o["wide"], (paper, o)
        assert got[f"hidden{paper}"], "links and buttons are not printed"
    text = got["original"]
    assert "张*" in text and "张三" not in text                       # the name masked as receipts do
    for word in ("职工医保", "在职", "普通门诊", "S330300001", "操作员", "结算编号", "已撤销"):
        assert word in text, word
    assert got["cancel_button"] == 0                                   # a cancelled settlement offers no 撤销
    cancel = got["cancel"]
    assert f"原流水号 {seq}" in cancel and "-¥35.60" in cancel and "阿莫西林" in cancel
    assert got["unknown_status"] == 404 and "没有流水号为 999 的票据" in got["unknown"]
    assert "error" not in got["unknown"] and "{" not in got["unknown"]
