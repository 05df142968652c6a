"""What every transaction module shares: the counter, the HIS store, field readers and the national
shapes built from the counter's receipts (setlinfo, setldetail, per-line results).

Every settlement goes through :class:`edge.counter.Counter` (presettle, settle, claim, cancel): the same
engine, journal and online/offline/full-payment decision as the counter page and the local JSON API.
The HIS's own references (sign-ins, registered visits, fee lines, msgids) are in :mod:`edge.his.store`.
Reads of the cache (person by ID number, catalogue entries) and of the journal (3201) run in worker
threads, never on the event loop.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable, Mapping, TypeVar

import trio

from .envelope import CST, Request, dt_text
from .errors import FieldError, StateError
from .money import ExpNumber, fen, ratio, yuan
from .store import HisStore

T = TypeVar("T")

# A visit identified by ID number (02) or e-voucher (01) has no card: the counter takes it as a keyed-in
# identity (no card to confirm, the account does not pay, offline it is a full-payment claim) with this
# card number standing for "no card" (9 characters, the card number's shape).
NO_CARD_NO = "SFZ000000"
CHRGITM_LV = {"A": "01", "B": "02", "C": "03"}
INSUTYPE_FUND = {"310": ("310100", "职工基本医疗保险统筹基金"), "390": ("390100", "城乡居民基本医疗保险基金")}
ACCT_FUND = ("310200", "职工基本医疗保险个人账户基金")
PSN_TYPE = {"working": "1101", "retired": "1102"}   # our person types as the interface's psn_type codes
INSU_STAS = {"active": "1", "suspended": "2", "terminated": "4"}
NO_CAP = Decimal("999999.00")
CNT_PLACES = 4                                        # cnt is N(16,4) in the interface
_COUNT = re.compile(r"^-?[0-9]{1,12}(\.[0-9]+)?$")    # ASCII digits: re's \d takes "２" too
OFFLINE_WARN = "本次为脱机结算：医保中心暂时无法连接，结算已在本机记账，联网后自动上传核对"


@dataclass
class Ctx:
    counter: Any
    store: HisStore
    req: Request
    now: dt.datetime
    operator: Any = None    # who the HIS acts as (the counter API's caller check); None: none configured

    # The one visit path: Counter's public methods, with the caller's operator when there is one.
    def _as(self) -> dict[str, Any]:
        return {} if self.operator is None else {"operator": self.operator}

    # A voucher read offline names nobody the counter could settle for (visit_data gives ``ec_token``
    # instead of a card or certno): its pre-settlement is full payment and its settlement a claim that
    # carries the token (edge.his.ecvoucher).
    async def presettle(self, data: dict) -> dict:
        if "ec_token" in data:
            from .ecvoucher import quote
            return await quote(self, data)
        return await self.counter.presettle(data, **self._as())

    async def settle(self, data: dict) -> dict:
        if "ec_token" in data:
            return await self.claim(data)
        return await self.counter.settle(data, **self._as())

    async def claim(self, data: dict) -> dict:
        if "ec_token" in data:
            from .ecvoucher import claim
            return await claim(self, data)
        return await self.counter.claim(data, **self._as())

    async def cancel(self, seq: int, data: dict) -> dict:
        return await self.counter.cancel(seq, data, **self._as())

    async def thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await trio.to_thread.run_sync(fn, *args)

    @property
    def area(self) -> str:
        a = self.req.header.get("insuplc_admdvs") or self.req.header.get("mdtrtarea_admvs") or ""
        return a if len(a) == 6 and a.isdigit() else "000000"

    def new_id(self, prefix: str) -> str:
        """A 30-character id of ours: prefix + yyyyMMddHHmmss + random digits."""
        stamp = self.now.astimezone(CST).strftime("%Y%m%d%H%M%S")
        return (prefix + stamp + "".join(secrets.choice("0123456789") for _ in range(30)))[:30]


# -- field readers ----------------------------------------------------------------------------------
def node(body: Mapping[str, Any], name: str) -> dict:
    v = body.get(name)
    if not isinstance(v, dict):
        raise FieldError(f"input.{name} must be an object", zh=f"交易输入缺少 {name} 节点", field=name)
    return v


def rows(body: Mapping[str, Any], name: str) -> list[dict]:
    v = body.get(name)
    if isinstance(v, dict):
        v = [v]    # a single object where a list is expected: some HIS models send one (BZ's 2204 result)
    if not isinstance(v, list) or not v or not all(isinstance(x, dict) for x in v):
        raise FieldError(f"input.{name} must be a non-empty list of objects", zh=f"交易输入缺少 {name} 明细",
                         field=name)
    return v


def text(d: Mapping[str, Any], name: str, *, required: bool = True, most: int = 50) -> str:
    v = d.get(name)
    if isinstance(v, (int, Decimal)) and not isinstance(v, bool):
        v = str(v)
    if v is None or v == "":
        if required:
            raise FieldError(f"{name} is required", zh=f"缺少必填项 {name}", field=name)
        return ""
    if not isinstance(v, str) or len(v) > most:
        raise FieldError(f"{name} must be text of at most {most} characters", zh=f"{name} 格式不正确", field=name)
    return v.strip()


def flag(d: Mapping[str, Any], name: str) -> bool:
    v = d.get(name, "0")
    if v in ("1", 1, True):
        return True
    if v in ("0", 0, False, None, ""):
        return False
    raise FieldError(f"{name} must be 0 or 1", zh=f"{name} 应为0或1", field=name)


def count(d: Mapping[str, Any], name: str) -> str:
    """A count, N(16,4): plain ASCII decimal text or number (no exponent: ``1E+999999`` would expand to a
    million digits), > 0, at most :data:`CNT_PLACES` places once trailing zeros are dropped."""
    v = d.get(name)
    if isinstance(v, (bool, ExpNumber)) or not isinstance(v, (str, int, Decimal)):
        raise FieldError(f"{name} must be a number", zh=f"{name} 数量格式不正确", field=name)
    raw = str(v).strip()
    if not _COUNT.match(raw):
        raise FieldError(f"{name} must be a plain decimal", zh=f"{name} 数量格式不正确", field=name)
    c = Decimal(raw).normalize()
    if c <= 0:
        raise FieldError(f"{name} must be > 0", zh=f"{name} 数量必须大于0", field=name)
    if c != c.quantize(Decimal(1).scaleb(-CNT_PLACES)):
        raise FieldError(f"{name} has more than {CNT_PLACES} decimal places",
                         zh=f"{name} 数量最多{CNT_PLACES}位小数：{raw}", field=name)
    return format(c, "f")


def fee_line(d: Mapping[str, Any], i: int) -> dict:
    """One fee line (2204 feedetail / 2101 drugdetail) in fen, its total checked against cnt x pric."""
    from edge.settle import round_fen
    from edge.settle.money import mul

    where = f"第{i + 1}条明细"
    try:
        cnt = count(d, "cnt")
        pric = fen(d.get("pric"), "pric")
        total = fen(d.get("det_item_fee_sumamt"), "det_item_fee_sumamt")
        sn = text(d, "feedetl_sn", most=30)
        code = text(d, "med_list_codg")
    except FieldError as exc:
        raise type(exc)(f"line {i + 1}: {exc.message}", zh=f"{where}：{exc.zh}", field=exc.detail.get("field")) from None
    if round_fen(mul(Decimal(cnt), pric)) != total:
        raise StateError(f"line {i + 1}: det_item_fee_sumamt {yuan(total)} is not cnt x pric",
                         zh=f"{where}：明细金额{yuan(total)}不等于数量×单价", field="det_item_fee_sumamt")
    return {"feedetl_sn": sn, "med_list_codg": code, "medins_list_codg": text(d, "medins_list_codg", required=False,
                                                                              most=150),
            "cnt": cnt, "pric": pric, "det_item_fee_sumamt": total,
            "chrg_bchno": text(d, "chrg_bchno", required=False, most=30)}


# -- identity ---------------------------------------------------------------------------------------
def visit_data(psn: Mapping[str, Any], *, req: str | None, med_type: str, acct: bool, lines: list[dict],
               pin: str | None, chronic_code: str | None = None) -> dict:
    """The counter's visit request (the local JSON API's body) for a HIS visit."""
    data: dict[str, Any] = {"med_type": med_type, "acct_used_flag": acct,
                            "items": [{"med_list_codg": ln["med_list_codg"], "cnt": ln["cnt"], "pric": ln["pric"]}
                                      for ln in lines]}
    if req is not None:
        data["req"] = req
    if chronic_code:
        data["chronic_code"] = chronic_code
    if psn.get("ec_token"):
        data["ec_token"] = psn["ec_token"]    # a voucher read offline: nobody identified yet (ecvoucher.py)
    elif psn.get("card_id"):
        data["card_id"] = psn["card_id"]      # the card in the reader must still be this one
    else:
        data["keyed_in"] = {"card_no": NO_CARD_NO, "certno": psn["certno"]}
    if pin:
        data["pin"] = pin
    return data


def person_of(ctx: Ctx, psn_no: str) -> dict:
    psn = ctx.store.get("psn", psn_no)
    if psn is None:
        raise StateError(f"person {psn_no} was not identified here (send 1101 first)",
                         zh="未获取该人员信息，请先读卡(1101)", field="psn_no")
    return psn


def brdy(certno: str) -> str | None:
    if len(certno) == 18 and certno[6:14].isdigit():
        return f"{certno[6:10]}-{certno[10:12]}-{certno[12:14]}"
    return None


def age(certno: str, today: dt.date) -> Decimal | None:
    b = brdy(certno)
    if b is None:
        return None
    born = dt.date.fromisoformat(b)
    years = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
    return Decimal(years).quantize(Decimal("0.1"))


# -- national output shapes -------------------------------------------------------------------------
def line_result(ln: Mapping[str, Any], split: Mapping[str, Any] | None, item: Mapping[str, Any] | None) -> dict:
    """The 2204 ``result`` row of one uploaded line: the engine's split and the catalogue's terms."""
    s = split or {}
    item = item or {}
    code = ln["med_list_codg"]
    upl = item.get("pric_uplmt_amt")
    return {"feedetl_sn": ln["feedetl_sn"], "det_item_fee_sumamt": yuan(ln["det_item_fee_sumamt"]),
            "cnt": Decimal(ln["cnt"]), "pric": yuan(ln["pric"]),
            # No price cap in the catalogue: 999999, as the platform answers (OH sample, HSA-INTERFACE.md 6).
            "pric_uplmt_amt": yuan(upl) if isinstance(upl, int) else NO_CAP,
            "selfpay_prop": ratio(item.get("selfpay_prop")) if item.get("selfpay_prop") is not None
            else Decimal("0.0000"),
            "fulamt_ownpay_amt": yuan(s.get("fulamt_ownpay_amt", 0)), "overlmt_amt": yuan(s.get("overlmt_amt", 0)),
            "preselfpay_amt": yuan(s.get("preselfpay_amt", 0)), "inscp_scp_amt": yuan(s.get("inscp_scp_amt", 0)),
            "chrgitm_lv": CHRGITM_LV.get(item.get("chrgitm_lv") or "", "03"),
            "med_chrgitm_type": med_chrgitm_type(code),
            "bas_medn_flag": "0", "hi_nego_drug_flag": "0", "chld_medc_flag": "0", "list_sp_item_flag": "0",
            "lmt_used_flag": "0", "drt_reim_flag": "0",
            "memo": "" if split is not None else "未能计算分割（需全额垫付或人员不明）"}


def med_chrgitm_type(code: str) -> str:
    # National list codes start with X (西药), Z (中成药), T (中药饮片), C (耗材); services are numeric.
    return {"X": "09", "Z": "11", "T": "10", "C": "08"}.get(code[:1], "05" if code[:1].isdigit() else "14")


def setlinfo(s: Mapping[str, int], *, psn: Mapping[str, Any], mdtrt_id: str, setl_id: str | None, msgid: str,
             med_type: str, clr_type: str, area: str, when: dt.datetime | None, today: dt.date,
             cash_key: str = "psn_cash_pay", sign: int = 1) -> dict:
    """The national setlinfo from the counter's amounts (fen). The fund total excludes the account, as in
    the OH sample (HSA-INTERFACE.md section 11); ``sign`` -1 answers a cancel with negated amounts."""
    hifp, acct, medfee = s.get("hifp_pay", 0), s.get("acct_pay", 0), s.get("medfee_sumamt", 0)
    cash = s.get("psn_cash_pay", medfee - hifp - acct)
    inscp, dedc = s.get("inscp_scp_amt", 0), s.get("act_pay_dedc", 0)
    base = inscp - dedc
    prop = (Decimal(hifp) / Decimal(base)).quantize(Decimal("0.0001")) if base > 0 else Decimal("0.0000")

    def y(n: int) -> Decimal:
        return yuan(sign * n)

    return {"mdtrt_id": mdtrt_id, "setl_id": setl_id, "psn_no": psn["psn_no"], "psn_name": psn.get("psn_name", ""),
            "psn_cert_type": "01", "certno": psn.get("certno", ""), "gend": psn.get("gend", ""), "naty": "01",
            "brdy": brdy(psn.get("certno", "")), "age": age(psn.get("certno", ""), today),
            "insutype": psn.get("insutype", ""), "psn_type": psn.get("psn_type", ""), "cvlserv_flag": "0",
            "setl_time": dt_text(when) if when is not None else None,
            "mdtrt_cert_type": psn.get("cert_type", ""), "med_type": med_type,
            "medfee_sumamt": y(medfee), "fulamt_ownpay_amt": y(s.get("fulamt_ownpay_amt", 0)),
            "overlmt_selfpay": y(s.get("overlmt_selfpay", 0)), "preselfpay_amt": y(s.get("preselfpay_amt", 0)),
            "inscp_scp_amt": y(inscp), "act_pay_dedc": y(dedc), "hifp_pay": y(hifp), "pool_prop_selfpay": prop,
            "cvlserv_pay": y(0), "hifes_pay": y(0), "hifmi_pay": y(0), "hifob_pay": y(0), "maf_pay": y(0),
            "oth_pay": y(0), "fund_pay_sumamt": y(hifp), "psn_part_amt": y(medfee - hifp), "acct_pay": y(acct),
            cash_key: y(cash), "hosp_part_amt": y(0), "balc": yuan(s.get("balc", 0)), "acct_mulaid_pay": y(0),
            "medins_setl_id": msgid, "clr_optins": area, "clr_way": "1", "clr_type": clr_type}


def setldetail(s: Mapping[str, int], insutype: str, *, sign: int = 1) -> list[dict]:
    """One row per fund that paid (the account as its own fund row, as the OH sample shows)."""
    out = []
    code, name = INSUTYPE_FUND.get(insutype, (insutype + "100", "基本医疗保险统筹基金"))
    for (ftype, fname), amount in (((code, name), s.get("hifp_pay", 0)), (ACCT_FUND, s.get("acct_pay", 0))):
        if amount:
            out.append({"fund_pay_type": ftype, "inscp_scp_amt": yuan(sign * s.get("inscp_scp_amt", 0)),
                        "crt_payb_lmt_amt": yuan(0), "fund_payamt": yuan(sign * amount),
                        "fund_pay_type_name": fname, "setl_proc_info": ""})
    return out


def medfee_check(data: Mapping[str, Any], lines: list[dict]) -> int:
    """``medfee_sumamt`` must equal the uploaded lines' total (fen), or nothing is settled."""
    medfee = fen(data.get("medfee_sumamt"), "medfee_sumamt")
    total = sum(ln["det_item_fee_sumamt"] for ln in lines)
    if medfee != total:
        raise StateError(f"medfee_sumamt {yuan(medfee)} disagrees with the uploaded lines ({yuan(total)})",
                         zh=f"医疗费总额{yuan(medfee)}元与已上传明细合计{yuan(total)}元不符，未结算",
                         field="medfee_sumamt")
    return medfee
