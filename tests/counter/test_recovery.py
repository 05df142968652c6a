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
