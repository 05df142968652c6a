"""The centre's storage has one owner: one migration list applied at open, repositories, bounded caches."""

from __future__ import annotations

import pytest

from sync.centre.lru import LRU
from sync.centre.pages import render
from sync.centre.store import Store, open_db
from sync.centre.store import schema


def test_one_ordered_migration_list_applied_when_the_store_opens(db_url):
    names = [m.name for m in schema.MIGRATIONS]
    assert len(names) == len(set(names)) and names[0] == "001-sync-core"
    store = Store.open(db_url)
    try:
        assert schema.pending(store.db) == []
        assert set(names) <= set(schema.applied(store.db))
        assert schema.migrate(store.db) == []                       # a second run applies nothing
        assert store.db.scalar("SELECT last_id FROM recon_cursor WHERE name = 'entries'") is not None
    finally:
        store.close()


def test_pending_names_what_an_older_schema_lacks(tmp_path):
    db = open_db(tmp_path / "old.db")
    try:
        first = schema.MIGRATIONS[0]
        db.migrate(first.name, first.statements)                    # a database from before the centre's tables
        assert schema.pending(db) == [m.name for m in schema.MIGRATIONS[1:]]
        assert schema.migrate(db) == [m.name for m in schema.MIGRATIONS[1:]]
        assert schema.pending(db) == []
    finally:
        db.close()


def test_the_store_hands_out_repositories():
    store = Store.open(":memory:")
    try:
        assert {"ledger", "recon", "claims", "accounts"} <= set(vars(store))
        assert store.ledger.load("nobody") is None and store.claims.find() == [] and store.recon.outcomes() == []
    finally:
        store.close()


def test_lru_is_bounded_and_keeps_the_recently_used():
    cache: LRU[int] = LRU(2)
    built = []

    def build(v):
        return lambda: built.append(v) or v

    assert cache.get("a", build(1)) == 1 and cache.get("b", build(2)) == 2
    assert cache.get("a", build(99)) == 1                             # hit: not rebuilt, now most recent
    cache.get("c", build(3))                                          # evicts b, the least recently used
    assert len(cache) == 2 and "b" not in cache and "a" in cache and built == [1, 2, 3]
    with pytest.raises(ValueError):
        LRU(0)


def test_pages_escape_what_comes_from_the_database():
    page = render("message.html", title="Refused <b>", account={"name": "<script>x</script>", "role": "reviewer"},
                  message="note & <img src=x onerror=alert(1)>", back=True)
    assert "<script>x</script>" not in page and "&lt;script&gt;" in page
    assert "<img" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page and "&amp;" in page
    assert "<title>Refused &lt;b&gt;</title>" in page
