"""Money owed to patients moves (issue 13, findings 5 and 6), on the real store and reconciler (SQLite):
a credit's account share is back in the account (the notice gives the balance), its cash share is
queued as a payout (the notice gives the payout number, never "已退还"); an approved claim is queued
the same way; a cancel voids what is still owed; the daily report shows owed / paid / outstanding per
patient and per site."""

from __future__ import annotations

import pytest

from centre.recon_support import (
    CAT_RAW, DAY, HOT_RAW, ITEMS, PERSONS, POL_RAW, T0, Device, claim_body, person, settlement_body, visit,
)
from edge.counter.downlink import notice_text
from sync.centre import cancel, reconcile, report, review
from sync.centre.store import Store

DATE = "2026-11-19"


@pytest.fixture
def day(tmp_path):
    store = Store.open(str(tmp_path / "centre.db"))
    for raw in (CAT_RAW, POL_RAW, HOT_RAW):
        store.put_bundle(raw, now=T0 - DAY)
    store.ledger.seed_from_persons(PERSONS)
    store.db.execute("UPDATE recon_persons SET deductible_used = 20000 WHERE psn_no = 'P0002'")
    d = Device("D-S1-1")
    store.register_device(d.device, "S1", bytes(d.key.verify_key), now=T0 - DAY)
    # The counters' snapshots did not know the deductible was met: the patient paid it, the fund should have.
    d.append("settlement", settlement_body(person("P0002", deductible_used=0), visit(0, acct=True), req="A-1"),
             time=T0)                                                                       # credit: the account
    d.append("settlement", settlement_body(person("P0001", deductible_used=0), visit(0, acct=False), req="C-1"),
             time=T0 + 1)                                                                   # credit: cash
    d.append("claim", claim_body(person("P0003"), visit(0), "offline_limit", req="F-1"), time=T0 + 2)
    store.put_entries(d.device, d.items(), now=T0)
    reconcile.run_pending(store, now=T0 + DAY)
    yield store, d
    store.close()


def _outcome_notices(store, device):
    return {m["payload"]["ref_seq"]: m["payload"] for m in store.downlink_since(device, 0)
            if m["kind"] == "outcome"}


def test_a_credit_goes_back_the_way_it_came_and_the_notice_says_what_moved(day):
    store, d = day
    notes = _outcome_notices(store, d.device)
    acct = notes[1]
    assert acct["credit"] > 0 and acct["credited_to"] == "account" and acct["to_account"] == acct["credit"]
    assert acct["balc"] == store.ledger.load("P0002").balc
    assert "payout_no" not in acct
    cash = notes[2]
    assert cash["credit"] > 0 and cash["credited_to"] == "payout" and cash["payout"] == cash["credit"]
    owed = store.payouts.payout(cash["payout_no"])
    assert owed["status"] == "owed" and owed["amount"] == cash["credit"] and owed["psn_no"] == "P0001"
    for p in (acct, cash):
        zh = notice_text("outcome", p)
        assert "已退还" not in zh
    assert "个人账户余额" not in notice_text("outcome", cash) and cash["payout_no"] in notice_text("outcome", cash)
    claim = store.payouts.payout(f"C-{d.device}-3")           # the claim was approved automatically
    rep = report.daily(store, "S1", DATE)
    owed = cash["credit"] + claim["amount"]
    assert rep["payouts"]["site"] == {"owed": owed, "paid": 0, "outstanding": owed}
    assert rep["payouts"]["patients"] == [
        {"psn_no": "P0001", "owed": cash["credit"], "paid": 0, "outstanding": cash["credit"]},
        {"psn_no": "P0003", "owed": claim["amount"], "paid": 0, "outstanding": claim["amount"]}]
    assert "outstanding" in report.to_text(rep)


def test_after_the_settlement_is_cancelled_the_report_no_longer_owes_the_credit(day):
    store, d = day
    a = settlement_body(person("P0001", deductible_used=0), visit(0, acct=False), req="C-1")["amounts"]
    d.append("cancel", {"req": "@cancel:2", "cancels": 2, "psn_no": "P0001", "amounts": a,
                        "state_after": {"balc": 50000, "deductible_used": 0, "fund_paid": 0}}, time=T0 + 10)
    store.put_entries(d.device, d.items(4), now=T0 + DAY)
    reconcile.run_pending(store, now=T0 + 2 * DAY)
    assert store.payouts.payout("P-D-S1-1-2")["status"] == "void"
    rows = report.daily(store, "S1", DATE)["payouts"]["patients"]
    assert [r["psn_no"] for r in rows] == ["P0003"]               # P0001 is owed nothing any more


