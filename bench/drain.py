"""A backlog drain on PostgreSQL by 1 and 2 centre worker processes: entries per centre CPU-second.

    .venv/bin/python bench/drain.py [--entries 200000] [--persons 20000] [--workers 1,2]

The backlog is built once (offline settlements with the real engine, the shape of bench/reconcile.py,
signed and hash-chained by 50 devices). For each worker count, a fresh database is migrated and
seeded (not timed); then W worker processes start together, each uploading the journals of its
share of the devices through the store's real ingest (signature and chain checks, one transaction
per 500 entries: verify + store + enqueue) and then draining the reconciliation queue
(``reconcile.run_pending``: claim buckets, replay, write outcomes, post and publish outcome
messages) until it is empty. No HTTP: the figure is the centre's own work.

Each worker reports its own CPU time (``os.times()``: user + system of that process). The figure is
entries / (sum of the workers' CPU seconds). PostgreSQL's side is attributed per worker: each worker
names its connections (``application_name``) and, before closing them, reads the CPU time of those
backend processes from /proc (server and workers share this machine); "with their backends" adds it.
Not counted there: PostgreSQL's WAL writer, checkpointer and autovacuum (the "all postgres processes"
column samples every ``postgres`` process before and after, which includes them but misses backends
that exited in between, and other users' backends). The floor is Ed25519 verify
alone on one core in the same run. Prints medians; record them in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pickle
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "centre"))

ADMIN = os.environ.get("SETTLE_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
UPLOAD = 500


def _bench_reconcile():
    spec = importlib.util.spec_from_file_location("bench_reconcile", ROOT / "bench" / "reconcile.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def build(entries: int, persons: int, path: Path) -> None:
    """Sign the backlog once; the workers read it from ``path``."""
    from nacl.signing import SigningKey

    from edge.journal.entry import GENESIS, make_entry

    br = _bench_reconcile()
    bodies = br.build(entries, persons)
    keys = [SigningKey.generate() for _ in range(br.DEVICES)]
    heads = [(0, GENESIS)] * br.DEVICES
    per_dev: list[list] = [[] for _ in range(br.DEVICES)]
    for dev, t, body in bodies:
        seq, prev = heads[dev]
        e = make_entry(keys[dev], seq=seq + 1, prev=prev, device=f"D-B-{dev}", time=t, mono=t, kind="settlement",
                       body=body)
        heads[dev] = (e.seq, e.hash)
        per_dev[dev].append((e.seq, e.raw))
    centre_rows = [br.person_of(i)[1] for i in range(persons)]
    with open(path, "wb") as f:
        pickle.dump({"keys": [bytes(k.verify_key) for k in keys], "per_dev": per_dev, "persons": centre_rows}, f)


def setup(url: str, data: dict) -> None:
    import recon_support as rs

    from sync.centre.store import Store
    from sync.centre.store import schema

    store = Store.open(url, migrate=False)
    try:
        schema.migrate(store.db)
        for raw in (rs.CAT_RAW, rs.POL_RAW, rs.HOT_RAW):
            store.put_bundle(raw, now=rs.T0 - rs.DAY)
        store.ledger.seed_from_persons(data["persons"])
        for dev, pub in enumerate(data["keys"]):
            store.register_device(f"D-B-{dev}", f"S-{dev % 10}", pub, now=rs.T0)
    finally:
        store.close()


def worker(url: str, path: str, wid: int, nworkers: int, go_at: float) -> None:
    """One centre worker: upload its devices' journals, then drain the queue; prints its accounting."""
    import recon_support as rs

    from sync.centre import reconcile
    from sync.centre.store import Store

    with open(path, "rb") as f:
        data = pickle.load(f)
    # The worker's own PostgreSQL backends are named, so their CPU is attributed to it (below).
    app = f"drain-w{wid}-{os.getpid()}"
    store = Store.open(f"{url}?application_name={app}", migrate=False)
    time.sleep(max(0.0, go_at - time.time()))        # start together
    c0, t0 = os.times(), time.perf_counter()
    stored = decided = 0
    for dev in range(wid, len(data["per_dev"]), nworkers):
        items = data["per_dev"][dev]
        for j in range(0, len(items), UPLOAD):
            stored += store.put_entries(f"D-B-{dev}", items[j:j + UPLOAD], now=rs.T0).count("accepted")
    while True:
        counts = reconcile.run_pending(store, now=rs.T0 + rs.DAY, batch=UPLOAD, max_batches=20, recheck=False)
        decided += sum(counts[o] for o in reconcile.rp.OUTCOMES)
        if not counts["more"] and store.recon.queue_length() == 0:
            break
    c1, wall = os.times(), time.perf_counter() - t0
    pids = [r["pid"] for r in store.db.query("SELECT pid FROM pg_stat_activity WHERE application_name = ?", (app,))]
    backend = sum(proc_cpu(pid) for pid in pids)   # their whole life: they were opened for this run
    store.close()
    print(json.dumps({"wid": wid, "cpu": (c1.user - c0.user) + (c1.system - c0.system), "wall": wall,
                      "stored": stored, "decided": decided, "pg_backend_cpu": backend,
                      "backends": len(pids)}), flush=True)


