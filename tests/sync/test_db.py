"""The portable database layer (sync.centre.store.db) on both backends."""

from __future__ import annotations

import threading

import pytest

from sync.centre.store.db import open_db
from sync.errors import StoreConflict, StoreError

SCHEMA = [
    "CREATE TABLE t (id SERIAL_PK, name TEXT NOT NULL UNIQUE, amount BIGINT NOT NULL, raw BLOB)",
]


@pytest.fixture
def db(db_url):
    d = open_db(db_url)
    d.migrate("001-t", SCHEMA)
    yield d
    d.close()


def test_round_trip_types(db):
    db.execute("INSERT INTO t (name, amount, raw) VALUES (?, ?, ?)", ("阿莫西林", 10**11, b"\x00\xff"))
    row = db.query_one("SELECT id, name, amount, raw FROM t WHERE name = ?", ("阿莫西林",))
    assert row == {"id": 1, "name": "阿莫西林", "amount": 10**11, "raw": b"\x00\xff"}
    assert isinstance(row["raw"], bytes)


def test_percent_and_placeholders(db):
    db.execute("INSERT INTO t (name, amount) VALUES (?, ?)", ("100%", 1))
    assert db.scalar("SELECT count(*) FROM t WHERE name LIKE '%' || ? || '%'", ("0%",)) == 1


def test_migration_applies_once(db):
    assert db.migrate("001-t", SCHEMA) is False
    assert db.migrate("002-u", ["CREATE TABLE u (x BIGINT)"]) is True
    assert db.migrations() == ["001-t", "002-u"]


def test_failed_migration_leaves_nothing(db):
    with pytest.raises(StoreError):
        db.migrate("003-bad", ["CREATE TABLE v (x BIGINT)", "THIS IS NOT SQL"])
    assert "003-bad" not in db.migrations()
    # the first statement was rolled back with the failing one
    db.migrate("003-good", ["CREATE TABLE v (x BIGINT)"])


def test_transaction_rolls_back_and_savepoints(db):
    with pytest.raises(RuntimeError):
        with db.transaction():
            db.execute("INSERT INTO t (name, amount) VALUES (?, ?)", ("a", 1))
            raise RuntimeError("boom")
    assert db.scalar("SELECT count(*) FROM t") == 0
    with db.transaction():
        db.execute("INSERT INTO t (name, amount) VALUES (?, ?)", ("a", 1))
        with pytest.raises(StoreConflict):
            with db.transaction():
                db.execute("INSERT INTO t (name, amount) VALUES (?, ?)", ("a", 2))
        db.execute("INSERT INTO t (name, amount) VALUES (?, ?)", ("b", 2))
    assert [r["name"] for r in db.query("SELECT name FROM t ORDER BY name")] == ["a", "b"]


def test_executemany_and_on_conflict(db):
    db.executemany("INSERT INTO t (name, amount) VALUES (?, ?) ON CONFLICT DO NOTHING",
                   [("x", 1), ("y", 2), ("x", 3)])
    assert {r["name"]: r["amount"] for r in db.query("SELECT name, amount FROM t")} == {"x": 1, "y": 2}
    row = db.query_one("INSERT INTO t (name, amount) VALUES (?, ?) RETURNING id", ("z", 9))
    assert row["id"] >= 3  # ids only grow (PostgreSQL sequences may skip on conflict)
    assert db.scalar("SELECT amount FROM t WHERE id = ?", (row["id"],)) == 9


def test_threads_share_one_database(db):
    def work(k):
        for i in range(20):
            with db.transaction():
                db.execute("INSERT INTO t (name, amount) VALUES (?, ?)", (f"{k}-{i}", i))
    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert db.scalar("SELECT count(*) FROM t") == 80


def test_bad_urls_say_what_to_do(tmp_path):
    with pytest.raises(StoreError, match="sqlite:///"):
        open_db("sqlite://nohost")
    with pytest.raises(StoreError, match="is the server running"):
        open_db("postgresql://nobody@127.0.0.1:1/none")


def test_postgres_reconnects_after_the_connection_dies(pg_url):
    import psycopg

    db = open_db(pg_url)
    try:
        db.migrate("001-t", SCHEMA)
        pid = db.scalar("SELECT pg_backend_pid()")
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(StoreError) as exc:
            db.execute("INSERT INTO t (name, amount) VALUES (?, ?)", ("a", 1))
        assert exc.value.retryable
        db.execute("INSERT INTO t (name, amount) VALUES (?, ?)", ("a", 1))  # the next call reconnects
        assert db.scalar("SELECT count(*) FROM t") == 1 and db.scalar("SELECT pg_backend_pid()") != pid
    finally:
        db.close()
