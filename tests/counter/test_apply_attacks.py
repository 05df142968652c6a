"""A bundle arriving mid-visit: the counter API keeps answering, and keeps the money right, while a large
bundle apply holds the cache's writer transaction open.

The apply runs in a plain thread (as the uplink's worker would) and is held open by a hook inside its
transaction (after its rows are written, before COMMIT) until the test lets it go: the requests are
asserted to finish while it is still held (events, not timings; ``fail_after`` only turns a hang into
a failure).
"""

from __future__ import annotations

import threading

import pytest
import trio

from counter.conftest import insert_card
from counter.helpers import ATORVASTATIN, CARD_ID, PERSONS, big_catalogue, catalogue_items
from edge.cache import Cache

VISIT = {"med_type": "11", "acct_used_flag": True, "pin": "123456",
         "items": [{"med_list_codg": ATORVASTATIN, "cnt": "3", "pric": 2345}]}
HANG = 60   # seconds: only turns a request stuck behind the apply into a failure instead of a hang


class HeldApply:
    """Apply ``raw`` in a thread; its transaction stays open (rows written, not committed) until release()."""

    def __init__(self, monkeypatch, cache, raw: bytes, verify_key, method: str) -> None:
        self.held, self.released = threading.Event(), threading.Event()
        self.error: BaseException | None = None
        self.result: dict | None = None
        original = getattr(Cache, method)

        def hooked(cache_self, c, payload, delta):
            original(cache_self, c, payload, delta)
            self.held.set()
            assert self.released.wait(HANG), "the test never released the apply"

        monkeypatch.setattr(Cache, method, hooked)

        def run():
            try:
                self.result = cache.apply_bundle(raw, verify_key, now_ms=2)
            except BaseException as exc:   # reported by join()
                self.error = exc
                self.held.set()

        self.thread = threading.Thread(target=run, name="bundle apply", daemon=True)

    async def __aenter__(self) -> "HeldApply":
        self.thread.start()
        await trio.to_thread.run_sync(self.held.wait, HANG)
        assert self.error is None, self.error
        assert self.held.is_set() and self.thread.is_alive(), "the apply is not holding its transaction"
        return self

    async def __aexit__(self, *exc) -> None:
        self.released.set()
        await trio.to_thread.run_sync(self.thread.join, HANG)
        assert not self.thread.is_alive()
        if exc[0] is None:
            assert self.error is None, self.error

    def still_held(self) -> bool:
        return self.thread.is_alive() and not self.released.is_set()


def _money_ok(s: dict) -> None:
    assert all(isinstance(s[k], int) for k in ("medfee_sumamt", "hifp_pay", "acct_pay", "psn_cash_pay"))
    assert s["medfee_sumamt"] == s["hifp_pay"] + s["acct_pay"] + s["psn_cash_pay"]


async def test_api_answers_while_a_large_catalogue_apply_holds_its_transaction(api, cards, cache, centre, journal,
                                                                              monkeypatch):
    insert_card(cards)
    raw = centre.bundle("catalogue", {"items": catalogue_items() + big_catalogue(20_000)})
    answered = []
    async with HeldApply(monkeypatch, cache, raw, centre.verify_key, "_apply_catalogue") as apply:
        with trio.fail_after(HANG):
            r = await api.get("/api/status")
            assert r.status_code == 200 and apply.still_held()
            assert r.json()["cache"]["bundles"]["catalogue"]["version"] == 1   # the committed state
            r = await api.get("/api/items", params={"q": "amxl"})
            assert r.status_code == 200 and r.json()["items"] and apply.still_held()
            r = await api.get("/api/card")
            assert r.json()["present"] is True and r.json()["person"]["psn_no"] == "P0001" and apply.still_held()
            r = await api.post("/api/presettle", json=VISIT)
            assert r.status_code == 200, r.text
            _money_ok(r.json()["setlinfo"])
            assert journal.count() == 0 and apply.still_held()
            r = await api.post("/api/settle", json={"req": "MID-1", **VISIT})
            assert r.status_code == 200, r.text
            _money_ok(r.json()["setlinfo"])
            answered.append((r.json()["seq"], r.json()["setlinfo"]))
            assert apply.still_held(), "settle answered only after the apply committed"
            r = await api.get("/api/items", params={"q": "amxl"})   # not this card's: no wait
            assert r.status_code == 200 and apply.still_held()
    assert apply.result == {"kind": "catalogue", "version": 2, "base": None}
    assert journal.count() == len(answered) == 1
    for seq, s in answered:
        body = journal.get(seq).body
        assert journal.get(seq).kind == "settlement" and body["mode"] == "offline"
        assert {k: body["amounts"][k] for k in s if k in body["amounts"]} == {k: s[k] for k in s
                                                                             if k in body["amounts"]}
        _money_ok(body["amounts"])
    # after the commit the new catalogue is what the counter reads
    assert (await api.get("/api/status")).json()["cache"]["bundles"]["catalogue"]["version"] == 2


