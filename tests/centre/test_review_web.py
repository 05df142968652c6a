"""Reviewer API and page: authentication, roles, and the page driven in headless Chromium."""

from __future__ import annotations

import os

import pytest
import trio

import support
from sync.centre import reconcile, review
from recon_support import T0, PlayedEdge, claim_body, person, visit

CHROMIUM = "/usr/bin/chromium"


async def queued_claim(centre, http, tmp_path) -> str:
    a = await PlayedEdge.enrol(centre, http, tmp_path, "S-A")
    await a.journal_entry("claim", claim_body(person("P0004"), visit(0), "card_unreadable", keyed_in=True), time=T0)
    await a.sync()
    await trio.to_thread.run_sync(reconcile.run_pending, centre.store)
    [c] = review.claims(centre.store)
    return c["claim_no"]


async def login(http, url, name, password):
    r = await http.post(url + "/v1/review/login", json={"name": name, "password": password})
    return r


@pytest.fixture
async def accounts(centre):
    await trio.to_thread.run_sync(lambda: centre.store.accounts.add("rev", "reviewer-pass", "reviewer", now=T0))
    await trio.to_thread.run_sync(lambda: centre.store.accounts.add("aud", "auditor-pass", "auditor", now=T0))


async def test_unauthenticated_and_wrong_role_requests_are_refused(centre, http, tmp_path, accounts):
    no = await queued_claim(centre, http, tmp_path)
    url = centre.url
    endpoints = [("GET", "/v1/review/claims"), ("GET", f"/v1/review/claims/{no}"),
                 ("POST", f"/v1/review/claims/{no}/approve"), ("POST", f"/v1/review/claims/{no}/deny"),
                 ("POST", f"/v1/review/claims/{no}/admission"), ("GET", "/v1/review/report?site=S-A&date=2026-11-19"),
                 ("GET", "/v1/review/actions")]
    for method, path in endpoints:
        r = await http.request(method, url + path, json={})
        assert r.status_code == 401 and r.json()["error"]["code"] == "not_logged_in", path
        r = await http.request(method, url + path, json={}, headers={"authorization": "Bearer forged"})
        assert r.status_code == 401, path
    bad = await login(http, url, "rev", "wrong-password")
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "bad_login"
    aud = {"authorization": "Bearer " + (await login(http, url, "aud", "auditor-pass")).json()["token"]}
    assert (await http.get(url + "/v1/review/claims", headers=aud)).status_code == 200
    for path in (f"/v1/review/claims/{no}/approve", f"/v1/review/claims/{no}/deny"):
        r = await http.post(url + path, headers=aud, json={"note": "x"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "wrong_role"
    assert review.claim(centre.store, no)["status"] == "pending"       # nothing happened
    # Pages: no session -> the login form (401); an auditor cannot post a decision (403).
    http.cookies.clear()   # the API logins above left a session cookie in this client
    page = await http.get(url + f"/review/claims/{no}")
    assert page.status_code == 401 and "登录" in page.text
    aud_cookie = {"cookie": "review_session=" + aud["authorization"][7:]}
    page = await http.post(url + f"/review/claims/{no}/decide", content="decision=approve&psn_no=P0004",
                           headers={**aud_cookie, "content-type": "application/x-www-form-urlencoded"})
    assert page.status_code == 403
    assert review.claim(centre.store, no)["status"] == "pending"
    # An expired session is refused like none at all.
    rev_token = (await login(http, url, "rev", "reviewer-pass")).json()["token"]
    centre.store.db.execute("UPDATE reviewer_sessions SET expires_ms = 0")
    r = await http.get(url + "/v1/review/claims", headers={"authorization": f"Bearer {rev_token}"})
    assert r.status_code == 401


async def test_deny_needs_a_note_and_a_decided_claim_stays_decided(centre, http, tmp_path, accounts):
    no = await queued_claim(centre, http, tmp_path)
    rev = {"authorization": "Bearer " + (await login(http, centre.url, "rev", "reviewer-pass")).json()["token"]}
    r = await http.post(centre.url + f"/v1/review/claims/{no}/deny", headers=rev, json={})
    assert r.status_code == 400 and r.json()["error"]["code"] == "note_required"
    r = await http.post(centre.url + f"/v1/review/claims/{no}/deny", headers=rev, json={"note": "not our patient"})
    assert r.json()["status"] == "denied"
    r = await http.post(centre.url + f"/v1/review/claims/{no}/approve", headers=rev, json={})
    assert r.status_code == 409 and r.json()["error"]["code"] == "claim_decided"
    r = await http.get(centre.url + "/v1/review/claims/NOPE-1", headers=rev)
    assert r.status_code == 404 and r.json()["error"]["code"] == "claim_not_found"
    assert [a["action"] for a in centre.store.ledger.actions(no)] == ["deny_claim"]
    assert [a["action"] for a in centre.store.ledger.actions("reviewer:rev")] == ["add_reviewer", "login"]
    journal = (await http.get(centre.url + f"/v1/review/actions?target={no}", headers=rev)).json()["actions"]
    assert [(a["who"], a["action"], a["detail"]["note"]) for a in journal] == [("rev", "deny_claim", "not our patient")]
    http.cookies.clear()
    assert (await http.get(centre.url + "/v1/review/actions")).status_code == 401


def _browser_flow(url: str, no: str) -> dict:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page()
            page.goto(url + "/review")
            page.fill("input[name=name]", "rev")
            page.fill("input[name=password]", "wrong")
            page.click("button[type=submit]")
            refused = page.locator("[role=alert]").inner_text()
            page.fill("input[name=name]", "rev")
            page.fill("input[name=password]", "reviewer-pass")
            page.click("button[type=submit]")
            queue = page.locator("#queue").inner_text()
            page.click(f"text={no}")
            fund = page.locator("#fund").inner_text()
            items = page.locator("#items").inner_text()
            page.fill("textarea[name=note]", "identity checked at the counter")
            page.click("button[value=approve]")
            status = page.locator("#status").inner_text()
            return {"refused": refused, "queue": queue, "fund": fund, "items": items, "status": status}
        finally:
            browser.close()


@pytest.mark.browser
async def test_reviewer_page_in_chromium_logs_in_and_approves(centre, http, tmp_path, accounts):
    support.require("Debian's chromium at /usr/bin/chromium", os.path.exists(CHROMIUM))
    no = await queued_claim(centre, http, tmp_path)
    got = await trio.to_thread.run_sync(_browser_flow, centre.url, no)
    assert "用户名或密码错误" in got["refused"]
    assert no in got["queue"] and "卡片无法读取" in got["queue"]
    assert got["fund"].startswith("¥") and "XJ01CAA040E001010101445" in got["items"]
    c = review.claim(centre.store, no)
    assert c["status"] == "approved" and c["decided_by"] == "rev"
    assert "已批准" in got["status"] and f"¥{c['amount'] // 100}.{c['amount'] % 100:02d}" in got["status"]
    assert got["fund"] == f"¥{c['amount'] // 100}.{c['amount'] % 100:02d}"


async def test_disputed_settlement_decisions_need_the_reviewer_role(centre, http, tmp_path, accounts):
    from recon_support import built, settlement_body
    a = await PlayedEdge.enrol(centre, http, tmp_path, "S-A")
    snap = person("P0004")
    await trio.to_thread.run_sync(lambda: centre.store.put_bundle(
        built("hotlist", 10, {"cards": [{"card_id": snap["card_ids"][0], "reason": "lost"}]}, created=T0 - 1),
        now=T0 - 1))
    await a.journal_entry("settlement", settlement_body(snap, visit(0)), time=T0)
    await a.sync()
    await trio.to_thread.run_sync(reconcile.run_pending, centre.store)
    url = centre.url + f"/v1/review/settlements/{a.device}/1/decide"
    assert (await http.post(url, json={"accept": True, "note": "x"})).status_code == 401
    aud = {"authorization": "Bearer " + (await login(http, centre.url, "aud", "auditor-pass")).json()["token"]}
    listed = (await http.get(centre.url + "/v1/review/settlements", headers=aud)).json()["settlements"]
    assert [(d["device"], d["seq"], d["code"]) for d in listed] == [(a.device, 1, "card_hotlisted")]
    r = await http.post(url, headers=aud, json={"accept": True, "note": "x"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "wrong_role"
    rev = {"authorization": "Bearer " + (await login(http, centre.url, "rev", "reviewer-pass")).json()["token"]}
    r = await http.post(url, headers=rev, json={"accept": False, "note": "card was stolen"})
    assert r.status_code == 200 and r.json()["decision"] == "rejected"
    await a.sync()
    assert a.messages("outcome")[-1]["outcome"] == "rejected"
