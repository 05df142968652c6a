"""What the engine returns: the split, per line and per visit, with the reason for every fen.

``to_dict`` uses the national interface's field names; ``to_json`` is the canonical text (fixed key
order, no floats, UTF-8) that the centre compares byte for byte when it replays an edge decision.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from .inputs import Rule
from .reasons import render


@dataclass(frozen=True, slots=True)
class Reason:
    """One step of the explanation: a stable ``code`` (see reasons.TEMPLATES) and its numbers."""

    code: str
    amount: int | None = None
    params: dict | None = None

    @property
    def text(self) -> str:
        return render(self.code, self._all_params())[0]

    @property
    def zh(self) -> str:
        return render(self.code, self._all_params())[1]

    def _all_params(self) -> dict:
        return {**(self.params or {}), "amount": self.amount}

    def to_dict(self) -> dict:
        en, zh = render(self.code, self._all_params())
        out: dict[str, Any] = {"code": self.code, "text": en, "zh": zh}
        if self.amount is not None:
            out["amount"] = self.amount
        return out


@dataclass(frozen=True, slots=True)
class Line:
    code: str
    name: str
    cls: str | None
    cnt: Decimal
    pric: int
    det_item_fee_sumamt: int
    fulamt_ownpay_amt: int
    overlmt_amt: int
    preselfpay_amt: int
    inscp_scp_amt: int
    reasons: tuple[Reason, ...]

    def to_dict(self) -> dict:
        return {
            "code": self.code, "name": self.name, "chrgitm_lv": self.cls, "cnt": str(self.cnt), "pric": self.pric,
            "det_item_fee_sumamt": self.det_item_fee_sumamt, "fulamt_ownpay_amt": self.fulamt_ownpay_amt,
            "overlmt_amt": self.overlmt_amt, "preselfpay_amt": self.preselfpay_amt,
            "inscp_scp_amt": self.inscp_scp_amt, "reasons": [r.to_dict() for r in self.reasons],
        }


MONEY_FIELDS = ("medfee_sumamt", "fulamt_ownpay_amt", "overlmt_selfpay", "preselfpay_amt", "inscp_scp_amt",
                "act_pay_dedc", "hifp_pay", "fund_pay_sumamt", "psn_part_amt", "acct_pay", "psn_cash_pay")


@dataclass(frozen=True, slots=True)
class Settlement:
    engine: str
    policy_version: str
    psn_no: str | None
    insutype: str
    psn_type: str
    med_type: str
    level: str
    date: str
    rule: Rule
    medfee_sumamt: int
    fulamt_ownpay_amt: int
    overlmt_selfpay: int
    preselfpay_amt: int
    inscp_scp_amt: int
    act_pay_dedc: int
    hifp_pay: int
    fund_pay_sumamt: int
    psn_part_amt: int
    acct_pay: int
    psn_cash_pay: int
    state_before: dict
    state_after: dict
    lines: tuple[Line, ...]
    reasons: tuple[Reason, ...]
    year: int = 0                  # the policy year the visit settled in (its date's year)
    accumulator: str = "default"   # the accumulator its deductible and annual cap drew on

    @property
    def balc(self) -> int:
        return self.state_after["balc"]

    def amounts(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in MONEY_FIELDS}

    def to_dict(self) -> dict[str, Any]:
        r = self.rule
        out: dict[str, Any] = self.amounts()
        out["balc"] = self.balc
        out["state_before"] = dict(self.state_before)
        out["state_after"] = dict(self.state_after)
        out["lines"] = [line.to_dict() for line in self.lines]
        out["reasons"] = [x.to_dict() for x in self.reasons]
        out["basis"] = {
            "engine": self.engine, "policy_version": self.policy_version, "psn_no": self.psn_no,
            "insutype": self.insutype, "psn_type": self.psn_type, "med_type": self.med_type,
            "level": self.level, "date": self.date,
            "rule": {"deductible": r.deductible, "ratio": str(r.ratio), "annual_cap": r.annual_cap,
                     "visit_cap": r.visit_cap, "acct_allowed": r.acct_allowed},
            "year": self.year, "accumulator": self.accumulator,
        }
        return out

    def to_json(self) -> str:
        return canonical_json(self.to_dict())

    def explain(self) -> str:
        """Readable text for the clerk, an auditor or ``settle-case --explain``."""
        from .money import yuan

        out = [f"Settlement of {self.date} (med_type {self.med_type}, level {self.level}, policy {self.policy_version})"]
        for line in self.lines:
            out.append(f"  {line.code} {line.name}: ¥{yuan(line.det_item_fee_sumamt)}")
            out.extend(f"      - {r.text}" for r in line.reasons)
        out.append("  Visit:")
        out.extend(f"      - {r.text}" for r in self.reasons)
        out.append(f"  Total ¥{yuan(self.medfee_sumamt)} = fund ¥{yuan(self.fund_pay_sumamt)} + account "
                   f"¥{yuan(self.acct_pay)} + cash ¥{yuan(self.psn_cash_pay)}")
        out.append(f"  Account balance after: ¥{yuan(self.balc)}")
        return "\n".join(out)


@dataclass(frozen=True, slots=True)
class Cancellation:
    psn_no: str | None
    medfee_sumamt: int
    act_pay_dedc: int
    hifp_pay: int
    acct_pay: int
    psn_cash_pay: int
    state_before: dict
    state_after: dict

    def to_dict(self) -> dict[str, Any]:
        return {
            "psn_no": self.psn_no, "medfee_sumamt": -self.medfee_sumamt, "act_pay_dedc": -self.act_pay_dedc,
            "hifp_pay": -self.hifp_pay, "fund_pay_sumamt": -self.hifp_pay, "acct_pay": -self.acct_pay,
            "psn_cash_pay": -self.psn_cash_pay, "balc": self.state_after["balc"],
            "state_before": dict(self.state_before), "state_after": dict(self.state_after),
        }


def canonical_json(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
