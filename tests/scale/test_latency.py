"""A feed poll stays fast while the centre drains a backlog: the reconciler runs on a connection of
its own and the poll path takes no lock a reconciliation batch holds (it was 5.4 s instead of 68 ms
when both shared one connection)."""

from __future__ import annotations

import statistics

import httpx
import trio
from scale_support import backlog, open_centre

from edge.uplink import CentreClient
from sync import protocol
from sync.centre import reconcile
from sync.centre.server import start_centre


async def poll_times(client: CentreClient, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = trio.current_time()
        reply = await client.call("/v1/feed", protocol.FeedRequest(0).to_msg())
        out.append(trio.current_time() - t)
        assert reply is not None
    return out


async def test_feed_poll_latency_stays_bounded_while_a_drain_runs(pg_url, nursery, monkeypatch):
    store = await trio.to_thread.run_sync(open_centre, pg_url)
    await trio.to_thread.run_sync(lambda: backlog(store, devices=8, per_device=250))
    dev = store.device("D-S0-1")
    assert dev is not None
    from nacl.signing import SigningKey
    key = SigningKey.generate()
    await trio.to_thread.run_sync(lambda: store.register_device("D-POLL-1", "SP", bytes(key.verify_key)))
    monkeypatch.setattr(reconcile, "BACKGROUND_BATCH", 1000)   # long batch transactions: the worst case
    monkeypatch.setattr(reconcile, "BUCKETS_PER_BATCH", 256)
    async with httpx.AsyncClient() as http:
        quiet = await start_centre(nursery, store)             # no background: the baseline
        client = CentreClient(quiet.url, "D-POLL-1", key, client=http)
        await poll_times(client, 3)
        base = statistics.median(await poll_times(client, 10))
        quiet.stop()

        busy = await start_centre(nursery, store, background=True)
        client = CentreClient(busy.url, "D-POLL-1", key, client=http)
        await trio.sleep(0.3)                                   # the first batch is under way
        during = await poll_times(client, 10)
        left = await trio.to_thread.run_sync(store.recon.queue_length)
        assert left > 0                                         # the polls ran while the drain did
        assert max(during) < max(1.0, 20 * base), (base, during)
        with trio.fail_after(120):
            while await trio.to_thread.run_sync(store.recon.queue_length):
                await trio.sleep(0.2)
        busy.stop()
    store.close()
