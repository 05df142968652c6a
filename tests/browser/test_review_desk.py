"""The centre's review desk in Chinese, in Debian's Chromium at both screen sizes: an emergency-observation
claim cannot be approved before the admission decision is chosen and confirmed, a denial needs a note
(refused on the same page, in Chinese), and decided claims show their amount and note."""

from __future__ import annotations

import pytest
import trio

from harness.demo import ITEMS, ITEMS_FUND, WANGFANG, ZHANGSAN, wait_for

from .test_counter_keyboard import VIEWPORTS, _shot

pytestmark = pytest.mark.browser
ENGLISH = ("emergency_observation", "arrears", "pending", "approved", "denied", "Approve", "Deny", "queue")


async def _claims(s) -> dict:
    from sync.centre import reconcile, review

    api = s.api
    eo = {"req": "EO-1", "med_type": "13", "acct_used_flag": False, "observation": True,
          "card_id": ZHANGSAN["card_id"], "items": ITEMS_FUND}
    for req in ("EO-1", "EO-2"):             # the same visit twice: a duplicate the desk must flag
        r = await api.post("/api/claim", json={**eo, "req": req})
        assert r.status_code == 200, r.text
    await api.post("/api/card/simulate", json=WANGFANG)
    ar = {"req": "AR-1", "med_type": "11", "acct_used_flag": False, "card_id": WANGFANG["card_id"], "items": ITEMS}
    r = await api.post("/api/settle", json=ar)               # arrears is known at the centre only
    assert r.status_code == 409 and r.json()["error"]["code"] == "full_payment_required", r.text
    r = await api.post("/api/claim", json=ar)
    assert r.status_code == 200, r.text

    async def sent():
        return (await api.get("/api/status")).json()["backlog"]["count"] == 0
    with trio.fail_after(30):  # the uplink to send both claims
        await wait_for(sent)
    await trio.to_thread.run_sync(reconcile.run_pending, s.store)
    await trio.to_thread.run_sync(lambda: s.store.accounts.add("rev", "reviewer-pass", "reviewer", now=0))
    causes = {c["cause"]: c["claim_no"] for c in reversed(await trio.to_thread.run_sync(review.claims, s.store))}
    return causes


def _desk(url: str, size: str, eo: str, ar: str) -> dict:
    from playwright.sync_api import sync_playwright

    from .test_counter_page import _browser

    got: dict = {}
    with sync_playwright() as p:
        browser = _browser(p)
        try:
            page = browser.new_page(viewport=VIEWPORTS[size], locale="zh-CN")
            page.goto(url + "/review")
            got["login"] = page.inner_text("body")
            page.fill("input[name=name]", "rev")
            page.fill("input[name=password]", "reviewer-pass")
            page.click("button[type=submit]")
            page.wait_for_selector("#queue")
            got["queue"] = page.inner_text("body")
            got["dups"] = page.locator("#queue .dup").count()
            got["csv"] = page.request.get(url + "/review/claims.csv?cause=arrears").text()
            _shot(page, f"review-{size}-queue")
            page.click(f"a[href='/review/claims/{eo}']")
            page.wait_for_selector("#status")
            got["claim"] = page.inner_text("body")
            page.click("button[value=approve]")                  # no admission decision chosen
            page.wait_for_selector("[role=alert]")
            got["no_admission"] = page.inner_text("[role=alert]")
            got["no_admission_url"] = page.url
            _shot(page, f"review-{size}-admission-required")
            page.select_option("select[name=admitted]", "no")
            page.click("button[value=approve]")                  # chosen, not confirmed
            page.wait_for_selector("[role=alert]")
            got["no_confirm"] = page.inner_text("[role=alert]")
            page.select_option("select[name=admitted]", "no")
            page.check("input[name=confirm]")
            page.fill("textarea[name=note]", "未入院，按急诊报销")
            page.click("button[value=approve]")
            page.wait_for_selector("#status")
            got["approved"] = page.inner_text("#status")
            _shot(page, f"review-{size}-approved")
            page.goto(f"{url}/review/claims/{ar}")
            page.click("button[value=deny]")                     # deny without a note
            page.wait_for_selector("[role=alert]")
            got["deny_no_note"] = page.inner_text("[role=alert]")
            got["deny_page_has_form"] = page.locator("button[value=deny]").count()
            _shot(page, f"review-{size}-deny-needs-note")
            page.fill("textarea[name=note]", "单位欠费未补缴")
            page.click("button[value=deny]")
            page.wait_for_selector("#status")
            got["denied"] = page.inner_text("#status")
            page.goto(url + "/review")
            got["decided"] = page.inner_text("#decided")
        finally:
            browser.close()
    return got


