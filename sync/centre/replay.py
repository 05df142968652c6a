"""Pure reconciliation core: replay one person's journal entries against the centre's state.

No I/O, no clock. :mod:`sync.centre.reconcile` loads the inputs, calls :func:`replay_person` and
stores what comes back; tests drive this module directly.

Theory of operation
-------------------
The centre's :class:`Ledger` is the authoritative state of one person (balance, year-to-date
deductible and fund, arrears periods, open reviews). Entries are replayed in time order across all
sites (DOMAIN.md section 8). For each settlement the engine (:func:`edge.settle.settle`) runs twice
with the bundles named in the entry's ``basis``:

* with the state the edge settled on (``body.person``): must give the journaled amounts and
  ``result_sha256`` byte for byte, else the agent erred (bug or tampering);
* with the centre's state: what the visit should have cost. Comparing the two tells "the data
  changed" (stale snapshot) apart from "the agent erred".

The outcome is the first row of :data:`RULES` whose test holds (h11-style: the table is the spec)::

    rejected  invalid_entry        body lacks fields the contract (docs/entries.md) requires
    rejected  unknown_person       psn_no is not a person the centre knows
    review    provenance           catalogue/policy version+hash is not a published bundle
    rejected  invalid_visit        the engine refuses the entry's own inputs
    rejected  amounts_do_not_add   medfee != fund + account + cash
    review    agent_miscomputed    the engine on the edge's own inputs gives other amounts/sha
    review    card_hotlisted       card on the hotlist before the visit, used offline
    review    keyed_in_offline     a keyed-in card settled offline (never allowed)
    review    time_went_back       entry timed before its predecessor in the same device's chain
    review    offline_limits       offline entry whose recorded limits are missing or broken (checked on
                                   every offline entry, whatever its amounts)
    review    online_mismatch      online entry differs from what the centre settled for that req
    confirmed online_confirmed     online entry equal to what the centre settled (applied once)
    confirmed already_settled_online  offline entry whose req the centre settled online (answer too late):
                                   equal amounts, nothing applied again (other amounts: online_mismatch)
    review    centre_refuses       the engine refuses the visit with the centre's state
    review    fund_over_limits     fund paid more than the centre computes, beyond the offline limits
    adjusted  (fund_variance | patient_credit | account_debt, any combination)
    confirmed same                 same amounts (sha equal, or only the state snapshot differed)

Accepted amounts (what the centre settles with the site and the person) follow the outcome:
confirmed = journaled; patient_credit = the centre's fund, the account kept up to the patient's
share, the rest of the overpayment credited back; fund_variance = journaled (the fund honours an
offline decision within its limits; the difference is recorded per site); review / rejected =
nothing accepted until a reviewer decides. Where the policy says ``credit_to_account``, a credit's cash
share is also put into the account (code ``credit_to_account``; a later cancel takes it back), else the
centre queues it as a payout (sync.centre.payouts). The ledger moves by exactly the accepted amounts, so the
balance may go negative (account used at two sites while offline): that is a debt, cleared by the
next contribution.

Claims (full payment) are accepted as paid (fund 0) and queued; :func:`claim_decision` says when
one may be approved automatically and :func:`reimburse` computes the fund's share with the engine.
Cancels reverse the accepted amounts of the settlement they name.

Years: the ledger's year-to-date totals belong to (policy year, accumulator) pairs. Each settlement
replays with the totals of its own visit date's year and moves only those, so a 31 December visit
uploaded in January is judged on December's totals and never adds to January's (see :class:`Ledger`).

Idempotency: an entry whose key is in ``done`` is skipped, so replaying the same entries again
returns the ledger unchanged and no outcomes.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from dataclasses import dataclass, field, replace
from operator import attrgetter
from typing import Any, Callable, Iterable, Mapping, Protocol

from edge.settle import (
    CatalogueItem, Item, PersonState, Policy, Settlement, SettlementError, parse_items, parse_person, parse_visit, settle,
    yuan,
)
from edge.settle.inputs import DEFAULT_ACCUMULATOR
from edge.settle.inputs import parse_chronic
from sync import bodies
from sync.bodies import AMOUNT_KEYS, CLAIM_CAUSES
from sync.errors import BodyError
from sync.centre.errors import ClaimError, Refusal

OUTCOMES = ("confirmed", "adjusted", "review", "rejected")
# The body contract's own lists (sync.bodies), not copies: a cause or amount added there is seen here.
CAUSES = CLAIM_CAUSES
ZERO = {"medfee": 0, "fund": 0, "acct": 0, "cash": 0, "dedc": 0}


# --------------------------------------------------------------------------------------- state ---
@dataclass(frozen=True, slots=True)
class Arrears:
    """Months an employer did not pay for: ``begin``..``end`` (inclusive, None = still open)."""

    begin: _dt.date
    end: _dt.date | None
    cleared: bool = False

    def covers(self, day: _dt.date) -> bool:
        return self.begin <= day and (self.end is None or day <= self.end)


@dataclass(frozen=True, slots=True)
class Ledger:
    """Authoritative state of one person at the centre.

    ``deductible_used`` / ``fund_paid`` are the default accumulator's totals of policy year ``year``
    (None: a ledger loaded without a year, whose flat totals count for whatever year is settled, as
    before policy years; loading the person source data with a ``year`` stamps it). Every other
    (year, accumulator) pair is in ``accs`` as (year, name, used, paid) rows.
    Settling a later year rolls the flat pair forward and keeps the older year in ``accs``.
    """

    psn_no: str
    insutype: str
    psn_type: str
    balc: int
    deductible_used: int = 0
    fund_paid: int = 0
    chronic: tuple = ()                 # raw filings (codes or {code, begndate, enddate})
    arrears: tuple[Arrears, ...] = ()
    open_reviews: int = 0
    year: int | None = None
    accs: tuple[tuple[int, str, int, int], ...] = ()

    def accumulators(self) -> dict[tuple[int, str], tuple[int, int]]:
        return {(y, a): (u, p) for y, a, u, p in self.accs}

    def totals(self, year: int, accumulator: str, default: str = DEFAULT_ACCUMULATOR) -> tuple[int, int]:
        return self._state(_dt.date(year, 1, 1)).totals(year, accumulator, default)

    def progress(self, year: int, accumulator: str, dedc: int, fund: int,
                 default: str = DEFAULT_ACCUMULATOR) -> "Ledger":
        """This ledger with ``dedc`` / ``fund`` added to one (year, accumulator) total (negative: a reversal)."""
        return self._progressed(year, accumulator, dedc, fund, default, self.balc)

    def _progressed(self, year: int, accumulator: str, dedc: int, fund: int, default: str, balc: int) -> "Ledger":
        """:meth:`progress` with the balance set to ``balc``, built in one step (replayed for every entry)."""
        accs = self.accumulators()
        stamped = self.year is not None
        flat_year = self.year if self.year is not None else year
        if accumulator == default and year > flat_year:
            # A new year for the default accumulator: the flat pair moves on, the old year stays on record.
            accs[(flat_year, default)] = (self.deductible_used, self.fund_paid)
            used, paid = accs.pop((year, default), (0, 0))
            flat_year, flat = year, (used, paid)
        else:
            flat = (self.deductible_used, self.fund_paid)
        if accumulator == default and year == flat_year:
            flat = (max(0, flat[0] + dedc), max(0, flat[1] + fund))
        else:
            used, paid = accs.get((year, accumulator), (0, 0))
            accs[(year, accumulator)] = (max(0, used + dedc), max(0, paid + fund))
        rows = tuple(sorted((y, a, u, p) for (y, a), (u, p) in accs.items())) if accs else ()
        return Ledger(self.psn_no, self.insutype, self.psn_type, balc, flat[0], flat[1], self.chronic, self.arrears,
                      self.open_reviews, flat_year if stamped else None, rows)

    def apply(self, s: Settlement, policy: Policy, *, acct: int | None = None, dedc: int | None = None,
              fund: int | None = None) -> "Ledger":
        """The ledger after a settlement (by default its own amounts; the accepted ones when given)."""
        return self._progressed(s.year, s.accumulator, s.act_pay_dedc if dedc is None else dedc,
                                s.hifp_pay if fund is None else fund, policy.default_accumulator,
                                self.balc - (s.acct_pay if acct is None else acct))

    def suspended_on(self, day: _dt.date) -> bool:
        return any(a.covers(day) and not a.cleared for a in self.arrears)

    def status_on(self, day: _dt.date) -> str:
        return "suspended" if self.suspended_on(day) else "active"

    def person(self, day: _dt.date, *, treat_active: bool = False) -> PersonState:
        return self._state(day, "active" if treat_active else self.status_on(day))

    def _state(self, day: _dt.date, status: str = "active") -> PersonState:
        return PersonState(
            psn_no=self.psn_no, insutype=self.insutype, psn_type=self.psn_type, status=status,
            chronic=parse_chronic(list(self.chronic), "ledger.chronic") if self.chronic else (),
            balc=self.balc, deductible_used=self.deductible_used, fund_paid=self.fund_paid,
            pending_review=self.open_reviews > 0, year=self.year, accumulators=self.accumulators())

    def accumulators_json(self) -> dict[str, dict[str, dict[str, int]]]:
        """The (year, accumulator) totals as the persons bundle and ``person.accumulators`` carry them."""
        return self._state(_dt.date(2000, 1, 1)).accumulators_json()

    def state(self) -> dict:
        return {"balc": self.balc, "deductible_used": self.deductible_used, "fund_paid": self.fund_paid}

    @property
    def debt(self) -> int:
        return max(0, -self.balc)


@dataclass(frozen=True, slots=True)
class Hot:
    """A card on the centre's hotlist since bundle ``version`` (published at ``since_ms``)."""

    version: int
    since_ms: int
    reason: str


