"""Money owed moves (issue 13, findings 5 and 6): the counter pays out what the centre owes, in cash,
with a signed ``payout`` entry and a receipt the patient signs for; the centre marks the payout paid
when that entry is reconciled, and the daily report's "paid" row moves. Through the real daemons."""

from __future__ import annotations

import trio

from oncecharge.conftest import ITEMS, LISI, LISI_PSN, insert, sent_and_reconciled, until
from sync.centre import cancel, report

VISIT = {"med_type": "11", "acct_used_flag": False, "items": ITEMS}


async def _payout_noticed(stack, payout_no: str) -> None:
    async def noticed():
        await insert(stack.api, LISI)
        card = (await stack.api.get("/api/card")).json()
        return any(n["payload"].get("payout_no") == payout_no for n in card.get("notices", []))
    await until(noticed, "the payout notice on the counter")


async def test_cash_owed_after_a_centre_cancel_is_paid_once_and_reconciled_paid(stack):
    await insert(stack.api, LISI)
    s = (await stack.api.post("/api/settle", json={"req": "PO-1", **VISIT})).json()
    await sent_and_reconciled(stack)
    device = stack.daemon.counter.journal.device
    out = await trio.to_thread.run_sync(lambda: cancel.cancel_settlement(
        stack.store, device, s["seq"], reason="重复收费", who="王审核"))
    payout_no = f"X-{device}-{s['seq']}"
    owed = stack.store.payouts.payout(payout_no)
    assert owed["status"] == "owed" and owed["amount"] == out["reversed"]["cash"] > 0
    unknown = await stack.api.post(f"/api/payouts/X-{device}-999/pay", json={"reason": "退现金"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_payout", unknown.text
    await _payout_noticed(stack, payout_no)

    paid = await stack.api.post(f"/api/payouts/{payout_no}/pay", json={"reason": "撤销退现金"})
    assert paid.status_code == 200, paid.text
    r = paid.json()
    assert r["kind"] == "payout" and r["payout_no"] == payout_no and r["amount"] == owed["amount"]
    assert r["method"] == "cash" and r["psn_no"] == LISI_PSN
    again = await stack.api.post(f"/api/payouts/{payout_no}/pay", json={"reason": "撤销退现金"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "payout_already_paid", again.text
    assert "已" in again.json()["error"]["zh"]
    page = await stack.api.get(f"/receipt/{r['seq']}")
    assert page.status_code == 200 and "领款人签字" in page.text and payout_no in page.text

    await sent_and_reconciled(stack)
    assert stack.store.payouts.payout(payout_no)["status"] == "paid"
    site, date = owed["site"], owed["date"]
    rows = report.daily(stack.store, site, date)["payouts"]
    assert rows["site"] == {"owed": owed["amount"], "paid": owed["amount"], "outstanding": 0}


async def test_paying_out_needs_the_payout_role(stack):
    """An operator without the ``payout`` role is refused (coded, in Chinese) before anything is journaled."""
    from dataclasses import dataclass

    from edge.counter.errors import CounterError

    @dataclass(frozen=True)
    class Clerk:                     # the shape of edge.counter.operators.Operator (not landed yet)
        id: str
        name: str
        roles: frozenset

    import pytest
    before = stack.counter.journal.backlog()
    with pytest.raises(CounterError) as info:
        await stack.counter.pay_out("X-D-1-1", {}, operator=Clerk("op2", "李收费", frozenset({"settle"})))
    assert info.value.code == "not_allowed" and info.value.status == 403 and "权限" in info.value.zh
    assert stack.counter.journal.backlog() == before
