"""Connections: a pool per process on PostgreSQL. Request handlers run in worker threads; each
transaction takes a connection of its own from the pool, so one handler's open transaction (or a slow
statement) never holds another's read; nested transactions stay on their thread's connection."""

from __future__ import annotations

import threading

import pytest
from recon_support import T0

from sync.centre.store import Store
from sync.errors import StoreConflict


def test_a_read_in_one_thread_does_not_wait_for_a_transaction_held_in_another(pg_url):
    store = Store.open(pg_url)
    try:
        store.register_device("D-P-1", "S-P", bytes(32), now=T0)
        holding, release = threading.Event(), threading.Event()
        seen: dict[str, object] = {}

        def long_transaction():
            with store.transaction():
                store.register_device("D-P-2", "S-P", bytes(range(32)), now=T0)   # not committed yet
                holding.set()
                release.wait(30)

        t = threading.Thread(target=long_transaction)
        t.start()
        try:
            assert holding.wait(10)
            reader = threading.Thread(target=lambda: seen.update(dev=store.device("D-P-1"),
                                                                 uncommitted=store.device("D-P-2")))
            reader.start()
            reader.join(5)
            assert not reader.is_alive(), "a read waited for another thread's transaction"
            assert seen["dev"] is not None and seen["uncommitted"] is None   # its own snapshot, not the other's
        finally:
            release.set()
            t.join(10)
        assert store.device("D-P-2") is not None
    finally:
        store.close()


def test_a_nested_transaction_is_a_savepoint_on_the_same_connection(pg_url):
    store = Store.open(pg_url)
    try:
        with store.transaction():
            store.register_device("D-N-1", "S-N", bytes(32), now=T0)
            with pytest.raises(StoreConflict):
                with store.transaction():
                    store.register_device("D-N-1", "S-N", bytes(32), now=T0)    # same key: refused
            store.register_device("D-N-2", "S-N", bytes(32), now=T0)           # the outer one goes on
        assert {d.device for d in store.devices()} >= {"D-N-1", "D-N-2"}
    finally:
        store.close()


def test_many_threads_share_a_bounded_pool(pg_url):
    store = Store.open(pg_url)
    try:
        errors: list[BaseException] = []

        def work(i: int) -> None:
            try:
                for j in range(20):
                    store.register_device(f"D-T{i}-{j}", f"S-T{i}", bytes(32), now=T0)
                    assert store.device(f"D-T{i}-{j}") is not None
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == [] and len(store.devices()) == 12 * 20
        assert 1 <= store.db.connections() <= store.db.pool_size
    finally:
        store.close()