class World(Protocol):
    """What the replay looks up: published bundles, the hotlist, earlier outcomes, online records."""

    def policy(self, version: int, hash: str) -> Policy | None: ...
    def catalogue(self, version: int, hash: str) -> Mapping[str, CatalogueItem] | None: ...
    def hot(self, card_id: str) -> Hot | None: ...
    def outcome_of(self, device: str, seq: int) -> "Outcome | None": ...
    def online(self, device: str, req: str) -> Mapping[str, Any] | None: ...


@dataclass
class StaticWorld:
    """A :class:`World` from plain dicts (tests, the benchmark, and the storage driver's cache)."""

    policies: dict = field(default_factory=dict)       # (version, hash) -> Policy
    catalogues: dict = field(default_factory=dict)     # (version, hash) -> {code: CatalogueItem}
    hotlist: dict = field(default_factory=dict)        # card_id -> Hot
    outcomes: dict = field(default_factory=dict)       # (device, seq) -> Outcome
    onlines: dict = field(default_factory=dict)        # (device, req) -> {"accepted": {...}}
    outcome_lookup: Callable[[str, int], "Outcome | None"] | None = None
    times: dict = field(default_factory=dict)          # (device, seq) -> entry time (chain order checks)

    def policy(self, version, hash):
        return self.policies.get((version, hash))

    def catalogue(self, version, hash):
        return self.catalogues.get((version, hash))

    def hot(self, card_id):
        return self.hotlist.get(card_id)

    def outcome_of(self, device, seq):
        got = self.outcomes.get((device, seq))
        if got is None and self.outcome_lookup is not None:
            got = self.outcome_lookup(device, seq)
        return got

    def online(self, device, req):
        return self.onlines.get((device, req))

    def entry_time(self, device, seq):
        return self.times.get((device, seq))


