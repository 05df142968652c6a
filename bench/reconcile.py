"""Reconciliation outcomes per second: the pure core, and the whole pass on the centre's store.

    .venv/bin/python bench/reconcile.py [--entries 100000] [--persons 10000] [--runs 3] [--store sqlite|postgres|none]
    .venv/bin/python bench/reconcile.py --digest     # results' digest: must not change with a speed change

Entries are offline settlements (2-line village visits) built with the real engine, spread over
``--persons`` persons and 50 devices, in the shape of docs/entries.md; a tenth of the persons have
a stale deductible in their snapshot (-> adjusted, patient credit), a twentieth are suspended at the
centre (-> adjusted, fund variance); the rest are confirmed byte for byte.

* core: :func:`sync.centre.replay.replay_person` over every person (no I/O) -> outcomes/s.
* store: ``reconcile.run_pending`` on a fresh store holding the entries (loaded through the real
  ingest, signatures verified; loading is not timed) -> outcomes/s including all database writes.

Prints medians; record them in bench/RESULTS.md. Not a test: nothing asserts.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import os
import platform
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "centre"))

from edge.settle import parse_catalogue, parse_items, parse_person, parse_policy, parse_visit, settle  # noqa: E402
from sync.centre import replay as rp  # noqa: E402
import recon_support as rs  # noqa: E402

DEVICES = 50
ITEMS = [[{"code": "XJ01CAA040E001010101445", "cnt": str(1 + i % 3), "pric": 1280},
          {"code": "001102000010000", "cnt": "1", "pric": 1000}] for i in range(3)]


def person_of(i: int) -> tuple[dict, dict]:
    """(the edge's snapshot, the centre's ledger row) of person i."""
    psn = f"B{i:07d}"
    snap = rs.person(psn, balc=10**7, deductible_used=20000)
    centre = dict(snap)
    if i % 10 == 1:
        snap = {**snap, "deductible_used": 0}           # stale snapshot: the patient pays too much
    if i % 20 == 3:
        centre = {**centre, "arrears_from": "2026-01-01", "status": "suspended"}   # fund variance
    return snap, centre


def build(n_entries: int, n_persons: int):
    policy, cat = parse_policy(rs.POLICY), parse_catalogue(rs.CATALOGUE)
    state = {}
    bodies = []            # (device index, time, body)
    for k in range(n_entries):
        i = k % n_persons
        snap, _ = person_of(i)
        cur = state.get(i, snap)
        v = rs.visit(k // n_persons % 30, acct=True)
        items = ITEMS[k % 3]
        s = settle(policy, cat, parse_person({kk: cur[kk] for kk in ("psn_no", "insutype", "psn_type", "status",
                                                                   "chronic", "balc", "deductible_used", "fund_paid")}),
                   parse_visit(v, policy), parse_items(items), acct_limit=50000)
        amounts = {f: getattr(s, f) for f in rp.AMOUNT_KEYS}
        body = {"req": f"R{k}", "mode": "offline", "psn_no": cur["psn_no"],
                "card": {"card_id": cur["card_ids"][0], "keyed_in": False}, "visit": v, "items": items,
                "person": {f: cur[f] for f in ("insutype", "psn_type", "status", "chronic", "balc", "deductible_used",
                                               "fund_paid")},
                "acct_limit": 50000, "amounts": amounts,
                "result_sha256": hashlib.sha256(s.to_json().encode()).digest()[:16],
                "basis": rs.basis(limits={"cache_age_hours": [5, 96], "visit_fund": [s.hifp_pay, 20000],
                                          "offline_visits": [1, 5], "acct_allowance_left": [50000, 50000]})}
        state[i] = {**cur, **s.state_after}
        bodies.append((k % DEVICES, rs.T0 + k * 1000, body))
    return bodies


def world():
    return rp.StaticWorld(policies={(3, rs.bundle_hash(rs.POL_RAW)): parse_policy(rs.POLICY)},
                          catalogues={(12, rs.bundle_hash(rs.CAT_RAW)): parse_catalogue(rs.CATALOGUE)})


def ledgers(n_persons: int) -> dict:
    import datetime as dt
    out = {}
    for i in range(n_persons):
        _, c = person_of(i)
        arrears = (rp.Arrears(dt.date(2026, 1, 1), None),) if c.get("status") == "suspended" else ()
        out[c["psn_no"]] = rp.Ledger(c["psn_no"], c["insutype"], c["psn_type"], c["balc"], c["deductible_used"],
                                     c["fund_paid"], (), arrears)
    return out


def bench_core(bodies, n_persons: int, runs: int) -> list[float]:
    groups: dict[str, list] = {}
    seqs = [0] * DEVICES
    for dev, t, body in bodies:
        seqs[dev] += 1
        groups.setdefault(body["psn_no"], []).append(rp.Event(f"D-B-{dev}", seqs[dev], "settlement", t, body))
    rates = []
    kinds: dict[str, int] = {}
    for _ in range(runs):
        w, start_ledgers = world(), ledgers(n_persons)
        t0 = time.perf_counter()
        n = 0
        for psn, events in groups.items():
            _, outs = rp.replay_person(start_ledgers[psn], events, w)
            n += len(outs)
            for o in outs:
                kinds[o.outcome] = kinds.get(o.outcome, 0) + 1
        rates.append(n / (time.perf_counter() - t0))
    print(f"  outcome mix per run: { {k: v // runs for k, v in kinds.items()} }")
    return rates


def digest(bodies, n_persons: int) -> str:
    """SHA-256 over what the benchmark's inputs make the engine and the replay produce: every entry as
    built (amounts and ``result_sha256`` from ``Settlement.to_json``) and every outcome and ledger after
    replay. A speed change must leave it as it was (run it before and after)."""
    h = hashlib.sha256()
    for dev, t, body in bodies:
        h.update(repr((dev, t, sorted(body.items()))).encode())
    groups: dict[str, list] = {}
    seqs = [0] * DEVICES
    for dev, t, body in bodies:
        seqs[dev] += 1
        groups.setdefault(body["psn_no"], []).append(rp.Event(f"D-B-{dev}", seqs[dev], "settlement", t, body))
    w, start_ledgers = world(), ledgers(n_persons)
    for psn, events in groups.items():
        after, outs = rp.replay_person(start_ledgers[psn], events, w)
        h.update(repr((after, outs)).encode())
    return h.hexdigest()


def bench_store(bodies, n_persons: int, runs: int, backend: str) -> list[float]:
    from nacl.signing import SigningKey

    from edge.journal.entry import GENESIS, make_entry
    from sync.centre import reconcile
    from sync.centre.store import Store

    keys = [SigningKey.generate() for _ in range(DEVICES)]
    heads = [(0, GENESIS)] * DEVICES
    per_dev: list[list] = [[] for _ in range(DEVICES)]
    for dev, t, body in bodies:
        seq, prev = heads[dev]
        e = make_entry(keys[dev], seq=seq + 1, prev=prev, device=f"D-B-{dev}", time=t, mono=t, kind="settlement",
                       body=body)
        heads[dev] = (e.seq, e.hash)
        per_dev[dev].append((e.seq, e.raw))
    persons = []
    for i in range(n_persons):
        _, c = person_of(i)
        persons.append(c)
    rates = []
    for _ in range(runs):
        tmp = tempfile.mkdtemp(prefix="bench-reconcile-")
        admin = None
        if backend == "postgres":
            import psycopg
            admin = psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True)
            name = "r_bench_" + secrets.token_hex(4)
            admin.execute(f"CREATE DATABASE {name}")
            url = f"postgresql://postgres@127.0.0.1:5432/{name}"
        else:
            url = os.path.join(tmp, "centre.db")
        store = Store.open(url)
        try:
            for raw in (rs.CAT_RAW, rs.POL_RAW, rs.HOT_RAW):
                store.put_bundle(raw, now=rs.T0 - rs.DAY)
            store.ledger.seed_from_persons(persons)
            for dev in range(DEVICES):
                store.register_device(f"D-B-{dev}", f"S-{dev % 10}", bytes(keys[dev].verify_key), now=rs.T0)
                items = per_dev[dev]
                for j in range(0, len(items), 1000):
                    store.put_entries(f"D-B-{dev}", items[j:j + 1000], now=rs.T0)
            t0 = time.perf_counter()
            counts = reconcile.run_pending(store, now=rs.T0 + rs.DAY)
            dt_ = time.perf_counter() - t0
            n = sum(counts[o] for o in rp.OUTCOMES)
            rates.append(n / dt_)
            print(f"  {backend}: {n} outcomes in {dt_:.1f} s ({counts})", flush=True)
        finally:
            store.close()
            shutil.rmtree(tmp, ignore_errors=True)
            if admin is not None:
                admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                admin.close()
    return rates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--persons", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--store", default="sqlite", choices=("sqlite", "postgres", "none"))
    ap.add_argument("--digest", action="store_true", help="print the digest of the results (see digest()) and stop")
    a = ap.parse_args()
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    print(f"python {platform.python_version()}, {cpu}, nproc {os.cpu_count()}; {a.entries:,} entries over "
          f"{a.persons:,} persons, {DEVICES} devices")
    t0 = time.perf_counter()
    bodies = build(a.entries, a.persons)
    print(f"  built {len(bodies):,} entries with the engine in {time.perf_counter() - t0:.1f} s")
    if a.digest:
        print(f"digest {digest(bodies, a.persons)}")
        return
    # The inputs built here (millions of small objects) are not what a centre holds in memory; freeze
    # them so the cyclic collector does not rescan them during the timed parts.
    gc.collect()
    gc.freeze()
    rates = bench_core(bodies, a.persons, a.runs)
    print(f"core:  median {statistics.median(rates):,.0f} outcomes/s (min {min(rates):,.0f}, max {max(rates):,.0f}, "
          f"{a.runs} runs)")
    if a.store != "none":
        rates = bench_store(bodies, a.persons, a.runs, a.store)
        print(f"store ({a.store}): median {statistics.median(rates):,.0f} outcomes/s (min {min(rates):,.0f}, "
              f"max {max(rates):,.0f}, {a.runs} runs)")


if __name__ == "__main__":
    main()
