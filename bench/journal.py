"""Journal benchmark: durable appends (rate and per-append latency), export and verify throughput.

    .venv/bin/python bench/journal.py [--appends 2000] [--runs 5] [--dir /path/on/the/real/disk]

Each append is a real durable append (WAL, synchronous=FULL: fsync before it returns) of a
settlement body shaped like docs/entries.md (a 3-line pharmacy sale, ~1 KB entry). The journal grows
across runs, so the later runs also show that appends do not slow down as it grows. Export and verify
run on that journal (runs × appends entries). Also measures the path the daemon uses: append through
``trio.to_thread.run_sync``. Prints a Markdown table plus JSON; medians over the runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import trio  # noqa: E402
from nacl.signing import SigningKey  # noqa: E402

from edge.journal import JournalStore, verify_entries, verify_export, write_export  # noqa: E402


def settlement(n: int) -> dict:
    items = [{"code": f"XA01AAA{n % 1000:03d}", "cnt": "2", "pric": 1280},
             {"code": "XB05BAA017", "cnt": "1", "pric": 3650},
             {"code": "ZC10AAB220", "cnt": "0.5", "pric": 4000}]
    return {
        "req": f"POS-{n:08d}", "mode": "offline", "psn_no": "33030019800101001X",
        "card": {"card_id": "330300D15600000500", "keyed_in": False},
        "visit": {"med_type": "41", "level": "pharmacy", "date": "2026-11-24", "acct_used_flag": True},
        "items": items,
        "person": {"insutype": "310", "psn_type": "working", "status": "active", "chronic": [],
                   "balc": 50000, "deductible_used": 20000, "fund_paid": 0},
        "acct_limit": 30000,
        "amounts": {"medfee_sumamt": 8210, "fulamt_ownpay_amt": 2000, "overlmt_selfpay": 0, "preselfpay_amt": 365,
                    "inscp_scp_amt": 5845, "act_pay_dedc": 0, "hifp_pay": 4676, "acct_pay": 3534, "psn_cash_pay": 0},
        "result_sha256": n.to_bytes(16, "big"),
        "basis": {"catalogue": {"version": 12, "hash": "ab" * 32},
                  "policy": {"version": 3, "hash": "cd" * 32, "policy_version": "2026.3"},
                  "persons": {"version": 40}, "hotlist": {"version": 9},
                  "limits": {"cache_age_hours": [5, 72], "visit_fund": [4676, 20000], "offline_visits": [1, 5],
                             "acct_allowance_left": [30000, 50000]}},
    }


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def bench_appends(store: JournalStore, n: int, start: int, *, idle_checkpoint_every: int = 0) -> dict:
    """Durable appends; with ``idle_checkpoint_every`` the untimed gaps run store.checkpoint() as an
    idle daemon would, so SQLite's automatic checkpoint never lands inside an append."""
    lat = []
    total = 0.0
    for i in range(n):
        if idle_checkpoint_every and i % idle_checkpoint_every == 0:
            store.checkpoint()
        a = time.perf_counter()
        store.append("settlement", settlement(start + i))
        took = time.perf_counter() - a
        lat.append(took)
        total += took
    return {"per_s": n / total, "p50_ms": pct(lat, 50) * 1e3, "p99_ms": pct(lat, 99) * 1e3,
            "max_ms": max(lat) * 1e3}


async def bench_trio_appends(store: JournalStore, n: int, start: int) -> dict:
    lat = []
    for i in range(n):
        a = time.perf_counter()
        await trio.to_thread.run_sync(store.append, "settlement", settlement(start + i))
        lat.append(time.perf_counter() - a)
    return {"p50_ms": pct(lat, 50) * 1e3, "p99_ms": pct(lat, 99) * 1e3}