@dataclass(frozen=True, slots=True)
class Event:
    """One accepted journal entry (only what replay needs)."""

    device: str
    seq: int
    kind: str
    time: int
    body: Mapping[str, Any]

    @property
    def key(self) -> tuple[str, int]:
        return (self.device, self.seq)


@dataclass(frozen=True, slots=True)
class Outcome:
    device: str
    seq: int
    kind: str                      # settlement | cancel | claim
    psn_no: str | None
    date: str                      # visit date (the business day the site reports under)
    time: int
    outcome: str                   # confirmed | adjusted | review | rejected
    codes: tuple[str, ...]
    reason: str                    # for a reviewer: what happened and which data differed
    differs: Mapping[str, Any]     # field -> [edge, centre]
    journaled: Mapping[str, int]   # medfee, fund, acct, cash, dedc as the edge journaled them
    accepted: Mapping[str, int]    # the same keys as the centre accepts them
    mode: str | None = None        # online | offline (settlements)
    credit: int = 0                # owed back to the patient
    variance: int = 0              # fund paid beyond the centre's figure (within offline limits)
    debt: int = 0                  # new account debt this entry caused
    opens_review: bool = False     # the person becomes pending_review
    claim: Mapping[str, Any] | None = None   # claim record to queue (claims only)
    accumulator: str = DEFAULT_ACCUMULATOR   # the accumulator a settlement drew on (a cancel reverses it)
    default_accumulator: str = DEFAULT_ACCUMULATOR

    @property
    def key(self) -> tuple[str, int]:
        return (self.device, self.seq)

    def downlink(self) -> dict:
        """The ``outcome`` message sent down to the device (docs/entries.md, ``outcome``)."""
        return {"ref_seq": self.seq, "outcome": self.outcome, "credit": self.credit, "reason": self.reason}



# The table in the module docstring, as data: code -> (outcome, does it open a review on the person).
RULES: dict[str, tuple[str, bool]] = {
    "invalid_entry": ("rejected", False),
    "unknown_person": ("rejected", False),
    "provenance": ("review", True),
    "invalid_visit": ("rejected", False),
    "amounts_do_not_add": ("rejected", False),
    "agent_miscomputed": ("review", True),
    "card_hotlisted": ("review", True),
    "keyed_in_offline": ("review", True),
    "time_went_back": ("review", True),
    "offline_limits": ("review", True),
    "online_mismatch": ("review", True),
    "online_confirmed": ("confirmed", False),
    "already_settled_online": ("confirmed", False),
    "centre_refuses": ("review", True),
    "fund_over_limits": ("review", True),
    "fund_variance": ("adjusted", False),
    "patient_credit": ("adjusted", False),
    "account_debt": ("adjusted", False),
    "same": ("confirmed", False),
    "claim_queued": ("review", False),
    "cancel_applied": ("confirmed", False),
    "cancel_nothing": ("confirmed", False),
}


# ------------------------------------------------------------------------------------- helpers ---
_INTS = frozenset({int})
_amounts_of = attrgetter(*AMOUNT_KEYS)   # a settlement's figures, in AMOUNT_KEYS order
def _get(body: Mapping, key: str, kind: type | tuple, where: str = "body"):
    if kind is Mapping:
        kind = dict  # decoded CBOR and JSON are dicts; the ABC check is several times slower
    v = body.get(key) if isinstance(body, dict) else None
    if type(v) is kind:   # the common case: exactly the type asked for (bool only when bool is asked for)
        return v
    if not isinstance(v, kind) or isinstance(v, bool) and kind is not bool:
        raise Refusal("rejected", "invalid_entry", f"{where}.{key} is missing or not a {getattr(kind, '__name__', kind)}: "
                      "the entry does not follow docs/entries.md; fix the counter software")
    return v


def _journaled(amounts: Mapping) -> dict:
    return {"medfee": amounts["medfee_sumamt"], "fund": amounts["hifp_pay"], "acct": amounts["acct_pay"],
            "cash": amounts["psn_cash_pay"], "dedc": amounts["act_pay_dedc"]}


# The code an adjusted settlement carries when its credit's cash share went into the personal account.
CREDIT_TO_ACCOUNT = "credit_to_account"


def _cash_share(credit: int, journaled: Mapping[str, int], accepted: Mapping[str, int]) -> int:
    """The part of a credit the patient paid in cash (the rest is the account's, back in the account)."""
    return credit - max(0, min(credit, journaled["acct"] - accepted["acct"]))


def credited_to_account(o: "Outcome") -> int:
    """The cash share of ``o``'s credit that the policy put into the personal account (0: none)."""
    if o.kind != "settlement" or o.credit <= 0 or CREDIT_TO_ACCOUNT not in o.codes:
        return 0
    return _cash_share(o.credit, o.journaled, o.accepted)


def _split(medfee: int, fund: int, acct: int, dedc: int) -> dict:
    acct = max(0, min(acct, medfee - fund))
    return {"medfee": medfee, "fund": fund, "acct": acct, "cash": medfee - fund - acct, "dedc": dedc}


# Parsed fee lines by their raw values: the same prescriptions recur across a batch. Only lists of plain
# dicts whose code, count and price are exact str, str and int are keyed (the parse depends on nothing
# else: a name that is not a str is dropped); anything else is parsed each time. Bounded, cleared whole.
_ITEMS: dict[tuple, tuple[Item, ...]] = {}
_ITEMS_MAX = 20_000


def _parse_items(raw: list) -> list[Item]:
    key: list = []
    for it in raw:
        if type(it) is not dict:
            return parse_items(list(raw))
        code, cnt, pric, name = it.get("code"), it.get("cnt"), it.get("pric"), it.get("name")
        if type(code) is not str or type(cnt) is not str or type(pric) is not int or \
                (name is not None and type(name) is not str):
            return parse_items(list(raw))
        key.append((code, cnt, pric, name))
    k = tuple(key)
    got = _ITEMS.get(k)
    if got is None:
        got = tuple(parse_items(list(raw)))
        if len(_ITEMS) >= _ITEMS_MAX:
            _ITEMS.clear()
        _ITEMS[k] = got
    return list(got)


