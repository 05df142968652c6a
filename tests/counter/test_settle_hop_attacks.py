"""Attacks on the settle hop (the journal lookup of a req in the same worker-thread hop as the visit's
preparation, the catalogue read once per visit, the effects wait only for the drainer's first entry) and
on when a journaled entry wakes the uplink. Events, not timings: ``fail_after`` only turns a hang into a
failure, and the refresher runs on trio's mock clock."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import trio
import trio.testing

from counter.conftest import insert_card
from counter.helpers import ATORVASTATIN, CARD_ID, PERSONS, big_catalogue, catalogue_items
from counter.test_apply_attacks import HANG, VISIT, HeldApply, _money_ok
from edge.counter.online import Connectivity
from edge.daemon import refresher
from edge.journal import JournalBusy, JournalError

OTHER = [{"med_list_codg": ATORVASTATIN, "cnt": "4", "pric": 2345}]


async def _twice(api, first: dict, second: dict) -> list:
    """POST two settles at once (one nursery); the responses in the order given."""
    out: list = [None, None]

    async def post(i, body):
        out[i] = await api.post("/api/settle", json=body)

    with trio.fail_after(HANG):
        async with trio.open_nursery() as n:
            n.start_soon(post, 0, first)
            n.start_soon(post, 1, second)
    return out


async def test_the_same_req_twice_at_once_charges_once(api, counter, cards, cache, journal):
    insert_card(cards)
    before = (await api.get("/api/card")).json()["person"]["balc"]
    a, b = await _twice(api, {"req": "TWICE-1", **VISIT}, {"req": "TWICE-1", **VISIT})
    assert a.status_code == b.status_code == 200, (a.text, b.text)
    assert a.json()["seq"] == b.json()["seq"] and a.json()["setlinfo"] == b.json()["setlinfo"]
    assert journal.count() == 1
    await counter.effects_applied()
    after = (await api.get("/api/card")).json()["person"]["balc"]
    assert after == before - a.json()["setlinfo"]["acct_pay"]


async def test_the_same_req_twice_at_once_during_a_held_apply_charges_once(api, counter, cards, cache, centre,
                                                                           journal, monkeypatch):
    insert_card(cards)
    before = (await api.get("/api/card")).json()["person"]["balc"]
    use0 = cache.offline_use(CARD_ID, PERSONS[0]["certno"])
    raw = centre.bundle("catalogue", {"items": catalogue_items() + big_catalogue(2_000)})
    async with HeldApply(monkeypatch, cache, raw, centre.verify_key, "_apply_catalogue") as apply:
        a, b = await _twice(api, {"req": "HELD-TWICE", **VISIT}, {"req": "HELD-TWICE", **VISIT})
        assert a.status_code == b.status_code == 200, (a.text, b.text)
        assert apply.still_held()
        assert a.json()["seq"] == b.json()["seq"] and a.json()["setlinfo"] == b.json()["setlinfo"]
        # a third, sequential repeat while the effects are still pending: the same receipt again
        c = await api.post("/api/settle", json={"req": "HELD-TWICE", **VISIT})
        assert c.status_code == 200 and c.json()["seq"] == a.json()["seq"] and apply.still_held()
        assert (await api.get("/api/card")).json()["person"]["balc"] == before - a.json()["setlinfo"]["acct_pay"]
    assert journal.count() == 1
    await counter.effects_applied()
    assert (await api.get("/api/card")).json()["person"]["balc"] == before - a.json()["setlinfo"]["acct_pay"]
    assert cache.offline_use(CARD_ID, PERSONS[0]["certno"]) == (use0[0] + 1, use0[1] + a.json()["setlinfo"]["acct_pay"])


@pytest.mark.parametrize("held", [False, True])
async def test_the_same_req_at_once_with_other_items_is_a_conflict_not_a_second_charge(api, counter, cards, cache,
                                                                                       centre, journal, monkeypatch,
                                                                                       held):
    insert_card(cards)
    other = {**VISIT, "items": OTHER}
    if held:
        raw = centre.bundle("catalogue", {"items": catalogue_items() + big_catalogue(2_000)})
        async with HeldApply(monkeypatch, cache, raw, centre.verify_key, "_apply_catalogue"):
            a, b = await _twice(api, {"req": "MIX-1", **VISIT}, {"req": "MIX-1", **other})
    else:
        a, b = await _twice(api, {"req": "MIX-1", **VISIT}, {"req": "MIX-1", **other})
    codes = sorted([a.status_code, b.status_code])
    assert codes[0] == 200 and codes[1] == 409, (a.text, b.text)
    assert journal.count() == 1


async def test_the_same_req_with_another_card_answers_the_first_receipt_or_a_conflict(api, cards, journal):
    insert_card(cards)
    first = await api.post("/api/settle", json={"req": "CARD-1", **VISIT})
    assert first.status_code == 200, first.text
    cards.remove() if hasattr(cards, "remove") else None
    insert_card(cards, card_id="C-OTHER-0002", certno="330302199001010099", name="李四")
    again = await api.post("/api/settle", json={"req": "CARD-1", **VISIT})
    # never a second charge: the journal keeps one entry, whatever card is in the reader now
    assert again.status_code == 200, again.text
    assert again.json()["seq"] == first.json()["seq"] and again.json()["setlinfo"] == first.json()["setlinfo"]
    assert journal.count() == 1


async def test_a_settle_then_a_claim_with_the_same_req_does_not_journal_twice(api, cards, journal):
    insert_card(cards)
    s = await api.post("/api/settle", json={"req": "SC-1", **VISIT})
    assert s.status_code == 200, s.text
    c = await api.post("/api/claim", json={"req": "SC-1", **VISIT})
    assert c.status_code == 200, c.text
    assert c.json()["seq"] == s.json()["seq"] and c.json()["kind"] == "settlement"
    assert journal.count() == 1


async def test_a_journal_read_error_in_the_merged_hop_journals_nothing_and_stops_with_its_reason(api, counter,
                                                                                                 cards, journal,
                                                                                                 monkeypatch):
    insert_card(cards)
    calls = []

    def broken(req):
        calls.append(req)
        raise JournalError("disk I/O error reading the journal", hint="Restart the agent.")

    monkeypatch.setattr(journal, "find_by_req", broken)
    for path in ("/api/settle", "/api/claim"):
        r = await api.post(path, json={"req": "RD-1", **VISIT})
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "journal_error"
    # the first read failed with a fault that is not retryable: settling stopped, the second never looked
    assert calls == ["RD-1"] and journal.count() == 0
    assert counter.journal_fault is not None and counter.journal_fault["code"] == "journal_error"
    assert (await api.get("/api/card")).json()["person"]["balc"] == PERSONS[0]["balc"]   # nothing charged


async def test_a_busy_journal_in_the_merged_hop_then_the_same_req_settles_once(api, counter, cards, journal,
                                                                              monkeypatch):
    insert_card(cards)
    real = journal.find_by_req
    busy = [True]

    def sometimes(req):
        if busy[0]:
            raise JournalBusy("another program holds the journal locked")
        return real(req)

    monkeypatch.setattr(journal, "find_by_req", sometimes)
    r = await api.post("/api/settle", json={"req": "BUSY-1", **VISIT})
    assert r.status_code == 503 and r.json()["error"]["code"] == "journal_busy", r.text
    assert journal.count() == 0
    busy[0] = False
    a = await api.post("/api/settle", json={"req": "BUSY-1", **VISIT})
    b = await api.post("/api/settle", json={"req": "BUSY-1", **VISIT})
    assert a.status_code == b.status_code == 200, (a.text, b.text)
    assert a.json()["seq"] == b.json()["seq"] and journal.count() == 1


async def test_an_item_removed_by_a_bundle_between_presettle_and_settle(api, cards, cache, centre, journal):
    insert_card(cards)
    pre = await api.post("/api/presettle", json=VISIT)
    assert pre.status_code == 200, pre.text
    items = [it for it in catalogue_items() if it.get("med_list_codg", it.get("code")) != ATORVASTATIN]
    assert len(items) < len(catalogue_items())
    await trio.to_thread.run_sync(lambda: cache.apply_bundle(
        centre.bundle("catalogue", {"items": items}), centre.verify_key, now_ms=2))
    r = await api.post("/api/settle", json={"req": "GONE-1", **VISIT})
    assert r.status_code == 422 and r.json()["error"]["code"] == "unknown_item", r.text
    assert journal.count() == 0


async def test_an_item_removed_by_a_bundle_after_the_visit_read_its_catalogue(api, counter, cards, cache, centre,
                                                                              journal, monkeypatch):
    """The bundle commits inside the visit's hop, after the items and their catalogue entries were read
    (the engine uses what was read with the items): one consistent answer, never half of one."""
    from edge.counter.service import Counter

    insert_card(cards)
    items = [it for it in catalogue_items() if it.get("med_list_codg", it.get("code")) != ATORVASTATIN]
    raw = centre.bundle("catalogue", {"items": items})
    original = Counter.prepare

    def prepare_then_bundle(self, *a, **kw):
        p = original(self, *a, **kw)
        cache.apply_bundle(raw, centre.verify_key, now_ms=2)
        return p

    monkeypatch.setattr(Counter, "prepare", prepare_then_bundle)
    r = await api.post("/api/settle", json={"req": "GONE-2", **VISIT})
    monkeypatch.setattr(Counter, "prepare", original)
    if r.status_code == 200:
        s = r.json()["setlinfo"]
        _money_ok(s)
        body = journal.get(r.json()["seq"]).body
        assert journal.count() == 1 and {k: body["amounts"][k] for k in s if k in body["amounts"]} == {
            k: s[k] for k in s if k in body["amounts"]}
        again = await api.post("/api/settle", json={"req": "GONE-2", **VISIT})
        assert again.status_code == 200 and again.json()["seq"] == r.json()["seq"], again.text
    else:
        assert 400 <= r.status_code < 500 and journal.count() == 0, r.text


# -- the uplink after the centre returns -------------------------------------------------------------

class _Uplink:
    def __init__(self, failures: int) -> None:
        self.status = SimpleNamespace(failures=failures, last_success_ms=None)
        self.woken = trio.Event()

    def wake(self) -> None:
        self.woken.set()


class _Centre:
    def __init__(self) -> None:
        self.up = False
        self.pinged = trio.Event()

    async def ping(self) -> bool:
        self.pinged.set()
        return self.up


def _counter(centre) -> SimpleNamespace:
    link = Connectivity()
    link.failed(1_000, "the centre does not answer")
    return SimpleNamespace(centre=centre, link=link, clock=SimpleNamespace(wall_ms=lambda: 2_000),
                           settings=SimpleNamespace(online_timeout=1.0))


async def _probe_once(centre) -> None:
    centre.pinged = trio.Event()
    await centre.pinged.wait()
    await trio.testing.wait_all_tasks_blocked()


@pytest.mark.parametrize("visit_first", [False, True])
async def test_the_uplink_is_woken_when_the_centre_answers_again(autojump_clock, visit_first):
    """Found back by the refresher's own probe, or first by a visit the centre then refused (link.ok, and a
    rejected or full-payment visit journals nothing, so on_journaled never runs): either way the entries
    journaled while the centre was away go up now, not at the end of the uplink's backoff."""
    centre, up = _Centre(), _Uplink(failures=3)
    counter = _counter(centre)
    async with trio.open_nursery() as n:
        await n.start(refresher, counter, up, 5.0)
        await _probe_once(centre)
        assert not up.woken.is_set() and not counter.link.online
        centre.up = True
        if visit_first:
            counter.link.ok(3_000)
        with trio.move_on_after(60):     # twelve probes on the mock clock
            await up.woken.wait()
        n.cancel_scope.cancel()
    assert up.woken.is_set(), "entries journaled while the centre was away wait for the uplink's own backoff"


