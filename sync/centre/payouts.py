"""Money owed to patients: where a credit goes, the payout queue, and what the counter is told.

A ``patient_credit`` is paid back the way the money came (DOMAIN.md 8, "One visit, one charge"):

* the account's share (what the account paid beyond the share the centre accepts) is already back:
  the ledger moves by the accepted amounts only, so the centre's balance never lost it; the next
  persons snapshot carries it to the counters, and the notice says so with the new balance;
* the cash share joins the payout queue (``P-<device>-<seq>``), owed until a counter pays it; or,
  where the policy in force for the visit says ``credit_to_account``, the replay put it into the
  account as well (nothing is queued, the notice gives the whole credit as credited to the account).

An approved claim's reimbursement joins the queue too (``C-<claim no>``), and so does the cash a
centre cancel reverses (``X-<device>-<seq>``). A cancel of a settlement voids what the queue still
owes for it (the report no longer owes it). Every notice states what actually happened: credited
to the account (with the balance), or owed in cash with its payout number — never "refunded" for
money that has not moved.

A counter pays a payout it was told of in cash and journals a signed ``payout`` entry (the patient
signs its receipt); when the reconciler meets that entry (:func:`paid_from`), the payout goes
``owed`` -> ``paid`` and the report's "paid" row moves. An entry that does not match what is owed
(unknown number, another device, person or amount, voided or paid already) closes nothing and opens a
review item (``payout_mismatch``): the cash left the counter, a reviewer settles the difference.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, Mapping

from edge.settle import yuan
from sync.centre import replay as rp
from sync.centre.store.payouts import OWED, PAID, VOID

log = logging.getLogger("sync.centre.payouts")
MISMATCH = "payout_mismatch"
# A counter's cancel (which hands back all the cash paid) of a settlement whose credit was paid out already.
REFUNDED_TWICE = "cash_refunded_twice"


def outcome_notice(store, o: rp.Outcome, site: str, ledger: rp.Ledger | None, now: int) -> dict:
    """The downlink ``outcome`` payload of a settlement outcome; a credit is split and queued here."""
    msg = o.downlink()
    if o.kind != "settlement" or o.credit <= 0 or o.psn_no is None:
        return msg
    to_account = max(0, min(o.credit, o.journaled["acct"] - o.accepted["acct"])) + rp.credited_to_account(o)
    to_cash = o.credit - to_account
    msg["psn_no"] = o.psn_no
    if to_account:
        msg.update(credited_to="account", to_account=to_account)
        if ledger is not None:
            msg["balc"] = ledger.balc
    if to_cash:
        payout_no = f"P-{o.device}-{o.seq}"
        store.payouts.add_payout(payout_no, source="credit", device=o.device, seq=o.seq, site=site, psn_no=o.psn_no,
                                 date=o.date, amount=to_cash, now=now)
        msg.update(payout_no=payout_no, payout=to_cash)
        if not to_account:
            msg["credited_to"] = "payout"
    return msg


def after_outcome(store, o: rp.Outcome, body: Mapping[str, Any] | None, site: str, ledger: rp.Ledger | None,
                  now: int) -> dict:
    """What the queue does with one new outcome (reconcile calls it); the outcome's downlink payload."""
    if o.kind == "cancel" and body is not None:
        target = body.get("cancels")
        if isinstance(target, int) and not isinstance(target, bool):
            if "cancel_applied" in o.codes:
                void_for(store, o.device, target, note=f"settlement cancelled at the counter (seq {o.seq})", now=now)
                _paid_before_cancel(store, o, target, now)
            elif "cancel_nothing" in o.codes:
                # The counter cancelled a settlement the centre had already cancelled (neither knew of the
                # other): the clerk handed the cash back at the counter, so what the centre's cancel still
                # owes in cash is void, or the patient would be refunded twice.
                void_for(store, o.device, target, note=f"cash returned by the counter's cancel (seq {o.seq})",
                         now=now)
        return o.downlink()
    return outcome_notice(store, o, site, ledger, now)


def _paid_before_cancel(store, o: rp.Outcome, target: int, now: int) -> None:
    """The counter's cancel refunded all the cash the patient paid, but a credit of that settlement was
    paid out in cash before: the patient got it twice. The centre cannot take cash back; a review item
    asks a reviewer to recover it."""
    paid = [p for p in store.payouts.payouts_of(o.device, target) if p["status"] == PAID and p["source"] == "credit"]
    if paid and o.psn_no is not None:
        amount = sum(int(p["amount"]) for p in paid)
        log.warning("cancel %s/%s of a settlement whose credit was paid out already (%d fen)", o.device, o.seq, amount)
        store.ledger.record_review(o.psn_no, o.device, o.seq, REFUNDED_TWICE,
                                   f"柜台撤销结算 {target} 时退还了全部现金，但其多付款项已支付过（退款号 "
                                   f"{'、'.join(p['payout_no'] for p in paid)}，¥{yuan(amount)}）：请向参保人追回", now)


