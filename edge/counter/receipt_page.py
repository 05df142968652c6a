"""The printable receipt page (server-rendered HTML, inline CSS, inline SVG QR: prints without script
or network). Amounts are fen rendered as yuan text; nothing here does arithmetic on money except the
sign of a cancel (a cancel receipt shows the reversed amounts as negatives, as paper receipts do).

The page is the Jinja2 template ``templates/receipt.html`` with autoescape on: every value from the
view is escaped by the template engine; only the QR code (SVG we generate ourselves) is marked safe.
``?paper=58`` or ``?paper=80`` sizes it for a thermal printer (80 is the default).

What a Chinese receipt names and the journal does not hold - the patient's name - comes from the local
person snapshot and is masked (张三 -> 张*). The clinic code is the site in the device id.
"""

from __future__ import annotations

import datetime as dt
import re
from functools import lru_cache
from typing import Any

import trio
from jinja2 import Environment, PackageLoader, Template, select_autoescape
from markupsafe import Markup

from edge.settle import yuan

from .errors import CounterError
from .receipts import qr_svg

CHINA = dt.timezone(dt.timedelta(hours=8))
INSUTYPE_ZH = {"310": "职工医保", "390": "居民医保"}
PSN_TYPE_ZH = {"working": "在职", "retired": "退休"}
MED_TYPE_ZH = {"11": "普通门诊", "13": "急诊", "14": "门诊慢特病", "41": "定点药店购药"}
PAPERS = ("58", "80")
# What a claim receipt tells the patient (DOMAIN.md section 8): the centre reviews, the fund's share
# comes back as a reimbursement and the counter shows it at the next visit.
CLAIM_HOW_ZH = ("本次费用由您先行全额支付。医保中心审核后，医保应支付的部分将退还给您（审核结果和报销金额在您下次"
                "持卡就诊时由柜台告知，也可凭理赔号到医保经办机构查询）；一般在10个工作日内完成审核。请妥善保管本凭证。")


@lru_cache(maxsize=1)
def _env() -> Environment:
    return Environment(loader=PackageLoader("edge.counter", "templates"),
                       autoescape=select_autoescape(default=True, default_for_string=True))


def _template(name: str = "receipt.html") -> Template:
    return _env().get_template(name)


def mask_name(name: str | None) -> str:
    """张三 -> 张*, 欧阳建国 -> 欧***: the first character only, as Chinese receipts print it."""
    if not name:
        return "（未读出姓名）"
    return name[0] + "*" * (len(name) - 1)


def site_of(device: str) -> str:
    m = re.fullmatch(r"D-(.+)-\d+", device or "")
    return m.group(1) if m else "（未知）"


def render(view: dict[str, Any], extra: dict[str, Any] | None = None) -> str:
    extra = extra or {}
    s = view.get("setlinfo", {})
    sign = -1 if view.get("kind") == "cancel" else 1
    money = [("费用总额", s.get("medfee_sumamt")), ("统筹基金支付", s.get("fund_pay_sumamt")),
             ("个人账户支付", s.get("acct_pay")), ("现金支付", s.get("psn_cash_pay"))]
    shown = [(label, _signed(sign * int(v))) for label, v in money if v is not None]
    if s.get("balc") is not None:
        shown.append(("账户余额", _signed(int(s["balc"]))))
    svg = qr_svg(view["qr"]).decode("utf-8")
    lines = extra.get("lines") or view["lines"]
    rows = [{"name": str(line["name"]), "code": line["med_list_codg"], "cnt": str(line["cnt"]),
             "pric": yuan(int(line["pric"])), "total": _signed(sign * int(line["det_item_fee_sumamt"]))}
            for line in lines]
    paper = extra.get("paper") if extra.get("paper") in PAPERS else "80"
    return _template().render(
        seq=int(view["seq"]), mode_zh=view.get("mode_zh", ""), claim_no=view.get("claim_no"),
        cause_zh=view.get("cause_zh", ""), lines=rows, money=shown, kind=view["kind"],
        kind_zh=view["kind_zh"], device=view["device"], digest=view["digest"], qr=view["qr"],
        time=f"{dt.datetime.fromtimestamp(view['time_ms'] / 1000, CHINA):%Y-%m-%d %H:%M}",
        svg=Markup(svg[svg.index("<svg"):]),  # noqa: S704  our own QR SVG, generated from escaped text
        cancellable=view["kind"] == "settlement" and not extra.get("cancelled_by"),
        cancelled_by=extra.get("cancelled_by"), cancels=view.get("cancels"), paper=paper,
        payout_no=view.get("payout_no"),
        patient=extra.get("patient", "（未读出姓名）"), insutype=extra.get("insutype", "（未记录）"),
        psn_type=extra.get("psn_type", "（未记录）"), med_type=extra.get("med_type", "（未记录）"),
        site=site_of(view["device"]), site_name=extra.get("site_name"), operator=extra.get("operator") or "（未记录）",
        settlement_id=f"{view['device']}-{view['seq']}", claim_how=CLAIM_HOW_ZH if view.get("claim_no") else "")


