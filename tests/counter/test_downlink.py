"""Downlink messages: bundles into the cache (verified), outcomes and reimbursements shown the next time
the person's card is read, and journaled as `outcome` entries (once)."""

from __future__ import annotations

import pytest

from counter.conftest import insert_card
from counter.helpers import ATORVASTATIN
from edge.counter.downlink import handle
from sync.bundles import BundleBadSignature

VISIT = {"med_type": "11", "items": [{"med_list_codg": ATORVASTATIN, "cnt": "3", "pric": 2345}]}


async def test_bundle_message_updates_the_cache(counter, centre):
    raw = centre.bundle("catalogue", {"upsert": [{"code": "NEW-1", "name": "板蓝根颗粒", "class": "A"}]}, base=1)
    await handle(counter, centre.verify_key, {"kind": "bundle", "id": 7, "payload": raw})
    assert counter.search("blg")[0]["med_list_codg"] == "NEW-1"
    assert counter.cache.versions()["catalogue"]["version"] == 2


async def test_bundle_signed_by_another_key_is_refused(counter, centre):
    from counter.helpers import Centre
    raw = Centre().bundle("hotlist", {"cards": []}, version=5)
    with pytest.raises(BundleBadSignature):
        await handle(counter, centre.verify_key, {"kind": "bundle", "id": 8, "payload": raw})
    assert counter.cache.versions()["hotlist"]["version"] == 1


async def test_outcome_and_reimbursement_are_shown_when_the_card_is_read(counter, cards, journal):
    insert_card(cards)
    rec = await counter.settle({**VISIT, "req": "N-1"})
    await handle(counter, None, {"kind": "outcome", "id": 11,
                                 "payload": {"ref_seq": rec["seq"], "outcome": "adjusted", "credit": 120, "reason": "x"}})
    await handle(counter, None, {"kind": "reimbursement", "id": 12,
                                 "payload": {"claim_no": "D-1-9", "psn_no": "P0001", "amount": 3560, "reason": "ok"}})
    await handle(counter, None, {"kind": "reimbursement", "id": 12,
                                 "payload": {"claim_no": "D-1-9", "psn_no": "P0001", "amount": 3560, "reason": "ok"}})
    notices = counter.card_status()["notices"]
    assert [n["payload"]["zh"] for n in notices] == [
        "结算已由医保中心调整，多付 ¥1.20，应退还患者，尚未支付", "全额垫付（理赔号 D-1-9）审核通过，报销 ¥35.60"]
    kinds = [journal.get(s).kind for s in range(1, journal.head()[0] + 1)]
    assert kinds == ["settlement", "outcome", "outcome"]


def test_a_zero_approval_is_not_shown_as_a_denial():
    from edge.counter.downlink import notice_text

    approved = notice_text("reimbursement", {"claim_no": "D-1-7", "amount": 0, "status": "approved"})
    denied = notice_text("reimbursement", {"claim_no": "D-1-8", "amount": 0, "status": "denied", "reason": "不符合"})
    legacy = notice_text("reimbursement", {"claim_no": "D-1-9", "amount": 1200})
    assert "审核通过" in approved and "¥0.00" in approved
    assert "审核未通过" in denied and "不符合" in denied
    assert "审核通过" in legacy and "¥12.00" in legacy
