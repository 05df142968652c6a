"""The daemon's way of using the store: one JournalStore, many trio tasks, each append through
trio.to_thread.run_sync; plus the durability settings the store promises."""

from __future__ import annotations

import trio

import journal_bodies as bodies
from edge.journal import DuplicateRequest, verify_entries


async def test_trio_tasks_append_through_worker_threads(store):
    results = []
    send, receive = trio.open_memory_channel(8)

    async def clerk(n, send):
        async with send:
            for i in range(15):
                entry = await trio.to_thread.run_sync(store.append, "settlement", bodies.settlement(f"T{n}-{i}"))
                await send.send(entry.seq)

    async with trio.open_nursery() as nursery:
        async with send:
            for n in range(4):
                nursery.start_soon(clerk, n, send.clone())
        async with receive:
            async for seq in receive:
                results.append(seq)
    assert sorted(results) == list(range(1, 61))
    report = await trio.to_thread.run_sync(lambda: verify_entries(store.raw_entries(), store.verify_key))
    assert report.ok and report.count == 60


async def test_double_submit_from_two_tasks_journals_once(store):
    outcomes = []

    async def submit():
        try:
            entry = await trio.to_thread.run_sync(store.append, "settlement", bodies.settlement("POS-double"))
            outcomes.append(("new", entry.seq))
        except DuplicateRequest as exc:
            outcomes.append(("dup", exc.entry.seq))

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(submit)
    assert sorted(o[0] for o in outcomes) == ["dup"] * 4 + ["new"]
    assert {o[1] for o in outcomes} == {1}
    assert store.count() == 1


def test_durability_settings(store):
    assert store._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL: fsync at every commit
