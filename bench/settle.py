"""Settlements per second of the pure engine, 5-line and 50-line visits (inputs parsed once).

    .venv/bin/python bench/settle.py [--runs 7] [--seconds 1.0]

Prints the median of several runs; record figures in bench/RESULTS.md. Not a test: nothing asserts.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge.settle import parse_catalogue, parse_items, parse_person, parse_policy, parse_visit, settle  # noqa: E402

CASE = Path(__file__).resolve().parents[1] / "tests" / "data" / "cases" / "class-b-advance-selfpay.json"


def inputs(n_lines: int):
    case = json.loads(CASE.read_text(encoding="utf-8"), parse_float=Decimal)
    policy = parse_policy(case["policy"])
    catalogue = parse_catalogue(case["catalogue"])
    codes = [c["code"] for c in case["catalogue"]]
    items = [{"code": codes[i % len(codes)], "cnt": ("0.5" if i % 3 == 0 else str(1 + i % 4)),
              "pric": 1000 + 37 * i} for i in range(n_lines)]
    return (policy, catalogue, parse_person(case["person"]), parse_visit(case["visit"], policy), parse_items(items))


def rate(args, seconds: float) -> float:
    n = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(100):
            settle(*args, acct_limit=30000)
        n += 100
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=1.0)
    a = ap.parse_args()
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"python {platform.python_version()}, {cpu}, one core")
    for n_lines in (5, 50):
        args = inputs(n_lines)
        rates = [rate(args, a.seconds) for _ in range(a.runs)]
        print(f"{n_lines:>3} lines: median {statistics.median(rates):,.0f} settlements/s "
              f"(min {min(rates):,.0f}, max {max(rates):,.0f}, {a.runs} runs)")


if __name__ == "__main__":
    main()
