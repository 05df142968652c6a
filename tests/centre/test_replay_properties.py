"""Properties of the replay core over random days at several sites (hypothesis)."""

from __future__ import annotations

import datetime as dt

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.settle import parse_catalogue, parse_policy
from sync.centre import replay as rp
from recon_support import CATALOGUE, CAT_RAW, DAY, POL_RAW, POLICY, T0, bundle_hash, person, settlement_body, visit

CODES = [c["code"] for c in CATALOGUE["items"]]
WORLD = rp.StaticWorld(policies={(3, bundle_hash(POL_RAW)): parse_policy(POLICY)},
                       catalogues={(12, bundle_hash(CAT_RAW)): parse_catalogue(CATALOGUE)})

line = st.fixed_dictionaries({"code": st.sampled_from(CODES), "cnt": st.sampled_from(["1", "2", "0.5", "3"]),
                              "pric": st.integers(1, 30000)})
visit_st = st.tuples(st.integers(0, 2),                     # site
                     st.integers(0, 5),                     # day
                     st.lists(line, min_size=1, max_size=3),
                     st.booleans(),                         # account used
                     st.integers(0, 30000),                 # deductible the snapshot believes used
                     st.integers(0, 80000))                 # balance the snapshot believes


@st.composite
def scenario(draw):
    led = rp.Ledger("P0001", "310", "working", balc=draw(st.integers(-5000, 80000)),
                    deductible_used=draw(st.integers(0, 30000)), fund_paid=draw(st.integers(0, 50000)),
                    arrears=draw(st.sampled_from([(), (rp.Arrears(dt.date(2026, 11, 20), None),)])))
    events = []
    for i, (site, day, items, acct, dedc, balc) in enumerate(draw(st.lists(visit_st, min_size=1, max_size=8))):
        snap = person("P0001", deductible_used=dedc, balc=balc)
        body = settlement_body(snap, visit(day, acct=acct), items, req=f"R{i}")
        events.append(rp.Event(f"D-{site}", i + 1, "settlement", T0 + day * DAY + i, body))
    return led, events


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario())
def test_replay_invariants(case):
    led, events = case
    after, outs = rp.replay_person(led, events, WORLD)
    assert len(outs) == len(events)
    for o in outs:
        a = o.accepted
        assert o.outcome in rp.OUTCOMES and o.reason
        assert a["medfee"] == a["fund"] + a["acct"] + a["cash"]
        assert min(a.values()) >= 0 and o.credit >= 0 and o.variance >= 0 and o.debt >= 0
        money = ("medfee", "fund", "acct", "cash")
        if o.outcome in ("confirmed", "adjusted"):
            # The fund accepts what was journaled plus any credit back to the patient; a variance is
            # accepted as journaled (the fund honours it).
            assert a["fund"] == o.journaled["fund"] + o.credit
            assert a["acct"] + a["cash"] == o.journaled["acct"] + o.journaled["cash"] - o.credit
            assert not (o.credit and o.variance)
        else:
            assert all(a[k] == 0 for k in money)
        if o.outcome == "confirmed":
            assert {k: a[k] for k in money} == {k: o.journaled[k] for k in money}
    # The ledger moved by exactly the accepted amounts.
    assert after.balc == led.balc - sum(o.accepted["acct"] for o in outs)
    assert after.fund_paid == led.fund_paid + sum(o.accepted["fund"] for o in outs)
    assert after.deductible_used == led.deductible_used + sum(o.accepted["dedc"] for o in outs)
    assert after.debt - led.debt == sum(o.debt for o in outs)
    # Deterministic whatever the order of arrival, and idempotent.
    assert rp.replay_person(led, list(reversed(events)), WORLD) == (after, outs)
    assert rp.replay_person(after, events, WORLD, done={o.key for o in outs}) == (after, [])
