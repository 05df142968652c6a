"""One visit at the counter as a sans-I/O state machine: events in, the next action out.

Rules
-----
A visit walks identify -> decide (online / offline / full payment / refused) -> ask the centre ->
engine -> fund check -> card (and PIN) confirmation -> journal entry. States and the events each
accepts (first column: state; right: event -> the states it may lead to)::

    start            Identified     -> confirming_card | asking_centre | settling | refused | full_payment
                                       | abandoned
    confirming_card  CardConfirmed  -> asking_centre | journaling
                     PinWrong       -> abandoned
                     PinBlocked     -> refused
                     CardPulled     -> abandoned
    asking_centre    CentreAnswered -> journaling
                     CentreRefused  -> refused | full_payment | rejected
                     CentreFailed   -> looking_up | settling | refused | full_payment
    looking_up       CentreAnswered -> journaling
                     CentreRefused  -> refused | full_payment | rejected
                     CentreFailed   -> settling | refused | full_payment
    settling         Settled        -> confirming_card | journaling | full_payment | abandoned
    journaling       Journaled      -> done

``done``, ``refused``, ``full_payment``, ``rejected`` (the centre refused with an engine error) and
``abandoned`` (card pulled, wrong PIN, PIN missing) are final.

One req, one charge: the req (device + the caller's request id) is the settlement's identity at the
centre. When an online attempt fails after the request may have reached the centre (a timeout, a
broken connection: ``CentreFailed(sent=True)``), the visit does not fall back offline at once: it
asks the centre whether that req settled (``LookUp``, state ``looking_up``). A found answer is
journaled as the online settlement it was; a failed or empty lookup falls back as before (and
reconciliation recognises an offline entry whose req the centre had settled: no money moves twice).
The centre refuses the same req with other content (``req_conflict``): that is ``rejected``, nothing
is journaled. :func:`content_conflict` is the same check against this device's own journal.

A keyed-in card has no card to confirm (and never lets the account pay), so it goes from ``start``
straight to ``asking_centre``. Every legal event is in :data:`TRANSITIONS`; any other raises
:class:`VisitOrderError` and changes nothing (like h11's ``_state.py``). The card is confirmed exactly
once per visit: before the centre is asked (the PIN is checked before the centre commits anything) or,
offline, after the fund check.

Theory of operation
-------------------
The driver (:class:`edge.counter.service.Counter`, in trio) gathers what the cache and the card say
into :class:`Prepared` (in a worker thread: no SQLite on the event loop), then loops::

    action = visit.handle(Identified(prepared))
    while not action.final:
        action = visit.handle(<do the action: ask the centre, run the engine, confirm the card, append>)

Nothing here touches a socket, a card, a database or a clock: the decision table is
:mod:`edge.offline` (pure), the engine result comes in with :class:`Settled`, and when the centre is
silent the decision is taken again from the same facts with the centre marked unreachable (so the
cache is not read twice). The entry bodies (settlement, refusal, claim) are built here from plain data
through :mod:`sync.bodies` (the contract the centre parses with), so nothing malformed is journaled.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any

from edge import offline
from edge.settle import Item, Visit, canonical_json, round_fen
from edge.settle.money import mul

from sync import bodies
from sync.bodies import AMOUNT_KEYS

from .errors import CounterError
from .requests import VisitRequest

START, CONFIRMING_CARD, ASKING_CENTRE, LOOKING_UP, SETTLING, JOURNALING = (
    "start", "confirming_card", "asking_centre", "looking_up", "settling", "journaling")
DONE, REFUSED, FULL_PAYMENT, REJECTED, ABANDONED = "done", "refused", "full_payment", "rejected", "abandoned"
FINAL = frozenset({DONE, REFUSED, FULL_PAYMENT, REJECTED, ABANDONED})

TRANSITIONS: dict[str, dict[str, frozenset[str]]] = {
    START: {"Identified": frozenset({CONFIRMING_CARD, ASKING_CENTRE, SETTLING, REFUSED, FULL_PAYMENT, ABANDONED})},
    CONFIRMING_CARD: {"CardConfirmed": frozenset({ASKING_CENTRE, JOURNALING}),
                      "PinWrong": frozenset({ABANDONED}), "PinBlocked": frozenset({REFUSED}),
                      "CardPulled": frozenset({ABANDONED})},
    ASKING_CENTRE: {"CentreAnswered": frozenset({JOURNALING}),
                    "CentreRefused": frozenset({REFUSED, FULL_PAYMENT, REJECTED}),
                    "CentreFailed": frozenset({LOOKING_UP, SETTLING, REFUSED, FULL_PAYMENT})},
    LOOKING_UP: {"CentreAnswered": frozenset({JOURNALING}),
                 "CentreRefused": frozenset({REFUSED, FULL_PAYMENT, REJECTED}),
                 "CentreFailed": frozenset({SETTLING, REFUSED, FULL_PAYMENT})},
    SETTLING: {"Settled": frozenset({CONFIRMING_CARD, JOURNALING, FULL_PAYMENT, ABANDONED})},
    JOURNALING: {"Journaled": frozenset({DONE})},
    **{s: {} for s in FINAL},
}

# The Chinese the clerk reads when the engine (here or at the centre) cannot settle a visit.
ENGINE_ZH = {"no_policy_rule": "政策中没有适用于此类就诊的规则，请检查就诊类型",
             "no_chronic_filing": "没有有效的门诊慢特病备案，请按普通门诊结算或先办理备案",
             "invalid_input": "就诊数据不正确，请核对后重新提交",
             "unknown_item": "目录中没有此项目，请重新搜索"}
ENGINE_ZH_DEFAULT = "无法结算此次就诊，请核对就诊信息"
REQ_CONFLICT_ZH = "此业务流水号已用于另一笔结算（项目或金额不同），本次未结算；请为本次就诊使用新的流水号"


class VisitOrderError(CounterError):
    """An event the visit's current state does not accept (a driver bug): nothing changed."""

    code = "visit_order"
    status = 500
    zh = "内部错误，本次未结算"

    def __init__(self, state: str, event: str) -> None:
        super().__init__(f"visit in state {state!r} cannot take {event}", state=state, event=event)