def basis_of(body: Mapping) -> tuple[tuple[int, str], tuple[int, str]]:
    # The common case read directly (each part a dict, each version an int and hash a str); anything else
    # through _get, which names the part at fault.
    basis = body.get("basis") if type(body) is dict else None
    if type(basis) is dict:
        cat, pol = basis.get("catalogue"), basis.get("policy")
        if type(cat) is dict and type(pol) is dict:
            cv, ch, pv, ph = cat.get("version"), cat.get("hash"), pol.get("version"), pol.get("hash")
            if type(cv) is int and type(ch) is str and type(pv) is int and type(ph) is str:
                return (cv, ch), (pv, ph)
    basis = _get(body, "basis", Mapping)
    cat = _get(basis, "catalogue", Mapping, "basis")
    pol = _get(basis, "policy", Mapping, "basis")
    return ((_get(cat, "version", int, "basis.catalogue"), _get(cat, "hash", str, "basis.catalogue")),
            (_get(pol, "version", int, "basis.policy"), _get(pol, "hash", str, "basis.policy")))


def _bundles(body: Mapping, world: World) -> tuple[Policy, Mapping[str, CatalogueItem]]:
    (cv, ch), (pv, ph) = basis_of(body)
    policy, catalogue = world.policy(pv, ph), world.catalogue(cv, ch)
    missing = []
    if policy is None:
        missing.append(f"policy version {pv} hash {ph[:12]}…")
    if catalogue is None:
        missing.append(f"catalogue version {cv} hash {ch[:12]}…")
    if missing:
        raise Refusal("review", "provenance", "the settlement names " + " and ".join(missing) +
                      " which the centre never published: the edge's cache was altered or the entry forged",
                      {"basis": [{"policy": [pv, ph], "catalogue": [cv, ch]}, None]})
    assert policy is not None and catalogue is not None  # both found: `missing` is empty
    return policy, catalogue


def _person_diff(edge: PersonState, centre: PersonState, year: int, acc: str, default: str) -> dict:
    """What differed between the two states, as far as this visit reads them (its year and accumulator)."""
    out = {}
    for name in ("insutype", "psn_type", "status", "balc"):
        a, b = getattr(edge, name), getattr(centre, name)
        if a != b:
            out[f"person.{name}"] = [a, b]
    for name, a, b in zip(("deductible_used", "fund_paid"), edge.totals(year, acc, default),
                          centre.totals(year, acc, default)):
        if a != b:
            out[f"person.{name}"] = [a, b]
    if edge.chronic != centre.chronic:
        out["person.chronic"] = [[f.code for f in edge.chronic], [f.code for f in centre.chronic]]
    return out


def _describe(differs: Mapping) -> str:
    if not differs:
        return "no data differed"
    parts = []
    for k, (a, b) in differs.items():
        money = k.split(".")[-1] in ("balc", "deductible_used", "fund_paid") and isinstance(a, int) and isinstance(b, int)
        parts.append(f"{k} edge ¥{yuan(a)} vs centre ¥{yuan(b)}" if money else f"{k} edge {a!r} vs centre {b!r}")
    return "; ".join(parts)


def _within_limits(body: Mapping, policy: Policy, e_fund: int) -> tuple[bool, str]:
    """Did the offline decision respect the policy's offline limits? (value ≤ bound for each.)"""
    if body.get("mode") != "offline":
        return False, "the settlement was not offline, so no offline limit covers a fund overpayment"
    lim = policy.offline
    if lim is None:
        return False, "the policy in force has no offline limits"
    if e_fund > lim.offline_visit_fund_cap:
        return False, f"fund pay ¥{yuan(e_fund)} exceeds offline_visit_fund_cap ¥{yuan(lim.offline_visit_fund_cap)}"
    recorded = (body.get("basis") or {}).get("limits") or {}
    bounds = {"cache_age_hours": lim.max_offline_hours, "offline_visits": lim.offline_max_visits,
              "visit_fund": lim.offline_visit_fund_cap}
    for name, bound in bounds.items():
        pair = recorded.get(name)
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, int) for x in pair)):
            return False, f"the entry does not record the offline limit {name}"
        if pair[1] != bound or pair[0] > bound:
            return False, f"offline limit {name} recorded as {pair[0]} of {pair[1]}, policy bound {bound}"
    return True, "within the offline limits"


def _limits_recorded(body: Mapping, policy: Policy, journaled: Mapping[str, int],
                     acct_limit: int | None) -> tuple[bool, str]:
    """Does an offline entry record every offline limit it was settled under, each held?"""
    lim = policy.offline
    if lim is None:
        return False, "the policy in force has no offline limits"
    if acct_limit is None or acct_limit > lim.offline_acct_allowance:
        return False, (f"the account allowance was not applied (acct_limit {acct_limit}, policy allowance "
                       f"¥{yuan(lim.offline_acct_allowance)})")
    if journaled["acct"] > acct_limit:
        return False, f"account paid ¥{yuan(journaled['acct'])} beyond the allowance left ¥{yuan(acct_limit)}"
    return _within_limits(body, policy, journaled["fund"])


