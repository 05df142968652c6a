"""Attacks from outside on what the HIS drop-in promises a patient paid by e-voucher, through the real
daemons (centre + counter on loopback), the HIS speaking plain HTTP with the installation token.

Written first against the counter as it was: an e-voucher claim journaled offline names nobody
(``psn_no`` null, the token instead); the centre identified the person, approved the claim and queued
its reimbursement ``C-<claim no>`` for the counter, and told the counter; but the counter looked for
the payout's person on the claim entry, found none, and answered 404 ``unknown_payout`` with the
patient's card in the reader: the reimbursement the centre owed could never be paid.
"""

from __future__ import annotations

import pytest
import trio

from his.hisclient import msgid
from his.test_his_ecvoucher import (  # noqa: F401  (fixtures)
    _decided, _login, _offline_claim, _offline_voucher_visit, _uploaded, desk, his,
)

pytestmark = pytest.mark.slow

OUYANG_PSN = "3303000000000003"
OUYANG = {"card_id": "330300D1560000050011223344556677", "certno": "330324196212010042", "psn_name": "欧阳建国"}
ZHANGSAN = {"card_id": "330300D15600000500A1B2C3D4E5F607", "certno": "330302199001011235", "psn_name": "张三"}


async def _insert(client, who: dict) -> list[dict]:
    await client.delete("/api/card/simulate")
    r = await client.post("/api/card/simulate", json=who)
    assert r.status_code == 200, r.text
    return r.json().get("notices", [])


async def _notice(client, who: dict, payout_no: str) -> dict:
    with trio.fail_after(60):
        while True:
            await _insert(client, who)
            for n in (await client.get("/api/card")).json().get("notices", []):
                if n["payload"].get("payout_no") == payout_no:
                    return n
            await trio.sleep(0.3)


async def test_an_offline_voucher_claims_reimbursement_is_paid_to_its_person_at_the_counter(his, site, desk):  # noqa: F811
    token = site.ec_token(OUYANG_PSN)
    await site.stop_centre()
    claim_no = await _offline_claim(his, site, token)
    await site.start_centre()
    await _uploaded(his)
    reviewer = await _login(desk)
    c = await _decided(reviewer, claim_no, lambda c: c["status"] != "pending")
    assert c["status"] == "approved" and c["psn_no"] == OUYANG_PSN and c["amount"] > 0, c
    payout_no = f"C-{claim_no}"
    shown = await _notice(his.client, OUYANG, payout_no)
    assert shown["payload"].get("amount") == c["amount"], shown
    # Another patient's card in the reader: the money is not theirs.
    await _insert(his.client, ZHANGSAN)
    other = await his.client.post(f"/api/payouts/{payout_no}/pay", json={"reason": "电子凭证垫付报销"})
    assert other.status_code == 409 and other.json()["error"]["code"] == "payout_other_person", other.text
    # The patient's own card: paid once, to them, for the amount the centre owes.
    await _insert(his.client, OUYANG)
    paid = await his.client.post(f"/api/payouts/{payout_no}/pay", json={"reason": "电子凭证垫付报销"})
    assert paid.status_code == 200, paid.text
    assert paid.json()["amount"] == c["amount"] and paid.json()["psn_no"] == OUYANG_PSN, paid.json()
    again = await his.client.post(f"/api/payouts/{payout_no}/pay", json={})
    assert again.status_code == 409 and again.json()["error"]["code"] == "payout_already_paid", again.text
    # The centre closes what it owed when the payout entry arrives (the cash left once, to that person).
    await _uploaded(his)
    store = site._stack.store       # test setup's view of the centre's payout queue
    with trio.fail_after(60):
        while (await trio.to_thread.run_sync(store.payouts.payout, payout_no))["status"] != "paid":
            await trio.sleep(0.3)


async def test_a_msgid_reused_for_another_voucher_or_a_token_replayed_moves_nothing(his, site):  # noqa: F811
    """Held: the same msgid for another voucher's visit is refused (his.db keeps a digest of the input),
    and the second visit's claim under a new msgid is its own, carrying its own token."""
    first, second = site.ec_token(OUYANG_PSN), site.ec_token("3303000000000001")
    await site.stop_centre()
    psn_a, visit_a, _ = await _offline_voucher_visit(his, first)
    mid = msgid()
    out = await his.refused("2207", his.setl_data(visit_a, psn_a, "35.60", acct="0", pin=None, cert=("01", first)),
                            mid=mid)
    assert "垫付单号" in out["err_msg"]
    head = await his.head()
    psn_b, visit_b, _ = await _offline_voucher_visit(his, second)
    reused = await his.refused("2207", his.setl_data(visit_b, psn_b, "35.60", acct="0", pin=None, cert=("01", second)),
                               mid=mid)
    assert "报文ID" in reused["err_msg"] and "垫付单号" not in reused["err_msg"], reused
    assert await his.head() == head
    # The first visit's lines, under a new msgid and the other voucher's person: not that visit's person.
    other = await his.refused("2207", his.setl_data(visit_a, psn_b, "35.60", acct="0", pin=None, cert=("01", second)))
    assert "垫付单号" not in other["err_msg"], other
    assert await his.head() == head