@dataclass
class Prepared:
    """What the cache and the card said about this visit (gathered by the driver, off the event loop)."""

    req: VisitRequest
    reader: str | None
    identity: Any                 # edge.card.Identity
    person: Any                   # edge.cache Person or None
    items: list[Item]
    visit: Visit
    facts: offline.Facts
    decision: offline.Decision
    basis: dict
    policy: Any
    catalogue: Any = None         # the catalogue entries of the items' codes, as read with them (for the engine)


# -- events ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Identified:
    prepared: Prepared


@dataclass(frozen=True)
class CardConfirmed:
    pass


@dataclass(frozen=True)
class PinWrong:
    tries_left: int | None = None


@dataclass(frozen=True)
class PinBlocked:
    pass


@dataclass(frozen=True)
class CardPulled:
    code: str = "card_removed"      # card_removed, card_changed, no_card, or a read failure


@dataclass(frozen=True)
class CentreAnswered:
    answer: dict


@dataclass(frozen=True)
class CentreRefused:
    code: str
    message: str = ""
    detail: Any = None              # the centre's structured extras (a req_conflict's two totals)


@dataclass(frozen=True)
class CentreFailed:
    why: str = ""
    sent: bool = True               # the request may have reached the centre (then look the req up first)


@dataclass(frozen=True)
class Settled:
    result: Any                    # edge.settle Result: hifp_pay, to_dict(), to_json()


@dataclass(frozen=True)
class Journaled:
    entry: Any


Event = (Identified | CardConfirmed | PinWrong | PinBlocked | CardPulled | CentreAnswered | CentreRefused
         | CentreFailed | Settled | Journaled)