# ------------------------------------------------------------------------------------- replay ---
def _settlement(ev: Event, ledger: Ledger | None, world: World) -> tuple[Outcome, Ledger | None]:
    b = ev.body
    journaled = dict(ZERO)
    psn_no = b.get("psn_no") if isinstance(b.get("psn_no"), str) else None
    date = ""
    mode = b.get("mode") if b.get("mode") in ("online", "offline") else None
    try:
        psn_no = _get(b, "psn_no", str)
        amounts = _get(b, "amounts", Mapping)
        vals = tuple([amounts.get(k) for k in AMOUNT_KEYS])
        if not _INTS.issuperset(map(type, vals)) and any(not isinstance(v, int) or isinstance(v, bool) for v in vals):
            raise Refusal("rejected", "invalid_entry", "body.amounts lacks some of " + ", ".join(AMOUNT_KEYS))
        journaled = _journaled(amounts)
        visit_raw = _get(b, "visit", Mapping)
        date = visit_raw.get("date") if isinstance(visit_raw.get("date"), str) else ""
        _get(b, "items", list)
        person_raw = _get(b, "person", Mapping)
        card = _get(b, "card", Mapping)
        sha = b.get("result_sha256")
        if mode is None:
            raise Refusal("rejected", "invalid_entry", "body.mode must be online or offline")
        if ledger is None:
            raise Refusal("rejected", "unknown_person", f"psn_no {psn_no} is not a person the centre knows: "
                          "the settlement cannot be adjudicated; check the counter's person snapshot")
        policy, catalogue = _bundles(b, world)
        try:
            visit = parse_visit(visit_raw, policy)
            items = _parse_items(b["items"])
            edge_person = parse_person({**person_raw, "psn_no": psn_no})
        except SettlementError as exc:
            raise Refusal("rejected", "invalid_visit", f"the entry's own inputs are invalid ({exc.code}: {exc.message})")
        if journaled["medfee"] != journaled["fund"] + journaled["acct"] + journaled["cash"]:
            raise Refusal("rejected", "amounts_do_not_add",
                          f"medfee ¥{yuan(journaled['medfee'])} is not fund + account + cash "
                          f"(¥{yuan(journaled['fund'])} + ¥{yuan(journaled['acct'])} + ¥{yuan(journaled['cash'])})")
        acct_limit = b.get("acct_limit")
        acct_limit = acct_limit if isinstance(acct_limit, int) and not isinstance(acct_limit, bool) else None
        # 1. The edge's own decision, replayed: tells "the agent erred" from "the data changed".
        try:
            mine = settle(policy, catalogue, edge_person, visit, items, acct_limit=acct_limit)
        except SettlementError as exc:
            raise Refusal("rejected", "invalid_visit", f"the engine refuses the entry's own inputs "
                          f"({exc.code}: {exc.message})")
        mine_vals = _amounts_of(mine)
        mine_sha = result_sha256(mine)
        if mine_vals != vals or (isinstance(sha, bytes) and sha != mine_sha):
            mine_amounts = dict(zip(AMOUNT_KEYS, mine_vals))
            diff = {f"amounts.{k}": [amounts[k], mine_amounts[k]] for k in AMOUNT_KEYS if amounts[k] != mine_amounts[k]}
            if not diff:
                diff = {"result_sha256": [sha.hex() if isinstance(sha, bytes) else sha, mine_sha.hex()]}
            raise Refusal("review", "agent_miscomputed", "the engine, given the edge's own inputs, computes other "
                          f"figures than the edge journaled: {_describe(diff)}", diff)
        # 2. Card and mode rules.
        card_id = card.get("card_id")
        hot = world.hot(card_id) if isinstance(card_id, str) else None
        if hot is not None and hot.since_ms <= ev.time and mode == "offline":
            raise Refusal("review", "card_hotlisted",
                          f"card {card_id} was on the hotlist ({hot.reason}) since version {hot.version}, "
                          f"before this offline visit; the edge's hotlist was version "
                          f"{(b.get('basis') or {}).get('hotlist', {}).get('version', '?')}",
                          {"hotlist.version": [(b.get('basis') or {}).get('hotlist', {}).get('version'), hot.version]})
        if mode == "offline" and card.get("keyed_in"):
            raise Refusal("review", "keyed_in_offline", "a keyed-in card was settled offline, which the rules forbid")

        # One req, one charge: an offline entry whose req the centre settled online is that settlement.
        req = b.get("req")
        rec = world.online(ev.device, req) if isinstance(req, str) else None
        if rec is not None:
            acc = dict(rec["accepted"])
            if {k: acc[k] for k in ("medfee", "fund", "acct", "cash")} != \
                    {k: journaled[k] for k in ("medfee", "fund", "acct", "cash")}:
                diff = {f"amounts.{k}": [journaled[k], acc[k]] for k in ("medfee", "fund", "acct", "cash")
                        if journaled[k] != acc[k]}
                raise Refusal("review", "online_mismatch", "the edge journaled other amounts than the centre "
                              f"settled online for req {b.get('req')}: {_describe(diff)}", diff)
            code = "online_confirmed" if mode == "online" else "already_settled_online"
            why = ("confirmed: already applied when the centre settled it" if mode == "online" else
                   "journaled offline after the centre had settled it online (its answer came too late): "
                   "already applied then, not applied again")
            out = Outcome(ev.device, ev.seq, ev.kind, psn_no, date, ev.time, "confirmed", (code,),
                          f"{mode} settlement {b.get('req')} {why}", {}, journaled, acc, mode=mode)
            return out, ledger
        # 3. The centre's view of the same visit.
        day = visit.date
        centre_person = ledger.person(day)
        differs = _person_diff(edge_person, centre_person, mine.year, mine.accumulator, policy.default_accumulator)
        try:
            # Same state in, same settlement out (the engine is pure): the common case costs one run.
            same_state = not differs and edge_person.chronic == centre_person.chronic
            ours = mine if same_state else settle(policy, catalogue, centre_person, visit, items, acct_limit=acct_limit)
        except SettlementError as exc:
            raise Refusal("review", "centre_refuses", f"with the centre's data the engine refuses this visit "
                          f"({exc.code}: {exc.message}); data that differed: {_describe(differs)}", differs)
    except Refusal as r:
        rule_outcome, opens = RULES[r.code]
        out = Outcome(ev.device, ev.seq, ev.kind, psn_no, date, ev.time, rule_outcome, (r.code,), r.reason,
                      r.differs, journaled, dict(ZERO), mode=mode, opens_review=opens and ledger is not None)
        if opens and ledger is not None:
            ledger = replace(ledger, open_reviews=ledger.open_reviews + 1)
        return out, ledger

    e_fund, c_fund = journaled["fund"], ours.hifp_pay
    codes: list[str] = []
    notes: list[str] = []
    credit = variance = 0
    if e_fund > c_fund:
        ok, why = _within_limits(b, policy, e_fund)
        if not ok:
            reason = (f"fund paid ¥{yuan(e_fund)} where the centre computes ¥{yuan(c_fund)}, beyond the offline "
                      f"limits ({why}); data that differed: {_describe(differs)}")
            out = Outcome(ev.device, ev.seq, ev.kind, psn_no, date, ev.time, "review", ("fund_over_limits",),
                          reason, differs, journaled, dict(ZERO), mode=mode, opens_review=True)
            return out, replace(ledger, open_reviews=ledger.open_reviews + 1)
    if mode == "offline":
        # Every offline entry, whatever its amounts: a clock or counter fault at the edge can let a
        # visit through unchecked that the centre would otherwise confirm as "same".
        ok, why = _limits_recorded(b, policy, journaled, acct_limit)
        if not ok:
            out = Outcome(ev.device, ev.seq, ev.kind, psn_no, date, ev.time, "review", ("offline_limits",),
                          f"offline settlement outside its offline limits: {why}", differs, journaled, dict(ZERO),
                          mode=mode, opens_review=True)
            return out, replace(ledger, open_reviews=ledger.open_reviews + 1)
    if e_fund > c_fund:
        variance = e_fund - c_fund
        accepted = _split(journaled["medfee"], e_fund, journaled["acct"], journaled["dedc"])
        codes.append("fund_variance")
        notes.append(f"fund paid ¥{yuan(variance)} more than the centre computes (¥{yuan(e_fund)} vs "
                     f"¥{yuan(c_fund)}), within the offline limits: recorded as this site's offline variance")
    elif e_fund < c_fund:
        accepted = _split(journaled["medfee"], c_fund, journaled["acct"], ours.act_pay_dedc)
        credit = (journaled["acct"] + journaled["cash"]) - (accepted["acct"] + accepted["cash"])
        codes.append("patient_credit")
        notes.append(f"patient paid ¥{yuan(credit)} too much: the fund pays ¥{yuan(c_fund)}, not ¥{yuan(e_fund)}; "
                     f"¥{yuan(credit)} is credited back")
    else:
        accepted = _split(journaled["medfee"], e_fund, journaled["acct"], ours.act_pay_dedc)
    balc_after = ledger.balc - accepted["acct"]
    debt = max(0, -balc_after) - max(0, -ledger.balc)
    if debt > 0:
        codes.append("account_debt")
        notes.append(f"account paid ¥{yuan(accepted['acct'])} with ¥{yuan(ledger.balc)} left at the centre "
                     f"(used at another site while offline): balance now ¥{yuan(balc_after)}, a debt of "
                     f"¥{yuan(-balc_after)} that the next contribution clears")
    after = ledger.apply(ours, policy, acct=accepted["acct"], dedc=accepted["dedc"], fund=accepted["fund"])
    if credit and policy.credit_to_account:
        # The policy puts a credit's cash share into the personal account (the account's share is there
        # already: the ledger moved by the accepted account amount only). Nothing is queued for cash.
        codes.append(CREDIT_TO_ACCOUNT)
        after = replace(after, balc=after.balc + _cash_share(credit, journaled, accepted))
        notes.append(f"¥{yuan(credit)} credited to the personal account (policy credit_to_account)")
    if codes:
        reason = "; ".join(notes) + f". Data that differed: {_describe(differs)}"
        out = Outcome(ev.device, ev.seq, ev.kind, psn_no, date, ev.time, "adjusted", tuple(codes), reason, differs,
                      journaled, accepted, mode=mode, credit=credit, variance=variance, debt=debt,
                      accumulator=ours.accumulator, default_accumulator=policy.default_accumulator)
    else:
        ours_sha = mine_sha if ours is mine else result_sha256(ours)
        same_bytes = isinstance(b.get("result_sha256"), bytes) and b["result_sha256"] == ours_sha
        reason = ("same result, byte for byte" if same_bytes else
                  f"same amounts; the state the edge settled on differed: {_describe(differs)}")
        out = Outcome(ev.device, ev.seq, ev.kind, psn_no, date, ev.time, "confirmed", ("same",), reason, differs,
                      journaled, accepted, mode=mode, accumulator=ours.accumulator,
                      default_accumulator=policy.default_accumulator)
    return out, after