def bench_fsync_floor(work: Path, n: int) -> dict:
    """The disk's own cost: append ~1 KB to a file and fsync it, n times (what one commit cannot beat)."""
    lat = []
    fd = os.open(work / "fsync-probe", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for _ in range(n):
            a = time.perf_counter()
            os.write(fd, b"x" * 1024)
            os.fsync(fd)
            lat.append(time.perf_counter() - a)
    finally:
        os.close(fd)
        (work / "fsync-probe").unlink()
    return {"p50_ms": pct(lat, 50) * 1e3, "p99_ms": pct(lat, 99) * 1e3}


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--appends", type=int, default=2000, help="durable appends per run (default 2000)")
    ap.add_argument("--runs", type=int, default=5, help="runs; medians are reported (default 5)")
    ap.add_argument("--dir", help="directory for the journal (default: a temp dir on the default temp disk)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-journal-", dir=args.dir))
    key = SigningKey.generate()
    results: dict[str, list[float]] = {}

    def add(name, value):
        results.setdefault(name, []).append(value)

    with JournalStore.open(work / "journal.db", signing_key=key, device="D-S330300001-1") as store:
        for run in range(args.runs):
            floor = bench_fsync_floor(work, min(500, args.appends))
            add("fsync_p50_ms", floor["p50_ms"])
            add("fsync_p99_ms", floor["p99_ms"])
            r = bench_appends(store, args.appends, run * args.appends)
            for k, v in r.items():
                add(f"append_{k}", v)
        start = args.runs * args.appends
        for run in range(args.runs):
            r = bench_appends(store, args.appends, start, idle_checkpoint_every=100)
            start += args.appends
            add("ckpt_append_p99_ms", r["p99_ms"])
            add("ckpt_append_max_ms", r["max_ms"])
        r = trio.run(bench_trio_appends, store, min(500, args.appends), start)
        add("trio_append_p50_ms", r["p50_ms"])
        add("trio_append_p99_ms", r["p99_ms"])
        entries = store.count()
        size = (work / "journal.db").stat().st_size
        for run in range(args.runs):
            t = time.perf_counter()
            report = verify_entries(store.raw_entries(), store.verify_key, device=store.device)
            add("verify_local_per_s", entries / (time.perf_counter() - t))
            assert report.ok
            out = work / f"export-{run}.ssj"
            t = time.perf_counter()
            write_export(store, out)
            add("export_per_s", entries / (time.perf_counter() - t))
            t = time.perf_counter()
            check = verify_export(out, pubkey=key.verify_key)
            add("verify_export_per_s", entries / (time.perf_counter() - t))
            assert check.ok and check.report.count == entries
            export_bytes = out.stat().st_size
            out.unlink()
    med = {k: statistics.median(v) for k, v in results.items()}
    load = os.getloadavg()
    print(f"machine: {machine()}; date {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC; "
          f"load average {load[0]:.1f}/{load[1]:.1f}; journal in {work}")
    print(f"{args.runs} runs x {args.appends} durable appends (then as many with idle checkpoints) "
          f"(~{size // entries} B/entry in SQLite, "
          f"{export_bytes // entries} B/entry exported); {entries} entries for export/verify; medians\n")
    print("| measure | median |")
    print("|---|---|")
    rows = [("disk floor: write 1 KB + fsync p50", "fsync_p50_ms", "{:.2f} ms"),
            ("disk floor: write 1 KB + fsync p99", "fsync_p99_ms", "{:.2f} ms"),
            ("durable appends/s (one thread)", "append_per_s", "{:.0f}"),
            ("append latency p50", "append_p50_ms", "{:.2f} ms"),
            ("append latency p99", "append_p99_ms", "{:.2f} ms"),
            ("append latency max (median of runs)", "append_max_ms", "{:.2f} ms"),
            ("append p99 with idle checkpoints every 100", "ckpt_append_p99_ms", "{:.2f} ms"),
            ("append max with idle checkpoints every 100", "ckpt_append_max_ms", "{:.2f} ms"),
            ("append via trio.to_thread p50", "trio_append_p50_ms", "{:.2f} ms"),
            ("append via trio.to_thread p99", "trio_append_p99_ms", "{:.2f} ms"),
            ("verify local journal (entries/s)", "verify_local_per_s", "{:.0f}"),
            ("export (entries/s)", "export_per_s", "{:.0f}"),
            ("verify export (entries/s)", "verify_export_per_s", "{:.0f}")]
    for label, k, fmt in rows:
        print(f"| {label} | {fmt.format(med[k])} |")
    print("\n" + json.dumps({k: round(v, 3) for k, v in med.items()}))
    for p in work.iterdir():
        p.unlink()
    work.rmdir()


if __name__ == "__main__":
    main()
