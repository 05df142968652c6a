"""The settlement engine: pure, deterministic, shared by the counter and the centre.

Rules (DOMAIN.md section 4), all amounts integer fen, every rounding ROUND_HALF_UP to the fen:

  per line   amount = round(cnt × pric)
             not in catalogue / not valid on the visit date / class C -> all fulamt_ownpay_amt
             over the price cap -> overlmt_amt = round(cnt × (pric − cap))
             preselfpay = round((amount − overlmt) × selfpay_prop)      (class B only)
             inscp_scp = amount − overlmt − preselfpay
  per visit  the rule valid on the visit date; its accumulator's totals of the visit date's year
             act_pay_dedc = min(inscp, max(0, deductible − used))       (0 when suspended)
             hifp_pay = round((inscp − dedc) × ratio) capped by the annual and per-visit caps
             psn_part = medfee − fund
             acct_pay = min(balc, psn_part − not account-payable own-pay, acct_limit) when allowed and
                        agreed, else 0
  chronic    a 14 visit's lines outside the filing's item list are own-pay (settle them as 11)
             cash = psn_part − acct_pay

Nothing here reads a clock, a file or a random source: ``visit.date`` and ``acct_limit`` (the offline
account allowance left, decided by ``edge.offline``) are arguments. The centre replays an edge decision
by calling :func:`settle` with the same inputs and compares :meth:`Settlement.to_json` byte for byte.
"""

from __future__ import annotations

import datetime as _dt
from decimal import Decimal
from typing import Any, Mapping

from .errors import CannotCancel, NoChronicFiling, NoPolicyRule
from .inputs import (
    DEFAULT_ACCUMULATOR, INSUTYPES, PSN_TYPES, CatalogueItem, Item, PersonState, Policy, Visit, check_total,
    parse_catalogue, parse_items, parse_person, parse_policy, parse_visit,
)
from .money import mul, round_fen
from .result import Cancellation, Line, Reason, Settlement

ENGINE_VERSION = "1"


# Lines already split, by their inputs: the same item (code, count, price) on the same day under the same
# catalogue entry and chronic scope always splits the same way, and the centre replays thousands of such
# visits. The catalogue entry is keyed by identity and kept alive in the value (so its id cannot be
# reused while the entry is here); the item by its values, the count by its text (1 and 1.0 are equal
# but are written differently). Cleared whole when full, so it stays bounded. Lines are immutable values.
_LINES: dict[tuple, tuple[CatalogueItem | None, Line]] = {}
_LINES_MAX = 0           # each memo's size, 0: none; the centre's replay sets it (edge.settle.set_memo_size)


def _line(item: Item, cat: CatalogueItem | None, visit: Visit, scope: frozenset[str] | None = None) -> Line:
    if not _LINES_MAX or type(item.cnt) is not Decimal or type(item.pric) is not int or \
            type(visit.date) is not _dt.date:
        return _split_line(item, cat, visit, scope)
    try:
        key = (item.code, item.name, str(item.cnt), item.pric, id(cat), visit.date, scope,
               visit.chronic_code if scope is not None else None)
        got = _LINES.get(key)
    except TypeError:   # an unhashable field of a hand-built input: split it uncached
        return _split_line(item, cat, visit, scope)
    if got is not None and got[0] is cat:
        return got[1]
    line = _split_line(item, cat, visit, scope)
    if len(_LINES) >= _LINES_MAX:
        _LINES.clear()
    _LINES[key] = (cat, line)
    return line


def _split_line(item: Item, cat: CatalogueItem | None, visit: Visit, scope: frozenset[str] | None = None) -> Line:
    amount = round_fen(mul(item.cnt, item.pric))
    name = cat.name if cat is not None else (item.name or item.code)
    cls = cat.cls if cat is not None else None
    reasons: list[Reason] = [Reason("amount", amount, {"cnt": item.cnt, "pric": item.pric})]

    def line(ownpay: int, overlmt: int, preself: int, inscp: int) -> Line:
        return Line(item.code, name, cls, item.cnt, item.pric, amount, ownpay, overlmt, preself, inscp, tuple(reasons))

    if cat is None:
        reasons.append(Reason("not_in_catalogue", amount))
        return line(amount, 0, 0, 0)
    if not cat.valid_on(visit.date):
        reasons.append(Reason("not_valid_on_date", amount, {"date": visit.date.isoformat()}))
        return line(amount, 0, 0, 0)
    if cat.cls == "C":
        reasons.append(Reason("class_c", amount))
        return line(amount, 0, 0, 0)
    if scope is not None and item.code not in scope:
        reasons.append(Reason("chronic_out_of_scope", amount, {"code": visit.chronic_code}))
        return line(amount, 0, 0, 0)

    overlmt = 0
    cap = cat.pric_uplmt_amt
    if cap is not None and item.pric > cap:
        overlmt = round_fen(mul(item.cnt, item.pric - cap))
        reasons.append(Reason("over_price_cap", overlmt, {"cnt": item.cnt, "pric": item.pric, "cap": cap}))
    base = amount - overlmt
    preself = 0
    if cat.cls == "B":
        preself = round_fen(mul(base, cat.selfpay_prop))
        reasons.append(Reason("class_b_selfpay", preself, {"prop": cat.selfpay_prop, "base": base}))
    inscp = base - preself
    reasons.append(Reason("in_scope", inscp, {"cls": cat.cls}))
    return line(0, overlmt, preself, inscp)