def _cancel(ev: Event, ledger: Ledger | None, world: World) -> tuple[Outcome, Ledger | None]:
    b = ev.body
    psn_no = b.get("psn_no") if isinstance(b.get("psn_no"), str) else None
    try:
        target = _get(b, "cancels", int)
        _get(b, "psn_no", str)
        amounts = _get(b, "amounts", Mapping)
        journaled = {"medfee": -int(amounts.get("medfee_sumamt", 0)), "fund": -int(amounts.get("hifp_pay", 0)),
                     "acct": -int(amounts.get("acct_pay", 0)), "cash": -int(amounts.get("psn_cash_pay", 0)),
                     "dedc": -int(amounts.get("act_pay_dedc", 0))}
        if ledger is None:
            raise Refusal("rejected", "unknown_person", f"psn_no {psn_no} is not a person the centre knows")
    except (Refusal, TypeError, ValueError) as r:
        code = r.code if isinstance(r, Refusal) else "invalid_entry"
        return Outcome(ev.device, ev.seq, ev.kind, psn_no, "", ev.time, "rejected", (code,), str(r), {},
                       dict(ZERO), dict(ZERO)), ledger
    orig = world.outcome_of(ev.device, target)
    if orig is None or orig.outcome not in ("confirmed", "adjusted"):
        why = "no settlement with that seq" if orig is None else f"settlement {target} was {orig.outcome}, nothing accepted"
        return Outcome(ev.device, ev.seq, ev.kind, psn_no, orig.date if orig else "", ev.time, "confirmed",
                       ("cancel_nothing",), f"cancel of seq {target}: {why}, so nothing to reverse",
                       {}, journaled, dict(ZERO)), ledger
    a = orig.accepted
    accepted = {k: -a[k] for k in ("medfee", "fund", "acct", "cash", "dedc")}
    # A credit's cash share the policy put into the account is taken back with the rest: the cancel hands
    # the patient all the cash they paid (the counter's refund, or the centre's payout).
    taken_back = credited_to_account(orig)
    # The reversal moves the totals of the cancelled visit's own year (and accumulator).
    year = _dt.date.fromisoformat(orig.date).year if orig.date else ledger.year or 0
    after = replace(ledger.progress(year, orig.accumulator, -a["dedc"], -a["fund"], orig.default_accumulator),
                    balc=ledger.balc + a["acct"] - taken_back)
    back = f"; the ¥{yuan(taken_back)} credited to the account taken back" if taken_back else ""
    return Outcome(ev.device, ev.seq, ev.kind, psn_no, orig.date, ev.time, "confirmed", ("cancel_applied",),
                   f"cancel of seq {target}: reversed fund ¥{yuan(a['fund'])}, account ¥{yuan(a['acct'])}, "
                   f"deductible ¥{yuan(a['dedc'])}{back}", {}, journaled, accepted), after


