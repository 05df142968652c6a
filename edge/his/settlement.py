"""Settling and cancelling through the counter, and the national answer for each outcome.

One path: ``Counter.presettle`` / ``settle`` / ``claim`` / ``cancel`` with the counter's own visit body
(``context.visit_data``) and ``req`` = the HIS's msgid, so the journal itself refuses to settle one msgid
twice. Outcomes:

* online or offline settlement -> infcode 0 (offline adds ``warn_msg`` saying so);
* full payment (the counter's decision: offline limits, arrears, no card offline, ...) -> the claim is
  journaled at once and the answer is infcode -1 whose ``err_msg`` tells the clerk to take the whole
  amount in cash and gives the claim number; the same msgid later gets the same answer.
"""

from __future__ import annotations

from typing import Any

from edge.counter.errors import FullPaymentRequired

from .context import OFFLINE_WARN, Ctx
from .errors import FullPaymentTaken
from .money import yuan


def setl_id(receipt: dict) -> str:
    return f"{receipt['device']}-{receipt['seq']}"


def seq_of(setl: str) -> int | None:
    tail = setl.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else None


def warn(receipt: dict) -> str | None:
    return OFFLINE_WARN if receipt.get("mode") == "offline" else None


async def settle(ctx: Ctx, data: dict) -> dict:
    """The receipt of a settled visit, or :class:`FullPaymentTaken` after journaling the claim."""
    try:
        r = await ctx.settle(data)
    except FullPaymentRequired:
        r = await ctx.claim(data)
    if r.get("kind") == "claim":
        raise full_payment(r)
    return r


def full_payment(r: dict[str, Any]) -> FullPaymentTaken:
    medfee = r["setlinfo"]["medfee_sumamt"]
    return FullPaymentTaken(
        f"full payment ({r.get('cause')}): claim {r['claim_no']}",
        zh=f"需全额垫付（{r.get('cause_zh', '')}）：请向患者全额收取现金{yuan(medfee)}元，医保不支付；"
           f"垫付单号{r['claim_no']}，参保人可凭此单号申请报销",
        seq=r["seq"], claim_no=r["claim_no"])
