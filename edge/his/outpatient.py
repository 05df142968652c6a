"""Outpatient: 2201/2202 register and cancel, 2203 diagnosis, 2204/2205 fee lines, 2206/2207 pre-settle
and settle, 2208 cancel a settlement.

A registered visit is a ``visit`` document (key mdtrt_id) holding the person, the medical type, the
diagnoses and the uploaded fee lines in fen, each line with the setl_id that consumed it (null while
unsettled). 2206/2207 take the unsettled lines of the named charge batch (``0000`` or empty: all), check
``medfee_sumamt`` against them and go through :mod:`edge.his.settlement`. 2208 reverses with a new
journal entry (Counter.cancel) and answers the amounts negated, the cash field spelled ``pdn_cash_pay``.
"""

from __future__ import annotations

from typing import Any

from edge.counter.errors import CounterError

from . import settlement
from .context import (
    Ctx, fee_line, flag, line_result, medfee_check, node, person_of, rows, setldetail, setlinfo, text, visit_data,
)
from .errors import FieldError, FullPaymentTaken, StateError
from .money import fen
from .result import Out

SUM_FIELDS = ("fulamt_ownpay_amt", "overlmt_selfpay", "preselfpay_amt", "inscp_scp_amt")


async def _visit(ctx: Ctx, mdtrt_id: str, psn_no: str | None = None) -> dict:
    v = await ctx.thread(ctx.store.get, "visit", mdtrt_id)
    if v is None or v.get("status") == "cancelled":
        raise StateError(f"mdtrt_id {mdtrt_id} is not a registered visit", zh=f"就诊ID {mdtrt_id} 不存在或已撤销挂号",
                         field="mdtrt_id")
    if psn_no is not None and v["psn_no"] != psn_no:
        raise StateError("psn_no is not the person of this visit", zh="人员编号与就诊登记不一致", field="psn_no")
    return v


async def catalogue(ctx: Ctx, codes: list[str]) -> dict[str, dict]:
    def read() -> dict[str, dict]:
        out = {}
        for code in set(codes):
            found = [it for it in ctx.counter.search(code, 5) if it["med_list_codg"] == code]
            if found:
                out[code] = found[0]
        return out
    return await ctx.thread(read)


async def register(ctx: Ctx) -> Out:
    d = node(ctx.req.input, "data")
    psn = person_of(ctx, text(d, "psn_no", most=30))
    mdtrt_id = ctx.new_id("M")
    doc = {"mdtrt_id": mdtrt_id, "psn_no": psn["psn_no"], "insutype": text(d, "insutype", required=False, most=6)
           or psn["insutype"], "ipt_otp_no": text(d, "ipt_otp_no", most=30), "med_type": "11",
           "status": "registered", "diag": [], "lines": {}, "setl": {},
           "dept": text(d, "dept_name", required=False, most=100), "dr": text(d, "dr_name", required=False)}
    await ctx.thread(ctx.store.put, "visit", mdtrt_id, doc)
    return Out({"data": {"mdtrt_id": mdtrt_id, "psn_no": psn["psn_no"], "ipt_otp_no": doc["ipt_otp_no"],
                         "exp_content": ""}})


async def unregister(ctx: Ctx) -> Out:
    d = node(ctx.req.input, "data")
    v = await _visit(ctx, text(d, "mdtrt_id", most=30), text(d, "psn_no", most=30))
    if any(s for s in v["setl"].values() if not s.get("cancelled")):
        raise StateError("the visit has a settlement: cancel it (2208) first", zh="该就诊已结算，请先撤销结算(2208)")
    v["status"] = "cancelled"
    await ctx.thread(ctx.store.put, "visit", v["mdtrt_id"], v)
    return Out({})


async def diagnosis(ctx: Ctx) -> Out:
    info = node(ctx.req.input, "mdtrtinfo")
    v = await _visit(ctx, text(info, "mdtrt_id", most=30), text(info, "psn_no", most=30))
    v["med_type"] = text(info, "med_type", most=6)
    v["chronic_code"] = text(info, "dise_codg", required=False, most=30) or None
    diag = ctx.req.input.get("diseinfo") or []
    if not isinstance(diag, list):
        raise FieldError("diseinfo must be a list", zh="诊断信息(diseinfo)应为列表", field="diseinfo")
    v["diag"] = [{k: str(x.get(k, "")) for k in ("diag_type", "diag_srt_no", "diag_code", "diag_name")}
                 for x in diag if isinstance(x, dict)]
    await ctx.thread(ctx.store.put, "visit", v["mdtrt_id"], v)
    return Out({})


def _unsettled(v: dict, bchno: str | None = None) -> list[dict]:
    return [ln for ln in v["lines"].values()
            if ln.get("setl_id") is None and (not bchno or bchno == "0000" or ln["chrg_bchno"] == bchno)]


def _pin(d: dict) -> str | None:
    p = d.get("pin")
    return p if isinstance(p, str) and p else None


