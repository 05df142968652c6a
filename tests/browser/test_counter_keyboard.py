"""The counter page worked with a keyboard and a barcode scanner only, at the two screen sizes a counter
has (1366x768 laptops, 1024x600 netbooks), in Debian's Chromium.

A scanner types the code and a suffix key (Enter or Tab) faster than any person; the page must add the
item the code names, never one from the previous search's list. Errors must show next to the action that
caused them, inside the viewport (a clerk who does not see "密码错误" presses again and locks the card).
Screenshots (the viewport only: what the clerk sees) go to test-artifacts/counter/.
"""

from __future__ import annotations

import pytest
import trio

from .test_counter_page import ARTIFACTS, _browser, login

pytestmark = pytest.mark.browser
VIEWPORTS = {"1366x768": {"width": 1366, "height": 768}, "1024x600": {"width": 1024, "height": 600}}
AMOXICILLIN = "XJ01CAA040E001010101445"      # 阿莫西林胶囊
CONSULT = "001102000010000"                  # 门诊诊查费(村卫生室)
IN_VIEW = """(sel) => { const e = document.querySelector(sel); if (!e) return false;
  const r = e.getBoundingClientRect();
  return r.width > 0 && r.height > 0 && r.top >= 0 && r.left >= 0 &&
         r.bottom <= window.innerHeight && r.right <= window.innerWidth; }"""


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))          # the viewport: what the clerk sees


def _focused(page) -> str:
    return page.evaluate("document.activeElement ? document.activeElement.id || document.activeElement.className : ''")


def _key_label(page, button: str) -> str:
    """The shortcut key drawn on a button (CSS generated content from its data-key)."""
    return page.evaluate("(id) => getComputedStyle(document.getElementById(id), '::after').content", button)


def _cart_names(page) -> list[str]:
    return [t.split("\n")[0] for t in page.locator("#cart tbody tr td:first-child").all_inner_texts()]


def _page(p, url: str, size: str):
    browser = _browser(p)
    page = browser.new_page(viewport=VIEWPORTS[size], locale="zh-CN")
    login(page, url)
    page.wait_for_selector("#card[data-present='1']", timeout=15000)
    return browser, page


def _scan(page, code: str, suffix: str = "Enter") -> None:
    page.keyboard.type(code, delay=2)        # a scanner: a burst of keys, then its suffix key
    page.keyboard.press(suffix)


def _keyboard_visit(url: str, size: str) -> dict:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser, page = _page(p, url, size)
        try:
            got: dict = {"focus_on_load": _focused(page)}
            _scan(page, AMOXICILLIN)
            page.wait_for_selector("#cart tbody tr")
            got["focus_after_add"] = _focused(page)
            _scan(page, AMOXICILLIN)                     # the same box scanned again: count 2
            page.wait_for_function("document.querySelector('#cart tbody tr .cnt').value === '2'")
            _scan(page, CONSULT)
            page.wait_for_selector("#cart tbody tr:nth-child(2)")
            got["prices"] = page.locator("#cart tbody input.price").evaluate_all("es => es.map(e => e.value)")
            got["total"] = page.inner_text("#total")
            got["shortcuts"] = [_key_label(page, b) for b in ("presettle", "clear")]
            page.keyboard.press("F2")                    # 预结算
            page.wait_for_selector("#split:not(.hidden)")
            got["focus_after_presettle"] = _focused(page)
            got["due_in_view"] = page.evaluate(IN_VIEW, "#cash")
            got["confirm_label"] = _key_label(page, "confirm")
            page.keyboard.type("100")                    # 实收 ¥100
            page.wait_for_function("document.querySelector('#change').innerText.includes('¥')")
            got["change"] = page.inner_text("#change")
            got["cash"] = page.inner_text("#cash")
            _shot(page, f"kb-{size}-split")
            page.keyboard.press("F4")                    # 确认
            page.wait_for_url("**/receipt/*")
            page.wait_for_selector("#seq")
            got["seq"] = page.inner_text("#seq")
            return got
        finally:
            browser.close()


