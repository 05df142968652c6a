"""Nothing acknowledged is lost: the cache's local state is rebuilt from the journal after a crash
between the durable append and the cache update (what the daemon does at start-up)."""

from __future__ import annotations

from counter.conftest import insert_card
from counter.helpers import ATORVASTATIN, CARD_ID
from edge.cache import Cache

VISIT = {"med_type": "11", "acct_used_flag": True, "pin": "123456",
         "items": [{"med_list_codg": ATORVASTATIN, "cnt": "3", "pric": 2345}]}


async def test_counters_and_balance_are_rebuilt_from_the_journal(counter, cards, journal, centre, tmp_path):
    insert_card(cards)
    r1 = await counter.settle({**VISIT, "req": "R-1"})
    r2 = await counter.settle({**VISIT, "req": "R-2"})
    used = r1["setlinfo"]["acct_pay"] + r2["setlinfo"]["acct_pay"]
    await counter.effects_applied()     # local effects follow the answer (the journal is the truth)
    assert counter.cache.offline_use(CARD_ID) == (2, used)
    # A cache that lost its last commits (power cut) or was rebuilt: same bundles, no local effects yet.
    fresh = Cache.open(tmp_path / "rebuilt.db")
    for raw in centre.sample():
        fresh.apply_bundle(raw, centre.verify_key, now_ms=1)
    fresh.mark_counters_dirty()
    assert fresh.offline_use(CARD_ID) is None               # unknown -> offline fails closed meanwhile
    assert fresh.catch_up(journal.entries(fresh.applied_seq() + 1)) == 2
    assert fresh.offline_use(CARD_ID) == (2, used)
    assert fresh.person("P0001").state.balc == 50000 - used
    assert fresh.catch_up(journal.entries(fresh.applied_seq() + 1)) == 0
    fresh.close()


async def test_a_held_cache_writer_holds_no_visit(counter, cards, cache):
    """A bundle apply holds the cache's writer for seconds: a visit still answers at once (its local
    effects follow when the writer is free), and the same card's next visit does not wait for them
    either: its offline counters fold in the first visit from the pending entries."""
    import threading

    import trio

    insert_card(cards)
    release, held = threading.Event(), threading.Event()

    def hold_writer():
        with cache._tx():          # what apply_bundle holds for its whole transaction
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold_writer)
    holder.start()
    try:
        await trio.to_thread.run_sync(held.wait)
        with trio.fail_after(5):
            r1 = await counter.settle({**VISIT, "req": "HELD-1"})
        assert r1["seq"] >= 1 and r1["mode"] == "offline"
        assert cache.offline_use(CARD_ID) == (0, 0)        # effects not applied yet: the writer is held
        pending = counter.pending_entries()
        assert cache.offline_use(CARD_ID, None, pending) == (1, r1["setlinfo"]["acct_pay"])
        with trio.fail_after(5):
            r2 = await counter.settle({**VISIT, "req": "HELD-2"})   # same card: the first visit counted
        assert not release.is_set() and r2["mode"] == "offline"
        assert cache.offline_use(CARD_ID, None, counter.pending_entries()) == (
            2, r1["setlinfo"]["acct_pay"] + r2["setlinfo"]["acct_pay"])
    finally:
        release.set()
        await trio.to_thread.run_sync(holder.join)
    await counter.effects_applied()
    assert cache.offline_use(CARD_ID) == (2, r1["setlinfo"]["acct_pay"] + r2["setlinfo"]["acct_pay"])
