"""Policy years, accumulators, rule validity, account-payable items and chronic scope in the pure engine.

Each test here was written against the engine as it was (one flat deductible/fund total for every
year and every visit kind, the account paying for class C) and failed there.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys

from edge.settle import parse_catalogue, parse_items, parse_person, parse_policy, parse_visit, settle, settle_case

RULE = {"insutype": "310", "psn_type": "working", "level": "village", "ratio": "0.70", "visit_cap": None,
        "acct_allowed": True}
POLICY = {
    "version": "2027.1",
    "accumulators": ["outpatient", "emergency", "chronic", "pharmacy"],
    "default_accumulator": "outpatient",
    "class_c_acct_payable": False,
    "rules": [
        {**RULE, "med_type": "11", "deductible": 20000, "annual_cap": 220000, "accumulator": "outpatient"},
        {**RULE, "med_type": "13", "deductible": 30000, "ratio": "0.60", "annual_cap": 220000,
         "accumulator": "emergency"},
        {**RULE, "med_type": "14", "deductible": 0, "ratio": "0.80", "annual_cap": 500000,
         "accumulator": "chronic"},
    ],
}
CATALOGUE = [
    {"code": "AMOX", "name": "阿莫西林胶囊", "class": "A"},
    {"code": "METF", "name": "盐酸二甲双胍片", "class": "A"},
    {"code": "SUPP", "name": "维生素C咀嚼片(保健品)", "class": "C"},
]
PERSON = {"psn_no": "P1", "insutype": "310", "psn_type": "working", "status": "active", "chronic": [],
          "balc": 50000}


def case(*, person=None, visit=None, items=None, policy=None):
    return {"policy": policy or POLICY, "catalogue": CATALOGUE, "person": {**PERSON, **(person or {})},
            "visit": {"med_type": "11", "level": "village", "date": "2027-01-01", "acct_used_flag": True,
                      **(visit or {})},
            "items": items or [{"code": "AMOX", "cnt": "1", "pric": 39400}]}


# December: deductible used up, annual cap reached (the issue's ¥394.00 bill, one January later).
DECEMBER = {"accumulators": {"2026": {"outpatient": {"deductible_used": 20000, "fund_paid": 220000}}}}


def test_a_new_year_starts_with_fresh_totals():
    s = settle_case(case(person=DECEMBER))
    # 394.00 - 200.00 deductible = 194.00 x 0.70 = 135.80: January pays again, the December cap is spent.
    assert (s.act_pay_dedc, s.hifp_pay) == (20000, 13580)
    dec = settle_case(case(person=DECEMBER, visit={"date": "2026-12-31"}))
    assert (dec.act_pay_dedc, dec.hifp_pay) == (0, 0)


def test_flat_totals_with_a_year_stamp_belong_to_that_year():
    stamped = {"year": 2026, "deductible_used": 20000, "fund_paid": 220000}
    jan = settle_case(case(person=stamped))
    assert jan.hifp_pay == 13580
    dec = settle_case(case(person=stamped, visit={"date": "2026-12-31"}))
    assert dec.hifp_pay == 0


def test_emergency_draws_on_its_own_accumulator():
    person = {"accumulators": {"2027": {"outpatient": {"deductible_used": 20000, "fund_paid": 0}}}}
    s = settle_case(case(person=person, visit={"med_type": "13"}))
    assert s.act_pay_dedc == 30000          # the emergency deductible is untouched by outpatient use
    assert s.state_after["deductible_used"] == 30000
    assert s.to_dict()["basis"]["accumulator"] == "emergency"
    assert s.to_dict()["basis"]["year"] == 2027
    out = settle_case(case(person=person))
    assert out.act_pay_dedc == 0


def test_rules_carry_validity_dates():
    policy = copy.deepcopy(POLICY)
    policy["rules"][0]["enddate"] = "2026-12-31"
    policy["rules"].append({**policy["rules"][0], "begndate": "2027-01-01", "enddate": None, "ratio": "0.80"})
    jan = settle_case(case(policy=policy))
    assert jan.hifp_pay == 15520            # 194.00 x 0.80
    dec = settle_case(case(policy=policy, visit={"date": "2026-12-31"}))
    assert dec.hifp_pay == 13580


def test_the_account_does_not_pay_for_class_c_when_the_policy_says_so():
    s = settle_case(case(items=[{"code": "SUPP", "cnt": "1", "pric": 3600}]))
    assert (s.acct_pay, s.psn_cash_pay) == (0, 3600)
    assert "acct_not_payable" in [r.code for r in s.reasons]
    mixed = settle_case(case(items=[{"code": "SUPP", "cnt": "1", "pric": 3600},
                                    {"code": "AMOX", "cnt": "1", "pric": 1000}]))
    assert (mixed.acct_pay, mixed.psn_cash_pay) == (1000, 3600)


def test_an_item_flag_overrides_the_class_default():
    cat = [{**CATALOGUE[2], "acct_payable": True}, {**CATALOGUE[0], "acct_payable": False}]
    policy = parse_policy(POLICY)
    s = settle(policy, parse_catalogue(cat), parse_person(PERSON),
               parse_visit(case()["visit"], policy),
               parse_items([{"code": "SUPP", "cnt": "1", "pric": 3600}]))
    assert s.acct_pay == 3600


def test_a_chronic_filing_covers_only_its_items():
    person = {"chronic": [{"code": "E11", "items": ["METF"]}]}
    s = settle_case(case(person=person, visit={"med_type": "14", "chronic_code": "E11"},
                         items=[{"code": "METF", "cnt": "1", "pric": 10000},
                                {"code": "AMOX", "cnt": "1", "pric": 2000}]))
    assert s.hifp_pay == 8000               # only metformin at the chronic ratio
    amox = s.lines[1]
    assert amox.fulamt_ownpay_amt == 2000 and amox.inscp_scp_amt == 0
    assert "chronic_out_of_scope" in [r.code for r in amox.reasons]


def test_the_cli_accepts_the_new_fields(tmp_path):
    path = tmp_path / "c.json"
    stamped = {"year": 2026, "deductible_used": 20000, "fund_paid": 220000}
    path.write_text(json.dumps(case(person=stamped)), encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "edge", "settle-case", str(path)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["hifp_pay"] == 13580