async def test_three_visits_of_a_card_during_a_held_apply_count_each_once(api, counter, cards, cache, centre,
                                                                          monkeypatch):
    """The second and third answers do not wait for their effects (the drainer is held up behind the apply):
    each visit still sees the earlier ones exactly once, before and after the apply lets go."""
    insert_card(cards)
    before = (await api.get("/api/card")).json()["person"]["balc"]
    use0 = cache.offline_use(CARD_ID, PERSONS[0]["certno"])
    paid = []
    raw = centre.bundle("catalogue", {"items": catalogue_items() + big_catalogue(2_000)})
    async with HeldApply(monkeypatch, cache, raw, centre.verify_key, "_apply_catalogue") as apply:
        for i in range(3):
            r = await api.post("/api/settle", json={"req": f"THREE-{i}", **VISIT})
            assert r.status_code == 200 and apply.still_held(), r.text
            s = r.json()["setlinfo"]
            _money_ok(s)
            assert s["acct_pay"] <= before - sum(paid)
            paid.append(s["acct_pay"])
            assert (await api.get("/api/card")).json()["person"]["balc"] == before - sum(paid)
        assert len(counter.pending_entries()) >= 2       # the fold is what is under test
        held = cache.offline_use(CARD_ID, PERSONS[0]["certno"], counter.pending_entries())
        assert held == (use0[0] + 3, use0[1] + sum(paid))
    await counter.effects_applied()
    assert (await api.get("/api/card")).json()["person"]["balc"] == before - sum(paid)
    assert cache.offline_use(CARD_ID, PERSONS[0]["certno"]) == (use0[0] + 3, use0[1] + sum(paid))


