"""The journal's failure modes: each stops appends with a typed error that says what to do, writes
nothing half-way, and keeps every earlier entry intact."""

from __future__ import annotations

import sqlite3

import pytest

import journal_bodies as bodies
from journal_bodies import DEVICE
from edge.journal import (
    JournalCorrupt, JournalError, JournalFull, JournalReadOnly, JournalStore, verify_entries,
)
from edge.journal.errors import map_sqlite_error


def _fill(store, start=0):
    """Append settlements until the journal is full; return the entries that were acknowledged."""
    done = []
    with pytest.raises(JournalFull) as info:
        for i in range(start, start + 10_000):
            done.append(store.append("settlement", bodies.settlement(f"R-{i}"), time_ms=i, mono_ns=i))
    return done, info.value


def test_disk_full_is_clear_and_recoverable(db_path, key):
    with JournalStore.open(db_path, signing_key=key, device=DEVICE) as store:
        store.set_max_page_count(store.page_count() + 4)  # a few pages of "disk" left
        done, err = _fill(store)
        assert len(done) >= 1
        assert err.code == "journal_full" and err.retryable
        assert "disk space" in err.hint and "not written" in err.message
        # Nothing half-written: the head is the last acknowledged entry, its outbox row exists.
        assert store.head() == (done[-1].seq, done[-1].hash)
        assert store.count() == len(done) and store.backlog().count == len(done)
        assert store.find_by_req(f"R-{len(done)}") is None
        # Still full: the same clear error again, still nothing written.
        with pytest.raises(JournalFull):
            store.append("settlement", bodies.settlement(f"R-{len(done)}"), time_ms=1, mono_ns=1)
        assert store.count() == len(done)
        # Space returns: appends continue the same chain.
        store.set_max_page_count(1_000_000)
        nxt = store.append("settlement", bodies.settlement(f"R-{len(done)}"), time_ms=1, mono_ns=1)
        assert nxt.seq == len(done) + 1 and nxt.prev == done[-1].hash
    # After reopening (a restart), every acknowledged entry is there with identical bytes.
    with JournalStore.open(db_path, signing_key=key, device=DEVICE) as store:
        assert [store.get(e.seq).raw for e in done] == [e.raw for e in done]
        report = verify_entries(store.raw_entries(), key.verify_key, device=DEVICE)
        assert report.ok and report.count == len(done) + 1


def test_full_while_acknowledging_keeps_the_outbox_consistent(db_path, key):
    with JournalStore.open(db_path, signing_key=key, device=DEVICE) as store:
        store.set_max_page_count(store.page_count() + 4)
        done, _ = _fill(store)
        # Bookkeeping that fits in freed pages still works; the outbox never loses pending rows.
        try:
            store.mark_acked(1)
        except JournalFull:
            assert store.acked_seq == 0
        assert store.backlog().count + store.acked_seq == len(done)


def test_corrupt_file_is_refused_on_open(db_path, key):
    with JournalStore.open(db_path, signing_key=key, device=DEVICE) as store:
        for i in range(150):
            store.append("note", {"what": "x" * 300}, time_ms=i, mono_ns=i)
    data = bytearray(db_path.read_bytes())
    data[4096 * 3:4096 * 3 + 2000] = b"\xab" * 2000
    db_path.write_bytes(bytes(data))
    with pytest.raises(JournalCorrupt) as info:
        JournalStore.open(db_path, signing_key=key, device=DEVICE)
    assert "edge journal verify" in info.value.hint and "Do not delete" in info.value.hint


def test_read_only_database_maps_to_journal_read_only(db_path, key):
    # Root ignores file modes, so take a real read-only error from SQLite itself (mode=ro).
    JournalStore.open(db_path, signing_key=key, device=DEVICE).close()
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        with pytest.raises(sqlite3.OperationalError) as info:
            conn.execute("INSERT INTO meta (key, value) VALUES ('x', 'y')")
    finally:
        conn.close()
    err = map_sqlite_error(info.value, str(db_path))
    assert isinstance(err, JournalReadOnly) and err.code == "journal_read_only" and "restart" in err.hint


def test_unwritable_state_dir_is_a_typed_error(tmp_path, key):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(JournalError) as info:
        JournalStore.open(blocker / "journal.db", signing_key=key, device=DEVICE)
    assert info.value.message and info.value.hint


def test_errors_carry_code_message_hint():
    for exc in (OSError(28, "No space left on device"), OSError(30, "Read-only file system")):
        err = map_sqlite_error(exc, "/x/journal.db")
        assert err.to_dict()["code"] in ("journal_full", "journal_read_only")
        assert "/x/journal.db" in err.message


def test_another_writer_holding_the_lock_is_journal_busy(store, db_path):
    store.append("note", bodies.note("before"), time_ms=1, mono_ns=1)
    store._conn.execute("PRAGMA busy_timeout = 50")  # keep the test short; the store waits 5 s
    other = sqlite3.connect(db_path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(JournalError) as info:
            store.append("note", bodies.note("blocked"), time_ms=2, mono_ns=2)
        assert info.value.code == "journal_busy" and info.value.retryable
        other.execute("ROLLBACK")
    finally:
        other.close()
    assert store.append("note", bodies.note("after"), time_ms=3, mono_ns=3).seq == 2


def test_forced_reset_with_an_unwritable_export_removes_nothing(store, tmp_path):
    from edge.journal import ExportError

    for i in range(3):
        store.append("note", bodies.note(f"n{i}"), time_ms=i, mono_ns=i)
    with pytest.raises(ExportError):
        store.reset(force=True, export_to=tmp_path / "no-such-dir" / "x.ssj")
    assert store.count() == 3 and not store.closed
