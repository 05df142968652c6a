"""Cancel at the centre (撤销): the path for what a counter cannot cancel (its person snapshot gone
after a persons bundle, the patient at another site, the day closed) — ``centre cancel``.

A cancel names the settlement by (device, seq), needs a reason and who does it, and applies only to a
settlement the centre has reconciled and accepted (confirmed or adjusted): it is a reversing
adjustment (the replay's own cancel rule on the ledger, a ``centre_cancels`` row the daily report
reads), never an edit of the settlement's outcome. The counter is told by a downlink ``outcome``
(``cancelled_at_centre``), shown the next time the card is read, and a cancel the counter journals
later for the same settlement reverses nothing (the replay sees it cancelled here). A settlement the
counter already cancelled is refused here (the money moved back once).
"""

from __future__ import annotations

from typing import Any

from edge.settle import yuan
from sync.centre import payouts
from sync.centre import replay as rp
from sync.centre.errors import BadOperation
from sync.centre.store import now_ms
from sync.centre.world import outcome_from_row

CANCELLED = "cancelled_at_centre"
KEYS = ("medfee", "fund", "acct", "cash", "dedc")


def _refuse(message: str, zh: str, code: str, status: int = 409) -> BadOperation:
    return BadOperation(message, zh=zh, code=code, status=status)


def cancel_settlement(store, device: str, seq: int, *, reason: str, who: str, now: int | None = None) -> dict:
    """Reverse settlement (device, seq) at the centre; idempotent (a second call answers the first)."""
    if not isinstance(reason, str) or not reason.strip():
        raise _refuse("a cancel needs a reason", "撤销须填写原因", "reason_required", 400)
    now = now_ms() if now is None else now
    try:
        return _cancel(store, device, seq, reason=reason, who=who, now=now)
    finally:
        store.publish_feed()          # the counter's notice goes out now, not at the next poll


def _cancel(store, device: str, seq: int, *, reason: str, who: str, now: int) -> dict:
    with store.transaction():
        prior = store.payouts.cancel_of(device, seq)
        if prior is not None:
            return _answer(store, prior)
        row = store.recon.outcome(device, seq)
        if row is None or row["kind"] != "settlement":
            raise _refuse(f"no reconciled settlement {device}/{seq}: wait until the device has uploaded it and "
                          "reconciliation has run", f"医保中心尚无已对账的结算 {device}/{seq}，请待上传并对账后再撤销",
                          "unknown_settlement", 404)
        if row["outcome"] not in ("confirmed", "adjusted"):
            raise _refuse(f"settlement {device}/{seq} is {row['outcome']}: nothing was accepted, so nothing to reverse "
                          "(a reviewer decides it)", f"结算 {device}/{seq} 未被接受（{row['outcome']}），无可撤销的金额",
                          "nothing_to_cancel")
        if store.payouts.counter_cancelled(device, seq):
            raise _refuse(f"settlement {device}/{seq} was cancelled at the counter already",
                          f"结算 {device}/{seq} 已在医疗机构撤销", "already_cancelled")
        led = store.ledger.load(row["psn_no"], lock=True)
        if led is None:
            raise _refuse(f"person {row['psn_no']} is not in the ledger", "医保中心无此参保人", "unknown_person", 404)
        # Asked again under the person's row lock: the same cancel run at once elsewhere (another centre
        # process, PostgreSQL read committed) committed while we waited; answer it, do not reverse twice.
        prior = store.payouts.cancel_of(device, seq)
        if prior is not None:
            return _answer(store, prior)
        # The replay's own cancel rule (the reversal every counter cancel gets), on a synthetic event.
        orig = outcome_from_row(row)
        body = {"cancels": seq, "psn_no": row["psn_no"],
                "amounts": {"medfee_sumamt": row["j_medfee"], "hifp_pay": row["j_fund"], "acct_pay": row["j_acct"],
                            "psn_cash_pay": row["j_cash"], "act_pay_dedc": row["j_dedc"]}}
        world = rp.StaticWorld(outcomes={(device, seq): orig})
        out, after = rp.HANDLERS["cancel"](rp.Event(device, 0, "cancel", now, body), led, world)
        if out.outcome != "confirmed" or "cancel_applied" not in out.codes or after is None:
            raise _refuse(f"settlement {device}/{seq} cannot be reversed: {out.reason}", "无法撤销此结算",
                          "cannot_cancel")
        store.ledger.save(after, now=now)
        reversed_ = {k: -out.accepted[k] for k in KEYS}
        store.payouts.add_cancel(device, seq, site=row["site"], psn_no=row["psn_no"], date=row["date"],
                                 reason=reason.strip(), who=who, reversed_=reversed_, credit=int(row["credit"]), now=now)
        # What the queue owed for it (a credit) is void; the cash the patient paid is owed back.
        # The patient is owed back all the cash they paid: the accepted cash plus a credit still owed.
        voided = payouts.void_for(store, device, seq, note=f"settlement cancelled at the centre: {reason.strip()}",
                                  now=now)
        # A credit's cash share the policy put into the account is taken back from it by the reversal
        # (rp._cancel) and owed back in cash with the rest: the patient gets what they paid, once.
        taken_back = rp.credited_to_account(orig)
        back = reversed_["cash"] + voided + taken_back
        payout_no = payouts.queue_cancel(store, row, back, now)
        cash = f"现金 ¥{yuan(back)} 待柜台退还（退款号 {payout_no}）" if payout_no else "无现金需退还"
        store.post_downlink(device, "outcome", {
            "ref_seq": seq, "outcome": CANCELLED, "psn_no": row["psn_no"], "credit": 0, "payout_no": payout_no,
            "payout": back if payout_no else 0,
            "reason": f"医保中心已撤销此结算（{reason.strip()}）：统筹 ¥{yuan(reversed_['fund'])}、"
                      f"个人账户 ¥{yuan(reversed_['acct'])} 已冲回；"
                      + (f"已退入个人账户的 ¥{yuan(taken_back)} 已扣回；" if taken_back else "") + cash}, now=now)
        store.ledger.record_action(who, "cancel_settlement", f"{device}/{seq}",
                                   {"reason": reason.strip(), **reversed_}, now=now)
        return _answer(store, store.payouts.cancel_of(device, seq))


def _answer(store, row: Any) -> dict:
    # The cash owed back is the X- payout (the accepted cash, plus a credit no longer owed or taken back
    # from the account), not the reversed cash alone.
    back = store.payouts.payout(f"X-{row['device']}-{row['seq']}")
    owed = int(back["amount"]) if back is not None else 0
    return {"device": row["device"], "seq": row["seq"], "psn_no": row["psn_no"], "reason": row["reason"],
            "who": row["who"], "reversed": {k: row["r_" + k] for k in KEYS}, "status": CANCELLED,
            "payout_no": back["payout_no"] if back is not None else None, "cash_owed": owed,
            "text": f"settlement {row['device']}/{row['seq']} cancelled at the centre: fund ¥{yuan(row['r_fund'])}, "
                    f"account ¥{yuan(row['r_acct'])} reversed; cash ¥{yuan(owed)} owed back to the patient"}
