#!/usr/bin/env python3
"""The 两定接口 drop-in's cost: 2207 through the envelope vs the same visit through the local JSON API.

    .venv/bin/python bench/his.py [--visits 200] [--append]

Starts the real centre and counter daemon on loopback (``harness.demo.start_stack``, simulated card
desk), then, interleaved so both see the same machine load, times over HTTP:

  * his: ``POST /fsi/api/rsfComIfsService/callService`` with infno 2207 (the visit registered with
    2201 and its lines uploaded with 2204 beforehand, untimed): envelope parse, msgid lookup, medfee
    check, Counter.settle, visit and msgid writes, national answer;
  * api: ``POST /api/settle`` with the same person, items and account flag (its own ``req``).

Both settle online (the centre answers): the counter's usual path. (Offline, one card reaches the
policy's offline visit limit after a few visits, so an offline run would measure full-payment claims.)
Prints p50/p99 of each and the ratios (goal: his <= 1.5 x api); ``--append`` adds a section to
bench/RESULTS.md. Nothing here is asserted by tests.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import importlib.util  # noqa: E402

import httpx  # noqa: E402
import trio  # noqa: E402

# The tests' HIS client (plain httpx), loaded by path: this script's own name shadows the tests' package.
_spec = importlib.util.spec_from_file_location("hisclient", ROOT / "tests" / "his" / "hisclient.py")
assert _spec is not None and _spec.loader is not None
hisclient = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hisclient)
LINES, ZHANGSAN, His, msgid = hisclient.LINES, hisclient.ZHANGSAN, hisclient.His, hisclient.msgid


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "?"


async def _ready(api: httpx.AsyncClient) -> bool:
    s = (await api.get("/api/status")).json()
    return len(s["cache"]["bundles"]) == 4 and s["cache"]["age_s"] is not None


async def measure(visits: int) -> dict:
    from harness.demo import start_stack, wait_for

    his_ms: list[float] = []
    api_ms: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        async with trio.open_nursery() as nursery:
            stack = await start_stack(nursery, Path(tmp), probe_s=3600, idle_s=0.5)
            async with httpx.AsyncClient(base_url=stack.daemon.url, trust_env=False, timeout=30,
                                         headers=stack.daemon.headers) as client:
                with trio.fail_after(60):
                    await wait_for(lambda: _ready(client))
                his = His(client)
                psn_no = (await his.read_card(ZHANGSAN))["baseinfo"]["psn_no"]
                items = [{"med_list_codg": code, "cnt": cnt, "pric": int(Decimal(pric) * 100)}
                         for code, cnt, pric, _ in LINES]
                for i in range(visits + 5):      # the first 5 of each warm up, not counted
                    mdtrt_id = await his.register(psn_no)
                    await his.ok("2204", {"feedetail": his.feedetail(mdtrt_id, psn_no)})
                    body = his.setl_data(mdtrt_id, psn_no, "35.60", acct="0", pin=None)
                    t0 = time.perf_counter()
                    out = await his.call("2207", body, mid=msgid())
                    t1 = time.perf_counter()
                    assert out["infcode"] == 0, out
                    r = await client.post("/api/settle", json={"req": f"BENCH-{i}-{time.time_ns()}", "med_type": "11",
                                                               "acct_used_flag": False, "card_id": ZHANGSAN["card_id"],
                                                               "items": items})
                    t2 = time.perf_counter()
                    assert r.status_code == 200, r.text
                    if i >= 5:
                        his_ms.append((t1 - t0) * 1000)
                        api_ms.append((t2 - t1) * 1000)
            nursery.cancel_scope.cancel()
    return {"visits": visits, "mode": "online",
            "his": {"p50_ms": round(statistics.median(his_ms), 2), "p99_ms": round(pct(his_ms, 99), 2)},
            "api": {"p50_ms": round(statistics.median(api_ms), 2), "p99_ms": round(pct(api_ms, 99), 2)},
            "ratio_p50": round(statistics.median(his_ms) / statistics.median(api_ms), 2),
            "ratio_p99": round(pct(his_ms, 99) / pct(api_ms, 99), 2)}


def section(results: list[dict]) -> str:
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "", "## his (两定接口 2207 vs the local JSON API)",
        f"{when}, {os.cpu_count()} CPU ({_cpu()}), Python {platform.python_version()}. "
        f"`.venv/bin/python bench/his.py --visits {results[0]['visits']}`: real centre and counter daemon on loopback, "
        "simulated card desk; each visit is registered (2201) and its two lines uploaded (2204) untimed, then "
        "2207 through the envelope and, right after, `POST /api/settle` with the same person and items are timed "
        "(interleaved: both see the same load). The floor is the local JSON API in the same run.", "",
        "| mode | 2207 p50 ms | 2207 p99 ms | /api/settle p50 ms | /api/settle p99 ms | ratio p50 | ratio p99 |",
        "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['mode']} | {r['his']['p50_ms']} | {r['his']['p99_ms']} | {r['api']['p50_ms']} | "
                     f"{r['api']['p99_ms']} | {r['ratio_p50']} | {r['ratio_p99']} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--visits", type=int, default=200)
    p.add_argument("--append", action="store_true", help="append the result to bench/RESULTS.md")
    args = p.parse_args()
    results = [trio.run(measure, args.visits)]
    print(json.dumps(results, ensure_ascii=False, indent=2))
    if args.append:
        with open(ROOT / "bench" / "RESULTS.md", "a", encoding="utf-8") as f:
            f.write(section(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