@pytest.mark.parametrize("held", [False, True])
async def test_a_settle_and_a_claim_of_the_same_req_at_once_journal_one_entry(api, counter, cards, cache, centre,
                                                                             journal, monkeypatch, held):
    insert_card(cards)
    out: dict = {}

    async def post(path):
        out[path] = await api.post(path, json={"req": "SC-AT-ONCE", **VISIT})

    async def both():
        with trio.fail_after(HANG):
            async with trio.open_nursery() as n:
                n.start_soon(post, "/api/settle")
                n.start_soon(post, "/api/claim")

    if held:
        raw = centre.bundle("catalogue", {"items": catalogue_items() + big_catalogue(2_000)})
        async with HeldApply(monkeypatch, cache, raw, centre.verify_key, "_apply_catalogue"):
            await both()
    else:
        await both()
    assert journal.count() == 1
    ok = [r for r in out.values() if r.status_code == 200]
    assert ok and all(r.json()["seq"] == 1 for r in ok), {p: r.text for p, r in out.items()}
    assert all(r.status_code in (200, 409) for r in out.values()), {p: r.text for p, r in out.items()}


class _RefusingCentre:
    """The centre away (settle and lookup unreachable), then back: it answers /health and refuses the next
    visit with an engine error (the visit is rejected there and journals nothing)."""

    def __init__(self) -> None:
        self.back = False
        self.pings = 0
        self.pinged = trio.Event()

    async def settle(self, request):
        from edge.counter.online import CentreRefusal, CentreUnreachable
        if not self.back:
            raise CentreUnreachable("connection refused")
        raise CentreRefusal("no_policy_rule", "no policy rule for this visit")

    async def lookup(self, request):
        from edge.counter.online import CentreUnreachable
        raise CentreUnreachable("connection refused")

    async def ping(self) -> bool:
        self.pings += 1
        self.pinged.set()
        return self.back


