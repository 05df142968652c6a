"""The cache: signed bundles in, search, persons, hotlist, journal-derived counters."""

from __future__ import annotations

import threading
import types

import pytest

from counter.helpers import (
    AMOXICILLIN, CARD_ID, CERTNO, HOTLISTED, PERSONS, Centre, big_catalogue, catalogue_items,
)
from edge.cache import Cache
from sync.bundles import BundleBadSignature, BundleBrokenChain, BundleMalformed, BundleStale


@pytest.fixture
def centre():
    return Centre()


@pytest.fixture
def cache(tmp_path, centre):
    c = Cache.open(tmp_path / "cache.db")
    for raw in centre.sample():
        c.apply_bundle(raw, centre.verify_key, now_ms=1)
    yield c
    c.close()


def test_versions_and_hashes_are_recorded(cache):
    v = cache.versions()
    assert {k: v[k]["version"] for k in v} == {"catalogue": 1, "policy": 1, "persons": 1, "hotlist": 1}
    assert all(len(x["hash"]) == 64 for x in v.values())
    assert cache.policy().offline.offline_max_visits == 3


@pytest.mark.parametrize("query", ["amxl", "AMXL", "阿莫西林", "莫西林", "XJ01CAA", "xj01caa040e001010101445"])
def test_search_by_code_name_and_pinyin_initials(cache, query):
    found = cache.search(query)
    assert found and found[0]["code"] == AMOXICILLIN
    assert found[0]["py"].startswith("amxl")


def test_search_without_match_or_blank_query(cache):
    assert cache.search("zzzz") == []
    assert cache.search("   ") == []


def test_refuses_a_bundle_from_another_key(cache):
    with pytest.raises(BundleBadSignature):
        cache.apply_bundle(Centre().bundle("hotlist", {"cards": []}, version=9), cache_key(cache), now_ms=2)


def cache_key(cache):
    return Centre().verify_key  # a key the bundle was not signed with


def test_refuses_stale_and_broken_chain_and_garbage(cache, centre):
    with pytest.raises(BundleStale):
        cache.apply_bundle(centre.bundle("hotlist", {"cards": []}, version=1), centre.verify_key, now_ms=2)
    with pytest.raises(BundleBrokenChain):
        cache.apply_bundle(centre.bundle("hotlist", {"upsert": []}, base=5, version=7), centre.verify_key, now_ms=2)
    with pytest.raises(BundleMalformed):
        cache.apply_bundle(b"not a bundle", centre.verify_key, now_ms=2)
    assert cache.versions()["hotlist"]["version"] == 1


def test_bundle_with_invalid_content_is_refused_and_changes_nothing(cache, centre):
    bad = centre.bundle("catalogue", {"upsert": [{"code": "X1", "class": "Z"}]}, base=1, version=2)
    with pytest.raises(BundleMalformed):
        cache.apply_bundle(bad, centre.verify_key, now_ms=2)
    assert cache.versions()["catalogue"]["version"] == 1
    assert cache.item("X1") is None


def test_deltas_upsert_and_delete(cache, centre):
    cache.apply_bundle(centre.bundle("catalogue", {"upsert": [{"code": "NEW1", "name": "板蓝根颗粒", "class": "A"}],
                                                   "delete": [AMOXICILLIN]}, base=1), centre.verify_key, now_ms=3)
    assert cache.search("blg")[0]["code"] == "NEW1"
    assert cache.search("amxl") == []
    cache.apply_bundle(centre.bundle("hotlist", {"upsert": [{"card_id": CARD_ID, "reason": "lost"}],
                                                 "delete": [HOTLISTED]}, base=1), centre.verify_key, now_ms=3)
    assert cache.hotlisted(CARD_ID) == "lost" and cache.hotlisted(HOTLISTED) is None
    cache.apply_bundle(centre.bundle("persons", {"upsert": [{**PERSONS[0], "balc": 7}], "delete": ["P0002"]}, base=1),
                       centre.verify_key, now_ms=3)
    assert cache.person("P0001").state.balc == 7 and cache.person("P0002") is None


def test_person_by_card_or_certno(cache):
    assert cache.person_for_card(CARD_ID, None).psn_no == "P0001"
    assert cache.person_for_card("unknown", CERTNO).psn_no == "P0001"
    assert cache.person_for_card("unknown", "nobody") is None


def entry(seq, kind, body):
    return types.SimpleNamespace(seq=seq, kind=kind, body=body)


def settlement(mode, acct=1000, fund=500, dedc=0):
    return {"mode": mode, "psn_no": "P0001", "card": {"card_id": CARD_ID, "keyed_in": False},
            "person": {"balc": 50000, "deductible_used": 20000, "fund_paid": 0},
            "amounts": {"acct_pay": acct, "hifp_pay": fund, "act_pay_dedc": dedc}}


def test_offline_counters_follow_the_journal_and_reset_online(cache):
    assert cache.offline_use(CARD_ID) == (0, 0)
    assert cache.apply_entry(entry(1, "settlement", settlement("offline")))
    assert not cache.apply_entry(entry(1, "settlement", settlement("offline")))  # once per seq
    cache.apply_entry(entry(2, "settlement", settlement("offline", acct=200)))
    assert cache.offline_use(CARD_ID) == (2, 1200)
    # Local state is the snapshot plus each of this device's entries (not the last entry's own view).
    assert cache.person("P0001").state.balc == 50000 - 1000 - 200
    cache.apply_entry(entry(3, "settlement", settlement("online")))
    assert cache.offline_use(CARD_ID) == (0, 0)


