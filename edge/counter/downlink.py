"""What the counter does with downlink messages from the centre (the uplink's ``on_downlink``).

    bundle          verify with the pinned centre key and apply to the cache (a BundleError goes back to
                    the uplink, which reports it, and on a broken chain fetches a full bundle)
    outcome         reconciliation result of one of our entries (ref_seq): kept as a notice for the
                    person, shown the next time their card is read, and journaled (kind ``outcome``)
    reimbursement   a reviewed full-payment claim: same, with the amount reimbursed
"""

from __future__ import annotations

import logging

import trio

from edge.settle import yuan
from sync import bodies

from .visit import internal_req

log = logging.getLogger("edge.counter.downlink")

OUTCOME_ZH = {"confirmed": "结算已核对无误", "adjusted": "结算已由医保中心调整", "review": "结算转人工审核",
              "rejected": "结算未被医保中心接受", "cancelled_at_centre": "结算已由医保中心撤销"}


def notice_text(kind: str, p: dict) -> str:
    if kind == "reimbursement":
        amount = int(p.get("amount") or 0)
        # The centre says approved/denied; a ¥0 approval (visit within the deductible) is not a denial.
        # Older centres sent no status: then only a positive amount meant approval.
        status = p.get("status") or ("approved" if amount > 0 else "denied")
        if status == "approved":
            text = f"全额垫付（理赔号 {p.get('claim_no')}）审核通过，报销 ¥{yuan(amount)}"
            # Owed in cash at a counter, not yet paid: say so (and the payout number to pay it under).
            return text + (f"，待柜台支付（退款号 {p['payout_no']}）" if p.get("payout_no") else "")
        return f"全额垫付（理赔号 {p.get('claim_no')}）审核未通过：{p.get('reason', '')}"
    text = OUTCOME_ZH.get(str(p.get("outcome")), "医保中心核对结果")
    if p.get("outcome") == "cancelled_at_centre" and p.get("reason"):
        return str(p["reason"])          # the centre's own words: what was reversed, what is owed
    credit = int(p.get("credit") or 0)
    if credit > 0:
        # Say only what moved: a credit the centre put into the account says so (with the new balance);
        # any other credit is owed, not yet paid (it is paid out at the counter against a signature).
        to_account = int(p.get("to_account") or 0) if p.get("credited_to") in ("account", "payout") else 0
        payout = int(p.get("payout") or 0)
        if to_account or payout:
            if to_account:
                text += f"，多付的 ¥{yuan(to_account)} 已退回个人账户"
                if isinstance(p.get("balc"), int):
                    text += f"，账户余额 ¥{yuan(p['balc'])}"
            if payout:
                text += f"，多付的现金 ¥{yuan(payout)} 待柜台退还（退款号 {p.get('payout_no')}）"
        else:
            text += f"，多付 ¥{yuan(credit)}，应退还患者，尚未支付"
    return text


async def handle(counter, verify_key, message: dict) -> None:
    kind, payload, mid = message.get("kind"), message.get("payload"), message.get("id")
    now = counter.clock.wall_ms()
    if kind == "bundle":
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            log.warning("bundle message without bytes ignored", extra={"event": "downlink_unknown", "kind": "bundle"})
            return
        info = await trio.to_thread.run_sync(
            lambda: counter.cache.apply_bundle_isolated(bytes(payload), verify_key, now_ms=now))
        log.info("bundle applied", extra={"event": "bundle_applied", **info})
        return
    if kind not in ("outcome", "reimbursement") or not isinstance(payload, dict):
        log.warning("unknown downlink message ignored", extra={"event": "downlink_unknown", "kind": str(kind)})
        return
    psn_no = payload.get("psn_no")
    if psn_no is None and isinstance(payload.get("ref_seq"), int):
        entry = await trio.to_thread.run_sync(counter.journal.get, payload["ref_seq"])
        psn_no = entry.body.get("psn_no") if entry is not None else None
    zh = notice_text(kind, payload)
    await trio.to_thread.run_sync(lambda: counter.cache.add_notice(
        f"{kind}:{mid}", kind, {**payload, "zh": zh}, psn_no=psn_no, now_ms=now))
    ref_seq = payload.get("ref_seq")
    claim_no = payload.get("claim_no")
    # The notice's req is in the counter's own key space: no caller req can collide with it.
    body = bodies.Outcome(req=internal_req("downlink", str(mid)), what=kind,
                          ref_seq=ref_seq if isinstance(ref_seq, int) and not isinstance(ref_seq, bool) else None,
                          claim_no=None if claim_no is None else str(claim_no),
                          outcome=str(payload.get("outcome") or kind), credit=int(payload.get("credit") or 0),
                          reimbursement=int(payload.get("amount") or 0),
                          reason=str(payload.get("reason") or "")).build()
    from edge.journal import DuplicateRequest
    # Timed and appended as the counter's own entries are (under its lock): times never decrease in the chain.
    async with counter._lock:
        when, wall, mono = await counter.entry_clock()
        try:
            entry = await trio.to_thread.run_sync(lambda: counter.journal.append("outcome", body, time_ms=when,
                                                                                  mono_ns=mono))
            counter.journaled_at(entry.time, wall, mono)
        except DuplicateRequest:
            pass
    log.info("centre notice received", extra={"event": "downlink_notice", "kind": kind})
