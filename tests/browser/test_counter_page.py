"""The counter page in Debian's headless Chromium (Playwright, never a downloaded browser).

The centre and the counter daemon run in the test's trio nursery; the browser runs in a worker thread
with Playwright's sync API and calls back into trio (``trio.from_thread.run``) when the script needs
the world to change (the centre stopped, a card put in). Screenshots go to test-artifacts/counter/.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
import trio

import support
from harness.demo import CLERK, WANGFANG, ZHANGSAN, start_stack, stop_centre, wait_for

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "counter"
SMALL_SCREEN = {"width": 400, "height": 860}


def _require_chromium():
    support.require("Debian's chromium at /usr/bin/chromium", os.path.exists(CHROMIUM))


def _browser(p):
    return p.chromium.launch(executable_path=CHROMIUM, args=ARGS)


def login(page, url: str) -> None:
    """Open the counter page and log in through its form as the demo's clerk (harness.demo.CLERK): the page
    shows nothing but the login until then."""
    page.goto(url + "/")
    page.wait_for_selector("#login", state="visible")
    page.fill("#loginid", CLERK["operator"])
    page.fill("#loginpw", CLERK["password"])
    page.click("#loginbtn")
    page.wait_for_selector("#login", state="hidden")


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


async def _ready(api):
    s = (await api.get("/api/status")).json()
    return len(s["cache"]["bundles"]) == 4 and s["cache"]["age_s"] is not None and s["online"]


@pytest.fixture
async def simulated_stack(tmp_path, nursery):
    _require_chromium()
    s = await start_stack(nursery, tmp_path, probe_s=0.5, idle_s=0.5)
    async with httpx.AsyncClient(base_url=s.daemon.url, trust_env=False, headers=s.daemon.headers) as api:
        with trio.fail_after(30):  # the counter to be ready
            await wait_for(lambda: _ready(api))
        s.api = api
        yield s


def _add_item(page, query: str) -> None:
    page.fill("#search", query)
    page.locator("#results li[data-code]").first.wait_for()
    page.locator("#results li[data-code]").first.click()


def _visit_with_virtual_card(url: str) -> dict:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = _browser(p)
        try:
            page = browser.new_page(viewport=SMALL_SCREEN, locale="zh-CN")
            login(page, url)
            page.wait_for_selector("#card[data-present='1']", timeout=15000)
            card_text = page.inner_text("#card")
            _add_item(page, "amxl")
            page.fill("#cart tbody tr:first-child input.price", "12.80")
            page.locator("#cart tbody tr:first-child input.price").dispatch_event("change")
            _add_item(page, "门诊诊查")
            page.fill("#cart tbody tr:nth-child(2) input.price", "10")
            page.locator("#cart tbody tr:nth-child(2) input.price").dispatch_event("change")
            page.check("#acct")
            page.click("#presettle")
            page.wait_for_selector("#split:not(.hidden)")
            split = {k: page.inner_text(f"#{k}") for k in ("medfee", "fund", "acctpay", "cash")}
            mode = page.get_attribute("#modebox", "data-mode")
            reasons = page.inner_text("#reasons")
            _shot(page, "1-split-online")
            page.fill("#pin", "123456")
            page.click("#confirm")
            page.wait_for_url("**/receipt/*")
            page.wait_for_selector("#digest")
            _shot(page, "2-receipt")
            return {"card": card_text, "split": split, "mode": mode, "reasons": reasons,
                    "receipt": page.inner_text("body"), "seq": page.inner_text("#seq"),
                    "digest": page.inner_text("#digest"), "qr": page.locator("svg").count()}
        finally:
            browser.close()


@pytest.mark.pcsc
async def test_full_visit_through_the_page_with_the_virtual_card(tmp_path, nursery):
    import vcard_support

    _require_chromium()
    vcard_support.require_pcsc()
    # The daemon watches every reader: hold both vpcd slots so nobody else's card shows up meanwhile.
    with vcard_support.exclusive_readers():
        s = await start_stack(nursery, tmp_path, simulated=False, probe_s=0.5, idle_s=0.5)
        async with httpx.AsyncClient(base_url=s.daemon.url, trust_env=False, headers=s.daemon.headers) as api:
            with trio.fail_after(30):  # the counter to be ready
                await wait_for(lambda: _ready(api))
            async with vcard_support.open_virtual_card(vcard_support.SAMPLE_CARD):
                got = await trio.to_thread.run_sync(_visit_with_virtual_card, s.daemon.url)
    assert "张三" in got["card"] and "职工医保" in got["card"]
    assert got["mode"] == "online"
    assert got["split"]["medfee"] == "¥22.80"
    assert "起付线" in got["reasons"]
    entry = s.daemon.counter.journal.get(int(got["seq"]))
    assert entry.kind == "settlement" and entry.body["mode"] == "online" and entry.digest == got["digest"]
    assert entry.body["amounts"]["acct_pay"] > 0
    assert "联网结算" in got["receipt"] and got["qr"] >= 1


def _offline_flow(url: str, stop) -> dict:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = _browser(p)
        try:
            page = browser.new_page(viewport=SMALL_SCREEN, locale="zh-CN")
            login(page, url)
            page.wait_for_selector("#netstate[data-online='1']")
            before = page.is_visible("#offline")
            trio.from_thread.run(stop)
            page.wait_for_selector("#offline.show", timeout=15000)
            banner = page.inner_text("#offline")
            page.wait_for_selector("#card[data-present='1']")
            _add_item(page, "阿托伐他汀")
            page.fill("#cart tbody tr:first-child input.cnt", "3")
            page.locator("#cart tbody tr:first-child input.cnt").dispatch_event("change")
            page.fill("#cart tbody tr:first-child input.price", "23.45")
            page.locator("#cart tbody tr:first-child input.price").dispatch_event("change")
            page.click("#presettle")
            page.wait_for_selector("#split:not(.hidden)")
            mode = page.get_attribute("#modebox", "data-mode")
            _shot(page, "3-offline-banner")
            page.click("#confirm")
            page.wait_for_url("**/receipt/*")
            _shot(page, "4-offline-receipt")
            receipt = page.inner_text("#mode")
            page.on("dialog", lambda d: d.accept())
            page.click("#cancel")                      # 撤销: a new entry, its own receipt
            page.wait_for_function("document.querySelector('#mode').innerText.includes('撤销')")
            return {"before": before, "banner": banner, "mode": mode, "receipt": receipt,
                    "cancel": page.inner_text("#mode"), "cancel_seq": page.inner_text("#seq")}
        finally:
            browser.close()


async def test_offline_banner_when_the_centre_is_stopped(simulated_stack):
    s = simulated_stack
    await s.api.post("/api/card/simulate", json=ZHANGSAN)
    got = await trio.to_thread.run_sync(_offline_flow, s.daemon.url, lambda: stop_centre(s))
    assert got["before"] is False
    assert "脱机模式" in got["banner"]
    assert got["mode"] == "offline" and "脱机结算" in got["receipt"]
    cancel = s.daemon.counter.journal.get(int(got["cancel_seq"]))
    assert "撤销" in got["cancel"] and cancel.kind == "cancel"


def _claim_flow(url: str) -> dict:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = _browser(p)
        try:
            page = browser.new_page(viewport=SMALL_SCREEN, locale="zh-CN")
            login(page, url)
            page.wait_for_selector("#card[data-present='1']")
            card = page.inner_text("#card")
            _add_item(page, "blg")            # 板蓝根颗粒 by pinyin initials
            page.fill("#cart tbody tr:first-child input.price", "15.00")
            page.locator("#cart tbody tr:first-child input.price").dispatch_event("change")
            page.click("#presettle")
            page.wait_for_selector("#split:not(.hidden)")
            page.click("#confirm")           # the centre answers: suspended -> full payment required
            page.wait_for_selector("#modebox[data-mode='full_payment']")
            page.wait_for_selector("#error.show")
            error = page.inner_text("#error")
            button = page.inner_text("#confirm")
            _shot(page, "5-full-payment-required")
            page.click("#confirm")
            page.wait_for_url("**/receipt/*")
            _shot(page, "6-claim-receipt")
            return {"card": card, "error": error, "button": button, "receipt": page.inner_text("#mode")}
        finally:
            browser.close()


async def test_full_payment_claim_flow(simulated_stack):
    s = simulated_stack
    await s.api.post("/api/card/simulate", json=WANGFANG)
    got = await trio.to_thread.run_sync(_claim_flow, s.daemon.url)
    assert "参保暂停" in got["card"]
    assert "全额垫付" in got["error"] and "欠费" in got["error"]
    assert got["button"] == "确认全额垫付"
    assert "理赔号" in got["receipt"] and "参保状态暂停" in got["receipt"]
    head, _ = s.daemon.counter.journal.head()
    claim = s.daemon.counter.journal.get(head)
    assert claim.kind == "claim" and claim.body["cause"] == "arrears"


def _login_flow(url: str) -> dict:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = _browser(p)
        try:
            page = browser.new_page(viewport=SMALL_SCREEN, locale="zh-CN")
            page.goto(url + "/")
            page.wait_for_selector("#login", state="visible")
            got = {"card_visible": page.is_visible("#card"), "before": page.inner_text("body")}
            # The page's own script asking for the card before the login gets the API's 401.
            got["fetch_before"] = page.evaluate("fetch('/api/card').then(r => r.status)")
            page.fill("#loginid", CLERK["operator"])
            page.fill("#loginpw", "wrong-password")
            page.click("#loginbtn")
            page.wait_for_function("document.querySelector('#loginerr').innerText.length > 0")
            got["wrong"] = page.inner_text("#loginerr")
            _shot(page, "0-login")
            page.fill("#loginpw", CLERK["password"])
            page.click("#loginbtn")
            page.wait_for_selector("#login", state="hidden")
            page.wait_for_selector("#card[data-present='1']")
            got["who"], got["card"] = page.inner_text("#who"), page.inner_text("#card")
            got["cookie"] = [c for c in page.context.cookies() if c["name"] == "counter_session"]
            got["script_sees_cookie"] = page.evaluate("document.cookie")
            page.click("#logout")
            page.wait_for_selector("#login", state="visible")
            got["fetch_after"] = page.evaluate("fetch('/api/card').then(r => r.status)")
            return got
        finally:
            browser.close()


async def test_the_page_shows_the_login_first_then_works(simulated_stack):
    s = simulated_stack
    await s.api.post("/api/card/simulate", json=ZHANGSAN)
    got = await trio.to_thread.run_sync(_login_flow, s.daemon.url)
    assert got["card_visible"] is False and "操作员登录" in got["before"] and "张三" not in got["before"]
    assert got["fetch_before"] == 401
    assert "工号或密码" in got["wrong"]
    assert CLERK["name"] in got["who"] and CLERK["operator"] in got["who"] and "张三" in got["card"]
    [cookie] = got["cookie"]
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict" and cookie["path"] == "/"
    assert cookie["expires"] > 0 and got["script_sees_cookie"] == ""
    assert got["fetch_after"] == 401