# -- actions ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Action:
    final = False


@dataclass(frozen=True)
class ConfirmCard(Action):
    reader: str | None
    card_id: str | None
    pin: str | None                 # verify this PIN on the card (the account pays), else re-read only


@dataclass(frozen=True)
class AskCentre(Action):
    request: dict


@dataclass(frozen=True)
class LookUp(Action):
    """Ask the centre whether this req settled (the same request: it checks the content too)."""

    request: dict


@dataclass(frozen=True)
class RunEngine(Action):
    acct_limit: int | None          # offline allowance left; None online


@dataclass(frozen=True)
class Journal(Action):
    kind: str
    body: dict


@dataclass(frozen=True)
class Done(Action):
    final = True
    entry: Any


@dataclass(frozen=True)
class Refuse(Action):
    """Journal ``body`` (a refusal; best effort) and answer 409 with the decision's words."""

    final = True
    decision: offline.Decision
    body: dict


@dataclass(frozen=True)
class FullPayment(Action):
    final = True
    decision: offline.Decision


@dataclass(frozen=True)
class Reject(Action):
    """The centre refused with an error of the visit itself (engine): show it, journal nothing."""

    final = True
    code: str
    message: str
    zh: str
    detail: Any = None


@dataclass(frozen=True)
class Abandon(Action):
    """Nothing is journaled: the card went away, the PIN was wrong, or no PIN was given."""

    final = True
    code: str


