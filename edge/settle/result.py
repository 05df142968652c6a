"""What the engine returns: the split, per line and per visit, with the reason for every fen.

``to_dict`` uses the national interface's field names; ``to_json`` is the canonical text (fixed key
order, no floats, UTF-8) that the centre compares byte for byte when it replays an edge decision.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from json.encoder import encode_basestring as _jstr   # the string encoder of json.dumps(ensure_ascii=False)
from typing import Any

from .inputs import Rule
from .reasons import render

# Rendered reasons, memoised: a reason's text depends only on its code and numbers, and the same few
# (an item's amount line, its class, a visit's ratio) recur in nearly every settlement. Key: the code and
# each number with its type (and a Decimal by its text: 0.5 and 0.50 are equal but print differently);
# value: (English, Chinese, the reason's canonical JSON). Cleared whole when full, so it stays bounded.
_RENDERED: dict[tuple, tuple[str, str, str]] = {}
_RENDERED_MAX = 0        # 0: no memo; see edge.settle.set_memo_size


def _pinned(v: Any) -> Any:
    """``v`` as a cache key part that is equal only for values that render the same text, or raise TypeError."""
    t = type(v)
    if t is int or t is str or v is None:
        return v
    if t is Decimal:
        return (Decimal, str(v))
    if t is bool:
        return (bool, v)
    raise TypeError("not a value the reason cache keys")


@dataclass(frozen=True, slots=True)
class Reason:
    """One step of the explanation: a stable ``code`` (see reasons.TEMPLATES) and its numbers."""

    code: str
    amount: int | None = None
    params: dict | None = None

    @property
    def text(self) -> str:
        return self._rendered()[0]

    @property
    def zh(self) -> str:
        return self._rendered()[1]

    def _all_params(self) -> dict:
        return {**(self.params or {}), "amount": self.amount}

    def _key(self) -> tuple | None:
        """The memo key: the code and each number with its type; None for a value the memo does not key."""
        params = self.params
        try:
            amount = self.amount if type(self.amount) is int else _pinned(self.amount)
            return (self.code, amount, *[(k, v if type(v) is int else _pinned(v)) for k, v in params.items()]) \
                if params else (self.code, amount)
        except TypeError:
            return None   # a number of another type (or an unhashable one): render it, uncached

    def _rendered(self) -> tuple[str, str, str]:
        """(English, Chinese, canonical JSON of :meth:`to_dict`), rendered once per distinct reason."""
        key = self._key() if _RENDERED_MAX else None    # no memo (a counter's default): no key built
        if key is not None:
            got = _RENDERED.get(key)
            if got is not None:
                return got
        en, zh = render(self.code, self._all_params())
        amount = "" if self.amount is None else f',"amount":{_jv(self.amount)}'
        got = (en, zh, f'{{"code":{_jv(self.code)},"text":{_jv(en)},"zh":{_jv(zh)}{amount}}}')
        if key is not None:
            if len(_RENDERED) >= _RENDERED_MAX:
                _RENDERED.clear()
            _RENDERED[key] = got
        return got

    def to_dict(self) -> dict:
        en, zh, _ = self._rendered()
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

    def _json(self) -> str:
        """``canonical_json(self.to_dict())``, assembled from the memoised reasons, once per Line object
        (the engine hands out the same Line for the same inputs)."""
        if not _RENDERED_MAX:
            return self._assemble()
        got = _LINE_JSON.get(id(self))
        if got is not None and got[0] is self:
            return got[1]
        text = self._assemble()
        if len(_LINE_JSON) >= _RENDERED_MAX:
            _LINE_JSON.clear()
        _LINE_JSON[id(self)] = (self, text)
        return text

    def _assemble(self) -> str:
        return (f'{{"code":{_jv(self.code)},"name":{_jv(self.name)},"chrgitm_lv":{_jv(self.cls)},'
                f'"cnt":{_jstr(str(self.cnt))},"pric":{_jv(self.pric)},'
                f'"det_item_fee_sumamt":{_jv(self.det_item_fee_sumamt)},'
                f'"fulamt_ownpay_amt":{_jv(self.fulamt_ownpay_amt)},"overlmt_amt":{_jv(self.overlmt_amt)},'
                f'"preselfpay_amt":{_jv(self.preselfpay_amt)},"inscp_scp_amt":{_jv(self.inscp_scp_amt)},'
                f'"reasons":[{",".join([r._rendered()[2] for r in self.reasons])}]}}')


# Lines' JSON by identity; each value holds its Line, so an id is not reused while its entry is here.
_LINE_JSON: dict[int, tuple[Line, str]] = {}

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
        """``canonical_json(self.to_dict())``, byte for byte, without building the dict (the centre hashes
        every replayed settlement): the same keys in the same order, each value encoded as json.dumps does."""
        money = (self.medfee_sumamt, self.fulamt_ownpay_amt, self.overlmt_selfpay, self.preselfpay_amt,
                 self.inscp_scp_amt, self.act_pay_dedc, self.hifp_pay, self.fund_pay_sumamt, self.psn_part_amt,
                 self.acct_pay, self.psn_cash_pay, self.balc)
        if _INTS.issuperset(map(type, money)):
            head = _MONEY_JSON % money
        else:
            head = ",".join([f'"{k}":{_jv(v)}' for k, v in zip((*MONEY_FIELDS, "balc"), money)])
        texts = (self.engine, self.policy_version, self.psn_no, self.insutype, self.psn_type, self.med_type,
                 self.level, self.date)
        return (f'{{{head},"state_before":{_state_json(self.state_before)},'
                f'"state_after":{_state_json(self.state_after)},'
                f'"lines":[{",".join([line._json() for line in self.lines])}],'
                f'"reasons":[{",".join([x._rendered()[2] for x in self.reasons])}],'
                f'"basis":{{{_BASIS_JSON % tuple(map(_jv, texts))},"rule":{_rule_json(self.rule)},'
                f'"year":{_jv(self.year)},"accumulator":{_jv(self.accumulator)}}}}}')

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


# Pieces of Settlement.to_json: the figures when all are exact ints ("%d" writes one as json.dumps does).
_INTS = frozenset({int})
_MONEY_JSON = ",".join(f'"{k}":%d' for k in (*MONEY_FIELDS, "balc"))
_STATE_KEYS = ("balc", "deductible_used", "fund_paid")
_STATE_JSON = "{" + ",".join(f'"{k}":%d' for k in _STATE_KEYS) + "}"
_BASIS_JSON = ",".join(f'"{k}":%s' for k in ("engine", "policy_version", "psn_no", "insutype", "psn_type", "med_type",
                                               "level", "date"))
# Rules' JSON by identity (a policy's few rules serve every settlement); each value holds its Rule.
_RULE_JSON: dict[int, tuple[Rule, str]] = {}


def _state_json(state: Any) -> str:
    if type(state) is dict and tuple(state) == _STATE_KEYS and _INTS.issuperset(map(type, state.values())):
        return _STATE_JSON % tuple(state.values())
    return _jv(state)


def _rule_json(r: Rule) -> str:
    got = _RULE_JSON.get(id(r)) if _RENDERED_MAX else None
    if got is not None and got[0] is r:
        return got[1]
    text = (f'{{"deductible":{_jv(r.deductible)},"ratio":{_jstr(str(r.ratio))},"annual_cap":{_jv(r.annual_cap)},'
            f'"visit_cap":{_jv(r.visit_cap)},"acct_allowed":{_jv(r.acct_allowed)}}}')
    if _RENDERED_MAX:
        if len(_RULE_JSON) >= _RENDERED_MAX:
            _RULE_JSON.clear()
        _RULE_JSON[id(r)] = (r, text)
    return text


def canonical_json(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _jv(v: Any) -> str:
    """One value as :func:`canonical_json` writes it inside a larger document (plain types directly; a dict
    of plain values key by key; anything else through json.dumps itself, which also raises as it would)."""
    t = type(v)
    if t is str:
        return _jstr(v)
    if t is int:
        return int.__repr__(v)
    if v is None:
        return "null"
    if t is bool:
        return "true" if v else "false"
    if t is dict and all(type(k) is str for k in v):
        return "{" + ",".join([f"{_jstr(k)}:{_jv(x)}" for k, x in v.items()]) + "}"
    return canonical_json(v)
