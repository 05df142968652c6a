"""Why each fen went where it went: reason codes and their wording (English and Chinese).

The engine records a reason as a code plus the numbers behind it; the text is rendered only when
someone reads it (JSON output, ``--explain``, the counter page). Keeping text out of the hot path
keeps settlement fast, and keeping the wording in one table keeps both languages in step.
"""

from __future__ import annotations

from typing import Any, Callable

from .money import yuan as y

_Render = Callable[[dict[str, Any]], str]

TEMPLATES: dict[str, tuple[_Render, _Render]] = {
    "amount": (
        lambda p: f"{p['cnt']} × ¥{y(p['pric'])} = ¥{y(p['amount'])} (rounded half up to the fen)",
        lambda p: f"数量 {p['cnt']} × 单价 ¥{y(p['pric'])} = ¥{y(p['amount'])}（四舍五入到分）"),
    "not_in_catalogue": (
        lambda p: "not in the insurance catalogue: paid in full by the patient",
        lambda p: "不在医保目录内：全部自费"),
    "not_valid_on_date": (
        lambda p: f"catalogue entry not valid on {p['date']}: paid in full by the patient",
        lambda p: f"目录项目在 {p['date']} 不在有效期内：全部自费"),
    "class_c": (
        lambda p: "class C (丙类), not covered: paid in full by the patient",
        lambda p: "丙类项目，医保不予支付：全部自费"),
    "over_price_cap": (
        lambda p: f"price ¥{y(p['pric'])} above the cap ¥{y(p['cap'])}: {p['cnt']} × ¥{y(p['pric'] - p['cap'])} "
                  f"= ¥{y(p['amount'])} paid by the patient",
        lambda p: f"单价 ¥{y(p['pric'])} 超过限价 ¥{y(p['cap'])}：超限 ¥{y(p['amount'])} 由个人负担"),
    "class_b_selfpay": (
        lambda p: f"class B (乙类): {p['prop']} × ¥{y(p['base'])} = ¥{y(p['amount'])} advance self-pay",
        lambda p: f"乙类项目：先行自付 {p['prop']} × ¥{y(p['base'])} = ¥{y(p['amount'])}"),
    "in_scope": (
        lambda p: f"class {p['cls']}: ¥{y(p['amount'])} within the policy scope",
        lambda p: f"{'甲' if p['cls'] == 'A' else '乙'}类：¥{y(p['amount'])} 进入政策范围"),
    "chronic_out_of_scope": (
        lambda p: f"not among the items the chronic-disease filing {p['code']} covers: paid in full by the "
                  "patient here (settle it as an ordinary outpatient visit, med_type 11)",
        lambda p: f"不在门诊慢特病备案 {p['code']} 的用药范围内：本次全部自费（可另按普通门诊结算）"),
    "acct_not_payable": (
        lambda p: f"¥{y(p['amount'])} of goods the personal account may not pay for (such as class C health "
                  "supplements): paid in cash",
        lambda p: f"¥{y(p['amount'])} 为个人账户不得支付的项目（如丙类保健品）：须现金支付"),
    "chronic_filing": (
        lambda p: f"chronic-disease filing {p['code']} on record",
        lambda p: f"门诊慢特病备案 {p['code']} 有效"),
    "scope": (
        lambda p: f"bill ¥{y(p['medfee'])}: own-pay ¥{y(p['ownpay'])}, over cap ¥{y(p['overlmt'])}, "
                  f"advance self-pay ¥{y(p['preself'])}, in scope ¥{y(p['amount'])}",
        lambda p: f"费用总额 ¥{y(p['medfee'])}：全自费 ¥{y(p['ownpay'])}，超限价 ¥{y(p['overlmt'])}，"
                  f"先行自付 ¥{y(p['preself'])}，政策范围内 ¥{y(p['amount'])}"),
    "suspended": (
        lambda p: "insured status suspended (employer arrears): the fund pays nothing and no deductible "
                  "progress; a full-payment claim can recover it later",
        lambda p: "参保状态暂停（单位欠费）：统筹基金不予支付，起付线不累计"),
    "deductible": (
        lambda p: f"deductible ¥{y(p['deductible'])}, ¥{y(p['used'])} used this year: ¥{y(p['amount'])} of this "
                  f"visit counts towards it",
        lambda p: f"起付线 ¥{y(p['deductible'])}，本年已累计 ¥{y(p['used'])}：本次 ¥{y(p['amount'])} 计入起付线"),
    "ratio": (
        lambda p: f"fund pays {p['ratio']} × ¥{y(p['base'])} = ¥{y(p['amount'])} (rounded half up)",
        lambda p: f"统筹支付 {p['ratio']} × ¥{y(p['base'])} = ¥{y(p['amount'])}（四舍五入）"),
    "annual_cap": (
        lambda p: f"annual fund cap ¥{y(p['cap'])}, ¥{y(p['paid'])} already paid: fund pays ¥{y(p['amount'])}",
        lambda p: f"年度统筹支付限额 ¥{y(p['cap'])}，已支付 ¥{y(p['paid'])}：本次统筹支付 ¥{y(p['amount'])}"),
    "visit_cap": (
        lambda p: f"per-visit fund cap ¥{y(p['cap'])}: fund pays ¥{y(p['amount'])}",
        lambda p: f"单次统筹支付限额 ¥{y(p['cap'])}：本次统筹支付 ¥{y(p['amount'])}"),
    "acct_not_allowed": (
        lambda p: "the personal account may not pay for this kind of visit",
        lambda p: "该类就诊不允许使用个人账户支付"),
    "acct_not_used": (
        lambda p: "patient chose not to use the personal account",
        lambda p: "患者选择不使用个人账户"),
    "account": (
        lambda p: f"personal account pays ¥{y(p['amount'])} (balance ¥{y(p['balc'])})",
        lambda p: f"个人账户支付 ¥{y(p['amount'])}（余额 ¥{y(p['balc'])}）"),
    "account_offline_limit": (
        lambda p: f"personal account pays ¥{y(p['amount'])}: offline account allowance left ¥{y(p['limit'])}, "
                  f"balance ¥{y(p['balc'])}",
        lambda p: f"个人账户支付 ¥{y(p['amount'])}：脱机个人账户额度剩余 ¥{y(p['limit'])}（余额 ¥{y(p['balc'])}）"),
    "cash": (
        lambda p: f"patient pays ¥{y(p['amount'])} in cash",
        lambda p: f"现金支付 ¥{y(p['amount'])}"),
}


def render(code: str, params: dict[str, Any]) -> tuple[str, str]:
    en, zh = TEMPLATES[code]
    return en(params), zh(params)
