"""Time that only moves forward, and no offline entry without its checked limits.

Written against the code as it was (no time floor, no clock fault in the offline decision,
check_fund passing any decision through); the tests below failed there.
"""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings, strategies as st

from counter.test_visit import ANSWER, ENTRY, LIMITS, FakeResult, prepared
from edge import offline
from edge.counter import clock
from edge.counter import visit as v

HOUR = 3_600_000


@dataclasses.dataclass
class Result(FakeResult):
    """An engine result whose fund part may exceed the offline cap (the bill grows with it)."""

    def to_dict(self) -> dict:
        medfee = self.hifp_pay + 2000
        return {"medfee_sumamt": medfee, "fulamt_ownpay_amt": 0, "overlmt_selfpay": 0, "preselfpay_amt": 0,
                "inscp_scp_amt": medfee, "act_pay_dedc": 0, "hifp_pay": self.hifp_pay, "acct_pay": 1000,
                "psn_cash_pay": 1000}
NOW = 1_795_046_400_000


def test_a_clock_set_back_is_below_the_floor():
    floor = clock.floor_of(NOW - 5_000, NOW - HOUR, None, mono_ns=10**12)
    assert clock.fault(NOW, floor, 10**12) is None
    set_back = clock.fault(NOW - HOUR, floor, 10**12)
    assert set_back is not None and set_back.code == "behind_floor" and "校准电脑时间" in set_back.zh
    # Within the boot the floor moves on with the monotonic clock: 24 h later it is 24 h further.
    later = 10**12 + 24 * HOUR * 1_000_000
    assert clock.fault(NOW + 24 * HOUR - 60_000, floor, later).code == "behind_floor"
    assert clock.entry_time(NOW - HOUR, floor, 10**12) == NOW - 5_000


def test_a_clock_far_from_the_centres_is_a_fault():
    f = clock.fault(NOW, None, centre_offset_ms=-7 * 24 * HOUR)      # a week ahead of the centre
    assert f is not None and f.code == "off_from_centre" and "快" in f.zh
    assert clock.fault(NOW, None, centre_offset_ms=60_000) is None


def test_a_clock_fault_fails_offline_closed_and_says_why_in_chinese():
    facts = prepared().facts
    d = offline.decide(dataclasses.replace(facts, clock_fault="behind_floor"))
    assert d.mode == offline.FULL_PAYMENT and d.cause == "offline_limit"
    assert "时钟" in d.zh and "clock" in d.detail


def test_check_fund_does_not_pass_an_offline_decision_whose_limits_were_not_checked():
    unchecked = offline.Decision(offline.OFFLINE, detail="?", zh="?", acct_limit=None, limits={})
    d = offline.check_fund(unchecked, 100, LIMITS)
    assert d.mode == offline.FULL_PAYMENT and d.cause == "offline_limit"


REFUSALS = ["suspended", "pending_review", "card_hotlisted", "invalid_input", "unauthorized", "no_policy_rule"]


@st.composite
def visits(draw):
    facts = dict(
        centre=draw(st.booleans()), acct=draw(st.booleans()),
        cache_age_ms=draw(st.one_of(st.none(), st.integers(min_value=-HOUR, max_value=200 * HOUR))),
        offline_visits=draw(st.one_of(st.none(), st.integers(min_value=0, max_value=8))),
        offline_acct_used=draw(st.one_of(st.none(), st.integers(min_value=0, max_value=60_000))),
        clock_fault=draw(st.sampled_from([None, None, "behind_floor", "off_from_centre"])),
    )
    answers = draw(st.lists(st.one_of(
        st.tuples(st.just("failed"), st.booleans()),
        st.tuples(st.just("refused"), st.sampled_from(REFUSALS)),
        st.just(("answered", None)),
    ), min_size=1, max_size=3))
    fund = draw(st.integers(min_value=0, max_value=60_000))
    return facts, answers, fund


LIMIT_KEYS = ("cache_age_hours", "offline_visits", "acct_allowance_left", "visit_fund")