class VisitCore:
    """One visit. :meth:`handle` takes an event and returns the driver's next action."""

    def __init__(self) -> None:
        self.state = START
        self.prepared: Prepared | None = None
        self.decision: offline.Decision | None = None
        self.card_confirmed = False
        self.result: Any = None
        self.answer: dict | None = None
        self.last: Action | None = None

    def handle(self, event: Event) -> Action:
        name = type(event).__name__
        allowed = TRANSITIONS[self.state].get(name)
        if allowed is None:
            raise VisitOrderError(self.state, name)
        # Work on a copy: a handler that fails (a malformed centre answer) leaves the visit as it was.
        trial = self._copy()
        action = getattr(trial, "_on_" + name)(event)
        if trial.state not in allowed:   # the table and the handlers disagree: a bug here, not the driver's
            raise AssertionError(f"{self.state} --{name}--> {trial.state} is not in TRANSITIONS")
        self.__dict__.update(trial.__dict__)
        self.last = action
        return action

    def _copy(self) -> "VisitCore":
        c = VisitCore.__new__(VisitCore)
        c.__dict__.update(self.__dict__)
        return c

    @property
    def p(self) -> Prepared:
        assert self.prepared is not None
        return self.prepared

    # -- handlers --------------------------------------------------------------------------------
    def _on_Identified(self, e: Identified) -> Action:
        self.prepared = e.prepared
        return self._route(e.prepared.decision)

    def _route(self, d: offline.Decision) -> Action:
        """Where a decision taken before the engine leads."""
        self.decision = d
        if d.mode == offline.REFUSED:
            return self._refuse(d)
        if d.mode == offline.FULL_PAYMENT:
            self.state = FULL_PAYMENT
            return FullPayment(d)
        if d.mode == offline.ONLINE:
            return self._confirm()          # the PIN before the centre commits anything
        self.state = SETTLING
        return RunEngine(d.acct_limit)

    def _confirm(self) -> Action:
        p = self.p
        if self.card_confirmed or p.identity.keyed_in:
            self.card_confirmed = True
            return self._after_card()
        needs_pin = p.visit.acct_used_flag
        if needs_pin and not p.req.pin:
            self.state = ABANDONED
            return Abandon("pin_required")
        self.state = CONFIRMING_CARD
        return ConfirmCard(p.reader, p.identity.card_id, p.req.pin if needs_pin else None)

    def _after_card(self) -> Action:
        assert self.decision is not None
        if self.decision.mode == offline.ONLINE and self.answer is None:
            self.state = ASKING_CENTRE
            return AskCentre(centre_request(self.p))
        return self._journal_settlement()

    def _on_CardConfirmed(self, e: CardConfirmed) -> Action:
        self.card_confirmed = True
        return self._after_card()

    def _on_PinWrong(self, e: PinWrong) -> Action:
        self.state = ABANDONED
        return Abandon("wrong_pin")

    def _on_PinBlocked(self, e: PinBlocked) -> Action:
        # Refused outright, and the refusal is journaled (DOMAIN.md 6).
        return self._refuse(offline.Decision(offline.REFUSED, "pin_blocked", "card PIN is blocked",
                                             offline.REFUSAL_ZH["pin_blocked"]))

    def _on_CardPulled(self, e: CardPulled) -> Action:
        self.state = ABANDONED
        return Abandon(e.code)

    def _on_CentreAnswered(self, e: CentreAnswered) -> Action:
        self.answer = e.answer
        return self._journal_settlement()

    def _on_CentreRefused(self, e: CentreRefused) -> Action:
        mapped = offline.after_centre(e.code, e.message)
        if mapped is None and self.p.person is None and e.code == "invalid_input":
            # The centre needs a psn_no and this device's snapshot does not know the person.
            mapped = offline.Decision(offline.REFUSED, "unknown_person",
                                      "person not in this device's snapshot and not identified by the centre",
                                      "本机和医保中心都未能识别此参保人，请核对卡片或社会保障号码")
        if mapped is None:
            self.state = REJECTED
            if e.code == "req_conflict":
                return Reject(e.code, e.message or e.code, REQ_CONFLICT_ZH, e.detail)
            return Reject(e.code, e.message or e.code, "医保中心拒绝结算：" + ENGINE_ZH.get(e.code, ENGINE_ZH_DEFAULT))
        return self._route(mapped)

    def _on_CentreFailed(self, e: CentreFailed) -> Action:
        if self.state == ASKING_CENTRE and e.sent:
            # The centre may have committed before the answer was lost: ask it before settling again offline.
            self.state = LOOKING_UP
            return LookUp(centre_request(self.p))
        # The centre is silent: the same facts, decided again without it (the card stays confirmed).
        facts = dataclasses.replace(self.p.facts, centre_reachable=False)
        return self._route(offline.decide(facts))

    def _on_Settled(self, e: Settled) -> Action:
        assert self.decision is not None
        self.result = e.result
        d = offline.check_fund(self.decision, e.result.hifp_pay, self.p.policy.offline)
        self.decision = d
        if d.mode == offline.FULL_PAYMENT:
            self.state = FULL_PAYMENT
            return FullPayment(d)
        return self._confirm()

    def _on_Journaled(self, e: Journaled) -> Action:
        self.state = DONE
        return Done(e.entry)

    # -- outcomes --------------------------------------------------------------------------------
    def _refuse(self, d: offline.Decision) -> Action:
        self.decision = d
        self.state = REFUSED
        return Refuse(d, refusal_body(self.p, d))

    def _journal_settlement(self) -> Action:
        assert self.decision is not None
        self.state = JOURNALING
        if self.answer is not None:
            return Journal("settlement", online_settlement_body(self.p, self.answer))
        r = self.result
        return Journal("settlement", settlement_body(self.p, "offline", r.to_dict(), result_sha(r.to_json()),
                                                     self.decision))


# -- one req, one visit (pure) ---------------------------------------------------------------------
INTERNAL = "@"     # internal ids (a cancel's req) start with it; a caller's req never may (caller_req)


def internal_req(kind: str, ref: int | str) -> str:
    """A journal req in the device's own key space: e.g. ``@cancel:7`` (a caller cannot send it)."""
    return f"{INTERNAL}{kind}:{ref}"