def test_dirty_counters_fail_closed_until_caught_up(cache):
    cache.mark_counters_dirty()
    assert cache.offline_use(CARD_ID) is None
    assert cache.catch_up([entry(1, "settlement", settlement("offline"))]) == 1
    assert cache.offline_use(CARD_ID) == (1, 1000)


@pytest.mark.slow
def test_search_on_100k_items_uses_the_index(tmp_path):
    c = Centre()
    cache = Cache.open(tmp_path / "big.db")
    cache.apply_bundle(c.bundle("catalogue", {"items": big_catalogue(20_000)}), c.verify_key, now_ms=1)
    plan = cache._q("EXPLAIN QUERY PLAN SELECT DISTINCT code FROM item_terms WHERE term >= 'a' AND term < 'b'")
    assert any("USING PRIMARY KEY" in str(r) or "COVERING INDEX" in str(r) for r in plan), plan
    assert len(cache.search("tbkw")) == 20  # 头孢克肟
    assert all("头孢克肟" in it["name"] for it in cache.search("tbkw"))
    cache.close()


@pytest.mark.slow
def test_reads_from_other_threads_go_on_while_a_bundle_apply_holds_its_transaction(cache, centre):
    # The apply is held open *inside* its transaction (after every item row is written, before the
    # commit) by wrapping the catalogue step; the lookups run in another thread and must finish
    # while it waits. They see the last committed catalogue, then the new one after the commit.
    inside, release = threading.Event(), threading.Event()
    apply_catalogue = cache._apply_catalogue

    def held(c, payload, delta):
        apply_catalogue(c, payload, delta)
        inside.set()
        assert release.wait(60), "the test never released the apply"

    cache._apply_catalogue = held
    applied: list = []
    raw = centre.bundle("catalogue", {"items": big_catalogue(5_000) + catalogue_items()})
    writer = threading.Thread(target=lambda: applied.append(cache.apply_bundle(raw, centre.verify_key, now_ms=2)))
    writer.start()
    try:
        assert inside.wait(60)
        seen: dict = {}

        def lookups():
            seen["person"] = cache.person_for_card(CARD_ID, None)
            seen["search"] = cache.search("amxl")
            seen["count"] = cache.item_count()
            seen["version"] = cache.versions()["catalogue"]["version"]

        reader = threading.Thread(target=lookups)
        reader.start()
        reader.join(30)
        assert not reader.is_alive(), "a read waited for the bundle apply"
        assert writer.is_alive() and not applied  # the apply's transaction is still open
        assert seen["person"].psn_no == "P0001" and seen["search"][0]["code"] == AMOXICILLIN
        assert seen["count"] == len(catalogue_items()) and seen["version"] == 1
    finally:
        release.set()
        writer.join(60)
    assert applied and applied[0]["version"] == 2
    assert cache.item_count() == 5_000 + len(catalogue_items())
    assert cache.versions()["catalogue"]["version"] == 2


def test_migrations_are_recorded_and_a_pre_migration_cache_is_adopted(tmp_path):
    import sqlite3

    from edge.cache.store import MIGRATIONS, SCHEMA

    old = tmp_path / "old.db"
    conn = sqlite3.connect(old)
    conn.executescript(SCHEMA)   # what Cache.open created before the cache had migrations
    conn.execute("INSERT INTO meta (key, value) VALUES ('applied_seq', '7')")
    conn.commit()
    conn.close()
    c = Cache.open(old)
    try:
        assert c.applied_seq() == 7
        assert [r[0] for r in c._q("SELECT name FROM _migrations")] == [name for name, _ in MIGRATIONS]
    finally:
        c.close()


def test_read_connections_are_pooled_not_one_per_thread(cache):
    # trio's worker threads come and go all day; the read connections must not pile up with them.
    for _ in range(20):
        t = threading.Thread(target=lambda: cache.person("P0001"))
        t.start()
        t.join()
    assert len(cache._idle) == 1


def test_an_older_bundle_checked_before_another_writer_committed_a_newer_one_is_refused(tmp_path, centre, monkeypatch):
    """Two writers on one cache file (the daemon and `edge sync`): the version chain is checked again under
    the write lock, so a full v2 that passed its first check against v1 cannot overwrite the v3 another
    writer committed meanwhile."""
    from sync.bundles import BundleStale

    first, other = Cache.open(tmp_path / "c.db"), Cache.open(tmp_path / "c.db")
    try:
        for raw in centre.sample():
            first.apply_bundle(raw, centre.verify_key, now_ms=1)
        v2 = centre.bundle("hotlist", {"cards": [{"card_id": "OLD", "reason": "lost"}]}, version=2)
        v3 = centre.bundle("hotlist", {"cards": [{"card_id": "NEW", "reason": "lost"}]}, version=3)
        stale_view = first.versions()                  # what `first` saw before `other` committed v3
        other.apply_bundle(v3, centre.verify_key, now_ms=2)
        monkeypatch.setattr(first, "versions", lambda: stale_view)
        with pytest.raises(BundleStale):
            first.apply_bundle(v2, centre.verify_key, now_ms=3)
        monkeypatch.undo()
        assert first.versions()["hotlist"]["version"] == 3
        assert first.hotlisted("NEW") and not first.hotlisted("OLD")
    finally:
        first.close()
        other.close()
