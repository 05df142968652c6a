"""Auto-approval re-checks only the persons something touched: a reconciled batch (their entries) or a
cleared cause (arrears paid, a review closed). With many claims waiting for a reviewer, an idle or
one-person pass does not re-check them all (the checks are counted, not timed)."""

from __future__ import annotations

from recon_support import DAY, T0, Device, claim_body, settlement_body, visit
from scale_support import PERSONS, open_centre

from sync.centre import reconcile
from sync.centre import replay as rp
from sync.centre.store import Store

WAITING = PERSONS[:30]         # each with one claim only a reviewer decides (keyed-in card)


def _centre_with_waiting_claims(pg_url) -> tuple[Store, Device]:
    store = open_centre(pg_url)
    d = Device("D-R-1")
    store.register_device(d.device, "S-R", bytes(d.key.verify_key), now=T0 - DAY)
    for i, p in enumerate(WAITING):
        d.append("claim", claim_body(p, visit(0), "card_unreadable", req=f"C{i}"), time=T0 + i)
    assert store.put_entries(d.device, d.items(), now=T0).ack == len(WAITING)
    reconcile.run_pending(store, now=T0 + DAY)
    assert len(store.claims.find(status="pending")) == len(WAITING)
    return store, d


def _count_checks(monkeypatch) -> list[str]:
    checked: list[str] = []
    real = rp.claim_decision

    def counting(claim, ledger, world):
        checked.append(claim["psn_no"])
        return real(claim, ledger, world)

    monkeypatch.setattr(rp, "claim_decision", counting)
    return checked


def test_a_pass_that_touches_one_person_rechecks_only_that_person(pg_url, monkeypatch):
    store, d = _centre_with_waiting_claims(pg_url)
    try:
        checked = _count_checks(monkeypatch)
        assert reconcile.recheck_claims(store, now=T0 + DAY) == 0
        assert checked == []                                  # nothing touched: nothing re-checked
        one = WAITING[4]
        d.append("settlement", settlement_body(one, visit(1), req="S1"), time=T0 + DAY)
        store.put_entries(d.device, d.items(len(WAITING) + 1), now=T0 + DAY)
        counts = reconcile.run_pending(store, now=T0 + 2 * DAY)
        assert counts["confirmed"] + counts["adjusted"] + counts["review"] == 1
        assert checked == [one["psn_no"]]
        assert reconcile.recheck_claims(store, now=T0 + 2 * DAY) == 0 and checked == [one["psn_no"]]
    finally:
        store.close()


def test_a_cleared_cause_rechecks_its_person_and_approves_in_one_worker(pg_url, monkeypatch):
    store, d = _centre_with_waiting_claims(pg_url)
    other = Store.open(pg_url, migrate=False)
    try:
        late = WAITING[7]
        store.ledger.suspend(late["psn_no"], "2026-01-01", who="op", now=T0 + DAY)
        d.append("claim", claim_body(late, visit(0), "arrears", req="A1"), time=T0 + DAY)
        store.put_entries(d.device, d.items(len(WAITING) + 1), now=T0 + DAY)
        reconcile.run_pending(store, now=T0 + DAY, recheck=False)
        checked = _count_checks(monkeypatch)
        assert reconcile.recheck_claims(store, now=T0 + DAY) == 0       # arrears not paid: it waits
        assert checked == [late["psn_no"]] * 2                           # its two claims, no one else's
        checked.clear()
        store.ledger.clear_arrears(late["psn_no"], who="op", now=T0 + 2 * DAY)
        # Two workers re-check at once: one is elected, the other skips; the claim is approved once.
        with other.transaction():
            assert other.recon.elect(reconcile.ELECT_AUTO_APPROVE)
            assert reconcile.recheck_claims(store, now=T0 + 2 * DAY) == 0
        assert reconcile.recheck_claims(other, now=T0 + 2 * DAY) == 1
        assert sorted(checked) == [late["psn_no"]] * 2
        [approved] = store.claims.find(status="approved")
        assert approved["psn_no"] == late["psn_no"] and approved["cause"] == "arrears"
    finally:
        other.close()
        store.close()
