"""Property tests of the engine over random policies, catalogues, people and visits."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from hypothesis import given, settings, strategies as st

from edge.settle import cancel, parse_catalogue, parse_items, parse_person, parse_policy, parse_visit, settle

DAY = "2026-11-24"
fen = st.integers(min_value=0, max_value=2_000_000)
ratio = st.decimals(min_value=0, max_value=1, places=2).map(str)
cnt = st.one_of(st.integers(min_value=1, max_value=50).map(str),
                st.decimals(min_value=Decimal("0.001"), max_value=Decimal("40"), places=3).map(str))


@st.composite
def cases(draw):
    n_items = draw(st.integers(min_value=1, max_value=6))
    codes = [f"C{i}" for i in range(n_items)]
    catalogue = []
    for code in codes:
        if draw(st.booleans()) or len(catalogue) == 0:
            cls = draw(st.sampled_from("ABC"))
            entry = {"code": code, "name": code, "class": cls,
                     "begndate": draw(st.sampled_from(["2026-01-01", "2026-12-01"])),
                     "enddate": draw(st.sampled_from([None, "2026-06-30", "2027-12-31"]))}
            if cls == "B":
                entry["selfpay_prop"] = draw(ratio)
            if draw(st.booleans()):
                entry["pric_uplmt_amt"] = draw(st.integers(min_value=0, max_value=50_000))
            catalogue.append(entry)
    rule = {"insutype": "310", "psn_type": "working", "med_type": "11", "level": "village",
            "deductible": draw(fen), "ratio": draw(ratio), "annual_cap": draw(fen),
            "visit_cap": draw(st.one_of(st.none(), fen)), "acct_allowed": draw(st.booleans())}
    person = {"psn_no": "P1", "insutype": "310", "psn_type": "working",
              "status": draw(st.sampled_from(["active", "active", "suspended"])), "chronic": [],
              "balc": draw(st.integers(min_value=-5_000, max_value=2_000_000)),
              "deductible_used": draw(fen), "fund_paid": draw(fen)}
    visit = {"med_type": "11", "level": "village", "date": DAY, "acct_used_flag": draw(st.booleans())}
    items = [{"code": draw(st.sampled_from(codes + ["UNKNOWN"])), "cnt": draw(cnt),
              "pric": draw(st.integers(min_value=0, max_value=100_000))} for _ in range(n_items)]
    acct_limit = draw(st.one_of(st.none(), st.integers(min_value=0, max_value=100_000)))
    return {"policy": {"version": "p", "rules": [rule]}, "catalogue": catalogue, "person": person,
            "visit": visit, "items": items}, acct_limit


def run(case, acct_limit=None, **person_changes):
    policy = parse_policy(case["policy"])
    person = parse_person({**case["person"], **person_changes})
    return settle(policy, parse_catalogue(case["catalogue"]), person, parse_visit(case["visit"], policy),
                  parse_items(case["items"]), acct_limit=acct_limit), person, policy


@settings(max_examples=400, deadline=None)
@given(cases())
def test_invariants(drawn):
    case, acct_limit = drawn
    s, person, policy = run(case, acct_limit)
    rule = policy.rules[("310", "working", "11", "village")]
    amounts = s.amounts()
    assert all(v >= 0 for v in amounts.values()), amounts
    assert s.medfee_sumamt == s.fund_pay_sumamt + s.acct_pay + s.psn_cash_pay
    assert s.medfee_sumamt == s.fulamt_ownpay_amt + s.overlmt_selfpay + s.preselfpay_amt + s.inscp_scp_amt
    assert s.psn_part_amt == s.medfee_sumamt - s.fund_pay_sumamt
    for line in s.lines:
        assert min(line.fulamt_ownpay_amt, line.overlmt_amt, line.preselfpay_amt, line.inscp_scp_amt) >= 0
        assert line.det_item_fee_sumamt == (line.fulamt_ownpay_amt + line.overlmt_amt
                                            + line.preselfpay_amt + line.inscp_scp_amt)
    assert s.acct_pay <= max(0, person.balc)
    if acct_limit is not None:
        assert s.acct_pay <= acct_limit
    if not rule.acct_allowed or not case["visit"]["acct_used_flag"]:
        assert s.acct_pay == 0
    assert s.hifp_pay <= max(0, rule.annual_cap - person.fund_paid)
    if rule.visit_cap is not None:
        assert s.hifp_pay <= rule.visit_cap
    assert s.act_pay_dedc <= max(0, rule.deductible - person.deductible_used)
    if person.status == "suspended":
        assert s.hifp_pay == 0 and s.act_pay_dedc == 0
    assert s.state_after == {"balc": person.balc - s.acct_pay,
                             "deductible_used": person.deductible_used + s.act_pay_dedc,
                             "fund_paid": person.fund_paid + s.hifp_pay}


@settings(max_examples=300, deadline=None)
@given(cases(), st.integers(min_value=0, max_value=50_000))
def test_more_deductible_used_never_lowers_fund_pay(drawn, extra):
    case, acct_limit = drawn
    used = case["person"]["deductible_used"]
    low, _, _ = run(case, acct_limit)
    high, _, _ = run(case, acct_limit, deductible_used=used + extra)
    assert high.hifp_pay >= low.hifp_pay


@settings(max_examples=300, deadline=None)
@given(cases())
def test_cancel_restores_state_exactly(drawn):
    case, acct_limit = drawn
    s, person, _ = run(case, acct_limit)
    after = person.with_state(**s.state_after)
    c = cancel(s, after)
    assert c.state_after == person.state()
    assert c.to_dict()["acct_pay"] == -s.acct_pay


@settings(max_examples=200, deadline=None)
@given(cases())
def test_same_input_byte_identical_json(drawn):
    case, acct_limit = drawn
    a, _, _ = run(case, acct_limit)
    b, _, _ = run(case, acct_limit)
    assert a.to_json().encode() == b.to_json().encode()
    # dict order of the inputs does not matter either
    reordered = {k: (dict(reversed(list(v.items()))) if isinstance(v, dict) else v) for k, v in case.items()}
    c, _, _ = run(reordered, acct_limit)
    assert c.to_json() == a.to_json()


def test_rounding_is_half_up_at_each_named_step():
    # 0.5 × 1891 = 945.5 -> 946; cap 1890: overlmt 0.5 × 1 = 0.5 -> 1; (946-1) × 0.15 = 141.75 -> 142
    case = {"policy": {"version": "p", "rules": [{"insutype": "310", "psn_type": "working", "med_type": "11",
                                                   "level": "village", "deductible": 0, "ratio": "0.5",
                                                   "annual_cap": 10**6, "visit_cap": None, "acct_allowed": False}]},
            "catalogue": [{"code": "X", "class": "B", "selfpay_prop": "0.15", "pric_uplmt_amt": 1890}],
            "person": {"insutype": "310", "psn_type": "working", "balc": 0},
            "visit": {"med_type": "11", "level": "village", "date": DAY},
            "items": [{"code": "X", "cnt": "0.5", "pric": 1891}]}
    s, _, _ = run(case)
    line = s.lines[0]
    assert (line.det_item_fee_sumamt, line.overlmt_amt, line.preselfpay_amt, line.inscp_scp_amt) == (946, 1, 142, 803)
    # 803 × 0.5 = 401.5 -> 402 (half up, not banker's 402/401)
    assert s.hifp_pay == 402


def test_catalogue_validity_dates_are_inclusive():
    base = {"policy": {"version": "p", "rules": [{"insutype": "310", "psn_type": "working", "med_type": "11",
                                                   "level": "village", "deductible": 0, "ratio": "1",
                                                   "annual_cap": 10**6, "acct_allowed": False}]},
            "person": {"insutype": "310", "psn_type": "working", "balc": 0},
            "items": [{"code": "X", "cnt": "1", "pric": 100}]}
    for begn, end, day, covered in [("2026-11-24", None, "2026-11-24", True), ("2026-11-25", None, "2026-11-24", False),
                                     ("2026-01-01", "2026-11-24", "2026-11-24", True),
                                     ("2026-01-01", "2026-11-23", "2026-11-24", False)]:
        case = {**base, "catalogue": [{"code": "X", "class": "A", "begndate": begn, "enddate": end}],
                "visit": {"med_type": "11", "level": "village", "date": day}}
        s, _, _ = run(case)
        assert (s.hifp_pay == 100) is covered, (begn, end, day)
        assert dt.date.fromisoformat(s.date) == dt.date.fromisoformat(day)


@settings(max_examples=300, deadline=None)
@given(cases(), st.sampled_from(["C0", "阿莫西林胶囊", 'quote " and \\ back', "tab\there", "\u2028sep", "emoji 💊"]))
def test_the_fast_json_is_the_canonical_json_of_the_dict(drawn, name):
    """``to_json`` is assembled by hand (the centre hashes every replayed settlement) and its reasons are
    memoised: byte for byte it must stay ``canonical_json(to_dict())`` (what ``result_sha256`` hashes),
    for any name, any amounts, and whether the reasons were rendered before or not."""
    from edge.settle.result import canonical_json

    case, acct_limit = drawn
    case = {**case, "catalogue": [{**c, "name": f"{name} {c['code']}"} for c in case["catalogue"]]}
    from edge.settle import engine, set_memo_size

    default = engine._LINES_MAX
    try:
        for size in (0, 1_000):          # no memo (a counter), then a memo (the centre)
            set_memo_size(size)
            for _ in range(2):           # first rendering, then from the memo
                s, _, _ = run(case, acct_limit)
                assert s.to_json() == canonical_json(s.to_dict())
    finally:
        set_memo_size(default)


def test_the_engine_memo_is_small_by_default_and_results_do_not_depend_on_it():
    """A counter settles visits that rarely repeat: by default the engine keeps no memo (no memory, and no
    key built on a miss); the centre sets a size, within which the memos stay; the bytes of every result
    are the same with or without them."""
    from edge.settle import engine, result, set_memo_size

    policy = parse_policy({"version": "p", "rules": [{"insutype": "310", "psn_type": "working", "med_type": "11",
                                                      "level": "village", "deductible": 500, "ratio": "0.7",
                                                      "annual_cap": 10**7, "visit_cap": None, "acct_allowed": True}]})
    catalogue = parse_catalogue([{"code": f"C{i}", "name": f"药{i}", "class": "A", "begndate": "2026-01-01"}
                                 for i in range(3)])
    visit = parse_visit({"med_type": "11", "level": "village", "date": DAY, "acct_used_flag": True}, policy)

    def one(i: int) -> str:
        person = parse_person({"psn_no": f"P{i}", "insutype": "310", "psn_type": "working", "status": "active",
                               "chronic": [], "balc": 10**6, "deductible_used": i % 700, "fund_paid": 0})
        items = parse_items([{"code": f"C{i % 3}", "cnt": str(1 + i % 4), "pric": 100 + i}])
        return settle(policy, catalogue, person, visit, items).to_json()

    import subprocess
    import sys

    fresh = subprocess.run([sys.executable, "-c", "from edge.settle import engine, result; "
                            "print(engine._LINES_MAX, result._RENDERED_MAX)"], capture_output=True, text=True)
    assert fresh.stdout.split() == ["0", "0"], fresh.stderr      # a fresh process (a counter): no memo
    default = engine._LINES_MAX       # this process may have run the centre's reconciliation (it sets one)
    try:
        set_memo_size(0)
        engine._LINES.clear()
        result._RENDERED.clear()
        without = [one(i) for i in range(1_000)]
        assert not engine._LINES and not result._RENDERED                    # a counter keeps nothing
        set_memo_size(100)
        assert [one(i) for i in range(1_000)] == without                     # bounded memo, same bytes
        assert 0 < len(engine._LINES) <= 100 and 0 < len(result._RENDERED) <= 100
        assert [one(i) for i in range(1_000)] == without                     # from the memo, same bytes
        set_memo_size(50_000)
        assert engine._LINES_MAX == result._RENDERED_MAX == 50_000
    finally:
        set_memo_size(default)
