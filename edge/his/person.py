"""1101 人员信息获取 (card 03, ID number 02, e-voucher 01) and 5206 人员累计信息查询.

1101 remembers who was identified under which voucher (``psn`` documents by psn_no), because later
messages (2201, 2207, 2102) carry only psn_no and the voucher type: a card visit is then settled with
the card still in the counter's reader (its 卡识别码 checked again before journaling), an ID-number
visit as a visit without a card (keyed in: no PIN, so the account does not pay; offline it becomes a
full-payment claim).
"""

from __future__ import annotations

from typing import Any

from edge.card.profile import SSN_RE, ssn_check_char

from .context import INSU_STAS, PSN_TYPE, Ctx, age, brdy, node, text
from .errors import FieldError, StateError
from .money import yuan
from .result import Out


def _insu(state: Any) -> dict:
    return {"insutype": state.insutype, "psn_type": PSN_TYPE.get(state.psn_type, state.psn_type[:6]),
            "status": INSU_STAS.get(state.status, "2"), "balc": state.balc}


async def _by_card(ctx: Ctx, d: dict) -> dict:
    card_sn = text(d, "card_sn", most=32)
    card_no = text(d, "mdtrt_cert_no", most=8192).split("|", 1)[0].strip()
    status = await ctx.thread(ctx.counter.card_status, None)
    if not status.get("present"):
        raise StateError("no card in the counter's reader", zh="读卡器中没有社会保障卡，请插卡后重试", field="card_sn")
    card = status["card"]
    if card["card_id"] != card_sn or (card_no and card.get("card_no") and card["card_no"] != card_no):
        raise StateError("the card in the reader is not the card of card_sn", zh="读卡器中的卡与卡识别码不一致，请重新读卡",
                         field="card_sn")
    person = status.get("person")
    if not person:
        raise StateError("the card holder is not in the local insured list", zh="本地参保人名单中没有此卡持卡人",
                         field="card_sn")
    return {"psn_no": person["psn_no"], "cert_type": "03", "card_id": card_sn, "certno": card["certno"],
            "psn_name": card.get("psn_name") or "", "gend": card.get("gend") or "", "insutype": person["insutype"],
            "psn_type": PSN_TYPE.get(person["psn_type"], person["psn_type"][:6]),
            "status": INSU_STAS.get(person["status"], "2"), "balc": person["balc"]}


async def _by_certno(ctx: Ctx, certno: str, cert_type: str) -> dict:
    certno = certno.strip().upper()
    if not SSN_RE.fullmatch(certno) or ssn_check_char(certno[:17]) != certno[17]:
        raise FieldError("mdtrt_cert_no is not a valid ID number", zh="身份证号码不正确（校验位不符）",
                         field="mdtrt_cert_no")
    # The balance answered includes this counter's visits journaled but not yet in the cache.
    person = await ctx.thread(ctx.counter.cache.person_for_card, None, certno, ctx.counter.pending_entries())
    if person is None:
        raise StateError("the person is not in the local insured list", zh="本地参保人名单中没有此身份证号码的参保人",
                         field="mdtrt_cert_no")
    return _without_card(person, certno, cert_type)


async def _by_token(ctx: Ctx, token: str) -> dict:
    from .ecvoucher import check_token, resolve, unidentified

    psn_no = await resolve(ctx, check_token(token))
    if psn_no is None:
        return unidentified(token)     # offline: the visit goes on, paid in full, the centre identifies it later
    person = await ctx.thread(ctx.counter.cache.person, psn_no, ctx.counter.pending_entries())
    if person is None or not person.certno:
        raise StateError("the e-voucher's person is not in the local insured list",
                         zh="本地参保人名单中没有该电子凭证的参保人，请等待名单更新", field="mdtrt_cert_no")
    return _without_card(person, person.certno, "01")


def _without_card(person: Any, certno: str, cert_type: str) -> dict:
    i = _insu(person.state)
    return {"psn_no": person.psn_no, "cert_type": cert_type, "card_id": None, "certno": certno,
            "psn_name": str(person.snapshot.get("name") or ""), "gend": "1" if int(certno[16]) % 2 else "2",
            "insutype": i["insutype"], "psn_type": i["psn_type"], "status": i["status"], "balc": i["balc"]}


async def identify(ctx: Ctx) -> Out:
    d = node(ctx.req.input, "data")
    kind = text(d, "mdtrt_cert_type", most=3)
    if kind == "03":
        psn = await _by_card(ctx, d)
    elif kind == "02":
        psn = await _by_certno(ctx, text(d, "mdtrt_cert_no"), "02")
    elif kind == "01":
        psn = await _by_token(ctx, text(d, "mdtrt_cert_no", most=100))
    else:
        raise FieldError(f"mdtrt_cert_type {kind} is not 01, 02 or 03", zh="就诊凭证类型应为01、02或03",
                         field="mdtrt_cert_type")
    await ctx.thread(ctx.store.put, "psn", psn["psn_no"], psn)
    today = ctx.now.date()
    known = not psn.get("ec_token")
    base = {"psn_no": psn["psn_no"], "psn_cert_type": "01", "certno": psn["certno"], "psn_name": psn["psn_name"],
            "gend": psn["gend"], "naty": "01" if known else "", "brdy": brdy(psn["certno"]),
            "age": age(psn["certno"], today), "exp_content": "" if known else "unidentified"}
    insu = {"balc": yuan(psn["balc"]), "insutype": psn["insutype"], "psn_type": psn["psn_type"],
            "psn_insu_stas": psn["status"], "psn_insu_date": None, "paus_insu_date": None,
            "cvlserv_flag": "0" if known else "", "insuplc_admdvs": ctx.area, "emp_name": ""}
    if not known:
        from .ecvoucher import UNIDENTIFIED_WARN
        return Out({"baseinfo": base, "insuinfo": [insu], "idetinfo": []}, UNIDENTIFIED_WARN)
    return Out({"baseinfo": base, "insuinfo": [insu], "idetinfo": []})


# 5206 cum_type_code: the accumulators the engine keeps (the national code list is not public).
CUM_DEDUCTIBLE, CUM_FUND = "Q001", "J001"


async def totals(ctx: Ctx) -> Out:
    d = node(ctx.req.input, "data")
    psn_no = text(d, "psn_no", most=30)
    person = await ctx.thread(ctx.counter.cache.person, psn_no, ctx.counter.pending_entries())
    if person is None:
        raise StateError(f"person {psn_no} is not in the local insured list", zh="本地参保人名单中没有此人员编号",
                         field="psn_no")
    ym = text(d, "cum_ym", required=False, most=6) or ctx.now.strftime("%Y%m")
    s = person.state
    rows = [{"insutype": s.insutype, "year": ym[:4], "cum_ym": ym, "cum_type_code": code, "cum": yuan(amount),
             "cum_type_name": name}
            for code, name, amount in ((CUM_DEDUCTIBLE, "起付线累计", s.deductible_used),
                                       (CUM_FUND, "统筹基金支付累计", s.fund_paid))]
    return Out({"cuminfo": rows})


HANDLERS = {"1101": identify, "5206": totals}
