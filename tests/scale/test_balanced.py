"""Three centre workers on one PostgreSQL behind a non-sticky balancer (harness/balancer.py): every
request goes to a random worker, ingest transactions on one worker commit late (after higher ids
committed on the others) and reconciliation batches commit in random order. Every entry is stored
and reconciled exactly once, and every downlink message reaches its counter exactly once."""

from __future__ import annotations

import random
import time
import types

import httpx
import trio
from recon_support import KEY, T0, PlayedEdge, person, settlement_body, visit
from scale_support import open_centre

from harness.balancer import Balancer
from sync.centre.server import start_centre
from sync.centre.store import Store
from sync.centre.store.recon import Recon

EDGES, PER_EDGE = 4, 24


async def test_three_workers_behind_a_balancer_reconcile_and_deliver_exactly_once(pg_url, nursery, tmp_path,
                                                                                  monkeypatch):
    first = await trio.to_thread.run_sync(open_centre, pg_url)
    stores = [first] + [Store.open(pg_url, migrate=False) for _ in range(2)]

    # Worker 0 holds each ingest transaction open a while after its inserts: its (lower) ids commit
    # after the higher ids of the other workers' concurrent uploads.
    slow_put = first.put_checked

    def late_commit(device, checked, *, now=None):
        with first.transaction():
            out = slow_put(device, checked, now=now)
            time.sleep(0.15)
        return out

    first.put_checked = late_commit  # type: ignore[method-assign]
    # Reconciliation batches (with their outcome messages) commit in random order across workers.
    dequeue, rng = Recon.dequeue, random.Random(7)

    def shuffled_commit(self, ids):
        time.sleep(rng.random() * 0.1)
        return dequeue(self, ids)

    monkeypatch.setattr(Recon, "dequeue", shuffled_commit)

    workers = [await start_centre(nursery, s, KEY, background=True) for s in stores]
    lb = Balancer([("127.0.0.1", int(w.url.rsplit(":", 1)[1])) for w in workers])
    await nursery.start(lb.run)
    front = types.SimpleNamespace(url=f"http://127.0.0.1:{lb.port}", store=first)
    limits = httpx.Limits(max_keepalive_connections=0)      # one connection per request: non-sticky
    async with httpx.AsyncClient(limits=limits, timeout=30) as http:
        edges = [await PlayedEdge.enrol(front, http, tmp_path, f"S{i}") for i in range(EDGES)]
        for k, e in enumerate(edges):
            for i in range(PER_EDGE):
                psn = f"P{(k * 5 + i) % 40 + 1:04d}"
                snap = person(psn, deductible_used=0) if i % 3 == 0 else person(psn)   # 1 in 3 adjusted
                await e.journal_entry("settlement", settlement_body(snap, visit(0), req=f"{k}-{i}"),
                                      time=T0 + i * 60_000 + k)

        def state():
            return (first.db.query("SELECT device, seq, outcome, kind FROM recon_outcomes"),
                    first.db.scalar("SELECT count(*) FROM entries"))

        with trio.fail_after(180):
            while True:
                async with trio.open_nursery() as n:
                    for e in edges:
                        n.start_soon(e.sync)
                outs, stored = await trio.to_thread.run_sync(state)
                expect = {e.device: sorted(o["seq"] for o in outs if o["device"] == e.device
                                           and o["kind"] == "settlement" and o["outcome"] != "confirmed")
                          for e in edges}
                got = {e.device: sorted(m["ref_seq"] for m in e.messages("outcome")) for e in edges}
                if len(outs) == EDGES * PER_EDGE and got == expect:
                    break
                await trio.sleep(0.5)
    assert stored == EDGES * PER_EDGE
    assert len({(o["device"], o["seq"]) for o in outs}) == len(outs) == stored      # each decided once
    assert sum(len(v) for v in expect.values()) >= EDGES * PER_EDGE // 4           # messages were sent
    for e in edges:                                                                 # each delivered once
        assert len(set(got[e.device])) == len(got[e.device])
    assert all(c > 0 for c in lb.counts)                                            # every worker served
    for w in workers:
        w.stop()
    for s in stores:
        s.close()