async def test_an_offline_entry_goes_up_when_a_rejected_visit_finds_the_centre_back(cache, journal, cards):
    from functools import partial

    from counter.conftest import FixedDayClock
    from edge.counter import Counter, Settings
    from edge.daemon import wake_uplink

    insert_card(cards)
    centre = _RefusingCentre()
    counter = Counter(cache=cache, journal=journal, cards=cards, clock=FixedDayClock(), centre=centre,
                      settings=Settings(level="village", retry_online_after=0.0))
    counter.mark_refreshed()
    up = _Uplink(failures=3)                 # the uplink's rounds have been failing: the centre is away
    counter.on_journaled = partial(wake_uplink, counter, up)
    counter.link.failed(0, "the centre does not answer")

    offline_visit = await counter.settle({"req": "AWAY-1", **VISIT})
    assert journal.get(offline_visit["seq"]).body["mode"] == "offline" and not up.woken.is_set()

    centre.back = True
    with pytest.raises(Exception) as rejected:
        await counter.settle({"req": "BACK-1", **VISIT})
    assert getattr(rejected.value, "code", None) == "no_policy_rule", rejected.value
    assert counter.link.online and journal.count() == 1

    async with trio.open_nursery() as n:
        await n.start(refresher, counter, up, 0.01)
        with trio.fail_after(HANG):
            while centre.pings < 3:          # three probes, each answered
                centre.pinged = trio.Event()
                await centre.pinged.wait()
            await trio.testing.wait_all_tasks_blocked()
        n.cancel_scope.cancel()
    assert up.woken.is_set(), "the entry journaled while the centre was away waits for the uplink's own backoff"