@settings(max_examples=300, deadline=None)
@given(visits())
def test_no_offline_entry_lacks_its_checked_limits(drawn):
    facts, answers, fund = drawn
    p = prepared(centre=facts.pop("centre"), acct=facts.pop("acct"), **facts)
    core = v.VisitCore()
    action = core.handle(v.Identified(p))
    answers = list(answers)
    for _ in range(20):
        if action.final:
            break
        if isinstance(action, v.ConfirmCard):
            event = v.CardConfirmed()
        elif isinstance(action, (v.AskCentre, v.LookUp)):
            kind, arg = answers.pop(0) if answers else ("failed", False)
            event = (v.CentreFailed("down", sent=arg) if kind == "failed" else
                     v.CentreRefused(arg, "refused") if kind == "refused" else v.CentreAnswered(ANSWER))
        elif isinstance(action, v.RunEngine):
            event = v.Settled(Result(fund))
        elif isinstance(action, v.Journal):
            body = action.body
            if action.kind == "settlement" and body["mode"] == "offline":
                assert isinstance(body["acct_limit"], int)
                limits = body["basis"]["limits"] or {}
                assert set(LIMIT_KEYS) <= set(limits), limits
                for key in ("cache_age_hours", "offline_visits", "visit_fund"):
                    value, bound = limits[key]
                    assert value <= bound, (key, limits)
                assert body["amounts"]["hifp_pay"] <= LIMITS.offline_visit_fund_cap
                assert facts["clock_fault"] is None
            event = v.Journaled(ENTRY)
        else:
            raise AssertionError(f"unexpected action {action!r}")
        action = core.handle(event)


# -- the last centre time seen (edge.counter.clock.CentreSeen) ------------------------------------------
def test_the_centres_time_is_a_floor_and_within_a_boot_a_clock_to_compare_with():
    seen = clock.CentreSeen(NOW, NOW, 10**12, "boot-1")
    later = 10**12 + HOUR * 1_000_000
    # An hour on by the monotonic clock, the wall clock set back an hour: off from the centre's, by 60 min.
    f = clock.fault(NOW, None, later, centre=seen, boot_id="boot-1")
    assert f.code == "off_from_centre" and "慢 60 分钟" in f.zh
    # A week ahead during an outage: the same boot still knows the centre's time.
    assert clock.fault(NOW + HOUR + 7 * 24 * HOUR, None, later, centre=seen, boot_id="boot-1").code == "off_from_centre"
    assert clock.fault(NOW + HOUR, None, later, centre=seen, boot_id="boot-1") is None
    # After a reboot only the floor is left: the centre's time less the skew the centre accepts.
    floor = seen.floor("boot-2")
    assert floor.wall_ms == NOW - clock.MAX_CENTRE_SKEW_MS and floor.mono_ns is None
    assert clock.fault(NOW - 24 * HOUR, floor, centre=seen, boot_id="boot-2").code == "behind_floor"
    assert clock.fault(NOW - 60_000, floor, centre=seen, boot_id="boot-2") is None


def test_the_centres_time_wins_over_a_floor_from_a_clock_that_was_ahead():
    ahead = clock.Floor(NOW + 7 * 24 * HOUR, None)            # entries journaled with the clock a week ahead
    agreed = clock.CentreSeen(NOW, NOW + 1_000, 10**12, "b")
    assert clock.after_centre_seen(ahead, agreed, NOW + 1_000, 10**12, "b").wall_ms == NOW - clock.MAX_CENTRE_SKEW_MS
    # A centre that disagrees with the wall clock proves nothing about the wall clock: the floor stays.
    off = clock.CentreSeen(NOW, NOW - HOUR, 10**12, "b")
    assert clock.after_centre_seen(ahead, off, NOW - HOUR, 10**12, "b").wall_ms == NOW + 7 * 24 * HOUR


def test_the_centres_date_header_is_read_to_the_second():
    assert clock.centre_ms_of("Wed, 02 Dec 2026 02:10:02 GMT") == 1_796_177_402_000
    assert clock.centre_ms_of(None) is None and clock.centre_ms_of("not a date") is None


def test_connectivity_goes_by_the_order_of_contacts_not_by_the_wall_clock():
    from edge.counter.online import Connectivity

    link = Connectivity()
    link.failed(NOW + 7 * 24 * HOUR, "down")       # failed while the clock was a week ahead
    assert link.should_try(NOW, 30_000)            # the clock went back since: no reason to wait a week
    link.ok(NOW)                                   # then corrected, and the centre answers
    assert link.online
