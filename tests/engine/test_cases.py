"""The shared seed cases, through the real CLI (the auditors' contract) and through the library."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edge.settle import settle_case
from support import CASES, load_case

CONTRACT_TOP = ("medfee_sumamt", "fulamt_ownpay_amt", "overlmt_selfpay", "preselfpay_amt", "inscp_scp_amt",
                "act_pay_dedc", "hifp_pay", "fund_pay_sumamt", "psn_part_amt", "acct_pay", "psn_cash_pay", "balc")
CONTRACT_LINE = ("code", "det_item_fee_sumamt", "fulamt_ownpay_amt", "overlmt_amt", "preselfpay_amt", "inscp_scp_amt")


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge", *args], capture_output=True, text=True,
                          input=stdin, timeout=60)


def test_all_ten_seed_cases_are_present():
    assert len(CASES) == 10


def _subset(got: dict, expected: dict) -> dict:
    """The part of `got` that `expected` speaks of (expected is the contract, got may say more)."""
    out = {}
    for k, v in expected.items():
        if k == "lines":
            out[k] = [{f: line[f] for f in expected_line} for line, expected_line in zip(got["lines"], v)]
        elif k == "error":
            out[k] = {f: got["error"][f] for f in v}
        elif isinstance(v, dict):
            out[k] = {f: got[k][f] for f in v}
        else:
            out[k] = got[k]
    return out


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_case_through_cli(path):
    expected = load_case(path)["expected"]
    proc = run_cli("settle-case", str(path))
    got = json.loads(proc.stdout)
    if "error" in expected:
        assert proc.returncode == 3, proc.stderr
        assert got["error"]["message"]
    else:
        assert proc.returncode == 0, proc.stderr
        assert len(got["lines"]) == len(expected["lines"])
        for line in got["lines"]:
            assert set(CONTRACT_LINE) <= set(line) and line["reasons"]
        assert set(CONTRACT_TOP) <= set(got)
    assert _subset(got, expected) == expected


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_case_reasons_explain_every_fen(path):
    case = load_case(path)
    if "error" in case["expected"]:
        return
    result = settle_case(case)
    d = result.to_dict()
    assert d["medfee_sumamt"] == d["fund_pay_sumamt"] + d["acct_pay"] + d["psn_cash_pay"]
    for line in d["lines"]:
        codes = {r["code"] for r in line["reasons"]}
        if line["fulamt_ownpay_amt"]:
            assert codes & {"not_in_catalogue", "class_c", "not_valid_on_date"}
        if line["overlmt_amt"]:
            assert "over_price_cap" in codes
        if line["preselfpay_amt"]:
            assert "class_b_selfpay" in codes
    visit_codes = [r["code"] for r in d["reasons"]]
    assert visit_codes[-1] == "cash"


def test_explain_prints_readable_text():
    proc = run_cli("settle-case", "--explain", str(CASES[1]))
    assert proc.returncode == 0
    assert "fund" in proc.stdout and "Total ¥35.60" in proc.stdout
    assert not proc.stdout.lstrip().startswith("{")


def test_expected_key_is_ignored(tmp_path):
    case = load_case(CASES[1])
    case["expected"] = {"medfee_sumamt": 1}
    p = tmp_path / "c.json"
    p.write_text(json.dumps(case, default=str), encoding="utf-8")
    proc = run_cli("settle-case", str(p))
    assert proc.returncode == 0 and json.loads(proc.stdout)["medfee_sumamt"] == 3560


def test_stdin_case():
    proc = run_cli("settle-case", "-", stdin=CASES[1].read_text(encoding="utf-8"))
    assert proc.returncode == 0 and json.loads(proc.stdout)["hifp_pay"] == 2492


def test_same_input_gives_byte_identical_output():
    a = run_cli("settle-case", str(CASES[5]))
    b = run_cli("settle-case", str(CASES[5]))
    assert a.stdout == b.stdout and a.returncode == 0