async def test_settle_during_a_held_persons_apply_charges_the_committed_balance(api, cards, cache, centre, journal,
                                                                               monkeypatch):
    insert_card(cards)
    raw = centre.bundle("persons", {"upsert": [{**PERSONS[0], "balc": 7}]}, base=1)
    async with HeldApply(monkeypatch, cache, raw, centre.verify_key, "_apply_persons") as apply:
        with trio.fail_after(HANG):
            r = await api.post("/api/settle", json={"req": "HELD-P", **VISIT})
            assert r.status_code == 200, r.text and apply.still_held()
    s = r.json()["setlinfo"]
    _money_ok(s)
    body = journal.get(r.json()["seq"]).body
    # the uncommitted balance (7) is never seen: the visit is decided on, and records, the committed 50000
    assert body["person"]["balc"] == 50000 and s["acct_pay"] > 7 and body["amounts"]["acct_pay"] == s["acct_pay"]


async def test_a_balance_change_between_presettle_and_settle(api, cards, cache, centre, journal):
    """Presettle shows the split on the old balance; a persons bundle lowers it to 7 fen; settle charges
    the account at most 7 fen (the rest in cash) and journals the balance it settled against."""
    insert_card(cards)
    pre = (await api.post("/api/presettle", json=VISIT)).json()["setlinfo"]
    assert pre["acct_pay"] > 7
    await trio.to_thread.run_sync(lambda: cache.apply_bundle(
        centre.bundle("persons", {"upsert": [{**PERSONS[0], "balc": 7}]}, base=1), centre.verify_key, now_ms=2))
    r = await api.post("/api/settle", json={"req": "CHG-1", **VISIT})
    assert r.status_code == 200, r.text
    s = r.json()["setlinfo"]
    _money_ok(s)
    assert s["medfee_sumamt"] == pre["medfee_sumamt"] and s["acct_pay"] == 7
    assert s["psn_cash_pay"] == pre["psn_cash_pay"] + pre["acct_pay"] - 7
    body = journal.get(r.json()["seq"]).body
    assert body["person"]["balc"] == 7 and body["amounts"]["acct_pay"] == 7
    assert (await api.get("/api/card")).json()["person"]["balc"] == 0


async def test_the_same_card_after_a_settle_answers_while_the_apply_is_held(api, counter, cards, cache, centre,
                                                                            monkeypatch):
    """The first visit's effects wait for the cache writer the apply holds; the card's next read and visit
    fold them in from the pending entries instead of waiting, and count them exactly once."""
    insert_card(cards)
    before = (await api.get("/api/card")).json()["person"]["balc"]
    raw = centre.bundle("catalogue", {"items": catalogue_items() + big_catalogue(2_000)})
    async with HeldApply(monkeypatch, cache, raw, centre.verify_key, "_apply_catalogue") as apply:
        r = await api.post("/api/settle", json={"req": "SAME-1", **VISIT})
        assert r.status_code == 200 and apply.still_held()
        first = r.json()["setlinfo"]
        _money_ok(first)
        # A guard, not a timing claim: an answer behind the apply would take until release (HANG).
        with trio.fail_after(3):
            r = await api.get("/api/card")
            assert r.status_code == 200 and apply.still_held()
            assert r.json()["person"]["balc"] == before - first["acct_pay"]
            r = await api.post("/api/presettle", json=VISIT)
            assert r.status_code == 200 and apply.still_held()
            r = await api.post("/api/settle", json={"req": "SAME-2", **VISIT})
            assert r.status_code == 200 and apply.still_held()
            second = r.json()["setlinfo"]
            _money_ok(second)
            assert second["acct_pay"] <= before - first["acct_pay"]
            held_use = cache.offline_use(CARD_ID, PERSONS[0]["certno"])
    after = (await api.get("/api/card")).json()["person"]["balc"]
    assert after == before - first["acct_pay"] - second["acct_pay"]
    # Once applied, the counters hold both visits once (the pending fold counted none twice). The effects
    # go to the cache from a background drainer once the apply lets go of the writer: wait for it.
    await counter.effects_applied()
    use = cache.offline_use(CARD_ID, PERSONS[0]["certno"])
    assert use == (held_use[0] + 2, held_use[1] + first["acct_pay"] + second["acct_pay"])


@pytest.mark.parametrize("unused", [None])
def test_card_id_fixture_matches_the_person(unused):
    # The tests above rely on the inserted card naming P0001 (else the person lookups prove nothing).
    assert CARD_ID in PERSONS[0]["card_ids"]


async def test_an_illegal_event_from_the_driver_journals_nothing_and_tells_the_clerk_in_chinese(api, cards, journal,
                                                                                                monkeypatch):
    """The driver reports the card pulled where the core waits for the engine's result (after the engine
    ran, before journaling): the core refuses the event, nothing is journaled, the clerk reads Chinese."""
    from edge.counter import service

    insert_card(cards)
    monkeypatch.setattr(service.core, "Settled", lambda result: service.core.CardPulled("card_removed"))
    r = await api.post("/api/settle", json={"req": "ILLEGAL-1", **VISIT})
    err = r.json()["error"]
    assert r.status_code == 500 and err["code"] == "visit_order", r.text
    assert err["zh"] and all(not ("a" <= ch.lower() <= "z") for ch in err["zh"]), err["zh"]
    assert journal.count() == 0