def _signed(fen: int) -> str:
    return ("-¥" if fen < 0 else "¥") + yuan(abs(fen))


def not_found(seq_text: str) -> str:
    return _template("receipt_missing.html").render(seq=seq_text)


async def page(counter, seq_text: str, paper: str | None = None) -> tuple[int, str]:
    """(status, HTML) of the receipt page for journal seq ``seq_text``; a Chinese page when there is none."""
    try:
        seq = int(seq_text)
        if seq < 1:
            raise ValueError(seq_text)
        view = await counter.receipt(seq)
    except (ValueError, CounterError) as exc:
        if isinstance(exc, CounterError) and exc.code not in ("unknown_receipt", "invalid_input"):
            raise
        return 404, not_found(seq_text)
    return 200, render(view, await trio.to_thread.run_sync(_extra, counter, view, paper))


def _cancel_reqs(seq: int) -> list[str]:
    """The journal reqs a cancel of ``seq`` is filed under: the counter's own key space, then the older form."""
    from . import visit

    internal = getattr(visit, "internal_req", None)
    return ([internal("cancel", seq)] if internal is not None else []) + [f"cancel:{seq}"]


def _extra(counter, view: dict[str, Any], paper: str | None) -> dict[str, Any]:
    """What the receipt names beyond the entry's own view (a worker thread: journal and cache reads)."""
    journal, cache = counter.journal, counter.cache
    entry = journal.get(int(view["seq"]))
    body = entry.body if entry is not None else {}
    out: dict[str, Any] = {"paper": paper}
    if view["kind"] == "cancel":
        original = journal.get(int(body["cancels"]))
        if original is not None:
            from .receipts import receipt_view
            out["lines"] = receipt_view(original, cache)["lines"]   # the items it reverses
            body = {**original.body, **body}
    elif view["kind"] == "settlement":
        out["cancelled_by"] = None
        for req in _cancel_reqs(int(view["seq"])):
            cancel = journal.find_by_req(req)
            if cancel is not None and cancel.kind == "cancel":
                out["cancelled_by"] = cancel.seq
                break
    person = body.get("person") or {}
    if person.get("insutype"):
        out["insutype"] = INSUTYPE_ZH.get(person["insutype"], person["insutype"])
    if person.get("psn_type"):
        out["psn_type"] = PSN_TYPE_ZH.get(person["psn_type"], person["psn_type"])
    med_type = (body.get("visit") or {}).get("med_type")
    if med_type:
        out["med_type"] = MED_TYPE_ZH.get(med_type, med_type)
    operator = body.get("operator")
    if isinstance(operator, dict):     # name and number (工号): the name alone may be shared by two clerks
        name, op_id = operator.get("name"), operator.get("id")
        out["operator"] = f"{name}（{op_id}）" if name and op_id else name or op_id
    else:
        out["operator"] = operator
    snap = cache.person(body["psn_no"]) if body.get("psn_no") else None
    out["patient"] = mask_name((snap.snapshot or {}).get("name") if snap is not None else None)
    return out
