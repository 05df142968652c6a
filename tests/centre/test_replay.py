"""The pure replay core (sync.centre.replay), driven directly: every row of the outcome table."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest

from edge.settle import parse_catalogue, parse_policy
from sync.centre import replay as rp
from recon_support import (
    CATALOGUE, CAT_RAW, DAY, POL_RAW, POLICY, T0, bundle_hash, claim_body, person, settlement_body, visit,
)


def world(**kw) -> rp.StaticWorld:
    return rp.StaticWorld(policies={(3, bundle_hash(POL_RAW)): parse_policy(POLICY)},
                          catalogues={(12, bundle_hash(CAT_RAW)): parse_catalogue(CATALOGUE)}, **kw)


def ledger_of(snap: dict, **over) -> rp.Ledger:
    base = rp.Ledger(psn_no=snap["psn_no"], insutype=snap["insutype"], psn_type=snap["psn_type"],
                     balc=snap["balc"], deductible_used=snap["deductible_used"], fund_paid=snap["fund_paid"],
                     chronic=tuple(snap["chronic"]))
    return replace(base, **over)


def ev(body, *, seq=1, device="D-A-1", kind="settlement", t=T0) -> rp.Event:
    return rp.Event(device, seq, kind, t, body)


def one(ledger, body, **kw):
    after, outs = rp.replay_person(ledger, [ev(body, **{k: v for k, v in kw.items() if k != "w"})], kw.get("w", world()))
    assert len(outs) == 1
    return after, outs[0]


def test_same_state_is_confirmed_byte_for_byte():
    snap = person("P0001")
    led = ledger_of(snap)
    after, out = one(led, settlement_body(snap, visit()))
    assert (out.outcome, out.codes) == ("confirmed", ("same",))
    assert "byte for byte" in out.reason
    assert out.accepted == out.journaled
    assert after.balc == led.balc - out.journaled["acct"]
    assert after.fund_paid == led.fund_paid + out.journaled["fund"]


def test_stale_deductible_credits_the_patient():
    # The edge's snapshot says no deductible used yet; the centre knows it was met at another site.
    snap = person("P0002", deductible_used=0)
    led = ledger_of(snap, deductible_used=20000)
    after, out = one(led, settlement_body(snap, visit()))
    assert out.outcome == "adjusted" and out.codes == ("patient_credit",)
    assert out.journaled["fund"] == 0 and out.accepted["fund"] > 0
    assert out.credit == out.accepted["fund"] - out.journaled["fund"]
    assert out.differs["person.deductible_used"] == [0, 20000]
    assert "deductible_used" in out.reason
    total = out.accepted
    assert total["medfee"] == total["fund"] + total["acct"] + total["cash"]
    assert after.deductible_used == 20000 + out.accepted["dedc"]


def test_fund_overpaid_within_limits_is_site_variance():
    # Snapshot active, but the employer fell into arrears for November: the centre pays no fund.
    snap = person("P0001")
    led = ledger_of(snap, arrears=(rp.Arrears(dt.date(2026, 11, 1), None),))
    after, out = one(led, settlement_body(snap, visit()))
    assert out.outcome == "adjusted" and out.codes == ("fund_variance",)
    assert out.variance == out.journaled["fund"] > 0
    assert out.accepted == out.journaled
    assert out.differs["person.status"] == ["active", "suspended"]


def test_fund_overpaid_beyond_limits_goes_to_review():
    snap = person("P0001")
    led = ledger_of(snap, arrears=(rp.Arrears(dt.date(2026, 11, 1), None),))
    body = settlement_body(snap, visit())
    body["basis"]["limits"]["visit_fund"] = [body["amounts"]["hifp_pay"], 99999999]  # not the policy's bound
    after, out = one(led, body)
    assert (out.outcome, out.codes) == ("review", ("fund_over_limits",))
    assert out.opens_review and after.open_reviews == 1
    assert out.accepted == rp.ZERO and after.balc == led.balc


def test_account_at_two_sites_offline_becomes_a_debt_and_a_contribution_clears_it():
    snap = person("P0003", balc=30000)
    led = ledger_of(snap)
    big = [{"code": "HEALTH-SUPP-0001", "cnt": "1", "pric": 25000}]   # class C: all own pay, account pays
    a = ev(settlement_body(snap, visit(0), big, req="A1"), device="D-A-1", t=T0)
    b = ev(settlement_body(snap, visit(1), big, req="B1"), device="D-B-1", t=T0 + DAY)
    after, outs = rp.replay_person(led, [b, a], world())
    assert [o.device for o in outs] == ["D-A-1", "D-B-1"]             # time order across sites
    assert outs[0].outcome == "confirmed"
    assert outs[1].outcome == "adjusted" and outs[1].codes == ("account_debt",)
    assert after.balc == 30000 - 25000 - 25000 and outs[1].debt == 20000 == after.debt
    paid, cleared = rp.contribute(after, 15000)
    assert cleared == 15000 and paid.debt == 5000
    paid, cleared = rp.contribute(paid, 15000)
    assert cleared == 5000 and paid.debt == 0 and paid.balc == 10000


def test_hotlisted_card_used_offline_goes_to_review():
    snap = person("P0004")
    w = world(hotlist={snap["card_ids"][0]: rp.Hot(10, T0 - 3600_000, "lost")})
    after, out = one(ledger_of(snap), settlement_body(snap, visit()), w=w)
    assert (out.outcome, out.codes) == ("review", ("card_hotlisted",))
    assert "lost" in out.reason and out.differs["hotlist.version"] == [9, 10]


def test_card_hotlisted_after_the_visit_is_fine():
    snap = person("P0004")
    w = world(hotlist={snap["card_ids"][0]: rp.Hot(10, T0 + 3600_000, "lost")})
    _, out = one(ledger_of(snap), settlement_body(snap, visit()), w=w)
    assert out.outcome == "confirmed"


def test_unpublished_bundle_is_review_naming_it():
    snap = person("P0001")
    body = settlement_body(snap, visit())
    body["basis"]["policy"]["hash"] = "ab" * 32
    after, out = one(ledger_of(snap), body)
    assert (out.outcome, out.codes) == ("review", ("provenance",))
    assert "policy version 3 hash abababababab" in out.reason


def test_agent_miscomputed_is_review_and_names_the_amounts():
    snap = person("P0001")
    body = settlement_body(snap, visit(), tamper={"hifp_pay": 1, "psn_cash_pay": 0})
    body["amounts"]["acct_pay"] = body["amounts"]["medfee_sumamt"] - 1
    _, out = one(ledger_of(snap), body)
    assert (out.outcome, out.codes) == ("review", ("agent_miscomputed",))
    assert "amounts.hifp_pay" in out.differs


def test_amounts_that_do_not_add_up_are_rejected():
    snap = person("P0001")
    body = settlement_body(snap, visit(), tamper={"psn_cash_pay": 1})
    _, out = one(ledger_of(snap), body)
    assert (out.outcome, out.codes) == ("rejected", ("amounts_do_not_add",))


@pytest.mark.parametrize("mutate,code", [
    (lambda b: b.pop("amounts"), "invalid_entry"),
    (lambda b: b.update(mode="sideways"), "invalid_entry"),
    (lambda b: b["visit"].update(med_type="99"), "invalid_visit"),
    (lambda b: b["items"][0].update(pric=12.5), "invalid_visit"),
])
def test_invalid_entries_are_rejected_with_a_reason(mutate, code):
    snap = person("P0001")
    body = settlement_body(snap, visit())
    mutate(body)
    led = ledger_of(snap)
    after, out = one(led, body)
    assert (out.outcome, out.codes) == ("rejected", (code,))
    assert out.reason and after == led


def test_unknown_person_is_rejected():
    snap = person("P0001")
    after, out = one(None, settlement_body(snap, visit()))
    assert (out.outcome, out.codes) == ("rejected", ("unknown_person",)) and after is None


def test_keyed_in_offline_is_review():
    snap = person("P0001")
    _, out = one(ledger_of(snap), settlement_body(snap, visit(), keyed_in=True))
    assert out.codes == ("keyed_in_offline",)


def test_online_entry_is_confirmed_without_applying_twice():
    snap = person("P0001")
    body = settlement_body(snap, visit(), mode="online", req="ON-1")
    j = {"medfee": body["amounts"]["medfee_sumamt"], "fund": body["amounts"]["hifp_pay"],
         "acct": body["amounts"]["acct_pay"], "cash": body["amounts"]["psn_cash_pay"],
         "dedc": body["amounts"]["act_pay_dedc"]}
    led = ledger_of(snap)
    w = world(onlines={("D-A-1", "ON-1"): {"accepted": j}})
    after, out = one(led, body, w=w)
    assert out.codes == ("online_confirmed",) and after == led
    w2 = world(onlines={("D-A-1", "ON-1"): {"accepted": {**j, "fund": j["fund"] + 1}}})
    _, out2 = one(led, body, w=w2)
    assert out2.codes == ("online_mismatch",)


def test_cancel_reverses_what_was_accepted():
    snap = person("P0001")
    led = ledger_of(snap)
    s = ev(settlement_body(snap, visit()), seq=1)
    c = ev({"req": "X", "cancels": 1, "psn_no": "P0001", "amounts": {}, "state_after": {}}, seq=2,
           kind="cancel", t=T0 + 1000)
    after, outs = rp.replay_person(led, [s, c], world())
    assert [o.codes for o in outs] == [("same",), ("cancel_applied",)]
    assert after == led


def test_replaying_twice_changes_nothing():
    snap = person("P0002", deductible_used=0)
    led = ledger_of(snap, deductible_used=20000)
    events = [ev(settlement_body(snap, visit(i), req=f"R{i}"), seq=i + 1, t=T0 + i * DAY) for i in range(3)]
    events.append(ev(claim_body(snap, visit(4), "offline_limit"), seq=5, kind="claim", t=T0 + 4 * DAY))
    after1, outs1 = rp.replay_person(led, events, world())
    again, outs_again = rp.replay_person(led, list(reversed(events)), world())
    assert (again, outs_again) == (after1, outs1)                 # deterministic, order of arrival irrelevant
    after2, outs2 = rp.replay_person(after1, events, world(), done={o.key for o in outs1})
    assert after2 == after1 and outs2 == []


def test_claim_is_queued_and_auto_approval_follows_the_cause():
    snap = person("P0001", status="suspended")
    arrears = rp.Arrears(dt.date(2026, 11, 1), dt.date(2026, 11, 30))
    led = ledger_of(snap, arrears=(arrears,))
    _, outs = rp.replay_person(led, [ev(claim_body(snap, visit(), "arrears"), kind="claim")], world())
    out = outs[0]
    assert (out.outcome, out.codes) == ("review", ("claim_queued",)) and out.claim["claim_no"] == "D-A-1-1"
    assert out.accepted == out.journaled and out.journaled["fund"] == 0
    assert rp.claim_decision(out.claim, led, world())[0] == rp.WAIT
    cleared = replace(led, arrears=(replace(arrears, cleared=True),))
    verdict, why = rp.claim_decision(out.claim, cleared, world())
    assert verdict == rp.APPROVE and "paid" in why
    amount, s, after = rp.approve(out.claim, cleared, world())
    expected = rp.reimbursement(out.claim, cleared, world()).hifp_pay
    assert amount == expected > 0 and s.acct_pay == 0
    assert after.fund_paid == cleared.fund_paid + amount


@pytest.mark.parametrize("cause,verdict", [
    ("offline_limit", rp.APPROVE), ("card_unreadable", rp.MANUAL), ("emergency_observation", rp.MANUAL)])
def test_claim_causes(cause, verdict):
    snap = person("P0001")
    _, outs = rp.replay_person(ledger_of(snap), [ev(claim_body(snap, visit(), cause), kind="claim")], world())
    assert rp.claim_decision(outs[0].claim, ledger_of(snap), world())[0] == verdict


def test_pending_review_claim_waits_for_the_review_to_close():
    snap = person("P0001", pending_review=True)
    led = ledger_of(snap, open_reviews=1)
    _, outs = rp.replay_person(led, [ev(claim_body(snap, visit(), "pending_review"), kind="claim")], world())
    assert rp.claim_decision(outs[0].claim, led, world())[0] == rp.WAIT
    assert rp.claim_decision(outs[0].claim, replace(led, open_reviews=0), world())[0] == rp.APPROVE


def test_unidentified_claim_needs_a_reviewer():
    snap = person("P0001")
    _, outs = rp.replay_person(None, [ev(claim_body(snap, visit(), "card_unreadable", keyed_in=True), kind="claim")],
                               world())
    assert outs[0].psn_no is None and outs[0].claim["certno"] == snap["certno"]
    assert rp.claim_decision(outs[0].claim, None, world())[0] == rp.MANUAL


def test_every_rule_code_is_reachable_in_the_table():
    assert set(o for o, _ in rp.RULES.values()) == set(rp.OUTCOMES)


@pytest.mark.parametrize("spoil, code", [
    (lambda b: b.update(cause="felt_like_it"), "invalid_entry"),
    (lambda b: b.pop("paid"), "invalid_entry"),
    (lambda b: b["paid"].update(psn_cash_pay=b["paid"]["psn_cash_pay"] + 1), "amounts_do_not_add"),
])
def test_claim_bodies_are_checked_by_the_body_contract(spoil, code):
    snap = person("P0001")
    body = claim_body(snap, visit(), "arrears")
    spoil(body)
    _, outs = rp.replay_person(ledger_of(snap), [ev(body, kind="claim")], world())
    assert (outs[0].outcome, outs[0].codes, outs[0].claim) == ("rejected", (code,), None)
    assert "docs/entries.md" in outs[0].reason