@pytest.mark.parametrize("size", list(VIEWPORTS))
async def test_keyboard_only_visit_driven_by_a_scanner(stack, size):
    got = await trio.to_thread.run_sync(_keyboard_visit, stack.daemon.url, size)
    assert got["focus_on_load"] == "search"
    assert got["focus_after_add"] == "search"
    assert got["prices"] == ["12.80", "10.00"]                     # the site's price list filled them in
    assert "35.60" in got["total"]
    assert "F2" in got["shortcuts"][0] and "F8" in got["shortcuts"][1]
    assert got["focus_after_presettle"] == "paid"                  # no PIN: straight to 实收
    assert got["due_in_view"] and "F4" in got["confirm_label"]
    assert got["change"].startswith("¥") and got["cash"].startswith("¥")
    entry = stack.daemon.counter.journal.get(int(got["seq"]))
    assert entry.kind == "settlement" and entry.body["amounts"]["medfee_sumamt"] == 3560
    assert [(i["code"], i["cnt"]) for i in entry.body["items"]] == [(AMOXICILLIN, "2"), (CONSULT, "1")]


def _wrong_pin(url: str, size: str) -> dict:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser, page = _page(p, url, size)
        try:
            _scan(page, AMOXICILLIN)
            page.wait_for_selector("#cart tbody tr")
            page.check("#acct")
            page.focus("#search")
            page.keyboard.press("F2")
            page.wait_for_selector("#split:not(.hidden)")
            got: dict = {"focus_after_presettle": _focused(page)}
            page.keyboard.type("000000")
            page.keyboard.press("Enter")                 # Enter submits the PIN
            page.wait_for_selector("#error.show")
            got["error"] = page.inner_text("#error")
            got["error_in_view"] = page.evaluate(IN_VIEW, "#error")
            got["pin_value"] = page.input_value("#pin")
            got["focus_after_error"] = _focused(page)
            _shot(page, f"pin-{size}-wrong")
            page.keyboard.type("123456")
            page.keyboard.press("Enter")
            page.wait_for_url("**/receipt/*")
            return got
        finally:
            browser.close()


@pytest.mark.parametrize("size", list(VIEWPORTS))
async def test_wrong_pin_shows_in_the_viewport_with_tries_left(stack, size):
    got = await trio.to_thread.run_sync(_wrong_pin, stack.daemon.url, size)
    assert got["focus_after_presettle"] == "pin"
    assert "密码错误" in got["error"] and "2" in got["error"]
    assert got["error_in_view"], "the PIN error must be visible without scrolling"
    assert got["pin_value"] == "" and got["focus_after_error"] == "pin"


def _stale_race(url: str, size: str) -> dict:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser, page = _page(p, url, size)
        try:
            page.keyboard.type("a")
            page.locator("#results li[data-code]").first.wait_for()
            page.wait_for_timeout(400)                   # the 'a' list is on screen
            page.keyboard.type("mxl")                    # then the rest of 'amxl' and Tab + Enter at once
            page.keyboard.press("Tab")
            page.keyboard.press("Enter")
            page.wait_for_selector("#cart tbody tr")
            page.wait_for_timeout(500)
            first = _cart_names(page)
            page.keyboard.type("tb")                     # a 头孢 search, then the amoxicillin box scanned
            page.locator("#results li[data-code]").first.wait_for()
            page.wait_for_timeout(400)
            page.keyboard.press("Control+A")
            _scan(page, AMOXICILLIN, "Tab")
            page.keyboard.press("Enter")
            page.wait_for_function("document.querySelector('#cart tbody tr .cnt').value === '2'")
            page.wait_for_timeout(500)
            _shot(page, f"race-{size}")
            return {"first": first, "second": _cart_names(page)}
        finally:
            browser.close()


@pytest.mark.parametrize("size", list(VIEWPORTS))
async def test_a_pending_search_never_adds_from_the_old_list(stack, size):
    got = await trio.to_thread.run_sync(_stale_race, stack.daemon.url, size)
    assert len(got["first"]) == 1 and got["first"][0].startswith("阿莫西林"), got
    assert len(got["second"]) == 1 and got["second"][0].startswith("阿莫西林"), got


def _keyed_in(url: str, certno: str) -> str:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser, page = _page(p, url, "1024x600")
        try:
            page.click("#keyed summary")
            page.fill("#kcardno", "A12345678")
            page.fill("#kcertno", certno)
            page.focus("#search")
            _scan(page, AMOXICILLIN)
            page.wait_for_selector("#cart tbody tr")
            page.check("#acct")
            page.keyboard.press("F2")
            page.wait_for_selector("#split:not(.hidden)")
            return page.inner_text("#reasons")
        finally:
            browser.close()


async def test_a_keyed_in_card_says_why_the_account_does_not_pay(stack):
    from harness.demo import LISI

    reasons = await trio.to_thread.run_sync(_keyed_in, stack.daemon.url, LISI["certno"])
    assert "手工录入的卡不能使用个人账户" in reasons and "患者选择" not in reasons
