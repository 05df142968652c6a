"""Reconciliation on the real store (SQLite and PostgreSQL): outcomes, ledger, claims, idempotency."""

from __future__ import annotations

from sync.centre import reconcile, review
from sync.centre.store import Store
from recon_support import (
    CAT_RAW, DAY, HOT_RAW, PERSONS, POL_RAW, T0, Device, built, claim_body, person, settlement_body, visit,
)


def open_centre(url) -> Store:
    store = Store.open(url)
    for raw in (CAT_RAW, POL_RAW, HOT_RAW):
        store.put_bundle(raw, now=T0 - DAY)
    store.ledger.seed_from_persons(PERSONS)
    return store


def enrol(store, name: str, site: str) -> Device:
    d = Device(name)
    store.register_device(name, site, bytes(d.key.verify_key), now=T0 - DAY)
    return d


def upload(store, d: Device, start: int = 1):
    out = store.put_entries(d.device, d.items(start), now=T0)
    assert out.count("rejected") == 0
    return out


def snapshot_rows(store) -> dict:
    db = store.db
    return {t: db.query(f"SELECT * FROM {t} ORDER BY 1, 2") for t in (
        "recon_persons", "recon_outcomes", "recon_claims", "recon_reviews", "recon_debts", "feed")}


def test_two_sites_debt_then_contribution(db_url):
    store = open_centre(db_url)
    try:
        a, b = enrol(store, "D-A-1", "S-A"), enrol(store, "D-B-1", "S-B")
        snap = person("P0003", balc=30000)
        big = [{"code": "HEALTH-SUPP-0001", "cnt": "1", "pric": 25000}]
        for day in range(3):
            a.append("settlement", settlement_body(snap, visit(day, acct=day == 0), big if day == 0 else
                                                   [{"code": "XJ01CAA040E001010101445", "cnt": "1", "pric": 100}],
                                                   req=f"A{day}"), time=T0 + day * DAY)
        b.append("settlement", settlement_body(snap, visit(1), big, req="B1"), time=T0 + DAY - 3600_000)
        upload(store, b)          # site B's upload arrives first, yet A's day-0 visit is replayed first
        upload(store, a)
        counts = reconcile.run_pending(store, now=T0 + 4 * DAY)
        assert counts["rejected"] == 0 and counts["review"] == 0
        outs = reconcile.outcomes(store, psn_no="P0003")
        assert [(o.device, o.seq) for o in outs][:2] == [("D-A-1", 1), ("D-B-1", 1)]
        debt_out = [o for o in outs if "account_debt" in o.codes]
        assert len(debt_out) == 1 and debt_out[0].device == "D-B-1"
        led = store.ledger.load("P0003")
        assert led.balc < 0 and store.ledger.debts("P0003")[0]["amount"] == debt_out[0].debt
        # The counter that caused it hears about it.
        feed = store.downlink_since("D-B-1", 0)
        assert any(m["kind"] == "outcome" and m["payload"]["ref_seq"] == 1 for m in feed)
        res = store.ledger.contribute("P0003", 30000, who="test")
        assert res["debt"] == 0 and res["debt_cleared"] == -led.balc
        assert all(d["cleared_ms"] is not None for d in store.ledger.debts("P0003"))
    finally:
        store.close()