async def upload(ctx: Ctx) -> Out:
    lines_in = rows(ctx.req.input, "feedetail")
    mdtrt_id = text(lines_in[0], "mdtrt_id", most=30)
    v = await _visit(ctx, mdtrt_id, text(lines_in[0], "psn_no", most=30))
    new: list[dict] = []
    seen: set[str] = set()
    for i, raw in enumerate(lines_in):
        if text(raw, "mdtrt_id", most=30) != mdtrt_id:
            raise StateError("all lines of one upload belong to one visit", zh="一次上传的明细必须属于同一就诊",
                             field="mdtrt_id")
        ln = fee_line(raw, i)
        if ln["feedetl_sn"] in seen:
            # A later line of the same upload would silently replace the earlier one, yet both be answered.
            raise StateError(f"feedetl_sn {ln['feedetl_sn']} repeats in this upload",
                             zh=f"明细流水号(feedetl_sn){ln['feedetl_sn']}在本次上传中重复", field="feedetl_sn")
        old = v["lines"].get(ln["feedetl_sn"])
        if old is not None and old.get("setl_id") is not None:
            raise StateError(f"line {ln['feedetl_sn']} is settled already", zh=f"明细{ln['feedetl_sn']}已结算，不能重复上传",
                             field="feedetl_sn")
        ln["setl_id"] = None
        new.append(ln)
        seen.add(ln["feedetl_sn"])
    cat = await catalogue(ctx, [ln["med_list_codg"] for ln in new])
    for ln in new:
        if ln["med_list_codg"] not in cat:
            raise FieldError(f"{ln['med_list_codg']} is not in the catalogue",
                             zh=f"医保目录中没有编码为{ln['med_list_codg']}的项目", field="med_list_codg")
    for ln in new:
        v["lines"][ln["feedetl_sn"]] = ln
    splits = await _splits(ctx, v)
    await ctx.thread(ctx.store.put, "visit", v["mdtrt_id"], v)
    return Out({"result": [line_result(ln, splits.get(ln["feedetl_sn"]), cat.get(ln["med_list_codg"]))
                           for ln in new]})


async def _splits(ctx: Ctx, v: dict) -> dict[str, dict]:
    """The engine's per-line split of the visit's unsettled lines (a pre-settlement; nothing journaled)."""
    lines = _unsettled(v)
    psn = person_of(ctx, v["psn_no"])
    try:
        quote = await ctx.presettle(visit_data(psn, req=None, med_type=v["med_type"], acct=False, lines=lines,
                                                       pin=None, chronic_code=v.get("chronic_code")))
    except CounterError:
        return {}    # no split (card not in the reader, unknown person...): 2206/2207 will say why
    if not quote["lines"] or "inscp_scp_amt" not in quote["lines"][0]:
        return {}    # full payment or unknown person: the counter gives no split
    return {ln["feedetl_sn"]: split for ln, split in zip(lines, quote["lines"])}


async def withdraw(ctx: Ctx) -> Out:
    d = node(ctx.req.input, "data")
    v = await _visit(ctx, text(d, "mdtrt_id", most=30), text(d, "psn_no", most=30))
    bchno = text(d, "chrg_bchno", most=30)
    gone = {ln["feedetl_sn"] for ln in _unsettled(v, bchno)}
    if not gone:
        raise StateError("no unsettled lines in this batch", zh=f"收费批次{bchno}没有未结算的明细", field="chrg_bchno")
    v["lines"] = {k: ln for k, ln in v["lines"].items() if k not in gone}
    await ctx.thread(ctx.store.put, "visit", v["mdtrt_id"], v)
    return Out({})


async def _settle_input(ctx: Ctx) -> tuple[dict, dict, dict, list[dict]]:
    d = node(ctx.req.input, "data")
    v = await _visit(ctx, text(d, "mdtrt_id", most=30), text(d, "psn_no", most=30))
    psn = person_of(ctx, v["psn_no"])
    lines = _unsettled(v, text(d, "chrg_bchno", required=False, most=30))
    if not lines:
        raise StateError("no unsettled fee lines for this visit", zh="该就诊没有未结算的费用明细，请先上传明细(2204)")
    for k in SUM_FIELDS:
        if d.get(k) not in (None, ""):
            fen(d[k], k)         # the sums the HIS computed: exact yuan, or refused
    medfee_check(d, lines)
    v["med_type"] = text(d, "med_type", required=False, most=6) or v["med_type"]
    return d, v, psn, lines


def _setl_args(ctx: Ctx, v: dict, psn: dict, clr_type: str = "11") -> dict[str, Any]:
    return {"psn": psn, "mdtrt_id": v["mdtrt_id"], "msgid": ctx.req.msgid, "med_type": v["med_type"],
            "clr_type": clr_type, "area": ctx.area, "today": ctx.now.date()}


