"""Engine inputs: policy rules, catalogue, person state, visit and fee lines.

Each ``parse_*`` takes plain JSON-like data (the case-file / wire form) and returns frozen values,
raising :class:`InvalidInput` naming the field at fault. Parse once, settle many times: the counter
parses the cached bundles when they change, not at every visit.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Mapping

from .errors import InvalidInput
from .money import MAX_FEN, parse_cnt, parse_fen, parse_opt_fen, parse_ratio

INSUTYPES = {"310": "职工基本医疗保险", "390": "城乡居民基本医疗保险"}
PSN_TYPES = {"working": "在职", "retired": "退休"}
# med_type codes of the national interface that this agent settles (others come only from policy).
MED_TYPES = {"11": "普通门诊", "13": "急诊", "14": "门诊慢特病", "41": "定点药店购药"}
STATUSES = ("active", "suspended")
# The accumulator a rule draws on when it names none: one shared total, exactly the behaviour before
# policies named accumulators, so a case file without the new fields settles as it always did.
DEFAULT_ACCUMULATOR = "default"
MIN_YEAR, MAX_YEAR = 2000, 2200
CLASSES = ("A", "B", "C")
MAX_LINES = 500


def _require(data: Any, key: str, where: str) -> Any:
    # type() first: decoded JSON and CBOR are dicts, and the Mapping ABC check is many times slower.
    if type(data) is not dict and not isinstance(data, Mapping):
        raise InvalidInput(f"{where} must be an object, got {type(data).__name__}", field=where)
    if key not in data:
        raise InvalidInput(f"{where}.{key} is missing", field=f"{where}.{key}")
    return data[key]


def _opt_str(data: Any, key: str, where: str) -> str | None:
    if (type(data) is not dict and not isinstance(data, Mapping)) or data.get(key) is None:
        return None
    return _str(data, key, where)


def _str(data: Any, key: str, where: str) -> str:
    v = _require(data, key, where)
    if not isinstance(v, str) or not v.strip():
        raise InvalidInput(f"{where}.{key} must be a non-empty string, got {v!r}", field=f"{where}.{key}")
    if len(v) > 200:
        raise InvalidInput(f"{where}.{key} is too long ({len(v)} characters)", field=f"{where}.{key}")
    return v


def _opt_date(value: object, name: str) -> _dt.date | None:
    return None if value is None else _date(value, name)


def _date(value: object, name: str) -> _dt.date:
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a date YYYY-MM-DD, got {value!r}", field=name)
    try:
        return _dt.date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{name} must be a date YYYY-MM-DD, got {value!r}", field=name) from None


def _bool(value: object, name: str) -> bool:
    # The national interface sends flags as "1"/"0"; JSON callers send true/false.
    if isinstance(value, bool):
        return value
    if value in ("1", 1):
        return True
    if value in ("0", 0):
        return False
    raise InvalidInput(f"{name} must be true/false (or \"1\"/\"0\"), got {value!r}", field=name)


@dataclass(frozen=True, slots=True)
class Rule:
    insutype: str
    psn_type: str
    med_type: str
    level: str
    deductible: int
    ratio: Decimal
    annual_cap: int
    visit_cap: int | None
    acct_allowed: bool
    accumulator: str = DEFAULT_ACCUMULATOR     # where its deductible and annual cap are counted
    begndate: _dt.date | None = None
    enddate: _dt.date | None = None

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.insutype, self.psn_type, self.med_type, self.level)

    def valid_on(self, day: _dt.date) -> bool:
        if self.begndate is not None and day < self.begndate:
            return False
        return self.enddate is None or day <= self.enddate

    def overlaps(self, other: "Rule") -> bool:
        lo = max(self.begndate or _dt.date.min, other.begndate or _dt.date.min)
        hi = min(self.enddate or _dt.date.max, other.enddate or _dt.date.max)
        return lo <= hi


@dataclass(frozen=True, slots=True)
class OfflineLimits:
    max_offline_hours: int
    offline_visit_fund_cap: int
    offline_max_visits: int
    offline_acct_allowance: int


@dataclass(frozen=True)
class Policy:
    version: str
    rules: Mapping[tuple[str, str, str, str], Rule]
    offline: OfflineLimits | None = None
    med_types: frozenset = field(default_factory=frozenset)
    # Every dated version of each rule (``rules`` holds the first one listed, for callers that ignore dates).
    versions: Mapping[tuple[str, str, str, str], tuple[Rule, ...]] = field(default_factory=dict)
    accumulators: frozenset = field(default_factory=lambda: frozenset({DEFAULT_ACCUMULATOR}))
    # Whether the personal account may pay for class C goods an item does not speak for itself.
    class_c_acct_payable: bool = True
    # The accumulator the flat deductible_used / fund_paid of a person snapshot stand for.
    default_accumulator: str = DEFAULT_ACCUMULATOR
    # Where reconciliation puts a patient credit's cash share: the personal account (True) or the payout
    # queue, paid in cash at a counter (False, the default). Read by the centre only; the engine ignores it.
    credit_to_account: bool = False

    def rule_for(self, insutype: str, psn_type: str, med_type: str, level: str,
                 day: _dt.date | None = None) -> Rule | None:
        key = (insutype, psn_type, med_type, level)
        if day is None:
            return self.rules.get(key)
        for rule in self.versions.get(key, ()):
            if rule.valid_on(day):
                return rule
        return None

    def acct_payable(self, item: "CatalogueItem") -> bool:
        if item.acct_payable is not None:
            return item.acct_payable
        return self.class_c_acct_payable if item.cls == "C" else True


@dataclass(frozen=True, slots=True)
class CatalogueItem:
    code: str
    name: str
    cls: str
    begndate: _dt.date | None
    enddate: _dt.date | None
    selfpay_prop: Decimal
    pric_uplmt_amt: int | None
    acct_payable: bool | None = None           # None: the policy's default for the class

    def valid_on(self, day: _dt.date) -> bool:
        if self.begndate is not None and day < self.begndate:
            return False
        return self.enddate is None or day <= self.enddate


@dataclass(frozen=True, slots=True)
class ChronicFiling:
    code: str
    begndate: _dt.date | None = None
    enddate: _dt.date | None = None
    items: frozenset[str] | None = None        # the item codes it covers; None: any item

    def covers(self, code: str, day: _dt.date) -> bool:
        if code != self.code:
            return False
        if self.begndate is not None and day < self.begndate:
            return False
        return self.enddate is None or day <= self.enddate


@dataclass(frozen=True, slots=True)
class PersonState:
    psn_no: str | None
    insutype: str
    psn_type: str
    status: str
    chronic: tuple[ChronicFiling, ...]
    balc: int
    deductible_used: int
    fund_paid: int
    pending_review: bool = False
    # The policy year the flat deductible_used / fund_paid belong to (None: whatever year is settled,
    # the form every case file had before policy years) and the totals per (year, accumulator).
    year: int | None = None
    accumulators: Mapping[tuple[int, str], tuple[int, int]] = field(default_factory=dict)

    def state(self) -> dict:
        return {"balc": self.balc, "deductible_used": self.deductible_used, "fund_paid": self.fund_paid}

    def totals(self, year: int, accumulator: str, default: str = DEFAULT_ACCUMULATOR) -> tuple[int, int]:
        """(deductible used, fund paid) of one accumulator in one policy year; a year not on record is 0.

        The flat pair stands for ``default`` (the policy's default accumulator) in ``self.year``.
        """
        got = self.accumulators.get((year, accumulator))
        if got is not None:
            return got
        if accumulator == default and self.year in (None, year):
            return (self.deductible_used, self.fund_paid)
        return (0, 0)

    def with_state(self, *, balc: int, deductible_used: int, fund_paid: int) -> "PersonState":
        return PersonState(self.psn_no, self.insutype, self.psn_type, self.status, self.chronic,
                           balc, deductible_used, fund_paid, self.pending_review, self.year, self.accumulators)

    def with_totals(self, *, balc: int, year: int, accumulator: str, used: int, paid: int,
                    default: str = DEFAULT_ACCUMULATOR) -> "PersonState":
        """This person with one accumulator's totals replaced (the flat pair follows the default one)."""
        accs = {**self.accumulators, (year, accumulator): (used, paid)}
        flat = accumulator == default and self.year in (None, year)
        return PersonState(self.psn_no, self.insutype, self.psn_type, self.status, self.chronic, balc,
                           used if flat else self.deductible_used, paid if flat else self.fund_paid,
                           self.pending_review, self.year, accs)

    def accumulators_json(self) -> dict[str, dict[str, dict[str, int]]]:
        out: dict[str, dict[str, dict[str, int]]] = {}
        for (year, acc), (used, paid) in sorted(self.accumulators.items()):
            out.setdefault(str(year), {})[acc] = {"deductible_used": used, "fund_paid": paid}
        return out


@dataclass(frozen=True, slots=True)
class Visit:
    med_type: str
    level: str
    date: _dt.date
    acct_used_flag: bool
    chronic_code: str | None = None


@dataclass(frozen=True, slots=True)
class Item:
    code: str
    cnt: Decimal
    pric: int
    name: str | None = None


def parse_rule(data: Any, where: str) -> Rule:
    ratio = parse_ratio(_require(data, "ratio", where), f"{where}.ratio")
    begin = _opt_date(data.get("begndate"), f"{where}.begndate")
    end = _opt_date(data.get("enddate"), f"{where}.enddate")
    if begin is not None and end is not None and end < begin:
        raise InvalidInput(f"{where}.enddate {end} is before begndate {begin}", field=f"{where}.enddate")
    return Rule(
        insutype=_str(data, "insutype", where),
        psn_type=_str(data, "psn_type", where),
        med_type=_str(data, "med_type", where),
        level=_str(data, "level", where),
        deductible=parse_fen(_require(data, "deductible", where), f"{where}.deductible"),
        ratio=ratio,
        annual_cap=parse_fen(_require(data, "annual_cap", where), f"{where}.annual_cap"),
        visit_cap=parse_opt_fen(data.get("visit_cap"), f"{where}.visit_cap"),
        acct_allowed=_bool(data.get("acct_allowed", False), f"{where}.acct_allowed"),
        accumulator=_opt_str(data, "accumulator", where) or DEFAULT_ACCUMULATOR,
        begndate=begin, enddate=end,
    )


def parse_offline_limits(data: Any, where: str = "policy.offline") -> OfflineLimits:
    def count(key: str) -> int:
        v = _require(data, key, where)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise InvalidInput(f"{where}.{key} must be a whole number ≥ 0, got {v!r}", field=f"{where}.{key}")
        return v

    return OfflineLimits(
        max_offline_hours=count("max_offline_hours"),
        offline_visit_fund_cap=parse_fen(_require(data, "offline_visit_fund_cap", where), f"{where}.offline_visit_fund_cap"),
        offline_max_visits=count("offline_max_visits"),
        offline_acct_allowance=parse_fen(_require(data, "offline_acct_allowance", where), f"{where}.offline_acct_allowance"),
    )


def parse_policy(data: Any) -> Policy:
    rules_raw = _require(data, "rules", "policy")
    if not isinstance(rules_raw, list):
        raise InvalidInput("policy.rules must be a list", field="policy.rules")
    named = data.get("accumulators")
    if named is not None and (not isinstance(named, list) or not all(isinstance(a, str) and a for a in named)):
        raise InvalidInput("policy.accumulators must be a list of names", field="policy.accumulators")
    accumulators = frozenset(named or ()) | {DEFAULT_ACCUMULATOR}
    rules: dict = {}
    versions: dict = {}
    for i, r in enumerate(rules_raw):
        rule = parse_rule(r, f"policy.rules[{i}]")
        if any(rule.overlaps(other) for other in versions.get(rule.key, ())):
            raise InvalidInput(f"policy.rules[{i}] duplicates the rule for {rule.key} on overlapping dates: "
                               "the policy is ambiguous", field=f"policy.rules[{i}]")
        if rule.accumulator not in accumulators:
            raise InvalidInput(f"policy.rules[{i}].accumulator {rule.accumulator!r} is not one of the policy's "
                               f"accumulators ({', '.join(sorted(accumulators))})",
                               field=f"policy.rules[{i}].accumulator")
        rules.setdefault(rule.key, rule)
        versions[rule.key] = versions.get(rule.key, ()) + (rule,)
    version = data.get("version")
    if not isinstance(version, str):
        version = str(version) if isinstance(version, int) and not isinstance(version, bool) else ""
    offline = parse_offline_limits(data["offline"]) if data.get("offline") is not None else None
    med_types = frozenset(MED_TYPES) | {k[2] for k in rules}
    c_payable = _bool(data.get("class_c_acct_payable", True), "policy.class_c_acct_payable")
    default = _opt_str(data, "default_accumulator", "policy") or DEFAULT_ACCUMULATOR
    if default != DEFAULT_ACCUMULATOR and default not in accumulators:
        raise InvalidInput(f"policy.default_accumulator {default!r} is not one of the policy's accumulators",
                           field="policy.default_accumulator")
    to_account = _bool(data.get("credit_to_account", False), "policy.credit_to_account")
    return Policy(version=version, rules=rules, offline=offline, med_types=med_types, versions=versions,
                  accumulators=accumulators, class_c_acct_payable=c_payable, default_accumulator=default,
                  credit_to_account=to_account)


def parse_catalogue(data: Any) -> dict[str, CatalogueItem]:
    if isinstance(data, Mapping) and "items" in data:
        data = data["items"]
    if not isinstance(data, list):
        raise InvalidInput("catalogue must be a list of items", field="catalogue")
    out: dict[str, CatalogueItem] = {}
    for i, c in enumerate(data):
        where = f"catalogue[{i}]"
        code = _str(c, "code", where)
        cls = _require(c, "class", where)
        if cls not in CLASSES:
            raise InvalidInput(f"{where}.class must be A, B or C, got {cls!r}", field=f"{where}.class")
        prop = c.get("selfpay_prop")
        selfpay = parse_ratio(prop, f"{where}.selfpay_prop") if prop is not None else Decimal(0)
        if code in out:
            raise InvalidInput(f"{where} duplicates item code {code}", field=f"{where}.code")
        out[code] = CatalogueItem(
            code=code,
            name=c.get("name") if isinstance(c.get("name"), str) else code,
            cls=cls,
            begndate=_opt_date(c.get("begndate"), f"{where}.begndate"),
            enddate=_opt_date(c.get("enddate"), f"{where}.enddate"),
            selfpay_prop=selfpay if cls == "B" else Decimal(0),
            pric_uplmt_amt=parse_opt_fen(c.get("pric_uplmt_amt"), f"{where}.pric_uplmt_amt"),
            acct_payable=None if c.get("acct_payable") is None else _bool(c["acct_payable"], f"{where}.acct_payable"),
        )
    return out


def parse_chronic(data: Any, where: str) -> tuple[ChronicFiling, ...]:
    if data is None:
        return ()
    if not isinstance(data, list):
        raise InvalidInput(f"{where} must be a list of chronic-disease filings", field=where)
    out = []
    for i, f in enumerate(data):
        if isinstance(f, str) and f.strip():
            out.append(ChronicFiling(f))
        elif isinstance(f, Mapping):
            scope = f.get("items")
            if scope is not None and (not isinstance(scope, list) or not all(isinstance(c, str) for c in scope)):
                raise InvalidInput(f"{where}[{i}].items must be a list of item codes (or absent: any item)",
                                   field=f"{where}[{i}].items")
            out.append(ChronicFiling(
                _str(f, "code", f"{where}[{i}]"),
                _opt_date(f.get("begndate"), f"{where}[{i}].begndate"),
                _opt_date(f.get("enddate"), f"{where}[{i}].enddate"),
                None if scope is None else frozenset(scope),
            ))
        else:
            raise InvalidInput(f"{where}[{i}] must be a disease code or an object with a code", field=f"{where}[{i}]")
    return tuple(out)


def parse_person(data: Any) -> PersonState:
    where = "person"
    is_map = type(data) is dict or isinstance(data, Mapping)
    status = _require(data, "status", where) if is_map and "status" in data else "active"
    if status not in STATUSES:
        raise InvalidInput(f"person.status must be one of {', '.join(STATUSES)}, got {status!r}", field="person.status")
    return PersonState(
        psn_no=_opt_str(data, "psn_no", where),
        insutype=_str(data, "insutype", where),
        psn_type=_str(data, "psn_type", where),
        status=status,
        chronic=parse_chronic(data.get("chronic"), "person.chronic"),
        # A negative balance is a real state: an account debt from offline use at two sites.
        balc=parse_fen(_require(data, "balc", where), "person.balc", allow_negative=True),
        deductible_used=parse_fen(data.get("deductible_used", 0), "person.deductible_used"),
        fund_paid=parse_fen(data.get("fund_paid", 0), "person.fund_paid"),
        pending_review=_bool(data.get("pending_review", False), "person.pending_review"),
        year=_opt_year(data.get("year"), "person.year"),
        accumulators=parse_accumulators(data.get("accumulators"), "person.accumulators"),
    )


def _opt_year(value: object, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_YEAR <= value <= MAX_YEAR:
        raise InvalidInput(f"{name} must be a year such as 2027, got {value!r}", field=name)
    return value


def parse_accumulators(data: Any, where: str) -> dict[tuple[int, str], tuple[int, int]]:
    """``{"2027": {"outpatient": {"deductible_used": fen, "fund_paid": fen}}}`` -> {(2027, "outpatient"): (u, p)}."""
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise InvalidInput(f"{where} must map a year to its accumulators", field=where)
    out: dict[tuple[int, str], tuple[int, int]] = {}
    for year_raw, accs in data.items():
        year = _opt_year(year_raw, f"{where} year")
        if year is None or not isinstance(accs, Mapping):
            raise InvalidInput(f"{where}.{year_raw} must map accumulator names to totals", field=f"{where}.{year_raw}")
        for name, totals in accs.items():
            at = f"{where}.{year_raw}.{name}"
            if not isinstance(name, str) or not name or not isinstance(totals, Mapping):
                raise InvalidInput(f"{at} must be {{deductible_used, fund_paid}}", field=at)
            out[(year, name)] = (parse_fen(totals.get("deductible_used", 0), f"{at}.deductible_used"),
                                 parse_fen(totals.get("fund_paid", 0), f"{at}.fund_paid"))
    return out


def parse_visit(data: Any, policy: Policy) -> Visit:
    where = "visit"
    med_type = _require(data, "med_type", where)
    if not isinstance(med_type, str) or med_type not in policy.med_types:
        known = ", ".join(sorted(policy.med_types))
        raise InvalidInput(f"visit.med_type {med_type!r} is unknown; use one of {known}", field="visit.med_type")
    return Visit(
        med_type=med_type,
        level=_str(data, "level", where),
        date=_date(_require(data, "date", where), "visit.date"),
        acct_used_flag=_bool(data.get("acct_used_flag", False), "visit.acct_used_flag"),
        chronic_code=_opt_str(data, "chronic_code", where),
    )


def parse_items(data: Any) -> list[Item]:
    if not isinstance(data, list) or not data:
        raise InvalidInput("items must be a non-empty list of fee lines: add at least one item", field="items")
    if len(data) > MAX_LINES:
        raise InvalidInput(f"too many fee lines ({len(data)}; at most {MAX_LINES}): split the bill", field="items")
    out = []
    for i, it in enumerate(data):
        where = f"items[{i}]"
        out.append(Item(
            code=_str(it, "code", where),
            cnt=parse_cnt(_require(it, "cnt", where), f"{where}.cnt"),
            pric=parse_fen(_require(it, "pric", where), f"{where}.pric"),
            name=it.get("name") if isinstance(it.get("name"), str) else None,
        ))
    return out


def check_total(total: int, name: str) -> None:
    if total > MAX_FEN:
        raise InvalidInput(f"{name} is implausibly large ({total} fen); check counts and prices", field="items")