def _check_chronic(person: PersonState, visit: Visit) -> tuple[Reason, frozenset[str] | None] | None:
    """The filing reason and the item codes it covers (None: any), or None for a visit that is not 14."""
    if visit.med_type != "14":
        return None
    code = visit.chronic_code
    filings = [f for f in person.chronic if code is not None and f.covers(code, visit.date)]
    if not filings:
        what = f"disease {code}" if code else "this visit (no disease code given)"
        raise NoChronicFiling(
            f"no chronic-disease filing (门诊慢特病备案) for {what} valid on {visit.date.isoformat()}: "
            "settle as ordinary outpatient (med_type 11) or have the patient file the disease first")
    scope: frozenset[str] | None = frozenset()
    for f in filings:
        scope = None if scope is None or f.items is None else scope | f.items
    return Reason("chronic_filing", None, {"code": code}), scope


def settle(policy: Policy, catalogue: Mapping[str, CatalogueItem], person: PersonState, visit: Visit,
           items: list[Item], *, acct_limit: int | None = None) -> Settlement:
    """Split one visit into fund / personal account / cash.

    ``acct_limit`` caps the account payment (the offline allowance left for this card); ``None``
    means no cap beyond the balance.
    """
    rule = policy.rule_for(person.insutype, person.psn_type, visit.med_type, visit.level, visit.date)
    if rule is None:
        dated = policy.rule_for(person.insutype, person.psn_type, visit.med_type, visit.level) is not None
        raise NoPolicyRule(
            f"the policy (version {policy.version or '?'}) has no rule for insutype {person.insutype}, "
            f"person type {person.psn_type}, med_type {visit.med_type} at level {visit.level}"
            + (f" valid on {visit.date.isoformat()}" if dated else "") + ": "
            "check the visit type, the institution level and the date, or refresh the policy bundle")
    reasons: list[Reason] = []
    chronic = _check_chronic(person, visit)
    scope: frozenset[str] | None = None
    if chronic is not None:
        reasons.append(chronic[0])
        scope = chronic[1]

    year, acc = visit.date.year, rule.accumulator
    used, paid = person.totals(year, acc, policy.default_accumulator)
    lines = [_line(it, catalogue.get(it.code), visit, scope) for it in items]
    medfee = ownpay = overlmt = preself = inscp = 0
    for line in lines:
        medfee += line.det_item_fee_sumamt
        ownpay += line.fulamt_ownpay_amt
        overlmt += line.overlmt_amt
        preself += line.preselfpay_amt
        inscp += line.inscp_scp_amt
    check_total(medfee, "medfee_sumamt")
    reasons.append(Reason("scope", inscp, {"medfee": medfee, "ownpay": ownpay, "overlmt": overlmt, "preself": preself}))

    if person.status != "active":
        dedc = 0
        hifp = 0
        reasons.append(Reason("suspended", 0))
    else:
        dedc = min(inscp, max(0, rule.deductible - used))
        reasons.append(Reason("deductible", dedc, {"deductible": rule.deductible, "used": used}))
        hifp = round_fen(mul(inscp - dedc, rule.ratio))
        reasons.append(Reason("ratio", hifp, {"ratio": rule.ratio, "base": inscp - dedc}))
        cap_left = max(0, rule.annual_cap - paid)
        if hifp > cap_left:
            hifp = cap_left
            reasons.append(Reason("annual_cap", hifp, {"cap": rule.annual_cap, "paid": paid}))
        if rule.visit_cap is not None and hifp > rule.visit_cap:
            hifp = rule.visit_cap
            reasons.append(Reason("visit_cap", hifp, {"cap": rule.visit_cap}))
    psn_part = medfee - hifp

    acct = 0
    if not rule.acct_allowed:
        if visit.acct_used_flag:
            reasons.append(Reason("acct_not_allowed", 0))
    elif not visit.acct_used_flag:
        reasons.append(Reason("acct_not_used", 0))
    else:
        # Goods the account may not pay for (class C health supplements, unless the policy allows it)
        # are own-pay in full, so their amount comes off the part the account may cover.
        barred = sum(line.fulamt_ownpay_amt for line, it in zip(lines, items)
                     if (cat := catalogue.get(it.code)) is not None and not policy.acct_payable(cat))
        payable = psn_part - barred
        if barred:
            reasons.append(Reason("acct_not_payable", barred))
        acct = max(0, min(person.balc, payable))
        if acct_limit is not None and acct > acct_limit:
            acct = max(0, acct_limit)
            reasons.append(Reason("account_offline_limit", acct, {"limit": acct_limit, "balc": person.balc}))
        else:
            reasons.append(Reason("account", acct, {"balc": person.balc}))
    cash = psn_part - acct
    reasons.append(Reason("cash", cash))

    before = {"balc": person.balc, "deductible_used": used, "fund_paid": paid}
    after = {"balc": person.balc - acct, "deductible_used": used + dedc, "fund_paid": paid + hifp}
    return Settlement(
        engine=ENGINE_VERSION, policy_version=policy.version, psn_no=person.psn_no,
        insutype=person.insutype, psn_type=person.psn_type, med_type=visit.med_type, level=visit.level,
        date=visit.date.isoformat(), rule=rule,
        medfee_sumamt=medfee, fulamt_ownpay_amt=ownpay, overlmt_selfpay=overlmt, preselfpay_amt=preself,
        inscp_scp_amt=inscp, act_pay_dedc=dedc, hifp_pay=hifp, fund_pay_sumamt=hifp, psn_part_amt=psn_part,
        acct_pay=acct, psn_cash_pay=cash, state_before=before, state_after=after,
        lines=tuple(lines), reasons=tuple(reasons), year=year, accumulator=acc,
    )


