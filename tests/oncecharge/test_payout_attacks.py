"""The payout path attacked from outside, through the real daemons (ADVERSARY.md 3 and 5): the same
payout paid twice at once, a payout at the counter for another site's or another person's patient, a
payout after the counter cancelled the settlement it credits. Each: how many times does cash leave?"""

from __future__ import annotations

import pytest
import trio

from oncecharge.conftest import LISI, ZHANGSAN, ZHANGSAN_PSN, insert, sent_and_reconciled
from oncecharge.test_payout_daemons import CASH_VISIT, _deductible_met_at_centre, _notice_of, _offline_settle

pytestmark = pytest.mark.slow


async def _cash_credit(stack, req: str) -> tuple[dict, str]:
    """An offline settlement of 张三's whose credit is owed in cash; the counter has the notice."""
    _deductible_met_at_centre(stack, ZHANGSAN_PSN)
    s = await _offline_settle(stack, ZHANGSAN, req, CASH_VISIT)
    await sent_and_reconciled(stack)
    payout_no = f"P-{stack.counter.journal.device}-{s['seq']}"
    assert stack.store.payouts.payout(payout_no)["status"] == "owed"
    await _notice_of(stack, ZHANGSAN, lambda n: n["payload"].get("payout_no") == payout_no)
    return s, payout_no


def _payouts_journaled(stack, payout_no: str) -> int:
    j = stack.counter.journal
    return sum(1 for seq in range(1, j.head()[0] + 1)
               if (e := j.get(seq)) is not None and e.kind == "payout" and e.body.get("payout_no") == payout_no)


async def test_two_pays_of_one_payout_at_once_pay_once(stack):
    _, payout_no = await _cash_credit(stack, "AT-TWICE")
    answers: list = []

    async def pay():
        answers.append(await stack.api.post(f"/api/payouts/{payout_no}/pay", json={"reason": "退现金"}))
    async with trio.open_nursery() as n:
        n.start_soon(pay)
        n.start_soon(pay)
    codes = sorted(r.status_code for r in answers)
    assert codes == [200, 409], [r.text for r in answers]
    assert [r.json()["error"]["code"] for r in answers if r.status_code == 409] == ["payout_already_paid"]
    assert _payouts_journaled(stack, payout_no) == 1


async def test_a_payout_of_another_site_is_unknown_here(stack):
    """A payout number names the device whose entry it pays: another site's number is refused (404),
    whatever card is in the reader, and nothing is journaled."""
    await insert(stack.api, ZHANGSAN)
    head = stack.counter.journal.head()[0]
    for no in ("P-D-S330300999-1-1", "C-D-S330300999-1-2", "X-D-S330300999-1-3"):
        r = await stack.api.post(f"/api/payouts/{no}/pay", json={})
        assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_payout", r.text
        assert "退款号" in r.json()["error"]["zh"]
    assert stack.counter.journal.head()[0] == head


async def test_a_payout_needs_its_patient_at_the_counter(stack):
    """张三's refund is not handed to whoever stands at the counter: with 李四's card in the reader it is
    refused (coded, in Chinese) and nothing is journaled; with 张三's it is paid."""
    _, payout_no = await _cash_credit(stack, "AT-OTHER")
    await insert(stack.api, LISI)
    r = await stack.api.post(f"/api/payouts/{payout_no}/pay", json={})
    assert r.status_code == 409 and r.json()["error"]["code"] == "payout_other_person", r.text
    assert "参保人" in r.json()["error"]["zh"]
    assert _payouts_journaled(stack, payout_no) == 0
    await insert(stack.api, ZHANGSAN)
    r = await stack.api.post(f"/api/payouts/{payout_no}/pay", json={})
    assert r.status_code == 200, r.text


async def test_no_payout_after_the_counter_cancelled_the_settlement(stack):
    """The cancel handed back all the cash the patient paid; the credit of that visit is not paid again."""
    s, payout_no = await _cash_credit(stack, "AT-CANCEL")
    await insert(stack.api, ZHANGSAN)
    c = await stack.api.post(f"/api/settlements/{s['seq']}/cancel", json={"reason": "开错药"})
    assert c.status_code == 200, c.text
    r = await stack.api.post(f"/api/payouts/{payout_no}/pay", json={})
    assert r.status_code == 409 and r.json()["error"]["code"] == "payout_cancelled", r.text
    assert "撤销" in r.json()["error"]["zh"]
    assert _payouts_journaled(stack, payout_no) == 0
    await sent_and_reconciled(stack)
    assert stack.store.payouts.payout(payout_no)["status"] == "void"