def proc_cpu(pid: int) -> float:
    """utime + stime of one process (seconds), from /proc (PostgreSQL runs on this machine)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            raw = f.read()
    except OSError:
        return 0.0
    fields = raw[raw.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pg_cpu() -> float:
    """CPU seconds so far of every postgres server process (utime + stime from /proc/<pid>/stat)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                raw = f.read()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1:raw.rindex(")")]
        if comm.startswith("postgres"):
            fields = raw[raw.rindex(")") + 2:].split()
            total += int(fields[11]) + int(fields[12])
    return total / tick


def verify_floor(n: int = 20000) -> float:
    """Ed25519 verifications per second on one core (the cryptographic floor of ingest)."""
    from nacl.signing import SigningKey

    k = SigningKey.generate()
    signed = [k.sign(secrets.token_bytes(300)) for _ in range(1000)]
    vk = k.verify_key
    t0 = time.process_time()
    for i in range(n):
        vk.verify(signed[i % 1000])
    return n / (time.process_time() - t0)


def drain(path: Path, data: dict, nworkers: int) -> dict:
    import psycopg

    admin = psycopg.connect(ADMIN, autocommit=True)
    name = "drain_" + secrets.token_hex(4)
    admin.execute(f"CREATE DATABASE {name}")
    url = ADMIN.rsplit("/", 1)[0] + "/" + name
    try:
        setup(url, data)
        go_at = time.time() + 3.0
        pg0 = pg_cpu()
        procs = [subprocess.Popen([sys.executable, __file__, "--worker", url, str(path), str(w), str(nworkers),
                                   str(go_at)], stdout=subprocess.PIPE, text=True) for w in range(nworkers)]
        reports = []
        for p in procs:
            out, _ = p.communicate()
            assert p.returncode == 0, f"worker failed ({p.returncode})"
            reports.append(json.loads(out.strip().splitlines()[-1]))
        pg = pg_cpu() - pg0
        from sync.centre.store import Store
        s = Store.open(url, migrate=False)
        try:
            outcomes = s.db.scalar("SELECT count(*) FROM recon_outcomes")
            entries = s.db.scalar("SELECT count(*) FROM entries")
        finally:
            s.close()
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()
    cpu = sum(r["cpu"] for r in reports)
    backend = sum(r["pg_backend_cpu"] for r in reports)
    wall = max(r["wall"] for r in reports)
    assert outcomes == entries, (outcomes, entries)   # nothing skipped, nothing twice (PRIMARY KEY)
    return {"workers": nworkers, "entries": entries, "cpu": cpu, "wall": wall, "per_cpu_s": entries / cpu,
            "per_wall_s": entries / wall, "pg_cpu": pg, "pg_backend_cpu": backend,
            "per_cpu_s_with_pg": entries / (cpu + backend)}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        url, path, wid, n, go_at = sys.argv[2:7]
        worker(url, path, int(wid), int(n), float(go_at))
        return
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--entries", type=int, default=200_000)
    ap.add_argument("--persons", type=int, default=20_000)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--backlog", type=Path, help="keep the signed backlog in this file (built if missing), so "
                                                  "several runs drain the same one")
    ap.add_argument("--build-only", action="store_true", help="build --backlog and stop")
    a = ap.parse_args()
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    print(f"python {platform.python_version()}, {cpu}, nproc {os.cpu_count()}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {a.entries:,} entries over {a.persons:,} persons")
    with tempfile.TemporaryDirectory(prefix="bench-drain-") as tmp:
        path = a.backlog or Path(tmp) / "backlog.pickle"
        if not path.exists():
            t0 = time.perf_counter()
            build(a.entries, a.persons, path)
            print(f"  built and signed the backlog in {time.perf_counter() - t0:.0f} s", flush=True)
        if a.build_only:
            return
        with open(path, "rb") as f:
            data = pickle.load(f)
        results: dict[int, list[dict]] = {}
        for _ in range(a.runs):
            for w in (int(x) for x in a.workers.split(",")):
                r = drain(path, data, w)
                results.setdefault(w, []).append(r)
                print(f"  {w} worker(s): {r['entries']:,} entries, centre CPU {r['cpu']:.1f} s, wall {r['wall']:.1f} s, "
                      f"their postgres backends {r['pg_backend_cpu']:.1f} s (all postgres processes "
                      f"{r['pg_cpu']:.1f} s) -> {r['per_cpu_s']:,.0f} entries/centre CPU-s, "
                      f"{r['per_wall_s']:,.0f} entries/s wall, {r['per_cpu_s_with_pg']:,.0f} per CPU-s with their "
                      f"backends; load {os.getloadavg()[0]:.1f}", flush=True)
    floor = statistics.median(verify_floor() for _ in range(3))
    med = {w: {k: statistics.median(r[k] for r in rs_) for k in ("per_cpu_s", "per_wall_s", "per_cpu_s_with_pg")}
           for w, rs_ in results.items()}
    for w, m in med.items():
        print(f"{w} worker(s): median {m['per_cpu_s']:,.0f} entries/centre CPU-s, {m['per_wall_s']:,.0f} entries/s "
              f"wall, {m['per_cpu_s_with_pg']:,.0f} per CPU-s incl. postgres")
    if 1 in med and 2 in med:
        print(f"ratio 2:1 wall throughput {med[2]['per_wall_s'] / med[1]['per_wall_s']:.2f}x, "
              f"per CPU-s {med[2]['per_cpu_s'] / med[1]['per_cpu_s']:.2f}x")
    print(f"floor: Ed25519 verify {floor:,.0f}/s on one core (same run)")


if __name__ == "__main__":
    main()
