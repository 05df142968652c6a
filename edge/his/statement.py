"""3201 对总账: the HIS's totals for a period against this counter's journal.

The journal is the record: settlements in the period (by the entry's date, China Standard Time) of the
asked insutype and clearing type (11 outpatient, 41 pharmacy: med_type 41), minus the cancels made in
the period. Full-payment claims are not counted (the fund paid nothing; a reimbursement comes later from
the centre). ``stmt_rslt`` 0 when medfee, fund, account and count all agree, else 1 with our figures in
``stmt_rslt_dscr``.

3202 对明细账 is not served: it needs the detail file uploaded with 9101 whose layout (delimiter, zip
name, column order) no source gives (HSA-INTERFACE.md section 6, 3202; section 12). docs/his.md says so.
"""

from __future__ import annotations

import datetime as dt

from .context import Ctx, node, text
from .envelope import CST
from .errors import FieldError
from .money import fen, yuan
from .result import Out


def _date(d: dict, name: str) -> dt.date:
    v = text(d, name, most=19)[:10]
    try:
        return dt.date.fromisoformat(v)
    except ValueError:
        raise FieldError(f"{name} must be yyyy-MM-dd", zh=f"{name} 日期格式应为yyyy-MM-dd", field=name) from None


def journal_totals(journal, insutype: str, clr_type: str, begin: dt.date, end: dt.date) -> dict[str, int]:
    """Net totals of the journal for one (insutype, clr_type) and period (a journal read: call in a thread)."""
    kinds: dict[int, tuple[str, str]] = {}
    t = {"medfee": 0, "fund": 0, "acct": 0, "cnt": 0}
    for e in journal.entries():
        day = dt.datetime.fromtimestamp(e.time / 1000, CST).date()
        if e.kind == "settlement":
            b = e.body
            kinds[e.seq] = (b["person"]["insutype"], "41" if b["visit"]["med_type"] == "41" else "11")
            sign = 1
        elif e.kind == "cancel":
            sign = -1
        else:
            continue
        ref = e.seq if sign == 1 else e.body["cancels"]
        if kinds.get(ref) != (insutype, clr_type) or not begin <= day <= end:
            continue
        a = e.body["amounts"]
        t["medfee"] += sign * a["medfee_sumamt"]
        t["fund"] += sign * a["hifp_pay"]
        t["acct"] += sign * a["acct_pay"]
        t["cnt"] += sign
    return t


async def statement(ctx: Ctx) -> Out:
    d = node(ctx.req.input, "data")
    insutype = text(d, "insutype", most=6)
    clr_type = text(d, "clr_type", most=6)
    optins = text(d, "setl_optins", most=6)
    begin, end = _date(d, "stmt_begndate"), _date(d, "stmt_enddate")
    theirs = {"medfee": fen(d.get("medfee_sumamt"), "medfee_sumamt"),
              "fund": fen(d.get("fund_pay_sumamt"), "fund_pay_sumamt"), "acct": fen(d.get("acct_pay"), "acct_pay")}
    cnt = d.get("fixmedins_setl_cnt")
    if isinstance(cnt, bool) or not isinstance(cnt, (int, str)) or not str(cnt).lstrip("-").isdigit():
        raise FieldError("fixmedins_setl_cnt must be a whole number", zh="结算笔数应为整数", field="fixmedins_setl_cnt")
    theirs["cnt"] = int(cnt)
    ours = await ctx.thread(journal_totals, ctx.counter.journal, insutype, clr_type, begin, end)
    ok = ours == theirs
    dscr = ("平账" if ok else
            f"不平：本机记账 医疗费总额{yuan(ours['medfee'])}元，基金支付{yuan(ours['fund'])}元，"
            f"个人账户{yuan(ours['acct'])}元，结算{ours['cnt']}笔")
    return Out({"stmtinfo": {"setl_optins": optins, "stmt_rslt": "0" if ok else "1", "stmt_rslt_dscr": dscr}})


HANDLERS = {"3201": statement}
