"""The reconciliation work queue on PostgreSQL: workers (each its own connection, in threads here)
reconcile disjoint person buckets in parallel; one person is never replayed on two workers at once;
every entry is decided exactly once; an entry whose replay raises is quarantined and the rest
proceed."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest
from recon_support import DAY, T0
from scale_support import backlog, open_centre

from sync.centre import reconcile
from sync.centre.store import Store

def test_workers_reconcile_in_parallel_one_person_on_one_worker(pg_url, monkeypatch):
    setup = open_centre(pg_url)
    total = backlog(setup, devices=6, per_device=40)
    workers = [Store.open(pg_url, migrate=False) for _ in range(3)]
    active: dict[object, int] = {}
    overlaps: list[object] = []
    by_worker: dict[int, int] = {}
    guard = threading.Lock()

    def probe(event, key):
        with guard:
            if event == "enter":
                if active.get(key):
                    overlaps.append(key)
                active[key] = active.get(key, 0) + 1
            else:
                active[key] -= 1
        if event == "enter":
            time.sleep(0.002)  # widen the window a second worker would have to step into

    monkeypatch.setattr(reconcile, "PROBE", probe)
    monkeypatch.setattr(reconcile, "BUCKETS_PER_BATCH", 2)
    errors: list[BaseException] = []

    def work(i, store):
        try:
            while True:
                c = reconcile.run_pending(store, now=T0 + DAY, batch=25, max_batches=1, recheck=False)
                with guard:
                    by_worker[i] = by_worker.get(i, 0) + sum(c[o] for o in ("confirmed", "adjusted", "review",
                                                                          "rejected"))
                if not c["more"] and store.recon.queue_length() == 0:
                    return
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i, s)) for i, s in enumerate(workers)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors
        assert overlaps == []                                     # never one person on two workers
        outs = setup.db.query("SELECT device, seq FROM recon_outcomes")
        assert len(outs) == total == len({(o["device"], o["seq"]) for o in outs})   # each exactly once
        assert sum(by_worker.values()) == total
        assert sum(1 for n in by_worker.values() if n > 0) >= 2   # the work was shared
    finally:
        for s in (setup, *workers):
            s.close()


@pytest.mark.parametrize("poison", [OverflowError("int too large to convert"), ValueError("bad body"),
                                    "credit beyond int64"])
def test_a_poisoned_entry_is_quarantined_and_the_rest_proceed(db_url, monkeypatch, poison):
    """The replay raising, or an outcome the database refuses (PostgreSQL: numeric value out of range)."""
    store = open_centre(db_url)
    try:
        total = backlog(store, devices=3, per_device=10)
        real = reconcile.rp.replay_person

        def replay(ledger, events, world, *, done=frozenset()):
            events = list(events)
            hit = any(e.body.get("req") == "1-4" for e in events)
            if hit and isinstance(poison, Exception):
                raise poison
            after, outs = real(ledger, events, world, done=done)
            if hit:
                outs = [dataclasses.replace(o, credit=2**70) if o.seq == 5 and o.device == "D-S1-1" else o
                        for o in outs]
            return after, outs

        monkeypatch.setattr(reconcile.rp, "replay_person", replay)
        counts = reconcile.run_pending(store, now=T0 + DAY)
        assert sum(counts[o] for o in reconcile.rp.OUTCOMES) == total
        bad = store.recon.outcome("D-S1-1", 5)
        assert bad["outcome"] == "review" and reconcile.QUARANTINE_CODE in bad["codes"]
        assert "隔离" in bad["reason"]
        reviews = store.db.query("SELECT code FROM recon_reviews WHERE device = 'D-S1-1' AND seq = 5")
        assert [r["code"] for r in reviews] == [reconcile.QUARANTINE_CODE]
        others = store.db.query("SELECT outcome FROM recon_outcomes WHERE NOT (device = 'D-S1-1' AND seq = 5)")
        assert len(others) == total - 1 and all(r["outcome"] != "review" for r in others)
        assert store.recon.queue_length() == 0
    finally:
        store.close()


def test_a_failing_database_stops_the_batch_instead_of_quarantining(db_url, monkeypatch):
    """A systemic error (here: a column missing) is the centre's, not the entries': nothing is
    quarantined, the queue keeps the entries, and the next pass after the repair decides them."""
    from sync.errors import StoreError

    store = open_centre(db_url)
    try:
        total = backlog(store, devices=2, per_device=5)
        real = type(store.recon).add_outcomes

        def broken(self, rows):
            raise StoreError("column does not exist") from KeyError("ytd_year")

        monkeypatch.setattr(type(store.recon), "add_outcomes", broken)
        with pytest.raises(StoreError):
            reconcile.run_pending(store, now=T0 + DAY)
        assert store.db.scalar("SELECT count(*) FROM recon_outcomes") == 0
        assert store.recon.queue_length() == total
        monkeypatch.setattr(type(store.recon), "add_outcomes", real)
        counts = reconcile.run_pending(store, now=T0 + DAY)
        assert sum(counts[o] for o in reconcile.rp.OUTCOMES) == total and counts["review"] == 0
    finally:
        store.close()