def _claim(ev: Event, ledger: Ledger | None, world: World) -> tuple[Outcome, Ledger | None]:
    b = ev.body
    psn_no = ledger.psn_no if ledger is not None else None
    try:
        # The body contract's parser is the one check of the body's shape (sync.bodies).
        claim = bodies.Claim.parse(b)
    except BodyError as exc:
        # A present, well-formed ``paid`` map blamed as a whole: its figures do not add up.
        adds_up = not (exc.detail.get("field") == "paid" and isinstance(b, Mapping) and isinstance(b.get("paid"), Mapping))
        code = "invalid_entry" if adds_up else "amounts_do_not_add"
        return Outcome(ev.device, ev.seq, ev.kind, psn_no, "", ev.time, "rejected", (code,),
                       f"claim body: {exc.message}", {}, dict(ZERO), dict(ZERO)), ledger
    cause, paid, visit = claim.cause, dict(claim.paid), b["visit"]
    medfee, acct, cash = paid["medfee_sumamt"], paid["acct_pay"], paid["psn_cash_pay"]
    date = visit.get("date") if isinstance(visit.get("date"), str) else ""
    journaled = {"medfee": medfee, "fund": 0, "acct": acct, "cash": cash, "dedc": 0}
    claim_no = f"{ev.device}-{ev.seq}"
    record = {"claim_no": claim_no, "device": ev.device, "seq": ev.seq, "psn_no": psn_no, "cause": cause,
              "detail": claim.detail, "certno": b.get("certno"), "card": dict(b["card"]),
              "visit": dict(visit), "items": list(b["items"]), "paid": paid,
              "basis": dict(b.get("basis") or {}), "date": date, "time": ev.time}
    after = ledger
    debt = 0
    if ledger is not None and acct:
        after = replace(ledger, balc=ledger.balc - acct)
        debt = max(0, -after.balc) - max(0, -ledger.balc)
    who = psn_no or f"unidentified person (certno {b.get('certno')})"
    out = Outcome(ev.device, ev.seq, ev.kind, psn_no, date, ev.time, "review", ("claim_queued",),
                  f"full-payment claim {claim_no} ({cause}: {record['detail'] or 'no detail'}) for {who} queued; "
                  f"patient paid ¥{yuan(medfee)}", {}, journaled, dict(journaled), debt=debt, claim=record)
    return out, after


HANDLERS = {"settlement": _settlement, "cancel": _cancel, "claim": _claim}


def _went_back(ev: Event, ledger: Ledger | None, prev: int) -> tuple[Outcome, Ledger | None]:
    """A settlement timed before its predecessor in the same chain: the device's clock went back."""
    b = ev.body
    psn_no = b.get("psn_no") if isinstance(b.get("psn_no"), str) else None
    got = b.get("visit")
    visit: Mapping[str, Any] = got if isinstance(got, Mapping) else {}
    date = str(visit.get("date") or "")
    got = b.get("amounts")
    amounts: Mapping[str, Any] = got if isinstance(got, Mapping) else {}
    try:
        journaled = _journaled(amounts)
    except KeyError:
        journaled = dict(ZERO)
    minutes = (prev - ev.time) // 60_000
    out = Outcome(ev.device, ev.seq, ev.kind, psn_no, date, ev.time, "review", ("time_went_back",),
                  f"entry {ev.seq} is timed {minutes} min before entry {ev.seq - 1} of the same device: the "
                  "counter's clock went back, so its offline limits (cache age, visit counts) cannot be trusted",
                  {"time": [ev.time, prev]}, journaled, dict(ZERO),
                  mode=b.get("mode") if b.get("mode") in ("online", "offline") else None,
                  opens_review=ledger is not None)
    if ledger is not None:
        ledger = replace(ledger, open_reviews=ledger.open_reviews + 1)
    return out, ledger


def result_sha256(settlement) -> bytes:
    return hashlib.sha256(settlement.to_json().encode("utf-8")).digest()[:16]


def sort_key(ev: Event) -> tuple:
    """Time order across sites; device and seq break ties so the order is total and repeatable."""
    return (ev.time, ev.device, ev.seq)


