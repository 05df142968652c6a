"""2601 冲正: reverse exactly what one earlier msgid made (HSA-INTERFACE.md section 9, "单边账").

* a 2207 / 2102 that settled: the settlement is cancelled by a new journal entry (Counter.cancel, the
  same as 2208), whichever answer the HIS lost;
* a msgid never seen (the request itself was lost): recorded as reversed, so if it arrives later it is
  refused and nothing is settled;
* a message that moved no money (2201, 2204, ...): recorded as reversed; a registration is withdrawn;
* a full-payment claim or a cancel (2208/2103) cannot be reversed: a claim is decided at the centre,
  and a cancelled settlement is settled again with a new 2207.
"""

from __future__ import annotations

import json

from .context import Ctx, node, text
from .errors import StateError
from .outpatient import cancel_visit
from .result import Out

SETTLING = {"2207": "pdn_cash_pay", "2102": "psn_pay"}
CANCELLING = {"2208", "2103"}


async def reverse(ctx: Ctx) -> Out:
    d = node(ctx.req.input, "data")
    psn_no = text(d, "psn_no", most=30)
    omsgid = text(d, "omsgid", most=30)
    oinfno = text(d, "oinfno", most=5)
    prior = await ctx.thread(ctx.store.message, omsgid)
    if prior is None:
        await ctx.thread(ctx.store.mark_reversed, omsgid, ctx.req.msgid, oinfno)
        return Out({}, "原交易未在本机办理，已登记冲正：该报文ID以后不再受理")
    if prior["infno"] != oinfno:
        raise StateError(f"msgid {omsgid} was a {prior['infno']}, not a {oinfno}",
                         zh=f"原报文{omsgid}的交易编号是{prior['infno']}，不是{oinfno}", field="oinfno")
    if prior["reversed_by"]:
        return Out({}, "该交易已冲正")
    answer = json.loads(prior["answer"])
    out = answer.get("output") or {}
    setl = out.get("setlinfo") or {}
    if oinfno in CANCELLING:
        raise StateError("a cancel cannot be reversed: settle again", zh="撤销结算交易不能冲正，请重新结算")
    if oinfno in SETTLING:
        if answer.get("infcode") != 0:
            raise StateError("the original message settled nothing that can be reversed (full payment or refused)",
                             zh="原交易为全额垫付或未成功，无可冲正的医保结算")
        if setl.get("psn_no") != psn_no:
            raise StateError("psn_no is not the person of the original settlement", zh="人员编号与原交易不一致",
                             field="psn_no")
        v = await ctx.thread(ctx.store.get, "visit", setl["mdtrt_id"])
        if v is None:
            raise StateError("the original visit is gone", zh="找不到原交易的就诊信息")
        done = v["setl"].get(setl["setl_id"], {})
        if not done.get("cancelled"):
            clr = "41" if oinfno == "2102" else "11"
            await cancel_visit(ctx, v, setl["setl_id"], cash_key=SETTLING[oinfno], clr_type=clr)
    elif oinfno == "2201":
        mdtrt_id = (out.get("data") or {}).get("mdtrt_id")
        v = await ctx.thread(ctx.store.get, "visit", mdtrt_id) if mdtrt_id else None
        if v is not None:
            if any(not s.get("cancelled") for s in v["setl"].values()):
                raise StateError("the visit has a settlement", zh="该就诊已结算，请先冲正或撤销结算")
            v["status"] = "cancelled"
            await ctx.thread(ctx.store.put, "visit", mdtrt_id, v)
    await ctx.thread(ctx.store.mark_reversed, omsgid, ctx.req.msgid, oinfno)
    return Out({})


HANDLERS = {"2601": reverse}