async def test_a_credit_is_not_paid_beside_the_centre_cancel_that_owes_it_back(stack):
    """The centre cancelled the visit: its X- payout owes all the cash paid (the credit included), and the
    credit's own P- number, whose notice the counter still holds, is refused."""
    from sync.centre import cancel

    s, payout_no = await _cash_credit(stack, "AT-CENTRE")
    device = stack.counter.journal.device
    await trio.to_thread.run_sync(lambda: cancel.cancel_settlement(stack.store, device, s["seq"], reason="重复收费",
                                                                   who="王审核"))
    back_no = f"X-{device}-{s['seq']}"
    await _notice_of(stack, ZHANGSAN, lambda n: n["payload"].get("payout_no") == back_no)
    r = await stack.api.post(f"/api/payouts/{payout_no}/pay", json={})
    assert r.status_code == 409 and r.json()["error"]["code"] == "payout_cancelled", r.text
    r = await stack.api.post(f"/api/payouts/{back_no}/pay", json={})
    assert r.status_code == 200 and r.json()["amount"] == s["setlinfo"]["psn_cash_pay"], r.text
    assert _payouts_journaled(stack, payout_no) == 0
    await sent_and_reconciled(stack)
    assert stack.store.payouts.payout(payout_no)["status"] == "void"
    assert stack.store.payouts.payout(back_no)["status"] == "paid"


async def test_a_centre_cancels_cash_is_not_paid_after_the_counter_cancelled_too(stack):
    """Both cancelled the visit before either heard of the other: the counter handed the cash back with its
    own cancel, so the centre's X- payout (its notice arriving later) is refused here."""
    from edge.counter import downlink

    await insert(stack.api, LISI)
    s = (await stack.api.post("/api/settle", json={"req": "AT-BOTH", **CASH_VISIT})).json()
    c = await stack.api.post(f"/api/settlements/{s['seq']}/cancel", json={"reason": "开错药"})
    assert c.status_code == 200, c.text
    device = stack.counter.journal.device
    back_no = f"X-{device}-{s['seq']}"
    await downlink.handle(stack.counter, None, {"id": 10_000, "kind": "outcome", "payload": {
        "ref_seq": s["seq"], "outcome": "cancelled_at_centre", "psn_no": "3303000000000002", "credit": 0,
        "payout_no": back_no, "payout": s["setlinfo"]["psn_cash_pay"], "reason": "医保中心已撤销此结算"}})
    await insert(stack.api, LISI)
    r = await stack.api.post(f"/api/payouts/{back_no}/pay", json={})
    assert r.status_code == 409 and r.json()["error"]["code"] == "payout_cancelled", r.text
    assert _payouts_journaled(stack, back_no) == 0


async def test_a_cancel_after_the_credit_was_paid_out_is_refused_at_the_counter(stack):
    """Paid out, then cancelled at the counter, which hands back all the cash the receipt shows: the
    patient would have the credit twice. The counter refuses (its journal holds the payout) and sends
    the clerk to the centre, whose cancel owes back only the cash not yet returned."""
    s, payout_no = await _cash_credit(stack, "AT-PAIDREFUSED")
    await insert(stack.api, ZHANGSAN)
    paid = await stack.api.post(f"/api/payouts/{payout_no}/pay", json={})
    assert paid.status_code == 200, paid.text
    head = stack.counter.journal.head()
    c = await stack.api.post(f"/api/settlements/{s['seq']}/cancel", json={"reason": "开错药"})
    err = c.json()["error"]
    assert c.status_code == 409 and err["code"] == "cancel_at_centre", c.text
    assert payout_no in err["zh"] and "医保中心" in err["zh"]
    assert stack.counter.journal.head() == head


async def test_a_cancel_after_the_credit_was_paid_out_opens_a_review_at_the_centre(stack, monkeypatch):
    """Defence in depth for a counter that does not check its payouts (an older release): the centre,
    reconciling such a cancel, opens a review to recover the credit (code cash_refunded_twice)."""
    from edge.counter.service import Counter
    from sync.centre import payouts

    async def unchecked(self, seq):
        return None

    monkeypatch.setattr(Counter, "_credit_paid_out", unchecked)
    s, payout_no = await _cash_credit(stack, "AT-PAIDFIRST")
    await insert(stack.api, ZHANGSAN)
    assert (await stack.api.post(f"/api/payouts/{payout_no}/pay", json={})).status_code == 200
    await sent_and_reconciled(stack)
    assert stack.store.payouts.payout(payout_no)["status"] == "paid"
    c = await stack.api.post(f"/api/settlements/{s['seq']}/cancel", json={"reason": "开错药"})
    assert c.status_code == 200, c.text
    await sent_and_reconciled(stack)
    reviews = stack.store.db.query("SELECT code, reason FROM recon_reviews WHERE device = ? AND seq = ?",
                                   (stack.counter.journal.device, c.json()["seq"]))
    assert [r["code"] for r in reviews] == [payouts.REFUNDED_TWICE] and payout_no in reviews[0]["reason"]