def void_for(store, device: str, seq: int, *, note: str, now: int) -> int:
    """Void what the queue still owes for settlement (device, seq); how much was voided."""
    voided = 0
    for p in store.payouts.payouts_of(device, seq):
        if p["status"] == OWED and store.payouts.close_payout(p["payout_no"], VOID, note=note, now=now):
            voided += int(p["amount"])
    return voided


def queue_claim(store, claim: Mapping[str, Any], amount: int, now: int) -> str | None:
    """An approved claim's reimbursement, owed in cash; its payout number (None for ¥0)."""
    if amount <= 0 or not claim.get("psn_no"):
        return None
    payout_no = f"C-{claim['claim_no']}"
    store.payouts.add_payout(payout_no, source="claim", device=claim["device"], seq=int(claim["seq"]),
                             site=claim.get("site") or claim["device"], psn_no=claim["psn_no"],
                             date=claim.get("date") or "", amount=amount, now=now)
    return payout_no


def queue_cancel(store, row: Mapping[str, Any], cash: int, now: int) -> str | None:
    """The cash a centre cancel reverses, owed back to the patient."""
    if cash <= 0:
        return None
    payout_no = f"X-{row['device']}-{row['seq']}"
    store.payouts.add_payout(payout_no, source="cancel", device=row["device"], seq=int(row["seq"]), site=row["site"],
                             psn_no=row["psn_no"], date=row["date"], amount=cash, now=now)
    return payout_no


def day_rows(store, site: str, date: str) -> dict:
    """Owed / paid / outstanding, per patient and for the site (the daily report's rows)."""
    patients: dict[str, dict[str, int]] = {}
    for p in store.payouts.payouts_of_day(site, date):
        if p["status"] == VOID:
            continue
        row = patients.setdefault(p["psn_no"], {"owed": 0, "paid": 0, "outstanding": 0})
        row["owed"] += int(p["amount"])
        row["paid" if p["status"] != OWED else "outstanding"] += int(p["amount"])
    total = {k: sum(r[k] for r in patients.values()) for k in ("owed", "paid", "outstanding")}
    return {"site": total, "patients": [{"psn_no": k, **v} for k, v in sorted(patients.items())]}


def paid_from(store, rows: Iterable[Mapping[str, Any]], now: int) -> int:
    """Close the payouts that reconciled ``payout`` entries paid (reconcile calls it with each batch,
    in the batch's transaction); how many were closed. Idempotent: a payout is paid once."""
    closed = 0
    for r in rows:
        if r.get("kind") != "payout" or not isinstance(r.get("body"), Mapping):
            continue
        b = r["body"]
        who = b.get("operator") if isinstance(b.get("operator"), Mapping) else {}
        note = f"paid in cash at {r['device']} seq {r['seq']} by {who.get('id', 'system')}"
        p = store.payouts.payout(str(b.get("payout_no")))
        if p is not None and p["status"] == PAID and p.get("note") == note:
            continue                                    # this entry closed it already (a re-run)
        # Only the counter the payout names pays it (its notice went there alone): another device's entry
        # for it is cash that left a counter which had no claim to pay it, a mismatch for a reviewer.
        if (p is not None and p["device"] == r["device"] and p["psn_no"] == b.get("psn_no")
                and int(p["amount"]) == b.get("amount")
                and store.payouts.close_payout(p["payout_no"], PAID, note=note, now=now)):
            closed += 1
            continue
        psn_no = b.get("psn_no") if isinstance(b.get("psn_no"), str) else None
        state = "未知退款号" if p is None else {"paid": "已支付过", "void": "已作废"}.get(
            p["status"], "金额或参保人不符" if p["device"] == r["device"] else "退款号属于其他设备")
        log.warning("payout entry %s/%s does not match what is owed (%s)", r["device"], r["seq"], state)
        if psn_no is not None:
            store.ledger.record_review(psn_no, r["device"], int(r["seq"]), MISMATCH,
                                       f"柜台已支付退款 {b.get('payout_no')}，但与应退款项不符（{state}），请核实", now)
    return closed
