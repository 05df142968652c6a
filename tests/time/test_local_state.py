"""Local person state = the centre's snapshot + this device's later entries; offline limits per person.

Written against the cache as it was (a persons bundle replaced the local state; offline counters per
card); each test failed there.
"""

from __future__ import annotations

import types

import pytest
from hypothesis import given, settings, strategies as st

from counter.helpers import CARD_ID, CERTNO, PERSONS, Centre
from edge.cache import Cache

DEVICE = "D-S1-1"
NEW_CARD = "330300D15600000500BF7A0D1C5E0NEW"
OTHER_REGION_CARD = "440100D15600000500BF7A0D1C5E0XYZ"


def entry(seq, kind, body, device=DEVICE):
    return types.SimpleNamespace(seq=seq, kind=kind, body=body, device=device)


def settlement(mode, acct, *, card=CARD_ID, before=50000, fund=0):
    return {"mode": mode, "psn_no": "P0001", "card": {"card_id": card, "keyed_in": False},
            "person": {"insutype": "310", "psn_type": "working", "balc": before, "deductible_used": 20000,
                       "fund_paid": 0},
            "visit": {"med_type": "11", "level": "village", "date": "2026-11-24"},
            "amounts": {"acct_pay": acct, "hifp_pay": fund, "act_pay_dedc": 0}}


@pytest.fixture
def centre():
    return Centre()


@pytest.fixture
def cache(tmp_path, centre):
    c = Cache.open(tmp_path / "cache.db")
    for raw in centre.sample():
        c.apply_bundle(raw, centre.verify_key, now_ms=1)
    yield c
    c.close()


def persons_delta(centre, person, base):
    return centre.bundle("persons", {"upsert": [person]}, base=base)


def test_a_bundle_does_not_erase_offline_use_the_centre_has_not_seen(cache, centre):
    cache.apply_entry(entry(1, "settlement", settlement("offline", 3000)))
    assert cache.person("P0001").state.balc == 47000
    # A delta about an unrelated field, built before the centre saw entry 1.
    cache.apply_bundle(persons_delta(centre, {**PERSONS[0], "psn_type": "working"}, 1), centre.verify_key, now_ms=2)
    assert cache.person("P0001").state.balc == 47000
    # The centre has now reconciled entry 1 and says so: it is not taken off twice.
    cache.apply_bundle(persons_delta(centre, {**PERSONS[0], "balc": 47000, "reflects_seq": {DEVICE: 1}}, 2),
                       centre.verify_key, now_ms=3)
    assert cache.person("P0001").state.balc == 47000
    cache.apply_entry(entry(2, "settlement", settlement("offline", 1000, before=47000)))
    assert cache.person("P0001").state.balc == 46000


def test_offline_limits_count_per_person_across_cards(cache, centre):
    cache.apply_bundle(persons_delta(centre, {**PERSONS[0], "card_ids": [CARD_ID, NEW_CARD]}, 1),
                       centre.verify_key, now_ms=2)
    cache.apply_entry(entry(1, "settlement", settlement("offline", 3000)))
    cache.apply_entry(entry(2, "settlement", settlement("offline", 2000, card=NEW_CARD)))
    assert cache.offline_use(CARD_ID) == (2, 5000)
    assert cache.offline_use(NEW_CARD) == (2, 5000)
    # A card from another region with the same ID number: the same person.
    assert cache.offline_use(OTHER_REGION_CARD, CERTNO) == (2, 5000)
    cache.apply_entry(entry(3, "settlement", settlement("online", 100, card=NEW_CARD)))
    assert cache.offline_use(CARD_ID) == (0, 0)


@st.composite
def days(draw):
    """A day of one device: offline visits, uploads the centre reconciles, bundles it publishes."""
    return draw(st.lists(st.one_of(
        st.tuples(st.just("visit"), st.integers(min_value=0, max_value=9000)),
        st.tuples(st.just("reconcile"), st.integers(min_value=0, max_value=5)),
        st.tuples(st.just("other_site"), st.integers(min_value=0, max_value=4000)),
        st.tuples(st.just("bundle"), st.booleans()),
    ), max_size=14))


@settings(max_examples=40, deadline=None)
@given(days())
def test_local_balance_never_exceeds_the_centres_minus_unreconciled_use(tmp_path_factory, steps):
    centre = Centre()
    c = Cache.open(tmp_path_factory.mktemp("c") / "cache.db")
    try:
        for raw in centre.sample():
            c.apply_bundle(raw, centre.verify_key, now_ms=1)
        ledger = 50000                 # the centre's balance
        journal: list[int] = []        # this device's account payments, by seq - 1
        reconciled = 0                 # how many of them the centre has applied
        published = (50000, 0)         # (balance, entries of this device reconciled) in the last bundle
        for kind, arg in steps:
            if kind == "visit":
                local = c.person("P0001").state.balc
                acct = max(0, min(arg, local))
                journal.append(acct)
                c.apply_entry(entry(len(journal), "settlement", settlement("offline", acct, before=local)))
            elif kind == "reconcile":
                upto = min(len(journal), reconciled + arg)
                ledger -= sum(journal[reconciled:upto])
                reconciled = upto
            elif kind == "other_site":
                ledger -= arg
            else:
                person = {**PERSONS[0], "balc": ledger}
                if arg:      # a snapshot from the ledger says what of this device it reflects
                    person["reflects_seq"] = {DEVICE: reconciled}
                c.apply_bundle(persons_delta(centre, person, centre.versions["persons"]), centre.verify_key,
                               now_ms=2)
                published = (ledger, reconciled)
            # What the device can know of the centre is its last bundle: never above that balance minus
            # this device's use the centre had not reconciled when it published.
            balance, seen = published
            assert c.person("P0001").state.balc <= balance - sum(journal[seen:])
    finally:
        c.close()
