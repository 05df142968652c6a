"""Pharmacy: 2101 药店预结算 and 2102 药店结算 (``druginfo`` + ``drugdetail`` in one call, no registration),
2103 药店结算撤销 (the 2208 shape, cash as ``psn_pay`` / ``cash_payamt``).

2102 makes a visit document of its own (mdtrt_id issued here, med_type 41 unless the HIS says
otherwise) so that 2103 and 2601 find what it settled; the money path is the same as 2207's.
"""

from __future__ import annotations

from . import settlement
from .context import Ctx, fee_line, flag, line_result, medfee_check, node, person_of, rows, setldetail, setlinfo, text
from .context import visit_data
from .errors import StateError
from .outpatient import _setl_args, _visit, cancel_visit, catalogue
from .result import Out

PHARMACY = "41"


async def _input(ctx: Ctx) -> tuple[dict, dict, list[dict], dict]:
    info = node(ctx.req.input, "druginfo")
    psn = person_of(ctx, text(info, "psn_no", most=30))
    lines = [fee_line({"chrg_bchno": "", **raw}, i) for i, raw in enumerate(rows(ctx.req.input, "drugdetail"))]
    if len({ln["feedetl_sn"] for ln in lines}) != len(lines):
        raise StateError("feedetl_sn repeats", zh="明细流水号(feedetl_sn)重复", field="feedetl_sn")
    medfee_check(info, lines)
    cat = await catalogue(ctx, [ln["med_list_codg"] for ln in lines])
    for ln in lines:
        if ln["med_list_codg"] not in cat:
            raise StateError(f"{ln['med_list_codg']} is not in the catalogue",
                             zh=f"医保目录中没有编码为{ln['med_list_codg']}的项目", field="med_list_codg")
    return info, psn, lines, cat


def _visit_doc(ctx: Ctx, psn: dict, info: dict, lines: list[dict]) -> dict:
    return {"mdtrt_id": ctx.new_id("Y"), "psn_no": psn["psn_no"], "insutype": psn["insutype"],
            "med_type": text(info, "med_type", required=False, most=6) or PHARMACY, "status": "registered",
            "ipt_otp_no": "", "diag": [], "lines": {ln["feedetl_sn"]: {**ln, "setl_id": None} for ln in lines},
            "setl": {}, "chronic_code": None}


async def presettle(ctx: Ctx) -> Out:
    info, psn, lines, cat = await _input(ctx)
    v = _visit_doc(ctx, psn, info, lines)
    q = await ctx.presettle(visit_data(psn, req=None, med_type=v["med_type"],
                                               acct=flag(info, "acct_used_flag"), lines=lines, pin=None))
    splits = q["lines"] if q["lines"] and "inscp_scp_amt" in q["lines"][0] else [None] * len(lines)
    info_out = setlinfo(q["setlinfo"], setl_id=None, when=None, **_setl_args(ctx, v, psn, PHARMACY))
    warn = None
    if q["mode"] == "full_payment":
        warn = "预结算：本次需全额垫付（" + q["decision"].get("zh", "") + "），结算(2102)时将生成垫付单号"
    return Out({"setlinfo": info_out, "setldetail": setldetail(q["setlinfo"], psn["insutype"]),
                "detlcutinfo": [line_result(ln, sp, cat.get(ln["med_list_codg"])) for ln, sp in zip(lines, splits)]},
               warn)


async def settle(ctx: Ctx) -> Out:
    info, psn, lines, cat = await _input(ctx)
    v = _visit_doc(ctx, psn, info, lines)
    data = visit_data(psn, req=ctx.req.msgid, med_type=v["med_type"], acct=flag(info, "acct_used_flag"), lines=lines,
                      pin=info.get("pin") if isinstance(info.get("pin"), str) else None)
    # The per-line split for detlcutinfo: the counter's receipt keeps totals only, so the same engine is
    # asked for the lines first (nothing journaled by a pre-settlement).
    q = await ctx.presettle({k: val for k, val in data.items() if k not in ("req", "pin")})
    splits = q["lines"] if q["lines"] and "inscp_scp_amt" in q["lines"][0] else [None] * len(lines)
    r = await settlement.settle(ctx, data)
    sid = settlement.setl_id(r)
    for ln in v["lines"].values():
        ln["setl_id"] = sid
    v["setl"][sid] = {"seq": r["seq"], "msgid": ctx.req.msgid, "cancelled": False, "clr_type": PHARMACY}
    await ctx.thread(ctx.store.put, "visit", v["mdtrt_id"], v)
    s = r["setlinfo"]
    return Out({"setlinfo": setlinfo(s, setl_id=sid, when=ctx.now, **_setl_args(ctx, v, psn, PHARMACY)),
                "setldetail": setldetail(s, psn["insutype"]),
                "detlcutinfo": [line_result(ln, sp, cat.get(ln["med_list_codg"])) for ln, sp in zip(lines, splits)]},
               settlement.warn(r), r["seq"])


async def unsettle(ctx: Ctx) -> Out:
    d = node(ctx.req.input, "data")
    v = await _visit(ctx, text(d, "mdtrt_id", most=30), text(d, "psn_no", most=30))
    out = await cancel_visit(ctx, v, text(d, "setl_id", most=30), cash_key="psn_pay", clr_type=PHARMACY)
    out.output["setlinfo"]["cash_payamt"] = out.output["setlinfo"]["psn_pay"]
    return out


HANDLERS = {"2101": presettle, "2102": settle, "2103": unsettle}
