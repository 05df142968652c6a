"""`scripts/demo --scripted` finishes by itself (the integration smoke test of the whole stack)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_scripted_demo_runs_a_whole_day_and_everything_reaches_the_centre():
    proc = subprocess.run([sys.executable, "-m", "harness.demo", "--scripted"], cwd=ROOT, capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "联网结算" in out and "脱机结算" in out and "理赔号" in out
    summary = json.loads(out.split("SUMMARY ", 1)[1].splitlines()[0])
    assert summary["backlog_during_outage"] >= 3 and summary["backlog_after"] == 0
    assert summary["centre_high_water"] == summary["journaled"] >= 4
