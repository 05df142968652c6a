"""End to end over loopback: many devices, the real uplink, the real centre; and a faulty network."""

from __future__ import annotations

import random

import httpx
import pytest
import trio

from edge.enrol import enroll
from edge.journal.keys import load_device_key
from edge.journal.store import JournalStore
from edge.uplink import CentreClient, Uplink
from sync import protocol
from sync.centre.server import start_centre
from harness.faultproxy import FaultProxy
from harness.simulate import pharmacy_sale



async def make_edges(centre_url, store, http, tmp_path, n, entries):
    edges = []
    fills = []
    for d in range(n):
        site = f"S3303000{d // 4:02d}"
        token = await trio.to_thread.run_sync(store.create_enrol_token, site)
        state = tmp_path / f"edge{d}"
        cfg = await enroll(centre_url, token, state, client=http)
        key = load_device_key(state / "device.key")
        journal = JournalStore.open(state / "journal.db", signing_key=key, device=cfg.device)

        def fill(journal=journal):
            for i in range(1, entries + 1):
                journal.append("settlement", pharmacy_sale(i, device=journal.device), time_ms=1_764_000_000_000 + i,
                               mono_ns=i)
        fills.append(fill)
        edges.append((cfg, journal, state))
    # each journal is its own SQLite file: fill them side by side (each append is an fsync)
    limiter = trio.CapacityLimiter(8)
    async with trio.open_nursery() as nursery:
        for fill in fills:
            nursery.start_soon(lambda f=fill: trio.to_thread.run_sync(f, limiter=limiter))
    return edges


async def drain(edges, url, http, wait_s=30.0, **uplink_options):
    """Run every device's uplink until its outbox is empty."""
    uplinks = []
    async with trio.open_nursery() as nursery:
        for cfg, journal, state in edges:
            client = CentreClient(url, cfg.device, load_device_key(state / "device.key"), client=http, wait_s=wait_s)
            up = Uplink(journal, client, state_dir=state, **uplink_options)
            uplinks.append(up)
            await nursery.start(up.run)
        # A guard against hanging CI, far above any normal run (not a timing assertion).
        with trio.fail_after(300):
            while any(j.backlog().count for _, j, _ in edges):
                await trio.sleep(0.05)
        nursery.cancel_scope.cancel()
    return uplinks


def assert_exactly_once(store, edges, entries):
    for cfg, journal, _ in edges:
        rows = store.db.query("SELECT seq, hash FROM entries WHERE device = ? ORDER BY seq", (cfg.device,))
        assert [r["seq"] for r in rows] == list(range(1, entries + 1)), cfg.device
        assert [bytes(r["hash"]) for r in rows] == [e.hash for e in journal.entries()]
        assert store.high_water(cfg.device) == entries
        assert journal.backlog().count == 0 and journal.acked_seq == entries and not journal.quarantined()
    assert store.rejections() == []


@pytest.mark.slow
async def test_20_devices_500_entries_arrive_exactly_once(centre_any, http, tmp_path):
    centre = centre_any
    edges = await make_edges(centre.url, centre.store, http, tmp_path, 20, 500)
    try:
        ups = await drain(edges, centre.url, http, idle_s=0.2)
        assert_exactly_once(centre.store, edges, 500)
        assert centre.store.entry_count() == 10_000
        assert sum(u.status.accepted for u in ups) == 10_000
    finally:
        for _, j, _ in edges:
            j.close()


@pytest.mark.slow
async def test_fault_proxy_every_entry_exactly_once(nursery, sqlite_store, tmp_path):
    centre = await start_centre(nursery, sqlite_store)
    host, port = centre.url.removeprefix("http://").rsplit(":", 1)
    proxy = await nursery.start(FaultProxy((host, int(port)), fault_rate=0.3, delay_s=1.0, seed=7).run)
    proxied = f"http://127.0.0.1:{proxy.port}"
    # a fresh connection per request, so every request meets the proxy's dice
    async with httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0)) as http:
        edges = await make_edges(centre.url, sqlite_store, http, tmp_path, 5, 120)
        try:
            ups = await drain(edges, proxied, http, batch_entries=20, idle_s=0.05, wait_s=0.5, request_s=5,
                              backoff=protocol.Backoff(base=0.02, cap=0.2, rng=random.Random(3)))
            assert_exactly_once(sqlite_store, edges, 120)
        finally:
            for _, j, _ in edges:
                j.close()
    faults = sum(v for k, v in proxy.counts.items() if k != "pass")
    assert faults >= 5 and all(proxy.counts[m] > 0 for m in FaultProxy.MODES), proxy.counts
    # The proxy's dice are seeded: the first ~100 connections always include every fault kind.
    # (Re-sends after a lost answer show up as duplicates; how many depends on timing, so only the
    # outcome is asserted: every entry exactly once, every outbox empty.)
    print("proxy:", proxy.counts, "duplicates:", sum(u.status.duplicates for u in ups))