def replay_person(ledger: Ledger | None, events: Iterable[Event], world: World, *,
                  done: frozenset | set = frozenset()) -> tuple[Ledger | None, list[Outcome]]:
    """Replay one person's entries in time order; skip those in ``done``. Pure."""
    outcomes: list[Outcome] = []
    seen = set(done)
    local = _Chain(world)
    events = sorted(events, key=sort_key)
    times = {ev.key: ev.time for ev in events}
    entry_time = getattr(world, "entry_time", None)
    for ev in events:
        if ev.key in seen or ev.kind not in HANDLERS:
            continue
        seen.add(ev.key)
        prev = times.get((ev.device, ev.seq - 1))
        if prev is None and entry_time is not None:
            prev = entry_time(ev.device, ev.seq - 1)
        if ev.kind == "settlement" and prev is not None and ev.time < prev:
            out, ledger = _went_back(ev, ledger, prev)
        else:
            out, ledger = HANDLERS[ev.kind](ev, ledger, local)
        local.outcomes[ev.key] = out
        outcomes.append(out)
    return ledger, outcomes


class _Chain:
    """The world, plus the outcomes decided earlier in this same replay (a cancel may follow them)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.outcomes: dict = {}
        # The world's look-ups bound once (each entry asks several; __getattr__ is the slow path).
        for name in ("policy", "catalogue", "hot", "online"):
            got = getattr(world, name, None)
            if got is not None:
                setattr(self, name, got)

    def outcome_of(self, device, seq):
        return self.outcomes.get((device, seq)) or self.world.outcome_of(device, seq)

    def __getattr__(self, name):
        return getattr(self.world, name)


# ------------------------------------------------------------------------------------- claims ---
APPROVE, WAIT, MANUAL = "approve", "wait", "manual"


def claim_decision(claim: Mapping[str, Any], ledger: Ledger | None, world: World) -> tuple[str, str]:
    """May this pending claim be approved without a reviewer? Returns (approve|wait|manual, reason).

    Rules, first match wins:
        person not identified                          manual  (a reviewer identifies them)
        card on the hotlist before the visit           manual
        engine cannot compute the visit                manual
        arrears: an uncleared period covers the visit  wait    (approve once the employer pays)
        pending_review: the person has open reviews    wait    (approve once they close)
        card_unreadable, emergency_observation,        manual  (a reviewer checks identity / admission /
        other_region                                            the home region's rules)
        anything else (offline_limit, cleared causes)  approve
    """
    if ledger is None:
        return MANUAL, "the person is not identified: a reviewer must match the certificate number"
    card_id = (claim.get("card") or {}).get("card_id")
    hot = world.hot(card_id) if isinstance(card_id, str) else None
    if hot is not None and hot.since_ms <= int(claim.get("time", 0)):
        return MANUAL, f"card {card_id} was on the hotlist ({hot.reason}) at the visit"
    try:
        reimbursement(claim, ledger, world)
    except ClaimError as exc:
        return MANUAL, exc.message
    day = _dt.date.fromisoformat(claim["visit"]["date"])
    cause = claim["cause"]
    if ledger.suspended_on(day):
        return WAIT, f"arrears for {day.isoformat()} not yet paid by the employer"
    if cause == "pending_review" and ledger.open_reviews > 0:
        return WAIT, f"{ledger.open_reviews} earlier review(s) still open"
    if cause in ("card_unreadable", "emergency_observation", "other_region"):
        return MANUAL, {"card_unreadable": "keyed-in card: a reviewer checks the identity",
                        "emergency_observation": "a reviewer records whether the patient was admitted",
                        "other_region": "another region's card: a reviewer settles it by the home region's "
                                        "rules (or this region's, with a 异地就医 filing)"}[cause]
    return APPROVE, {"offline_limit": "outage claim verified: signed entry accepted, person known, card valid",
                     "arrears": "arrears for the visit's period have been paid",
                     "pending_review": "the earlier review has closed"}.get(cause, "cause cleared")



def reimbursement(claim: Mapping[str, Any], ledger: Ledger, world: World, *, med_type: str | None = None):
    """What the fund would have paid for the claim's visit with the centre's state (status active).

    Returns the engine's :class:`Settlement` (its ``hifp_pay`` is the reimbursement; the account is not
    used again: the patient already paid). ``med_type`` lets a reviewer settle an emergency observation
    as the visit kind decided after admission.
    """
    try:
        (cv, ch), (pv, ph) = basis_of(claim)
    except Refusal as r:
        raise ClaimError(f"the claim has no usable provenance: {r.reason}") from None
    policy, catalogue = world.policy(pv, ph), world.catalogue(cv, ch)
    if policy is None or catalogue is None:
        raise ClaimError("the claim names bundles the centre never published: review it by hand")
    visit_raw = {**claim["visit"], "acct_used_flag": False}
    if med_type is not None:
        visit_raw["med_type"] = med_type
    try:
        visit = parse_visit(visit_raw, policy)
        items = parse_items(list(claim["items"]))
        return settle(policy, catalogue, ledger.person(visit.date, treat_active=True), visit, items)
    except SettlementError as exc:
        raise ClaimError(f"the engine cannot compute this claim ({exc.code}: {exc.message})") from None


def approve(claim: Mapping[str, Any], ledger: Ledger, world: World, *, med_type: str | None = None):
    """Approve: (amount, settlement, ledger after). The fund's progress moves; the amount is paid out."""
    s = reimbursement(claim, ledger, world, med_type=med_type)
    (_cv, _ch), (pv, ph) = basis_of(claim)
    policy = world.policy(pv, ph)
    default = policy.default_accumulator if policy is not None else DEFAULT_ACCUMULATOR
    after = ledger.progress(s.year, s.accumulator, s.act_pay_dedc, s.hifp_pay, default)
    return s.hifp_pay, s, after


def contribute(ledger: Ledger, amount: int) -> tuple[Ledger, int]:
    """Post a monthly contribution; returns the ledger and how much debt it cleared."""
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise ValueError(f"a contribution is a positive whole number of fen, got {amount!r}")
    cleared = min(ledger.debt, amount)
    return replace(ledger, balc=ledger.balc + amount), cleared
