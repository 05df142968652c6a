"""`scripts/demo --scripted` shows a newcomer the fund paying, and prints only what it plays (Chinese, no
browser instructions, no raw error codes)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_scripted_demo_shows_a_visit_where_the_fund_pays():
    proc = subprocess.run([sys.executable, "-m", "harness.demo", "--scripted"], cwd=ROOT, capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # The last line is the machine-readable SUMMARY the smoke test (test_demo.py) parses.
    out = proc.stdout.split("SUMMARY ", 1)[0]
    funds = [int(a.replace(",", "").replace(".", "")) for a in re.findall(r"统筹 ¥([\d,]+\.\d\d)", out)]
    assert funds and max(funds) > 0, out                     # one visit passes the deductible
    assert "起付线" in out
    for noise in ("full_payment_required", "open this page", "模拟插卡", "browser", "OFFLINE", "backlog"):
        assert noise not in out, noise
