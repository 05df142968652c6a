"""Cancel at the centre through the review desk (issue 13, "a centre-side path: the `centre` CLI and the
review desk"), through the real daemons: a reviewer finds a reconciled settlement, gives a reason and
confirms; the centre reverses it once, owes the cash back, and the counter is told. The desk's guards
(Origin, the session's CSRF token, the reviewer role) hold for this form as for the others."""

from __future__ import annotations

import re
from contextlib import asynccontextmanager

import httpx
import pytest
import trio

from oncecharge.conftest import ITEMS, LISI, LISI_PSN, balance, insert, sent_and_reconciled, until

pytestmark = pytest.mark.slow

VISIT = {"med_type": "11", "acct_used_flag": True, "pin": "123456", "items": ITEMS}


async def _reconciled_settlement(stack) -> dict:
    await insert(stack.api, LISI)
    r = await stack.api.post("/api/settle", json={"req": "DESK-1", **VISIT})
    assert r.status_code == 200, r.text
    await sent_and_reconciled(stack)
    return r.json()


@asynccontextmanager
async def _desk(stack, name: str = "rev", role: str = "reviewer"):
    """A browser-like client logged in to the desk (the session cookie)."""
    await trio.to_thread.run_sync(lambda: stack.store.accounts.add(name, f"{name}-pass", role, now=0))
    async with httpx.AsyncClient(base_url=stack.centre.url, trust_env=False, follow_redirects=False) as web:
        r = await web.post("/review/login", data={"name": name, "password": f"{name}-pass"})
        assert r.status_code == 303, r.text
        yield web


def _csrf(html: str) -> str:
    return re.search(r'name=csrf value="([0-9a-f]+)"', html).group(1)


async def test_a_reviewer_cancels_at_the_desk_once_and_the_counter_is_told(stack):
    s = await _reconciled_settlement(stack)
    device, seq = stack.counter.journal.device, s["seq"]
    assert balance(stack, LISI_PSN) == 52500 - s["setlinfo"]["acct_pay"]
    async with _desk(stack) as web:
        page = await web.get("/review/cancel", params={"device": device, "seq": seq})
        assert page.status_code == 200 and "撤销此笔结算" in page.text and LISI_PSN in page.text
        form = {"csrf": _csrf(page.text), "device": device, "seq": str(seq), "reason": "参保人异地就医退费",
                "confirm": "1"}
        # Refused on the same form, what was typed kept, nothing moved.
        r = await web.post("/review/cancel", data={**form, "reason": " "})
        assert r.status_code == 400 and "撤销必须填写原因" in r.text
        r = await web.post("/review/cancel", data={k: v for k, v in form.items() if k != "confirm"})
        assert r.status_code == 400 and "请勾选" in r.text and "参保人异地就医退费" in r.text
        r = await web.post("/review/cancel", data={**form, "seq": "9x"})
        assert r.status_code == 400 and "流水号" in r.text
        r = await web.post("/review/cancel", data={**form, "seq": "999"})
        assert r.status_code == 404 and "尚无已对账的结算" in r.text
        assert balance(stack, LISI_PSN) == 52500 - s["setlinfo"]["acct_pay"]

        r = await web.post("/review/cancel", data=form)
        assert r.status_code == 303, r.text
        assert balance(stack, LISI_PSN) == 52500
        again = await web.post("/review/cancel", data=form)                  # the button pressed twice
        assert again.status_code == 303 and balance(stack, LISI_PSN) == 52500
        shown = await web.get(r.headers["location"])
        assert "已于医保中心撤销" in shown.text and "rev" in shown.text and "撤销此笔结算" not in shown.text
    # The account paid it all: nothing is owed back in cash (the notice says so).
    assert s["setlinfo"]["psn_cash_pay"] == 0 and stack.store.payouts.payout(f"X-{device}-{seq}") is None
    [action] = [a for a in stack.store.ledger.actions(f"{device}/{seq}") if a["action"] == "cancel_settlement"]
    assert action["who"] == "rev"

    async def told():
        await insert(stack.api, LISI)
        return any(n["payload"].get("outcome") == "cancelled_at_centre" and n["payload"].get("ref_seq") == seq
                   and "无现金需退还" in n["payload"]["zh"]
                   for n in (await stack.api.get("/api/card")).json().get("notices", []))
    await until(told, "the desk's cancel notice on the counter")
    r = await stack.api.post(f"/api/settlements/{seq}/cancel", json={"reason": "退费"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "already_cancelled", r.text


async def test_a_desk_cancel_without_the_token_or_from_another_site_or_by_an_auditor_moves_nothing(stack):
    s = await _reconciled_settlement(stack)
    device, seq = stack.counter.journal.device, s["seq"]
    before = balance(stack, LISI_PSN)
    form = {"device": device, "seq": str(seq), "reason": "x", "confirm": "1"}
    async with _desk(stack) as web:
        r = await web.post("/review/cancel", data=form)                      # no CSRF token
        assert r.status_code == 403 and "请刷新页面" in r.text, r.text
        page = await web.get("/review/cancel", params={"device": device, "seq": seq})
        r = await web.post("/review/cancel", data={**form, "csrf": "0" * 64})  # a wrong one
        assert r.status_code == 403, r.text
        r = await web.post("/review/cancel", data={**form, "csrf": _csrf(page.text)},
                           headers={"origin": "https://evil.example"})
        assert r.status_code == 403, r.text
        r = await web.post(f"/v1/review/settlements/{device}/{seq}/cancel", content='{"reason": "x"}',
                           headers={"content-type": "text/plain"})            # cookie-borne JSON, no token
        assert r.status_code == 403 and r.json()["error"]["code"] == "csrf_missing", r.text
    async with _desk(stack, "aud", "auditor") as web:
        page = await web.get("/review/cancel", params={"device": device, "seq": seq})
        assert page.status_code == 200 and "撤销此笔结算" not in page.text      # an auditor sees, never cancels
        r = await web.post("/review/cancel", data={**form, "csrf": _csrf(page.text)})
        assert r.status_code == 403, r.text
    assert balance(stack, LISI_PSN) == before
    assert stack.store.payouts.cancel_of(device, seq) is None


async def test_the_desk_api_cancels_with_a_bearer_token_and_codes_its_refusals(stack):
    s = await _reconciled_settlement(stack)
    device, seq = stack.counter.journal.device, s["seq"]
    await trio.to_thread.run_sync(lambda: stack.store.accounts.add("rev", "rev-pass", "reviewer", now=0))
    async with httpx.AsyncClient(base_url=stack.centre.url, trust_env=False) as api:
        token = (await api.post("/v1/review/login", json={"name": "rev", "password": "rev-pass"})).json()["token"]
        auth = {"authorization": f"Bearer {token}"}
        r = await api.post(f"/v1/review/settlements/{device}/{seq}/cancel", json={}, headers=auth)
        assert r.status_code == 400 and r.json()["error"]["code"] == "reason_required", r.text
        r = await api.post(f"/v1/review/settlements/{device}/999/cancel", json={"reason": "x"}, headers=auth)
        assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_settlement", r.text
        r = await api.post(f"/v1/review/settlements/{device}/{seq}/cancel", json={"reason": "重复收费"}, headers=auth)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "cancelled_at_centre" and r.json()["who"] == "rev"
    assert balance(stack, LISI_PSN) == 52500