def test_an_approved_claim_is_owed_as_a_payout_and_the_notice_names_it(day):
    store, d = day
    [c] = review.claims(store, status="approved")                 # offline_limit: approved automatically
    out = review.claim(store, c["claim_no"])
    assert out["amount"] > 0
    [msg] = [m["payload"] for m in store.downlink_since(d.device, 0) if m["kind"] == "reimbursement"]
    assert msg["payout_no"] == f"C-{c['claim_no']}"
    p = store.payouts.payout(msg["payout_no"])
    assert p["status"] == "owed" and p["amount"] == out["amount"] and p["source"] == "claim"
    zh = notice_text("reimbursement", msg)
    assert "审核通过" in zh and "待柜台支付" in zh and msg["payout_no"] in zh


def test_a_centre_cancel_voids_the_owed_credit_and_owes_the_cash_back(day):
    store, d = day
    out = cancel.cancel_settlement(store, d.device, 2, reason="重复收费", who="王审核", now=T0 + DAY)
    assert store.payouts.payout("P-D-S1-1-2")["status"] == "void"
    back = store.payouts.payout(f"X-{d.device}-2")
    paid_in_cash = 3560                                           # accepted cash + the credit no longer owed
    assert back["status"] == "owed" and back["amount"] == paid_in_cash and out["reversed"]["cash"] < paid_in_cash
    again = cancel.cancel_settlement(store, d.device, 2, reason="重复收费", who="王审核", now=T0 + DAY)
    assert again == out
    rows = {r["psn_no"]: r for r in report.daily(store, "S1", DATE)["payouts"]["patients"]}
    assert rows["P0001"] == {"psn_no": "P0001", "owed": paid_in_cash, "paid": 0, "outstanding": paid_in_cash}


def test_an_online_request_arriving_after_its_offline_entry_is_not_settled_again(day):
    """The other order of a late answer: the counter gave up, settled offline and uploaded; the delayed
    request then reaches the centre. It is refused, and the ledger does not move a second time."""
    from sync.centre.errors import OnlineRefused
    from sync.centre.online import settle_online

    store, d = day
    before = store.ledger.load("P0002").balc
    with pytest.raises(OnlineRefused) as info:
        settle_online(store, d.device, {"req": "A-1", "psn_no": "P0002", "visit": visit(0), "items": ITEMS,
                                         "acct_used_flag": True}, now=T0)
    assert info.value.code == "already_journaled" and info.value.status == 409
    assert store.ledger.load("P0002").balc == before


def test_a_credit_and_a_claim_paid_at_the_counter_are_paid_once_the_entries_are_reconciled(day):
    store, d = day
    cash = _outcome_notices(store, d.device)[2]
    [c] = review.claims(store, status="approved")
    claim = store.payouts.payout(f"C-{c['claim_no']}")
    for i, (no, psn, amount) in enumerate(((cash["payout_no"], "P0001", cash["payout"]),
                                           (claim["payout_no"], "P0003", claim["amount"]))):
        d.append("payout", {"req": f"@payout:{no}", "payout_no": no, "psn_no": psn, "amount": amount,
                            "method": "cash", "reason": "医保中心应退款项",
                            "operator": {"id": "op1", "name": "张收费"}}, time=T0 + 20 + i)
    d.append("payout", {"req": "@payout:P-D-S1-1-9", "payout_no": "P-D-S1-1-9", "psn_no": "P0001", "amount": 5,
                        "method": "cash", "reason": "不存在的退款"}, time=T0 + 30)
    store.put_entries(d.device, d.items(4), now=T0 + DAY)
    reconcile.run_pending(store, now=T0 + 2 * DAY)
    assert store.payouts.payout(cash["payout_no"])["status"] == "paid"
    assert store.payouts.payout(claim["payout_no"])["status"] == "paid"
    owed = cash["payout"] + claim["amount"]
    assert report.daily(store, "S1", DATE)["payouts"]["site"] == {"owed": owed, "paid": owed, "outstanding": 0}
    reviews = store.db.query("SELECT code FROM recon_reviews WHERE psn_no = 'P0001' AND seq = 6")
    assert [r["code"] for r in reviews] == ["payout_mismatch"]       # the unknown payout closes nothing


def test_a_payout_entry_from_another_device_closes_nothing(day):
    """Only the counter a payout names pays it: another device of the same site journaling a payout entry
    for it (same number, person and amount) is a mismatch for a reviewer, and the payout stays owed."""
    store, d = day
    cash = _outcome_notices(store, d.device)[2]
    other = Device("D-S1-2")
    store.register_device(other.device, "S1", bytes(other.key.verify_key), now=T0 - DAY)
    other.append("payout", {"req": f"@payout:{cash['payout_no']}", "payout_no": cash["payout_no"], "psn_no": "P0001",
                            "amount": cash["payout"], "method": "cash", "reason": "医保中心应退款项"}, time=T0 + 20)
    store.put_entries(other.device, other.items(), now=T0 + DAY)
    reconcile.run_pending(store, now=T0 + 2 * DAY)
    assert store.payouts.payout(cash["payout_no"])["status"] == "owed"
    reviews = store.db.query("SELECT code, reason FROM recon_reviews WHERE device = ?", (other.device,))
    assert [r["code"] for r in reviews] == ["payout_mismatch"] and "其他设备" in reviews[0]["reason"]
