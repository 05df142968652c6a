"""Bad input: every refusal code, garbage files, missing keys, wrong types, huge values."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest
from hypothesis import given, settings, strategies as st

from edge.settle import CannotCancel, SettlementError, cancel, parse_person, settle_case
from support import CASES, DATA, load_case

BASE = load_case(DATA / "cases" / "class-a-deductible-met.json")
BASE.pop("expected")


def cli(path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge", "settle-case", str(path)], capture_output=True,
                          text=True, timeout=60)


def mutated(**changes) -> dict:
    case = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        target = case
        *path, last = dotted.split("__")
        for p in path:
            target = target[int(p)] if p.isdigit() else target[p]
        if value is KeyError:
            del target[int(last) if last.isdigit() else last]
        else:
            target[int(last) if last.isdigit() else last] = value
    return case


def code_of(case) -> str:
    with pytest.raises(SettlementError) as info:
        settle_case(case)
    assert info.value.message and len(info.value.message) > 20
    return info.value.code


@pytest.mark.parametrize("changes", [
    {"items": []},
    {"items": KeyError},
    {"items__0__pric": -1},
    {"items__0__pric": 12.5},
    {"items__0__pric": "1280"},
    {"items__0__pric": True},
    {"items__0__cnt": "0"},
    {"items__0__cnt": "-1"},
    {"items__0__cnt": "abc"},
    {"items__0__cnt": "NaN"},
    {"items__0__cnt": "Infinity"},
    {"items__0__cnt": None},
    {"items__0__cnt": "0.0000001"},
    {"items__0__code": ""},
    {"items__0__code": 42},
    {"visit__med_type": "99"},
    {"visit__med_type": 11},
    {"visit__date": "24/11/2026"},
    {"visit__date": KeyError},
    {"visit__acct_used_flag": "yes"},
    {"person__status": "dead"},
    {"person__balc": "500"},
    {"person__deductible_used": -1},
    {"person__insutype": KeyError},
    {"policy__rules__0__ratio": "1.5"},
    {"policy__rules__0__ratio": "-0.1"},
    {"policy__rules__0__deductible": None},
    {"catalogue__0__class": "D"},
    {"catalogue": "nope"},
    {"policy": []},
    {"person": "P1"},
    {"items__0__pric": 10**15},
    {"items__0__cnt": "99999999"},
    {"person__balc": 10**30},
])
def test_invalid_input(changes):
    assert code_of(mutated(**changes)) == "invalid_input"


def test_too_many_lines_and_total_too_large():
    case = mutated(items=[{"code": "001102000010000", "cnt": "1", "pric": 1000}] * 501)
    assert code_of(case) == "invalid_input"
    case = mutated(items=[{"code": "X", "cnt": "1000000", "pric": 10**10}])
    assert code_of(case) == "invalid_input"


def test_duplicate_rule_or_catalogue_code_is_ambiguous():
    case = mutated()
    case["policy"]["rules"].append(dict(case["policy"]["rules"][0]))
    assert code_of(case) == "invalid_input"
    case = mutated()
    case["catalogue"].append(dict(case["catalogue"][0]))
    assert code_of(case) == "invalid_input"


@pytest.mark.parametrize("changes", [
    {"person__insutype": "320"},
    {"person__psn_type": "student"},
    {"visit__level": "county"},
    {"visit__med_type": "13"},          # known med_type, but no 13 rule at village level
])
def test_no_policy_rule(changes):
    assert code_of(mutated(**changes)) == "no_policy_rule"


def test_no_chronic_filing_variants():
    chronic = {"visit__med_type": "14", "visit__chronic_code": "M03900"}
    assert code_of(mutated(**chronic)) == "no_chronic_filing"
    assert code_of(mutated(**{"visit__med_type": "14"})) == "no_chronic_filing"  # no disease code at all
    other = mutated(**chronic, person__chronic=["E11900"])
    assert code_of(other) == "no_chronic_filing"
    expired = mutated(**chronic, person__chronic=[{"code": "M03900", "begndate": "2025-01-01",
                                                    "enddate": "2025-12-31"}])
    assert code_of(expired) == "no_chronic_filing"
    ok = settle_case(mutated(**chronic, person__chronic=["M03900"]))
    assert ok.fund_pay_sumamt > 0
    ok2 = settle_case(mutated(**chronic, person__chronic=[{"code": "M03900", "begndate": "2026-01-01"}]))
    assert ok2.to_json() == ok.to_json()


def test_error_objects_are_json_with_code_and_message(tmp_path):
    p = tmp_path / "c.json"
    p.write_text(json.dumps(mutated(items=[]), default=str), encoding="utf-8")
    proc = cli(p)
    assert proc.returncode == 3
    err = json.loads(proc.stdout)["error"]
    assert err["code"] == "invalid_input" and "item" in err["message"]


@pytest.mark.parametrize("content", [b"{not json", b"", b"\xff\xfe\x00garbage", b"[1, 2", b'{"a": }'])
def test_garbage_file_exits_2_with_message(tmp_path, content):
    p = tmp_path / "bad.json"
    p.write_bytes(content)
    proc = cli(p)
    assert proc.returncode == 2
    assert proc.stdout == "" and "bad.json" in proc.stderr


def test_missing_file_exits_2(tmp_path):
    proc = cli(tmp_path / "nope.json")
    assert proc.returncode == 2 and "no such file" in proc.stderr


@pytest.mark.parametrize("missing", ["policy", "catalogue", "person", "visit", "items"])
def test_missing_top_level_key_is_refused_with_exit_3(tmp_path, missing):
    case = mutated(**{missing: KeyError})
    p = tmp_path / "c.json"
    p.write_text(json.dumps(case, default=str), encoding="utf-8")
    proc = cli(p)
    assert proc.returncode == 3
    assert json.loads(proc.stdout)["error"]["code"] == "invalid_input"
    assert missing in json.loads(proc.stdout)["error"]["message"]


def test_json_that_is_not_an_object_is_refused(tmp_path):
    p = tmp_path / "c.json"
    p.write_text("[1, 2, 3]", encoding="utf-8")
    proc = cli(p)
    assert proc.returncode == 3 and json.loads(proc.stdout)["error"]["code"] == "invalid_input"


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5)
                           | st.floats(allow_nan=True), lambda c: st.lists(c, max_size=3)
                           | st.dictionaries(st.text(max_size=5), c, max_size=3), max_leaves=8)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["policy", "catalogue", "person", "visit", "items"]), json_values)
def test_any_garbage_in_a_section_gives_a_typed_refusal(section, value):
    case = mutated(**{section: value})
    try:
        settle_case(case)
    except SettlementError as exc:
        assert exc.code in {"invalid_input", "no_policy_rule", "no_chronic_filing"}


def test_cancel_refuses_when_totals_are_lower():
    s = settle_case(BASE)
    person = parse_person(BASE["person"])  # state before: fund_paid 0 < hifp_pay
    with pytest.raises(CannotCancel):
        cancel(s, person)
    with pytest.raises(CannotCancel):
        cancel({"nonsense": 1}, person)


def test_every_seed_refusal_keeps_stdout_machine_readable():
    for path in CASES:
        if "error" in load_case(path)["expected"]:
            proc = cli(path)
            assert proc.returncode == 3 and set(json.loads(proc.stdout)) == {"error"}
