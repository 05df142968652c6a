"""The visit core (edge/counter/visit.py) driven through every path with no I/O: no card, no cache, no
centre, no journal, no clock. Each path is a list of (event, expected action type, state after)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from types import SimpleNamespace
from typing import Any

import pytest

from edge import offline
from edge.card import Identity
from edge.counter import visit as v
from edge.counter.requests import VisitRequest
from edge.settle import OfflineLimits, PersonState, Visit, canonical_json, parse_items

LIMITS = OfflineLimits(max_offline_hours=72, offline_visit_fund_cap=20000, offline_max_visits=3,
                       offline_acct_allowance=30000)
CARD_ID = "330300D15600000500BF7A0D1C5E1A2B"
CERTNO = "430000197001011230"
TODAY = dt.date(2026, 11, 24)


def identity(*, keyed_in: bool = False) -> Identity:
    return Identity(card_id=None if keyed_in else CARD_ID, region=None if keyed_in else CARD_ID[:6],
                    card_no="A00000001", ssn=CERTNO, name="张三", sex="1", spec_version="3.00",
                    issued=None if keyed_in else dt.date(2020, 1, 1), expires=None if keyed_in else dt.date(2035, 1, 1),
                    atr="", reader="" if keyed_in else "R1", keyed_in=keyed_in)


PERSON = SimpleNamespace(psn_no="P0001", state=PersonState(
    psn_no="P0001", insutype="310", psn_type="working", status="active", chronic=(), balc=50000,
    deductible_used=20000, fund_paid=0))
BASIS = {"catalogue": {"version": 1, "hash": "c"}, "policy": {"version": 1, "hash": "p", "policy_version": "2026"},
         "persons": {"version": 1}, "hotlist": None}


def prepared(*, centre: bool = False, acct: bool = True, pin: str | None = "123456", keyed_in: bool = False,
             person: Any = PERSON, **facts: Any) -> v.Prepared:
    f = offline.Facts(centre_reachable=centre, keyed_in=keyed_in, person_known=person is not None,
                      person_status="active" if person is not None else None, limits=LIMITS,
                      cache_age_ms=3_600_000, offline_visits=0, offline_acct_used=1000)
    f = dataclasses.replace(f, **facts)
    req = VisitRequest(req="R-1", reader=None if keyed_in else "R1", card_id=None, keyed_in=None, med_type="11",
                       acct_used_flag=acct, chronic_code=None, observation=False,
                       items=({"code": "X1", "cnt": "2", "pric": 1280},), pin=pin)
    items = parse_items([{"code": "X1", "cnt": "2", "pric": 1280, "name": "阿莫西林胶囊"}])
    return v.Prepared(req=req, reader=None if keyed_in else "R1", identity=identity(keyed_in=keyed_in),
                      person=person, items=items, visit=Visit("11", "village", TODAY, acct and not keyed_in, None),
                      facts=f, decision=offline.decide(f), basis=BASIS,
                      policy=SimpleNamespace(offline=LIMITS))


@dataclasses.dataclass
class FakeResult:
    """What the driver hands over from the engine: the fund part and the amounts."""

    hifp_pay: int

    def to_dict(self) -> dict:
        return {"medfee_sumamt": 2560, "fulamt_ownpay_amt": 0, "overlmt_selfpay": 0, "preselfpay_amt": 0,
                "inscp_scp_amt": 2560, "act_pay_dedc": 0, "hifp_pay": self.hifp_pay, "acct_pay": 1000,
                "psn_cash_pay": 2560 - self.hifp_pay - 1000}

    def to_json(self) -> str:
        return canonical_json(self.to_dict())


CENTRE_BASIS = {"catalogue": {"version": 3, "hash": "ab" * 32},
                "policy": {"version": 2, "hash": "cd" * 32, "policy_version": "2026"}}
ANSWER = {"result": {**FakeResult(1200).to_dict(), "basis": {"insutype": "310", "psn_type": "working",
                                                            "psn_no": "P0001"},
                     "state_before": {"balc": 50000, "deductible_used": 20000, "fund_paid": 0}},
          "person": {"psn_no": "P0001", "insutype": "310", "psn_type": "working"}, "basis": CENTRE_BASIS}
ENTRY = SimpleNamespace(seq=1)

C = v.ConfirmCard
PATHS: dict[str, tuple[dict, list[tuple[Any, type, str]]]] = {
    "online ok": (dict(centre=True), [
        (v.CardConfirmed(), v.AskCentre, v.ASKING_CENTRE),
        (v.CentreAnswered(ANSWER), v.Journal, v.JOURNALING),
        (v.Journaled(ENTRY), v.Done, v.DONE)]),
    "online failure -> offline (card confirmed once)": (dict(centre=True), [
        (v.CardConfirmed(), v.AskCentre, v.ASKING_CENTRE),
        (v.CentreFailed("timeout"), v.LookUp, v.LOOKING_UP),      # did the req settle before the answer was lost?
        (v.CentreFailed("lookup failed"), v.RunEngine, v.SETTLING),
        (v.Settled(FakeResult(1200)), v.Journal, v.JOURNALING),
        (v.Journaled(ENTRY), v.Done, v.DONE)]),
    "online failure -> offline limit -> full payment": (dict(centre=True, offline_visits=3), [
        (v.CardConfirmed(), v.AskCentre, v.ASKING_CENTRE),
        (v.CentreFailed("timeout"), v.LookUp, v.LOOKING_UP),
        (v.CentreFailed("not settled at the centre"), v.FullPayment, v.FULL_PAYMENT)]),
    "late answer found by the lookup -> online entry": (dict(centre=True), [
        (v.CardConfirmed(), v.AskCentre, v.ASKING_CENTRE),
        (v.CentreFailed("timeout"), v.LookUp, v.LOOKING_UP),
        (v.CentreAnswered(ANSWER), v.Journal, v.JOURNALING),
        (v.Journaled(ENTRY), v.Done, v.DONE)]),
    "nothing sent -> offline without a lookup": (dict(centre=True), [
        (v.CardConfirmed(), v.AskCentre, v.ASKING_CENTRE),
        (v.CentreFailed("no centre configured", sent=False), v.RunEngine, v.SETTLING)]),
    "same req, other visit -> rejected": (dict(centre=True), [
        (v.CardConfirmed(), v.AskCentre, v.ASKING_CENTRE),
        (v.CentreRefused("req_conflict", "other visit", {"settled": {"medfee_sumamt": 7400}}), v.Reject,
         v.REJECTED)]),
    "lookup finds a conflict -> rejected": (dict(centre=True), [
        (v.CardConfirmed(), v.AskCentre, v.ASKING_CENTRE),
        (v.CentreFailed("timeout"), v.LookUp, v.LOOKING_UP),
        (v.CentreRefused("req_conflict", "other visit"), v.Reject, v.REJECTED)]),
    "offline ok": (dict(), [
        (v.Settled(FakeResult(1200)), C, v.CONFIRMING_CARD),
        (v.CardConfirmed(), v.Journal, v.JOURNALING),
        (v.Journaled(ENTRY), v.Done, v.DONE)]),
    "offline fund cap -> full payment": (dict(), [
        (v.Settled(FakeResult(20001)), v.FullPayment, v.FULL_PAYMENT)]),
    "offline visits limit -> full payment": (dict(offline_visits=3), []),
    "refused: hotlisted": (dict(card_hotlisted=True), []),
    "refused: expired (even online)": (dict(centre=True, card_expired=True), []),
    "refused by the centre: unknown person": (dict(centre=True, person=None), [
        (v.CardConfirmed(), v.AskCentre, v.ASKING_CENTRE),
        (v.CentreRefused("invalid_input", "psn_no required"), v.Refuse, v.REFUSED)]),
    "centre: suspended -> full payment": (dict(centre=True), [
        (v.CardConfirmed(), v.AskCentre, v.ASKING_CENTRE),
        (v.CentreRefused("suspended"), v.FullPayment, v.FULL_PAYMENT)]),
    "centre: engine error -> rejected": (dict(centre=True), [
        (v.CardConfirmed(), v.AskCentre, v.ASKING_CENTRE),
        (v.CentreRefused("no_policy_rule", "no rule"), v.Reject, v.REJECTED)]),
    "card pulled (offline)": (dict(), [
        (v.Settled(FakeResult(1200)), C, v.CONFIRMING_CARD),
        (v.CardPulled("card_removed"), v.Abandon, v.ABANDONED)]),
    "card pulled (online, before the centre)": (dict(centre=True), [
        (v.CardPulled("card_changed"), v.Abandon, v.ABANDONED)]),
    "wrong PIN": (dict(centre=True), [
        (v.PinWrong(2), v.Abandon, v.ABANDONED)]),
    "PIN blocked": (dict(), [
        (v.Settled(FakeResult(1200)), C, v.CONFIRMING_CARD),
        (v.PinBlocked(), v.Refuse, v.REFUSED)]),
    "no PIN given while the account pays": (dict(centre=True, pin=None), []),
    "keyed in: straight to the centre": (dict(centre=True, keyed_in=True), [
        (v.CentreAnswered(ANSWER), v.Journal, v.JOURNALING),
        (v.Journaled(ENTRY), v.Done, v.DONE)]),
    "no account: card re-read without PIN": (dict(acct=False), [
        (v.Settled(FakeResult(1200)), C, v.CONFIRMING_CARD),
        (v.CardConfirmed(), v.Journal, v.JOURNALING)]),
}
FIRST = {  # what Identified leads to, per path
    "online ok": (C, v.CONFIRMING_CARD), "online failure -> offline (card confirmed once)": (C, v.CONFIRMING_CARD),
    "online failure -> offline limit -> full payment": (C, v.CONFIRMING_CARD),
    "late answer found by the lookup -> online entry": (C, v.CONFIRMING_CARD),
    "nothing sent -> offline without a lookup": (C, v.CONFIRMING_CARD),
    "same req, other visit -> rejected": (C, v.CONFIRMING_CARD),
    "lookup finds a conflict -> rejected": (C, v.CONFIRMING_CARD),
    "offline ok": (v.RunEngine, v.SETTLING), "offline fund cap -> full payment": (v.RunEngine, v.SETTLING),
    "offline visits limit -> full payment": (v.FullPayment, v.FULL_PAYMENT),
    "refused: hotlisted": (v.Refuse, v.REFUSED), "refused: expired (even online)": (v.Refuse, v.REFUSED),
    "refused by the centre: unknown person": (C, v.CONFIRMING_CARD),
    "centre: suspended -> full payment": (C, v.CONFIRMING_CARD),
    "centre: engine error -> rejected": (C, v.CONFIRMING_CARD),
    "card pulled (offline)": (v.RunEngine, v.SETTLING), "card pulled (online, before the centre)": (C, v.CONFIRMING_CARD),
    "wrong PIN": (C, v.CONFIRMING_CARD), "PIN blocked": (v.RunEngine, v.SETTLING),
    "no PIN given while the account pays": (v.Abandon, v.ABANDONED),
    "keyed in: straight to the centre": (v.AskCentre, v.ASKING_CENTRE),
    "no account: card re-read without PIN": (v.RunEngine, v.SETTLING),
}


def drive(name: str) -> tuple[v.VisitCore, list[v.Action]]:
    kw, steps = PATHS[name]
    core = v.VisitCore()
    actions = [core.handle(v.Identified(prepared(**kw)))]
    want_action, want_state = FIRST[name]
    assert isinstance(actions[0], want_action) and core.state == want_state
    for event, want_action, want_state in steps:
        actions.append(core.handle(event))
        assert isinstance(actions[-1], want_action), (name, event, actions[-1])
        assert core.state == want_state, (name, event, core.state)
    return core, actions


@pytest.mark.parametrize("name", sorted(PATHS))
def test_every_path_walks_the_table(name):
    core, actions = drive(name)
    assert actions[-1].final == (core.state in v.FINAL)


def test_online_ok_journals_the_centre_answer_after_the_pin():
    core, actions = drive("online ok")
    assert actions[0] == v.ConfirmCard("R1", CARD_ID, "123456")   # the PIN before the centre commits anything
    ask = actions[1]
    assert isinstance(ask, v.AskCentre)
    assert ask.request["psn_no"] == "P0001" and ask.request["items"] == [{"code": "X1", "cnt": "2", "pric": 1280}]
    j = actions[2]
    assert isinstance(j, v.Journal) and j.kind == "settlement"
    assert j.body["mode"] == "online" and j.body["acct_limit"] is None and j.body["basis"]["centre"] == CENTRE_BASIS
    assert j.body["amounts"]["hifp_pay"] == 1200 and j.body["person"]["balc"] == 50000
    assert actions[3] == v.Done(ENTRY)


def test_centre_failure_decides_again_offline_without_a_second_card_check():
    core, actions = drive("online failure -> offline (card confirmed once)")
    assert sum(isinstance(a, v.ConfirmCard) for a in actions) == 1
    assert isinstance(actions[2], v.LookUp) and actions[2].request == actions[1].request   # the same req, looked up
    assert actions[3] == v.RunEngine(29000)       # allowance 30000 - 1000 used offline
    j = actions[4]
    assert isinstance(j, v.Journal) and j.body["mode"] == "offline" and j.body["acct_limit"] == 29000
    assert j.body["basis"]["limits"]["visit_fund"] == [1200, 20000]
    assert core.decision is not None and core.decision.mode == offline.OFFLINE


def test_a_late_answer_found_by_the_lookup_is_journaled_online_once():
    core, actions = drive("late answer found by the lookup -> online entry")
    assert not any(isinstance(a, v.RunEngine) for a in actions)     # no offline settlement of the same req
    j = actions[3]
    assert isinstance(j, v.Journal) and j.body["mode"] == "online" and j.body["req"] == actions[1].request["req"]
    assert j.body["amounts"]["hifp_pay"] == 1200


def test_a_req_conflict_journals_nothing_and_carries_both_totals():
    core, actions = drive("same req, other visit -> rejected")
    r = actions[-1]
    assert isinstance(r, v.Reject) and r.code == "req_conflict" and r.detail == {"settled": {"medfee_sumamt": 7400}}
    assert "流水号" in r.zh and not any(isinstance(a, v.Journal) for a in actions)


def test_looking_up_takes_only_centre_events():
    core = v.VisitCore()
    core.handle(v.Identified(prepared(centre=True)))
    core.handle(v.CardConfirmed())
    core.handle(v.CentreFailed("timeout"))
    with pytest.raises(v.VisitOrderError):
        core.handle(v.Settled(FakeResult(1200)))
    assert core.state == v.LOOKING_UP


@pytest.mark.parametrize("req,ok", [("POS-1", True), ("cancel:7", True), ("@cancel:7", False), (" @x", False),
                                    (None, True)])
def test_internal_reqs_live_in_their_own_key_space(req, ok):
    assert v.caller_req_ok(req) is ok
    assert not v.caller_req_ok(v.internal_req("cancel", 7))


def test_same_req_same_visit_is_no_conflict_and_another_cart_is():
    body = {"visit": {"med_type": "11"}, "items": [{"code": "X1", "cnt": "2", "pric": 1280},
                                                   {"code": "X2", "cnt": "1", "pric": 1000}],
            "amounts": {"medfee_sumamt": 3560}}
    same = {"med_type": "11", "items": [{"med_list_codg": "X2", "cnt": "1.0"}, {"med_list_codg": "X1", "cnt": "2",
                                                                              "pric": 1280}]}
    assert v.content_conflict(same, "settlement", body) is None
    other = {"med_type": "11", "items": [{"med_list_codg": "X2", "cnt": "1", "pric": 1000}]}
    assert v.content_conflict(other, "settlement", body) == {"settled": {"medfee_sumamt": 3560},
                                                            "asked": {"medfee_sumamt": 1000}}
    assert v.content_conflict({**same, "med_type": "14"}, "settlement", body) is not None
    assert v.content_conflict(other, "refusal", {"code": "x"}) is None


def test_full_payment_carries_the_cause():
    _, actions = drive("offline visits limit -> full payment")
    fp = actions[-1]
    assert isinstance(fp, v.FullPayment) and fp.decision.cause == "offline_limit"
    _, actions = drive("offline fund cap -> full payment")
    fp = actions[-1]
    assert isinstance(fp, v.FullPayment) and fp.decision.detail.startswith("visit_fund")
    _, actions = drive("centre: suspended -> full payment")
    fp = actions[-1]
    assert isinstance(fp, v.FullPayment) and fp.decision.cause == "arrears"


@pytest.mark.parametrize("name,code", [("refused: hotlisted", "card_hotlisted"),
                                       ("refused: expired (even online)", "card_expired"),
                                       ("refused by the centre: unknown person", "unknown_person"),
                                       ("PIN blocked", "pin_blocked")])
def test_refusals_carry_a_refusal_body(name, code):
    _, actions = drive(name)
    r = actions[-1]
    assert isinstance(r, v.Refuse) and r.decision.cause == code and r.decision.zh
    assert r.body == {"req": "R-1", "code": code, "what": r.decision.detail,
                      "card": {"region": CARD_ID[:6], "keyed_in": False}}


@pytest.mark.parametrize("name,code", [("card pulled (offline)", "card_removed"), ("wrong PIN", "wrong_pin"),
                                       ("card pulled (online, before the centre)", "card_changed"),
                                       ("no PIN given while the account pays", "pin_required")])
def test_abandoned_visits_journal_nothing(name, code):
    _, actions = drive(name)
    assert actions[-1] == v.Abandon(code)
    assert not any(isinstance(a, v.Journal) for a in actions)


def test_centre_engine_error_is_shown_in_chinese():
    _, actions = drive("centre: engine error -> rejected")
    r = actions[-1]
    assert isinstance(r, v.Reject) and r.code == "no_policy_rule" and r.message == "no rule"
    assert r.zh == "医保中心拒绝结算：" + v.ENGINE_ZH["no_policy_rule"] and "rule" not in r.zh


def test_no_account_confirms_the_card_without_a_pin():
    _, actions = drive("no account: card re-read without PIN")
    assert actions[1] == v.ConfirmCard("R1", CARD_ID, None)


ALL_EVENTS = [v.Identified(prepared()), v.CardConfirmed(), v.PinWrong(1), v.PinBlocked(), v.CardPulled(),
              v.CentreAnswered(ANSWER), v.CentreRefused("suspended"), v.CentreFailed("x"),
              v.Settled(FakeResult(1)), v.Journaled(ENTRY)]


def _cores_in_every_state() -> dict[str, v.VisitCore]:
    """One visit parked in each state, reached by driving real paths."""
    out: dict[str, v.VisitCore] = {v.START: v.VisitCore()}
    for name, (kw, steps) in PATHS.items():
        core = v.VisitCore()
        core.handle(v.Identified(prepared(**kw)))
        out.setdefault(core.state, core)
        for event, _, _ in steps:
            core = _clone(core)
            core.handle(event)
            out.setdefault(core.state, core)
    return out


def _clone(core: v.VisitCore) -> v.VisitCore:
    c = v.VisitCore()
    c.__dict__.update(core.__dict__)
    return c


def test_every_state_is_reached():
    assert set(_cores_in_every_state()) == set(v.TRANSITIONS)


@pytest.mark.parametrize("state", sorted(v.TRANSITIONS))
def test_an_illegal_event_raises_and_changes_nothing(state):
    core = _cores_in_every_state()[state]
    for event in ALL_EVENTS:
        name = type(event).__name__
        if name in v.TRANSITIONS[state]:
            continue
        before = dict(core.__dict__)
        with pytest.raises(v.VisitOrderError) as info:
            core.handle(event)
        assert info.value.code == "visit_order" and info.value.detail == {"state": state, "event": name}
        assert core.__dict__ == before


def test_a_handler_that_fails_leaves_the_visit_as_it_was():
    core = v.VisitCore()
    core.handle(v.Identified(prepared(centre=True)))
    core.handle(v.CardConfirmed())
    before = dict(core.__dict__)
    with pytest.raises(KeyError):
        core.handle(v.CentreAnswered({"no": "result"}))     # a malformed centre answer
    assert core.__dict__ == before and core.state == v.ASKING_CENTRE
    assert isinstance(core.handle(v.CentreFailed("bad answer")), v.LookUp)     # it may have committed: ask first


def test_the_docstring_table_lists_every_transition():
    doc = v.__doc__ or ""
    for state, events in v.TRANSITIONS.items():
        for event in events:
            assert event in doc and state in doc
