"""The full-payment claims queue: auto-approval, reviewer decisions, reimbursement.

A claim (``recon_claims``) is ``pending`` until it is ``approved`` (reimbursement computed by the
engine, credited and sent down to the counter that took it) or ``denied`` (with a note). Which
claims approve themselves is the pure rule :func:`sync.centre.replay.claim_decision`; this module
applies it to the stored queue (:func:`auto_approve`, run after every reconciliation pass and after
the operations that clear a cause) and records every decision in ``recon_actions`` with who and when.

Errors: the ``ReviewError`` branch of :mod:`sync.centre.errors` (claim not found / decided / not
computable, settlement not under review / decided), each with a ``code`` and an HTTP ``status``.

Disputed settlements (outcome ``review``) are decided by :func:`decide_settlement`: accept the
journaled figures or reject them, with a note; the counter is told either way.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any, Iterable

from edge.settle import yuan
from sync.centre import payouts
from sync.centre import replay as rp
from sync.centre.store import now_ms
from sync.centre.world import StoreWorld
from sync.centre.errors import (
    ClaimDecided, ClaimNotComputable, ClaimNotFound, ReviewError, SettlementDecided, SettlementNotUnderReview,
)

PENDING, APPROVED, DENIED = "pending", "approved", "denied"







def claims(store, *, status: str | None = PENDING, psn_no: str | None = None) -> list[dict]:
    return store.claims.find(status=status, psn_no=psn_no)


def claim(store, claim_no: str) -> dict:
    row = store.claims.get(claim_no)
    if row is None:
        raise ClaimNotFound(f"there is no claim {claim_no}: claim numbers are <device>-<seq> as printed on the receipt")
    return row


def preview(store, claim_no: str, *, med_type: str | None = None) -> dict:
    """The split the engine computes for this claim now (what approval would reimburse)."""
    c = claim(store, claim_no)
    led = store.ledger.load(c["psn_no"])
    if led is None:
        return {"error": "the person is not identified"}
    try:
        s = rp.reimbursement(c, led, StoreWorld(store), med_type=med_type)
    except rp.ClaimError as exc:
        return {"error": exc.message}
    return _split(s)


def _split(s) -> dict:
    return {"medfee_sumamt": s.medfee_sumamt, "fulamt_ownpay_amt": s.fulamt_ownpay_amt,
            "overlmt_selfpay": s.overlmt_selfpay, "preselfpay_amt": s.preselfpay_amt,
            "inscp_scp_amt": s.inscp_scp_amt, "act_pay_dedc": s.act_pay_dedc, "hifp_pay": s.hifp_pay,
            "psn_part_amt": s.psn_part_amt, "policy_version": s.policy_version,
            "lines": [{"code": ln.code, "name": ln.name, "cls": ln.cls, "cnt": str(ln.cnt), "pric": ln.pric,
                       "amount": ln.det_item_fee_sumamt, "inscp": ln.inscp_scp_amt} for ln in s.lines]}


def _pending(store, claim_no: str) -> dict:
    row = store.claims.get(claim_no, lock=True)
    if row is None:
        raise ClaimNotFound(f"there is no claim {claim_no}: claim numbers are <device>-<seq> as printed on the receipt")
    if row["status"] != PENDING:
        raise ClaimDecided(f"claim {claim_no} was already {row['status']} by {row['decided_by']}: nothing to do")
    return row


def approve(store, claim_no: str, *, who: str, note: str = "", med_type: str | None = None,
            psn_no: str | None = None, now: int | None = None) -> dict:
    """Approve a pending claim: reimbursement = the fund's share the engine computes with the centre's
    state (status active); the fund's year-to-date progress moves; the counter is told.

    ``psn_no`` identifies the person of a claim taken without one (keyed-in card, unknown person).
    """
    now = now_ms() if now is None else now
    with store.transaction():
        c = _pending(store, claim_no)
        if psn_no is not None and c["psn_no"] is None:
            store.ledger.require(psn_no)
            c["psn_no"] = psn_no
            store.claims.set_person(claim_no, psn_no)
        if c["psn_no"] is None:
            raise ClaimNotComputable(f"claim {claim_no} has no identified person (certno {c.get('certno')}): "
                                     "give the person's psn_no when approving")
        led = store.ledger.require(c["psn_no"])
        try:
            amount, s, after = rp.approve(c, led, StoreWorld(store), med_type=med_type)
        except rp.ClaimError as exc:
            raise ClaimNotComputable(f"claim {claim_no}: {exc.message}; deny it with a note, or fix the person data "
                                     "and approve again") from None
        store.ledger.save(after, now=now)
        store.claims.decide(claim_no, status=APPROVED, amount=amount, who=who, now=now, note=note, split=_split(s))
        reason = note or f"approved by {who}"
        # The reimbursement is owed in cash at a counter: queued, and the notice names its payout number.
        payout_no = payouts.queue_claim(store, {**c, "claim_no": claim_no}, amount, now)
        store.post_downlink(c["device"], "reimbursement",
                            {"claim_no": claim_no, "psn_no": c["psn_no"], "amount": amount, "reason": reason,
                             "status": APPROVED, "payout_no": payout_no}, now=now)
        store.ledger.record_action(who, "approve_claim", claim_no, {"amount": amount, "note": note, "psn_no": c["psn_no"],
                                                             "med_type": med_type}, now=now)
    return {"claim_no": claim_no, "status": APPROVED, "amount": amount, "psn_no": c["psn_no"],
            "text": f"reimbursement of ¥{yuan(amount)} approved for claim {claim_no}"}


def deny(store, claim_no: str, *, who: str, note: str, now: int | None = None) -> dict:
    if not note or not note.strip():
        raise ReviewError("a denial needs a note saying why (the counter shows it to the patient)", code="note_required")
    now = now_ms() if now is None else now
    with store.transaction():
        c = _pending(store, claim_no)
        store.claims.decide(claim_no, status=DENIED, amount=0, who=who, now=now, note=note)
        store.post_downlink(c["device"], "reimbursement",
                            {"claim_no": claim_no, "psn_no": c["psn_no"], "amount": 0, "reason": f"denied: {note}",
                             "status": DENIED}, now=now)
        store.ledger.record_action(who, "deny_claim", claim_no, {"note": note}, now=now)
    return {"claim_no": claim_no, "status": DENIED, "amount": 0}


def decide_admission(store, claim_no: str, *, admitted: bool, who: str, note: str = "",
                     now: int | None = None) -> dict:
    """Emergency observation: admitted -> the inpatient bill covers it (claim denied with that note);
    not admitted -> reimbursed as the emergency visit (med_type 13) it turned out to be."""
    c = claim(store, claim_no)
    if c["cause"] != "emergency_observation":
        raise ReviewError(f"claim {claim_no} is a {c['cause']} claim, not an emergency observation", code="not_observation")
    if admitted:
        return deny(store, claim_no, who=who, note=note or "admitted to hospital: settled with the inpatient bill",
                    now=now)
    return approve(store, claim_no, who=who, note=note or "not admitted: reimbursed as an emergency visit",
                   med_type="13", now=now)


def auto_approve(store, *, now: int | None = None, psn_no: str | None = None,
                 persons: Iterable[str] | None = None) -> int:
    """Approve every pending claim whose cause has cleared; note why the others wait. Returns the count.

    ``persons``: only the pending claims of these persons (the ones a batch or an operation touched:
    :func:`sync.centre.reconcile.recheck_claims`); ``psn_no``: one person's; neither: every claim."""
    world = StoreWorld(store)
    n = 0
    todo = claims(store, status=PENDING, psn_no=psn_no) if persons is None else store.claims.pending_of(persons)
    for c in todo:
        led = store.ledger.load(c["psn_no"])
        verdict, why = rp.claim_decision(c, led, world)
        if verdict == rp.APPROVE:
            try:
                approve(store, c["claim_no"], who="auto", note=f"auto-approved: {why}", now=now)
                n += 1
            except (ClaimDecided, ClaimNotComputable):
                continue  # decided meanwhile by a reviewer, or the data changed: stays for a person
        elif c.get("waiting") != f"{verdict}: {why}":
            store.claims.set_waiting(c["claim_no"], f"{verdict}: {why}", status=PENDING)
    return n