def test_reconciling_twice_and_reuploading_changes_nothing(db_url):
    store = open_centre(db_url)
    try:
        a = enrol(store, "D-A-1", "S-A")
        stale = person("P0002", deductible_used=0)
        store.db.execute("UPDATE recon_persons SET deductible_used = 20000 WHERE psn_no = 'P0002'")
        a.append("settlement", settlement_body(stale, visit(0), req="R1"), time=T0)
        a.append("claim", claim_body(person("P0001"), visit(1), "offline_limit"), time=T0 + DAY)
        upload(store, a)
        first = reconcile.run_pending(store, now=T0 + 2 * DAY)
        assert first["adjusted"] == 1 and first["review"] == 1 and first["auto_approved"] == 1
        before = snapshot_rows(store)
        assert reconcile.run_pending(store, now=T0 + 3 * DAY) == {
            "confirmed": 0, "adjusted": 0, "review": 0, "rejected": 0, "auto_approved": 0}
        upload(store, a)                                         # a re-upload: duplicates
        store.db.execute("DELETE FROM recon_cursor")              # even a lost cursor replays nothing twice
        reconcile.run_pending(store, now=T0 + 3 * DAY)
        assert snapshot_rows(store) == before
        [c] = review.claims(store, status="approved")
        assert c["amount"] > 0 and c["decided_by"] == "auto"
        assert any(m["kind"] == "reimbursement" and m["payload"]["claim_no"] == "D-A-1-2"
                   for m in store.downlink_since("D-A-1", 0))
    finally:
        store.close()


def test_hotlisted_card_offline_goes_to_review_and_blocks_pending_review(db_url):
    store = open_centre(db_url)
    try:
        a = enrol(store, "D-A-1", "S-A")
        snap = person("P0004")
        store.put_bundle(built("hotlist", 10, {"cards": [{"card_id": snap["card_ids"][0], "reason": "lost"}]},
                               created=T0 - 3600_000), now=T0 - 3600_000)
        a.append("settlement", settlement_body(snap, visit(0)), time=T0)
        upload(store, a)
        reconcile.run_pending(store, now=T0 + DAY)
        [o] = reconcile.outcomes(store, psn_no="P0004")
        assert (o.outcome, o.codes) == ("review", ("card_hotlisted",))
        assert store.ledger.load("P0004").open_reviews == 1
        assert store.ledger.reviews("P0004")[0]["code"] == "card_hotlisted"
        store.ledger.close_review("P0004", who="test", note="card was found")
        assert store.ledger.load("P0004").open_reviews == 0
        assert [a["action"] for a in store.ledger.actions("P0004")] == ["close_review"]
    finally:
        store.close()