def caller_req_ok(req: Any) -> bool:
    return not (isinstance(req, str) and req.strip().startswith(INTERNAL))


def _norm_items(items: Any) -> list[tuple[str, str, int | None]] | None:
    from decimal import Decimal, InvalidOperation

    out = []
    for it in items if isinstance(items, list) else []:
        if not isinstance(it, dict):
            return None
        code = it.get("med_list_codg", it.get("code"))
        try:
            cnt = str(Decimal(str(it.get("cnt", "1"))).normalize())
        except (InvalidOperation, ValueError):
            return None
        pric = it.get("pric")
        out.append((str(code), cnt, pric if isinstance(pric, int) and not isinstance(pric, bool) else None))
    return sorted(out, key=lambda x: (x[0], x[1], -1 if x[2] is None else x[2]))


def content_conflict(data: Any, kind: str, body: dict) -> dict | None:
    """The same req again: None when the request names the journaled visit (same visit type, same items
    and counts, and the same prices where the request gives one), else the two totals (a conflict)."""
    if kind not in ("settlement", "claim") or not isinstance(data, dict):
        return None
    asked = _norm_items(data.get("items"))
    done = _norm_items(body.get("items"))
    visit = body.get("visit") or {}
    same = (asked is not None and done is not None and len(asked) == len(done)
            and str(data.get("med_type")) == str(visit.get("med_type"))
            and all(a[0] == d[0] and a[1] == d[1] and a[2] in (None, d[2]) for a, d in zip(asked, done)))
    if same:
        return None
    settled = (body.get("amounts") or body.get("paid") or {}).get("medfee_sumamt")
    total: int | None = None
    prices = [a[2] for a in asked or []]
    if asked is not None and all(isinstance(p, int) for p in prices):
        from decimal import Decimal
        total = sum(round_fen(mul(Decimal(a[1]), int(a[2] or 0))) for a in asked)
    return {"settled": {"medfee_sumamt": settled}, "asked": {"medfee_sumamt": total}}


