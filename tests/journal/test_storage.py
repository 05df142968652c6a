"""edge.storage: the transaction + migration helper the journal and the cache share."""

from __future__ import annotations

import sqlite3

import pytest

from edge.storage import atomic, migrate


@pytest.fixture
def conn(tmp_path):
    c = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    c.execute("CREATE TABLE t (v INTEGER)")
    yield c
    c.close()


def values(conn):
    return [r[0] for r in conn.execute("SELECT v FROM t ORDER BY v")]


def test_commits_and_rolls_back_on_any_exception(conn):
    with atomic(conn):
        conn.execute("INSERT INTO t VALUES (1)")
    assert values(conn) == [1] and not conn.in_transaction
    with pytest.raises(KeyboardInterrupt), atomic(conn):
        conn.execute("INSERT INTO t VALUES (2)")
        raise KeyboardInterrupt
    assert values(conn) == [1] and not conn.in_transaction


def test_nested_use_is_a_savepoint_that_rolls_back_only_its_part(conn):
    with atomic(conn):
        conn.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(ValueError), atomic(conn):
            conn.execute("INSERT INTO t VALUES (2)")
            raise ValueError("inner fails")
        assert conn.in_transaction  # the outer transaction goes on
        with atomic(conn):
            conn.execute("INSERT INTO t VALUES (3)")
    assert values(conn) == [1, 3]


def test_the_write_lock_is_taken_up_front(tmp_path, conn):
    other = sqlite3.connect(tmp_path / "s.db", isolation_level=None, timeout=0)
    try:
        with atomic(conn):   # BEGIN IMMEDIATE: a second writer is refused before this one wrote anything
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
    finally:
        other.close()


def test_migrations_apply_once_in_order_and_a_failed_one_leaves_nothing(conn):
    seen = []

    def step(name, fail=False):
        def run(c):
            seen.append(name)
            c.execute(f"CREATE TABLE {name} (x)")
            if fail:
                raise RuntimeError("broken migration")
        return name, run

    assert migrate(conn, [step("m1"), step("m2")]) == ["m1", "m2"]
    assert migrate(conn, [step("m1"), step("m2")]) == []
    with pytest.raises(RuntimeError):
        migrate(conn, [step("m1"), step("m2"), step("m3", fail=True)])
    assert seen == ["m1", "m2", "m3"]
    assert [r[0] for r in conn.execute("SELECT name FROM _migrations ORDER BY name")] == ["m1", "m2"]
    assert conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'm3'").fetchone() is None