@pytest.mark.parametrize("size", list(VIEWPORTS))
async def test_review_desk_approves_and_denies_in_chinese(stack, size):
    from sync.centre import review

    causes = await _claims(stack)
    eo, ar = causes["emergency_observation"], causes["arrears"]
    got = await trio.to_thread.run_sync(_desk, stack.centre.url, size, eo, ar)
    assert "登录" in got["login"]
    assert got["dups"] == 2                                         # each of the two identical claims is flagged
    assert got["csv"].splitlines()[0].lstrip("\ufeff").startswith("理赔号,原因")
    assert ar in got["csv"] and "参保暂停" in got["csv"] and eo not in got["csv"]
    assert "急诊留观" in got["queue"] and "参保暂停" in got["queue"]
    for word in ENGLISH:
        assert word not in got["queue"] and word not in got["claim"], word
    assert "是否入院" in got["no_admission"] and got["no_admission_url"].endswith(f"/review/claims/{eo}/decide")
    assert "确认" in got["no_confirm"]
    c = review.claim(stack.store, eo)
    assert c["status"] == "approved" and c["amount"] is not None
    shown = f"¥{c['amount'] // 100:,}.{c['amount'] % 100:02d}"
    assert "已批准" in got["approved"] and "未入院，按急诊报销" in got["approved"] and shown in got["approved"]
    assert "理由" in got["deny_no_note"] and got["deny_page_has_form"] == 1
    assert "已驳回" in got["denied"] and "单位欠费未补缴" in got["denied"]
    assert "已批准" in got["decided"] and "已驳回" in got["decided"]
    # The counter is told (downlink) and the clerk acknowledges the notice: it does not come back.
    await stack.api.post("/api/card/simulate", json=ZHANGSAN)

    async def told():
        return any(n["kind"] == "reimbursement" for n in (await stack.api.get("/api/card")).json().get("notices", []))
    with trio.fail_after(30):  # the next sync round brings the reimbursement down
        await wait_for(told)
    seen = await trio.to_thread.run_sync(_notice, stack.daemon.url, size)
    assert "审核通过" in seen["text"] and "approved" not in seen["text"] and "denied" not in seen["text"]
    assert seen["after_ack"] == 0 and seen["after_reload"] == 0


def _notice(url: str, size: str) -> dict:
    from playwright.sync_api import sync_playwright

    from .test_counter_page import _browser, login

    with sync_playwright() as p:
        browser = _browser(p)
        try:
            page = browser.new_page(viewport=VIEWPORTS[size], locale="zh-CN")
            login(page, url)
            page.wait_for_selector("#card .notice")
            got = {"text": page.inner_text("#card .notice")}
            _shot(page, f"notice-{size}")
            page.click("#card .notice button.ack")
            got["after_ack"] = page.locator("#card .notice").count()
            page.reload()
            page.wait_for_selector("#card[data-present='1']")
            page.wait_for_timeout(1500)                     # a card refresh or two
            got["after_reload"] = page.locator("#card .notice").count()
            return got
        finally:
            browser.close()


def _cancel_at_desk(url: str, size: str, device: str, seq: int) -> dict:
    from playwright.sync_api import sync_playwright

    from .test_counter_page import _browser

    got: dict = {}
    with sync_playwright() as p:
        browser = _browser(p)
        try:
            page = browser.new_page(viewport=VIEWPORTS[size], locale="zh-CN")
            page.goto(url + "/review")
            page.fill("input[name=name]", "rev")
            page.fill("input[name=password]", "reviewer-pass")
            page.click("button[type=submit]")
            page.wait_for_selector("#queue")
            page.click("#centre-cancel")
            page.fill("#find input[name=device]", device)
            page.fill("#find input[name=seq]", str(seq))
            page.click("#find button")
            page.wait_for_selector("#settlement")
            got["found"] = page.inner_text("body")
            page.fill("#cancel textarea[name=reason]", "参保人重复结算")
            page.click("#cancel button")                             # not confirmed
            page.wait_for_selector("[role=alert]")
            got["no_confirm"] = page.inner_text("[role=alert]")
            got["reason_kept"] = page.input_value("#cancel textarea[name=reason]")
            _shot(page, f"review-{size}-cancel-needs-confirm")
            page.check("#cancel input[name=confirm]")
            page.click("#cancel button")
            page.wait_for_selector("#cancelled")
            got["cancelled"] = page.inner_text("#cancelled")
            got["form_left"] = page.locator("#cancel").count()
            _shot(page, f"review-{size}-cancelled")
        finally:
            browser.close()
    return got


async def test_review_desk_cancels_a_settlement_in_chinese(stack):
    """The centre-side cancel on the desk, by keyboard and mouse as a reviewer uses it: find, reason,
    confirm (refused on the same page until ticked, the reason kept), cancelled once."""
    from sync.centre import reconcile

    api = stack.api
    await api.post("/api/card/simulate", json=ZHANGSAN)
    r = await api.post("/api/settle", json={"req": "DESK-C1", "med_type": "11", "acct_used_flag": True, "pin": "123456",
                                               "items": ITEMS})
    assert r.status_code == 200, r.text
    seq = r.json()["seq"]

    async def sent():
        return (await api.get("/api/status")).json()["backlog"]["count"] == 0
    with trio.fail_after(30):
        await wait_for(sent)
    await trio.to_thread.run_sync(reconcile.run_pending, stack.store)
    await trio.to_thread.run_sync(lambda: stack.store.accounts.add("rev", "reviewer-pass", "reviewer", now=0))
    device = stack.daemon.counter.journal.device
    got = await trio.to_thread.run_sync(_cancel_at_desk, stack.centre.url, "1366x768", device, seq)
    assert "撤销此笔结算" in got["found"] and "3303000000000001" in got["found"] and "已确认" in got["found"]
    assert "请勾选" in got["no_confirm"] and got["reason_kept"] == "参保人重复结算"
    assert "已于医保中心撤销" in got["cancelled"] and "参保人重复结算" in got["cancelled"] and got["form_left"] == 0
    for word in ("cancel", "reason", "owed", "confirmed", "adjusted"):
        assert word not in got["cancelled"], word
    assert stack.store.payouts.cancel_of(device, seq)["who"] == "rev"