# -- entry bodies (pure) ---------------------------------------------------------------------------
def result_sha(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()[:16]


def medfee(items: list[Item]) -> int:
    # Step 1 of the engine (DOMAIN.md 4.1), for a visit the engine cannot settle (full payment).
    return sum(round_fen(mul(it.cnt, it.pric)) for it in items)


def visit_body(v: Visit, r: VisitRequest) -> dict:
    return _visit(v, r).build()


def items_body(items: list[Item]) -> list[dict]:
    return [it.build() for it in _items(items)]


def _visit(v: Visit, r: VisitRequest) -> bodies.Visit:
    return bodies.Visit(med_type=v.med_type, level=v.level, date=v.date, acct_used_flag=v.acct_used_flag,
                        chronic_code=v.chronic_code or None, observation=bool(r.observation))


def _items(items: list[Item]) -> tuple[bodies.Item, ...]:
    return tuple(bodies.Item(it.code, str(it.cnt), it.pric) for it in items)


def _card(p: Prepared) -> bodies.Card:
    return bodies.Card(p.identity.card_id, p.identity.keyed_in)


def _basis(p: Prepared, d: offline.Decision, centre: Any = None) -> bodies.Basis:
    """The bundles this visit was decided on (from the cache's versions), the limits checked, and
    online the centre's own basis (checked by the contract's parser)."""
    b = p.basis

    def ref(kind: str, hashed: bool) -> bodies.BundleRef | None:
        r = b.get(kind)
        if r is None:
            return None
        return bodies.BundleRef(r["version"], r["hash"] if hashed else None, r.get("policy_version"))

    catalogue, policy = ref("catalogue", True), ref("policy", True)
    assert catalogue is not None and policy is not None   # _basis in the driver refuses a cache without them
    return bodies.Basis(catalogue=catalogue, policy=policy, persons=ref("persons", False),
                        hotlist=ref("hotlist", False),
                        limits={k: (v[0], v[1]) for k, v in d.limits.items()} or None,
                        centre=None if centre is None else bodies.Basis.parse(centre, "basis.centre", nested=True))


def centre_request(p: Prepared) -> dict:
    return {"req": p.req.req, "psn_no": p.person.psn_no if p.person else None,
            "card_id": p.identity.card_id, "certno": p.identity.ssn,
            "visit": visit_body(p.visit, p.req), "items": items_body(p.items),
            "acct_used_flag": p.visit.acct_used_flag}


def refusal_body(p: Prepared, d: offline.Decision) -> dict:
    return bodies.Refusal(req=p.req.req, code=d.cause or "refused", what=d.detail, region=p.identity.region,
                          keyed_in=p.identity.keyed_in).build()


def settlement_body(p: Prepared, mode: str, result: dict, sha: bytes, d: offline.Decision, *,
                    psn_no: str | None = None, person: bodies.Person | None = None, centre: Any = None) -> dict:
    if person is None:
        s = p.person.state
        person = bodies.Person(insutype=s.insutype, psn_type=s.psn_type, status=s.status,
                               chronic=tuple(_filing(f) for f in s.chronic), balc=s.balc,
                               deductible_used=s.deductible_used, fund_paid=s.fund_paid,
                               year=s.year, accumulators=s.accumulators_json() or None)
    return bodies.Settlement(
        req=p.req.req or "", mode=mode, psn_no=psn_no or p.person.psn_no, card=_card(p),
        visit=_visit(p.visit, p.req), items=_items(p.items), person=person,
        acct_limit=d.acct_limit if mode == "offline" else None,
        amounts={k: int(result[k]) for k in AMOUNT_KEYS}, result_sha256=sha,
        basis=_basis(p, d, centre)).build()


def online_settlement_body(p: Prepared, answer: dict) -> dict:
    """The centre's answer as this device's settlement entry (the person state it settled against)."""
    result = answer["result"]
    person = answer.get("person") or {}
    psn_no = person.get("psn_no") or (result.get("basis") or {}).get("psn_no") or (p.person and p.person.psn_no)
    before = result["state_before"]
    state = bodies.Person(insutype=person.get("insutype") or result["basis"]["insutype"],
                          psn_type=person.get("psn_type") or result["basis"]["psn_type"],
                          status=person.get("status", "active"), chronic=tuple(person.get("chronic") or ()),
                          balc=int(before["balc"]), deductible_used=int(before["deductible_used"]),
                          fund_paid=int(before["fund_paid"]))
    d = offline.Decision(offline.ONLINE, detail="settled by the centre", zh="联网结算")
    return settlement_body(p, "online", result, result_sha(canonical_json(result)), d, psn_no=psn_no,
                           person=state, centre=answer.get("basis"))


def _filing(f: Any) -> Any:
    """A chronic filing as the engine read it: the code alone, or with its dates and item scope (the
    centre replays the entry with them: a scope dropped here would give the chronic ratio on every item)."""
    if f.begndate is None and f.enddate is None and f.items is None:
        return f.code
    out: dict[str, Any] = {"code": f.code}
    if f.begndate is not None:
        out["begndate"] = f.begndate.isoformat()
    if f.enddate is not None:
        out["enddate"] = f.enddate.isoformat()
    if f.items is not None:
        out["items"] = sorted(f.items)
    return out


def claim_body(p: Prepared, d: offline.Decision) -> dict:
    fee = medfee(p.items)
    return bodies.Claim(req=p.req.req or "", cause=d.cause or "", detail=d.detail,
                        psn_no=p.person.psn_no if p.person else None,
                        certno=None if p.person else p.identity.ssn, card=_card(p), visit=_visit(p.visit, p.req),
                        items=_items(p.items), paid={"medfee_sumamt": fee, "acct_pay": 0, "psn_cash_pay": fee},
                        basis=_basis(p, d)).build()
