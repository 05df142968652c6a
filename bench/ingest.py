"""Centre ingest benchmark: entries/s (SQLite, PostgreSQL), bytes per entry on the wire, backlog drain.

    .venv/bin/python bench/ingest.py [--devices 8] [--entries 2000] [--runs 3] [--sites 40] [--no-pg]

1. **ingest**: a real centre (`centre run`, its own process) on SQLite and on PostgreSQL; ``--devices``
   enrolled devices each upload ``--entries`` pre-signed 3-line pharmacy sales in batches of 500,
   concurrently, through the real HTTP path (request signature, entry decode + Ed25519 check, chain,
   one transaction per batch, ack). Entries are signed before the clock starts. Figure: entries
   acknowledged per second of wall time. Also the store alone (no HTTP) in this process.
2. **wire**: bytes of an upload frame per entry for a 3-line pharmacy sale (batch of 500 and of 1).
3. **drain**: ``--sites`` counters each with a 7-day offline backlog (``--per-day`` sales a day) in
   real journals; the real uplinks drain them concurrently into a fresh SQLite centre.

Prints a Markdown block for bench/RESULTS.md. Medians of ``--runs`` runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import trio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sync import auth, protocol, wire  # noqa: E402
from harness.simulate import SimDevice, pharmacy_sale  # noqa: E402

PG_ADMIN = os.environ.get("SETTLE_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def cpu() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


class CentreProcess:
    def __init__(self, data_dir: Path, db: str, verify_processes: int = 0) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "sync.centre", "run", "--data-dir", str(data_dir),
                                      "--db", db, "--port", "0", "--no-background",
                                      "--verify-processes", str(verify_processes)], cwd=ROOT,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            self.stop()
            raise SystemExit(f"centre did not start: {line!r}")
        self.url = line.split("listening on ")[1].split()[0]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.proc.stdout.close()


def pg_database():
    import psycopg

    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3)
    except psycopg.Error:
        return None, None
    name = "x_bench_" + secrets.token_hex(5)
    admin.execute(f"CREATE DATABASE {name}")
    return admin, name


def register(db: str, devices: list[SimDevice]) -> None:
    from sync.centre.store import open_store

    store = open_store(db)
    for d in devices:
        store.register_device(d.device, "S330300001", d.pubkey)
    store.close()


async def upload_all(url: str, devices: list[SimDevice], batch: int) -> int:
    frames = {d.device: [wire.encode(protocol.Upload(d.device, d.items(i + 1, i + batch)).to_msg())
                         for i in range(0, len(d.entries), batch)] for d in devices}
    acked = 0

    async def one(client, d):
        nonlocal acked
        for body in frames[d.device]:
            h = auth.sign_request(d.key, d.device, "POST", "/v1/upload", body, time_ms=time.time_ns() // 10**6)
            r = await client.post(url + "/v1/upload", content=body,
                                  headers={"content-type": wire.CONTENT_TYPE, **h}, timeout=120)
            ans = wire.decode(r.content)
            if r.status_code != 200:
                raise SystemExit(f"upload failed: {ans}")
        acked += ans["ack"]

    async with httpx.AsyncClient() as client:
        async with trio.open_nursery() as n:
            for d in devices:
                n.start_soon(one, client, d)
    return acked


def bench_http(db_factory, n_devices: int, n_entries: int, runs: int, procs: int = 0) -> list[float]:
    rates = []
    for _ in range(runs):
        devices = [SimDevice(f"D-S330300001-{i + 1}") for i in range(n_devices)]
        for d in devices:
            for _ in range(n_entries):
                d.append()
        with tempfile.TemporaryDirectory() as td:
            db, cleanup = db_factory(Path(td))
            try:
                register(db, devices)
                centre = CentreProcess(Path(td) / "data", db, procs)
                try:
                    t = time.perf_counter()
                    acked = trio.run(upload_all, centre.url, devices, 500)
                    el = time.perf_counter() - t
                finally:
                    centre.stop()
            finally:
                cleanup()
        assert acked == n_devices * n_entries, acked
        rates.append(acked / el)
    return rates


def bench_store(n_entries: int, runs: int) -> list[float]:
    from sync.centre import ingest
    from sync.centre.store import open_store

    rates = []
    for _ in range(runs):
        d = SimDevice("D-S330300001-1")
        for _ in range(n_entries):
            d.append()
        with tempfile.TemporaryDirectory() as td:
            store = open_store(Path(td) / "c.db")
            store.register_device(d.device, "S1", d.pubkey)
            t = time.perf_counter()
            items = d.items()
            for i in range(0, n_entries, 500):
                store.put_checked(d.device, ingest.check_entries(items[i:i + 500], d.device, d.key.verify_key))
            rates.append(n_entries / (time.perf_counter() - t))
            store.close()
    return rates


def bench_commit(db: str, n_entries: int) -> float:
    """Store commits alone (entries verified beforehand): entries/s of put_checked in batches of 500."""
    from sync.centre import ingest
    from sync.centre.store import open_store

    d = SimDevice("D-S330300001-1")
    for _ in range(n_entries):
        d.append()
    checked = ingest.check_entries(d.items(), d.device, d.key.verify_key)
    store = open_store(db)
    try:
        store.register_device(d.device, "S1", d.pubkey)
        t = time.perf_counter()
        for i in range(0, n_entries, 500):
            store.put_checked(d.device, checked[i:i + 500])
        return n_entries / (time.perf_counter() - t)
    finally:
        store.close()


def wire_sizes() -> dict:
    d = SimDevice("D-S330300001-1")
    for _ in range(500):
        d.append()
    one = len(wire.encode(protocol.Upload(d.device, d.items(1, 1)).to_msg()))
    batch = len(wire.encode(protocol.Upload(d.device, d.items()).to_msg()))
    lines = len(d.entries[0].body["items"])
    return {"raw_entry": len(d.entries[0].raw), "batch500_per_entry": batch / 500, "single": one, "lines": lines}


async def drain(url: str, journals, http) -> float:
    from edge.uplink import CentreClient, Uplink

    t = time.perf_counter()
    async with trio.open_nursery() as n:
        for (cfg_device, key, journal) in journals:
            up = Uplink(journal, CentreClient(url, cfg_device, key, client=http))
            n.start_soon(up.sync_once)
    return time.perf_counter() - t


def bench_drain(sites: int, per_day: int, runs: int) -> tuple[list[float], int]:
    from edge.journal.store import JournalStore
    from sync.centre.store import open_store

    times = []
    total = sites * per_day * 7
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as td:
            td = Path(td)
            db = str(td / "centre.db")
            devices = [SimDevice(f"D-S3303{s:05d}-1") for s in range(sites)]
            register(db, devices)
            journals = []
            for d in devices:
                j = JournalStore.open(td / d.device / "journal.db", signing_key=d.key, device=d.device)
                t0 = 1_764_000_000_000
                for i in range(per_day * 7):  # a week offline: per_day sales a day, time-stamped across it
                    j.append("settlement", pharmacy_sale(i + 1, device=d.device),
                             time_ms=t0 + (i // per_day) * 86_400_000 + (i % per_day) * 600_000, mono_ns=i)
                journals.append((d.device, d.key, j))
            centre = CentreProcess(td / "data", db)
            try:
                async def go():
                    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=64)) as http:
                        return await drain(centre.url, journals, http)
                times.append(trio.run(go))
                store = open_store(db)
                assert store.entry_count() == total, store.entry_count()
                store.close()
            finally:
                centre.stop()
                for _, _, j in journals:
                    j.close()
    return times, total


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--devices", type=int, default=8)
    p.add_argument("--entries", type=int, default=2000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--sites", type=int, default=40)
    p.add_argument("--per-day", type=int, default=40)
    p.add_argument("--no-pg", action="store_true")
    args = p.parse_args()

    med = statistics.median
    out = [f"Machine: {os.cpu_count()} cores, {cpu()}; Python {platform.python_version()}; "
           f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; medians of {args.runs} runs. "
           f"`bench/ingest.py --devices {args.devices} --entries {args.entries} --sites {args.sites}`."]

    w = wire_sizes()
    out.append(f"- wire, 3-line pharmacy sale: **{w['batch500_per_entry']:.0f} B/entry** in a batch of 500 "
               f"(zstd CBOR frame); {w['single']} B for a batch of one; the signed entry itself is {w['raw_entry']} B.")

    s = bench_store(args.entries * 2, args.runs)
    out.append(f"- store alone (SQLite, this process, decode + Ed25519 + chain + commit per 500): "
               f"**{med(s):,.0f} entries/s**")

    def sqlite_db(td):
        return str(td / "centre.db"), lambda: None

    commits = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as td:
            commits.append(bench_commit(str(Path(td) / "c.db"), args.entries * 2))
    line = f"- store commits alone (verified beforehand, batches of 500): SQLite **{med(commits):,.0f} entries/s**"
    if not args.no_pg:
        pg = []
        for _ in range(args.runs):
            admin, name = pg_database()
            if admin is None:
                break
            try:
                pg.append(bench_commit(f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}", args.entries * 2))
            finally:
                admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                admin.close()
        if pg:
            line += f", PostgreSQL **{med(pg):,.0f} entries/s**"
    out.append(line)

    r = bench_http(sqlite_db, args.devices, args.entries, args.runs)
    out.append(f"- ingest over HTTP, SQLite: **{med(r):,.0f} entries/s** ({args.devices} devices × "
               f"{args.entries} entries, batches of 500, centre in its own process; runs: "
               f"{', '.join(f'{x:,.0f}' for x in r)})")

    r = bench_http(sqlite_db, args.devices, args.entries, args.runs, procs=2)
    out.append(f"- ingest over HTTP, SQLite, `centre run --verify-processes 2`: **{med(r):,.0f} entries/s** (runs: "
               f"{', '.join(f'{x:,.0f}' for x in r)})")

    if not args.no_pg:
        def pg_db(td):
            admin, name = pg_database()
            if admin is None:
                raise RuntimeError("no PostgreSQL")
            base = PG_ADMIN.rsplit("/", 1)[0]

            def cleanup():
                admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                admin.close()
            return f"{base}/{name}", cleanup
        try:
            r = bench_http(pg_db, args.devices, args.entries, args.runs)
            out.append(f"- ingest over HTTP, PostgreSQL 15 (same machine): **{med(r):,.0f} entries/s** (runs: "
                       f"{', '.join(f'{x:,.0f}' for x in r)})")
        except RuntimeError:
            out.append("- ingest over HTTP, PostgreSQL: not measured (no server at " + PG_ADMIN + ")")

    t, total = bench_drain(args.sites, args.per_day, args.runs)
    out.append(f"- 7-day backlog drain: {args.sites} sites × 7 days × {args.per_day} sales = {total:,} entries "
               f"from real journals through the real uplinks into a fresh SQLite centre: **{med(t):.1f} s** "
               f"({total / med(t):,.0f} entries/s)")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
