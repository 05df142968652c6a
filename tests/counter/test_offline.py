"""The offline decision table: each limit on each side of its boundary, and the fail-closed cases."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from edge.offline import (
    CAUSES, FULL_PAYMENT, HOUR_MS, OFFLINE, ONLINE, REFUSED, Decision, Facts, after_centre, cache_age_ms,
    check_fund, decide,
)
from edge.settle import OfflineLimits

LIM = OfflineLimits(max_offline_hours=72, offline_visit_fund_cap=20000, offline_max_visits=5,
                    offline_acct_allowance=30000)
GOOD = Facts(centre_reachable=False, person_known=True, person_status="active", limits=LIM,
             cache_age_ms=5 * HOUR_MS, offline_visits=0, offline_acct_used=0)


def f(**kw) -> Facts:
    return dataclasses.replace(GOOD, **kw)


def test_all_limits_hold_settles_offline_with_the_allowance_left():
    d = decide(f(offline_acct_used=1000, offline_visits=2))
    assert d.mode == OFFLINE and d.cause is None
    assert d.acct_limit == 29000
    assert d.limits == {"cache_age_hours": [5, 72], "offline_visits": [3, 5], "acct_allowance_left": [29000, 30000]}


@pytest.mark.parametrize("age_ms,mode", [
    (72 * HOUR_MS, OFFLINE), (72 * HOUR_MS + 1, FULL_PAYMENT), (0, OFFLINE), (None, FULL_PAYMENT), (-1, FULL_PAYMENT)])
def test_cache_age_boundary(age_ms, mode):
    d = decide(f(cache_age_ms=age_ms))
    assert d.mode == mode
    if mode == FULL_PAYMENT:
        assert d.cause == "offline_limit" and d.detail.startswith("cache_age")


@pytest.mark.parametrize("visits,mode", [(4, OFFLINE), (5, FULL_PAYMENT), (6, FULL_PAYMENT), (None, FULL_PAYMENT),
                                         (-1, FULL_PAYMENT)])
def test_offline_visit_count_boundary(visits, mode):
    d = decide(f(offline_visits=visits))
    assert d.mode == mode
    if mode == FULL_PAYMENT:
        assert d.cause == "offline_limit" and d.detail.startswith("offline_visits")
    else:
        assert d.limits["offline_visits"] == [5, 5]


@pytest.mark.parametrize("used,left", [(0, 30000), (29999, 1), (30000, 0), (45000, 0)])
def test_account_allowance_left(used, left):
    d = decide(f(offline_acct_used=used))
    assert d.mode == OFFLINE and d.acct_limit == left


def test_unreadable_account_counter_fails_closed():
    d = decide(f(offline_acct_used=None))
    assert (d.mode, d.cause) == (FULL_PAYMENT, "offline_limit")


@pytest.mark.parametrize("fund,mode", [(19999, OFFLINE), (20000, OFFLINE), (20001, FULL_PAYMENT), (0, OFFLINE)])
def test_visit_fund_cap_boundary(fund, mode):
    d = check_fund(decide(GOOD), fund, LIM)
    assert d.mode == mode
    assert d.limits["visit_fund"] == [fund, 20000]
    if mode == FULL_PAYMENT:
        assert d.cause == "offline_limit" and d.detail.startswith("visit_fund")


def test_check_fund_fails_closed_without_limits_and_leaves_other_modes_alone():
    assert check_fund(decide(GOOD), 1, None).mode == FULL_PAYMENT
    online = decide(f(centre_reachable=True))
    assert check_fund(online, 10**9, LIM) is online


def test_no_person_snapshot_is_an_offline_limit():
    d = decide(f(person_known=False, person_status=None))
    assert (d.mode, d.cause) == (FULL_PAYMENT, "offline_limit") and "person_snapshot" in d.detail


def test_no_offline_limits_in_policy_fails_closed():
    d = decide(f(limits=None))
    assert (d.mode, d.cause) == (FULL_PAYMENT, "offline_limit")


@pytest.mark.parametrize("kw,cause", [
    ({"keyed_in": True}, "card_unreadable"),
    ({"person_status": "suspended"}, "arrears"),
    ({"person_status": None}, "arrears"),
    ({"pending_review": True}, "pending_review"),
    ({"observation": True}, "emergency_observation"),
])
def test_full_payment_causes(kw, cause):
    d = decide(f(**kw))
    assert (d.mode, d.cause) == (FULL_PAYMENT, cause)
    assert d.zh and d.acct_limit is None


@pytest.mark.parametrize("kw,code", [
    ({"card_hotlisted": True}, "card_hotlisted"), ({"card_expired": True}, "card_expired"),
    ({"pin_blocked": True}, "pin_blocked")])
@pytest.mark.parametrize("online", [True, False])
def test_refusals_apply_online_and_offline(kw, code, online):
    d = decide(f(centre_reachable=online, observation=True, **kw))
    assert (d.mode, d.cause) == (REFUSED, code)


def test_online_ignores_offline_limits_but_keyed_in_still_settles_online():
    d = decide(f(centre_reachable=True, keyed_in=True, person_known=False, cache_age_ms=None, offline_visits=None))
    assert d.mode == ONLINE and d.acct_limit is None


def test_every_combination_is_decided_and_offline_only_when_everything_holds():
    """Exhaustive over the boolean facts and a value each side of each numeric boundary."""
    seen = set()
    for (reach, hot, exp, blocked, keyed, obs, known, status, review, limits, age, visits, used, other) in itertools.product(
            [True, False], [False, True], [False, True], [False, True], [False, True], [False, True],
            [True, False], ["active", "suspended"], [False, True], [LIM, None],
            [None, 72 * HOUR_MS, 72 * HOUR_MS + 1], [None, 4, 5], [None, 0], [False, True]):
        facts = Facts(reach, hot, exp, blocked, keyed, obs, known, status, review, limits, age, visits, used,
                      other_region=other)
        d = decide(facts)
        assert isinstance(d, Decision)
        seen.add((d.mode, d.cause))
        offline_ok = (not reach and not hot and not exp and not blocked and not keyed and not obs and known
                      and status == "active" and not review and limits is not None and age == 72 * HOUR_MS
                      and visits == 4 and used == 0 and not other)
        assert (d.mode == OFFLINE) == offline_ok, facts
        if d.mode == FULL_PAYMENT:
            assert d.cause in CAUSES
        if hot or exp or blocked:
            assert d.mode == REFUSED
    assert {m for m, _ in seen} == {ONLINE, OFFLINE, FULL_PAYMENT, REFUSED}
    assert {c for m, c in seen if m == FULL_PAYMENT} == set(CAUSES)


class TestCacheAge:
    def test_never_refreshed_is_unknown(self):
        assert cache_age_ms(now_wall_ms=10, refreshed_wall_ms=None) is None

    def test_wall_clock_behind_the_refresh_is_unknown(self):
        assert cache_age_ms(now_wall_ms=999, refreshed_wall_ms=1000) is None

    def test_other_boot_uses_the_wall_clock(self):
        assert cache_age_ms(now_wall_ms=5000, refreshed_wall_ms=1000, now_mono_ns=1, refreshed_mono_ns=10**12) == 4000

    def test_same_boot_takes_the_larger_reading(self):
        assert cache_age_ms(now_wall_ms=11_000, refreshed_wall_ms=1000, now_mono_ns=12_000_000_000,
                            refreshed_mono_ns=0, same_boot=True) == 12_000

    def test_same_boot_clock_set_back_is_unknown(self):
        # The monotonic clock says 3 h passed, the wall clock says 1 h: someone moved the clock back.
        assert cache_age_ms(now_wall_ms=HOUR_MS, refreshed_wall_ms=0, now_mono_ns=3 * HOUR_MS * 10**6,
                            refreshed_mono_ns=0, same_boot=True) is None

    def test_same_boot_monotonic_backwards_or_missing_is_unknown(self):
        assert cache_age_ms(now_wall_ms=10, refreshed_wall_ms=0, now_mono_ns=5, refreshed_mono_ns=10,
                            same_boot=True) is None
        assert cache_age_ms(now_wall_ms=10, refreshed_wall_ms=0, same_boot=True) is None


@pytest.mark.parametrize("code,mode,cause", [
    ("suspended", FULL_PAYMENT, "arrears"), ("pending_review", FULL_PAYMENT, "pending_review"),
    ("card_hotlisted", REFUSED, "card_hotlisted"), ("unknown_person", REFUSED, "unknown_person")])
def test_centre_refusals_map_to_decisions(code, mode, cause):
    d = after_centre(code, "x")
    assert (d.mode, d.cause) == (mode, cause)


def test_engine_codes_from_the_centre_are_not_decisions():
    assert after_centre("no_policy_rule") is None