# ------------------------------------------------------------------------- disputed settlements ---


def disputed(store, *, open_only: bool = True) -> list[dict]:
    """Settlements reconciliation sent to review (fund beyond the limits, hotlisted card, provenance,
    miscomputed...), with the outcome's reason and figures."""
    return store.claims.disputed(open_only=open_only)


def decide_settlement(store, device: str, seq: int, *, accept: bool, who: str, note: str,
                      now: int | None = None) -> dict:
    """A reviewer's decision on a disputed settlement.

    accept: the centre accepts the figures the counter journaled (the fund pays what it paid; the
    ledger moves by them); reject: nothing is accepted (the site is not paid for it). Either way the
    review closes, the outcome row records the decision, and the counter is told.
    """
    if not note or not note.strip():
        raise ReviewError("a decision on a disputed settlement needs a note saying why", code="note_required")
    now = now_ms() if now is None else now
    with store.transaction():
        rev = store.claims.review_of(device, seq)
        out = store.recon.outcome(device, seq)
        if rev is None or out is None or out["kind"] != "settlement":
            raise SettlementNotUnderReview(f"settlement {device} #{seq} is not under review: list them with "
                                           "GET /v1/review/settlements")
        if rev["decision"] is not None:
            raise SettlementDecided(f"settlement {device} #{seq} was already {rev['decision']} by {rev['closed_by']}")
        led = store.ledger.require(rev["psn_no"])
        was_open = rev["closed_ms"] is None
        codes = json.loads(out["codes"])
        if accept:
            # The visit's own year (its date) moves; the accumulator is not stored with the outcome.
            year = str(out["date"])[:4]
            led = replace(led.progress(int(year) if year.isdigit() else led.year or 0, "default", out["j_dedc"],
                                       out["j_fund"]),
                          balc=led.balc - out["j_acct"])
            store.claims.accept_settlement(device, seq, codes=codes + ["reviewer_accepted"],
                                           reason=f"{out['reason']} — accepted by {who}: {note}")
        else:
            store.claims.reject_settlement(device, seq, codes=codes + ["reviewer_rejected"],
                                           reason=f"{out['reason']} — rejected by {who}: {note}")
        if was_open:
            led = replace(led, open_reviews=max(0, led.open_reviews - 1))
        store.ledger.save(led, now=now)
        decision = "accepted" if accept else "rejected"
        store.claims.close_review(rev["id"], decision=decision, who=who, note=note, now=now)
        store.recon.mark_recheck([rev["psn_no"]], now)   # a claim waiting for this review may approve now
        store.post_downlink(device, "outcome", {"ref_seq": seq, "outcome": "confirmed" if accept else "rejected",
                                                "credit": 0, "reason": f"{decision} by the centre's reviewer: {note}"},
                            now=now)
        store.ledger.record_action(who, f"settlement_{decision}", f"{device}-{seq}",
                        {"note": note, "psn_no": rev["psn_no"], "code": rev["code"]}, now=now)
    return {"device": device, "seq": seq, "decision": decision, "psn_no": rev["psn_no"],
            "open_reviews": led.open_reviews}


def summary(store) -> dict[str, Any]:
    return dict(store.claims.summary())