async def presettle(ctx: Ctx) -> Out:
    d, v, psn, lines = await _settle_input(ctx)
    q = await ctx.presettle(visit_data(psn, req=None, med_type=v["med_type"], acct=flag(d, "acct_used_flag"),
                                               lines=lines, pin=None, chronic_code=v.get("chronic_code")))
    s = q["setlinfo"]
    warn = None
    if q["mode"] == "full_payment":
        warn = "预结算：本次需全额垫付（" + q["decision"].get("zh", "") + "），结算(2207)时将生成垫付单号"
    elif q["mode"] == "offline":
        warn = "预结算：医保中心暂时无法连接，将脱机结算"
    info = setlinfo(s, setl_id=None, when=None, **_setl_args(ctx, v, psn))
    info.update(clr_optins=None, clr_way=None, clr_type=None)
    return Out({"setlinfo": info, "setldetail": setldetail(s, psn["insutype"])}, warn)


async def settle(ctx: Ctx) -> Out:
    d, v, psn, lines = await _settle_input(ctx)
    data = visit_data(psn, req=ctx.req.msgid, med_type=v["med_type"], acct=flag(d, "acct_used_flag"), lines=lines,
                      pin=_pin(d), chronic_code=v.get("chronic_code"))
    try:
        r = await settlement.settle(ctx, data)
    except FullPaymentTaken as exc:
        # The claim is journaled and the patient pays these lines in full: they are consumed by it, so a
        # later 2207 (new msgid, the centre back) cannot have the fund pay them as well.
        claim = str(exc.detail.get("claim_no"))
        for ln in lines:
            v["lines"][ln["feedetl_sn"]]["setl_id"] = claim
        v["setl"][claim] = {"seq": exc.detail.get("seq"), "msgid": ctx.req.msgid, "cancelled": False,
                            "clr_type": "11", "claim": True}
        await ctx.thread(ctx.store.put, "visit", v["mdtrt_id"], v)
        raise
    except Exception:
        await ctx.thread(ctx.store.put, "visit", v["mdtrt_id"], v)
        raise
    sid = settlement.setl_id(r)
    for ln in lines:
        v["lines"][ln["feedetl_sn"]]["setl_id"] = sid
    v["setl"][sid] = {"seq": r["seq"], "msgid": ctx.req.msgid, "cancelled": False, "clr_type": "11"}
    await ctx.thread(ctx.store.put, "visit", v["mdtrt_id"], v)
    s = r["setlinfo"]
    info = setlinfo(s, setl_id=sid, when=ctx.now, **_setl_args(ctx, v, psn))
    return Out({"setlinfo": info, "setldetail": setldetail(s, psn["insutype"])}, settlement.warn(r), r["seq"])


async def cancel_visit(ctx: Ctx, v: dict, sid: str, *, cash_key: str, clr_type: str) -> Out:
    """Reverse one settlement of visit ``v`` (2208, 2103, 2601) and free its lines."""
    entry = v["setl"].get(sid)
    seq = settlement.seq_of(sid)
    if entry is None or seq is None or entry["seq"] != seq:
        raise StateError(f"setl_id {sid} is not a settlement of this visit", zh=f"结算ID {sid} 不属于该就诊",
                         field="setl_id")
    if entry.get("claim"):
        raise StateError(f"{sid} is a full-payment claim: the centre decides it",
                         zh=f"{sid} 是全额垫付单，不能撤销：垫付单由医保中心审核报销", field="setl_id")
    if entry.get("cancelled"):
        # The counter would answer its first cancel again (no money moves), but a second infcode 0 would
        # have the HIS book a second refund.
        raise StateError(f"setl_id {sid} is cancelled already", zh=f"结算ID {sid} 已撤销，不能重复撤销",
                         field="setl_id")
    psn = person_of(ctx, v["psn_no"])
    why: dict[str, Any] = {"reason": f"HIS {ctx.req.infno} {ctx.req.msgid}"}
    if not psn.get("card_id"):
        why["certno"] = psn["certno"]     # a visit without a card: the counter checks the person by certno
    r = await ctx.cancel(seq, why)
    entry["cancelled"] = True
    for ln in v["lines"].values():
        if ln.get("setl_id") == sid:
            ln["setl_id"] = None
    await ctx.thread(ctx.store.put, "visit", v["mdtrt_id"], v)
    s = r["setlinfo"]
    info = setlinfo(s, setl_id=sid, when=ctx.now, sign=-1, cash_key=cash_key, **_setl_args(ctx, v, psn, clr_type))
    info["medins_setl_id"] = entry["msgid"]
    return Out({"setlinfo": info, "setldetail": setldetail(s, psn["insutype"], sign=-1)}, None, r["seq"])


async def unsettle(ctx: Ctx) -> Out:
    d = node(ctx.req.input, "data")
    v = await _visit(ctx, text(d, "mdtrt_id", most=30), text(d, "psn_no", most=30))
    return await cancel_visit(ctx, v, text(d, "setl_id", most=30), cash_key="pdn_cash_pay", clr_type="11")


HANDLERS = {"2201": register, "2202": unregister, "2203": diagnosis, "2204": upload, "2205": withdraw,
            "2206": presettle, "2207": settle, "2208": unsettle}