def test_two_centre_processes_reconciling_at_once_apply_everything_once(db_url):
    """Two stores on one database (two centre processes) run the same pass concurrently."""
    import threading

    store = open_centre(db_url)
    other = Store.open(db_url)
    try:
        devs = [enrol(store, f"D-{i}-1", f"S-{i}") for i in range(4)]
        snap = person("P0003", balc=30000)
        big = [{"code": "HEALTH-SUPP-0001", "cnt": "1", "pric": 20000}]
        for i, d in enumerate(devs):
            d.append("settlement", settlement_body(snap, visit(i), big, req=f"A{i}"), time=T0 + i * DAY)
            bad = settlement_body(person("P0004"), visit(i), req=f"B{i}", tamper={"hifp_pay": 1, "acct_pay": 0})
            bad["amounts"]["psn_cash_pay"] = bad["amounts"]["medfee_sumamt"] - 1     # adds up, but miscomputed
            d.append("settlement", bad, time=T0 + i * DAY + 1)
            d.append("claim", claim_body(person("P0001"), visit(i), "card_unreadable", req=f"C{i}"),
                     time=T0 + i * DAY + 2)
            upload(store, d)
        results = []
        threads = [threading.Thread(target=lambda s=s: results.append(reconcile.run_pending(s, batch=3)))
                   for s in (store, other)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        total = {k: sum(r[k] for r in results) for k in ("confirmed", "adjusted", "review", "rejected")}
        assert sum(total.values()) == 12                         # every entry decided exactly once
        assert len(store.db.query("SELECT * FROM recon_outcomes")) == 12
        assert len(store.ledger.reviews("P0004")) == 4 == store.ledger.load("P0004").open_reviews
        assert len(review.claims(store, status=None)) == 4
        led = store.ledger.load("P0003")
        assert led.balc == 30000 - 4 * 20000 and sum(d["amount"] for d in store.ledger.debts("P0003")) == -led.balc
    finally:
        other.close()
        store.close()


def test_reviewer_decides_disputed_settlements(db_url):
    import pytest
    from sync.centre import report

    store = open_centre(db_url)
    try:
        a = enrol(store, "D-A-1", "S-A")
        snap = person("P0004")
        store.put_bundle(built("hotlist", 10, {"cards": [{"card_id": snap["card_ids"][0], "reason": "lost"}]},
                               created=T0 - 3600_000), now=T0 - 3600_000)
        a.append("settlement", settlement_body(snap, visit(0), req="S1"), time=T0)
        a.append("settlement", settlement_body(snap, visit(1), req="S2"), time=T0 + DAY)
        upload(store, a)
        reconcile.run_pending(store, now=T0 + 2 * DAY)
        before = store.ledger.load("P0004")
        assert before.open_reviews == 2 and [d["seq"] for d in review.disputed(store)] == [1, 2]
        [o1, o2] = reconcile.outcomes(store, psn_no="P0004")
        got = review.decide_settlement(store, "D-A-1", 1, accept=True, who="rev", note="card found, patient's own")
        assert got["decision"] == "accepted" and got["open_reviews"] == 1
        after = store.ledger.load("P0004")
        assert after.balc == before.balc - o1.journaled["acct"]
        assert after.fund_paid == before.fund_paid + o1.journaled["fund"]
        review.decide_settlement(store, "D-A-1", 2, accept=False, who="rev", note="used by someone else")
        assert store.ledger.load("P0004").open_reviews == 0 and store.ledger.load("P0004").balc == after.balc
        with pytest.raises(review.SettlementDecided):
            review.decide_settlement(store, "D-A-1", 2, accept=True, who="rev", note="again")
        with pytest.raises(review.SettlementNotUnderReview):
            review.decide_settlement(store, "D-A-1", 9, accept=True, who="rev", note="x")
        with pytest.raises(review.ReviewError, match="note"):
            review.decide_settlement(store, "D-A-1", 1, accept=True, who="rev", note=" ")
        [n1, n2] = reconcile.outcomes(store, psn_no="P0004")
        assert (n1.outcome, n1.codes[-1], n1.accepted == n1.journaled) == ("confirmed", "reviewer_accepted", True)
        assert (n2.outcome, n2.codes[-1]) == ("rejected", "reviewer_rejected") and "someone else" in n2.reason
        told = [m["payload"] for m in store.downlink_since("D-A-1", 0) if m["kind"] == "outcome"]
        assert [(m["ref_seq"], m["outcome"]) for m in told][-2:] == [(1, "confirmed"), (2, "rejected")]
        assert review.disputed(store) == [] and len(review.disputed(store, open_only=False)) == 2
        assert [x["action"] for x in store.ledger.actions("D-A-1-1")] == ["settlement_accepted"]
        rep = report.daily(store, "S-A", "2026-11-20")
        assert rep["explained"] and rep["accepted"]["count"] == 0 and rep["outcomes"] == {"rejected": 1}
    finally:
        store.close()


def test_run_pending_in_short_steps_reaches_the_same_state(db_url):
    """What the background task does (one small batch per call) ends where one long pass ends."""
    store = open_centre(db_url)
    try:
        a = enrol(store, "D-A-1", "S-A")
        for i in range(7):
            a.append("settlement", settlement_body(person("P0001"), visit(i % 3), req=f"R{i}"), time=T0 + i)
        a.append("claim", claim_body(person("P0003"), visit(0), "offline_limit", req="C"), time=T0 + 9)
        upload(store, a)
        steps = []
        while True:
            counts = reconcile.run_pending(store, now=T0 + DAY, batch=3, max_batches=1)
            steps.append(counts)
            if not counts["more"]:
                break
        assert len(steps) == 3 and [s["auto_approved"] for s in steps] == [0, 0, 1]
        assert sum(s["confirmed"] + s["review"] for s in steps) == 8
        assert len(reconcile.outcomes(store)) == 8
    finally:
        store.close()
