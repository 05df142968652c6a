"""Measure `edge diagnose` wall time (a real process, as a technician runs it) with the centre unreachable.

    .venv/bin/python bench/diagnose.py [--runs 5] [--entries 10000]

Builds an enrolled state directory against a real centre on loopback (journal of N entries, all but
10 acknowledged; the four bundles), stops the centre, then times `python -m edge diagnose --json` in
four situations: centre refused (port closed), centre silent (accepts TCP, never answers; the daemon
too), centre name unresolvable, and a healthy centre for comparison. Not a test: timings are never
asserted (the bound is shown on trio's MockClock in test_bounded.py); results go to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "diagnose"))  # diag_helpers
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from diag_helpers import dead_url, fill_journal, publish_sample_bundles  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


async def build_state(tmp: Path, entries: int, nursery):
    from edge.enrol import enroll
    from edge.journal import JournalStore, load_device_key
    from edge.uplink import CentreClient, Uplink
    from sync.centre.server import start_centre
    from sync.centre.store import open_store

    store = open_store(tmp / "centre.db")
    centre = await start_centre(nursery, store)
    state = tmp / "state"
    token = store.create_enrol_token("S330300001")
    async with httpx.AsyncClient(trust_env=False) as http:
        cfg = await enroll(centre.url, token, state, client=http)
        key = load_device_key(state / "device.key")
        with JournalStore.open(state / "journal.db", signing_key=key, device=cfg.device) as journal:
            await trio.to_thread.run_sync(fill_journal, journal, entries - 10)
            up = Uplink(journal, CentreClient(centre.url, cfg.device, key, client=http), state_dir=state)
            while journal.backlog().count:
                await up.sync_once()
            await trio.to_thread.run_sync(fill_journal, journal, 10)
    publish_sample_bundles(state, centre.key, int(time.time() * 1000))
    return state, centre


def time_cli(state: Path, extra: list[str], runs: int) -> dict:
    walls, inner, codes = [], [], set()
    for _ in range(runs):
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "edge", "diagnose", "--json", "--state-dir", str(state), *extra],
                             capture_output=True, text=True, cwd=ROOT)
        walls.append(time.perf_counter() - t0)
        report = json.loads(out.stdout)
        inner.append(report["elapsed_s"])
        codes.add(out.returncode)
        slow = sorted(report["findings"], key=lambda f: -f["duration_s"])[:3]
    return {"median_s": statistics.median(walls), "max_s": max(walls), "checks_median_s": statistics.median(inner),
            "exit": sorted(codes), "slowest": ", ".join(f"{f['check']} {f['duration_s']:.1f}" for f in slow)}


async def main(runs: int, entries: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-diagnose-") as tmp:
        async with trio.open_nursery() as nursery:
            state, centre = await build_state(Path(tmp), entries, nursery)
            results = {}
            results["centre healthy (daemon down)"] = await trio.to_thread.run_sync(
                time_cli, state, ["--daemon", dead_url()], runs)
            centre.stop()
            await trio.sleep(0.2)
            results["centre refused (port closed)"] = await trio.to_thread.run_sync(
                time_cli, state, ["--daemon", dead_url()], runs)
            hole = socket.socket()
            hole.bind(("127.0.0.1", 0))
            hole.listen(128)
            port = hole.getsockname()[1]
            results["centre and daemon silent (accept, never answer)"] = await trio.to_thread.run_sync(
                time_cli, state, ["--centre", f"https://127.0.0.1:{port}", "--daemon", f"http://127.0.0.1:{port}"], runs)
            hole.close()
            results["centre name unresolvable (centre.invalid)"] = await trio.to_thread.run_sync(
                time_cli, state, ["--centre", "https://centre.invalid", "--daemon", dead_url()], runs)
            nursery.cancel_scope.cancel()
    print(f"{platform.python_version()} on {platform.platform()}; journal {entries} entries; {runs} runs each")
    print("| situation | median wall s | max wall s | checks only, median s | exit | slowest checks (last run, s) |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['median_s']:.2f} | {r['max_s']:.2f} | {r['checks_median_s']:.2f} | {r['exit']} "
              f"| {r['slowest']} |")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--entries", type=int, default=10_000)
    a = ap.parse_args()
    trio.run(main, a.runs, a.entries)