def apply(policy: Policy, person: PersonState, s: Settlement) -> PersonState:
    """The person after a settlement: its account pay and its totals in the year and accumulator it drew on."""
    return person.with_totals(balc=person.balc - s.acct_pay, year=s.year, accumulator=s.accumulator,
                              used=s.state_after["deductible_used"], paid=s.state_after["fund_paid"],
                              default=policy.default_accumulator)


def cancel(settlement: Settlement | Mapping[str, Any], person: PersonState, *,
           default: str = DEFAULT_ACCUMULATOR) -> Cancellation:
    """Reverse a settlement (撤销): give back the account payment and undo deductible and fund progress.

    ``person`` is the state now (possibly after later visits); the result is that state with this
    settlement's effects removed. The original entry is never edited: the caller journals this.
    """
    s = settlement.to_dict() if isinstance(settlement, Settlement) else settlement
    try:
        dedc, hifp, acct = int(s["act_pay_dedc"]), int(s["hifp_pay"]), int(s["acct_pay"])
    except (KeyError, TypeError, ValueError):
        raise CannotCancel("this is not a settlement result: act_pay_dedc, hifp_pay and acct_pay are needed") from None
    got = s.get("basis")
    basis: Mapping[str, Any] = got if isinstance(got, Mapping) else {}
    year, acc = basis.get("year"), basis.get("accumulator") or DEFAULT_ACCUMULATOR
    if isinstance(year, int) and not isinstance(year, bool):
        used, paid = person.totals(year, acc, default)
    else:       # a result from before policy years: the flat totals
        year, used, paid = None, person.deductible_used, person.fund_paid
    if dedc > used or hifp > paid:
        raise CannotCancel(
            "the person's year-to-date totals are lower than this settlement added (new year or already "
            "cancelled?): cancel at the centre instead")
    if year is None:
        after = person.with_state(balc=person.balc + acct, deductible_used=used - dedc, fund_paid=paid - hifp)
    else:
        after = person.with_totals(balc=person.balc + acct, year=year, accumulator=acc, used=used - dedc,
                                   paid=paid - hifp, default=default)
    state_before = {"balc": person.balc, "deductible_used": used, "fund_paid": paid}
    state_after = {"balc": after.balc, "deductible_used": used - dedc, "fund_paid": paid - hifp}
    return Cancellation(psn_no=person.psn_no, medfee_sumamt=int(s.get("medfee_sumamt", 0)),
                        act_pay_dedc=dedc, hifp_pay=hifp, acct_pay=acct,
                        psn_cash_pay=int(s.get("psn_cash_pay", 0)),
                        state_before=state_before, state_after=state_after)


def settle_case(case: Mapping[str, Any], *, acct_limit: int | None = None) -> Settlement:
    """Parse a case (keys policy, catalogue, person, visit, items) and settle it."""
    from .errors import InvalidInput

    if not isinstance(case, Mapping):
        raise InvalidInput("the case must be a JSON object with policy, catalogue, person, visit and items")
    for key in ("policy", "catalogue", "person", "visit", "items"):
        if key not in case:
            raise InvalidInput(f"the case has no {key!r}: a case needs policy, catalogue, person, visit and items",
                               field=key)
    policy = parse_policy(case["policy"])
    catalogue = parse_catalogue(case["catalogue"])
    person = parse_person(case["person"])
    visit = parse_visit(case["visit"], policy)
    items = parse_items(case["items"])
    return settle(policy, catalogue, person, visit, items, acct_limit=acct_limit)


__all__ = ["settle", "cancel", "apply", "settle_case", "ENGINE_VERSION", "INSUTYPES", "PSN_TYPES"]
