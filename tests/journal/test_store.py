"""JournalStore: durable append, idempotent requests, outbox, identity checks, typed errors."""

from __future__ import annotations

import os
import stat
import threading

import pytest
from nacl.signing import SigningKey

import journal_bodies as bodies
from journal_bodies import DEVICE
from edge.journal import (
    GENESIS, AckBeyondHead, DuplicateRequest, EntryFormatError, ExportRequired, JournalCorrupt, JournalMismatch,
    JournalStore, KeyCorrupt, KeyExists, KeyMissing, KeyPermissions, UnknownEntry, UnsentEntries,
    create_device_key, decode, load_device_key, public_key_b64, signature_ok, verify_entries, verify_export,
    verify_key_from_text,
)


def test_empty_store_head_is_genesis(store):
    assert store.head() == (0, GENESIS)
    assert store.count() == 0
    assert store.get(1) is None
    assert store.backlog() == (0, None, 0)
    assert store.unacknowledged() == 0


def test_append_chains_signs_and_is_readable_after_reopen(db_path, key):
    with JournalStore.open(db_path, signing_key=key, device=DEVICE) as s:
        e1 = s.append("note", bodies.note("a"), time_ms=1_764_000_000_000, mono_ns=5)
        e2 = s.append("settlement", bodies.settlement("R-1"), time_ms=1_764_000_000_100, mono_ns=6)
        assert (e1.seq, e2.seq) == (1, 2)
        assert e1.prev == GENESIS and e2.prev == e1.hash
        assert s.head() == (2, e2.hash)
    with JournalStore.open(db_path, signing_key=key, device=DEVICE) as s:
        assert [e.raw for e in s.entries()] == [e1.raw, e2.raw]
        assert s.get(2).raw == e2.raw
        assert s.find_by_req("R-1").seq == 2
        assert s.find_by_req("R-404") is None
        assert signature_ok(s.get(1), key.verify_key)
        assert verify_entries(s.raw_entries(), key.verify_key, device=DEVICE).ok


def test_clock_readings_default_to_the_clocks(store):
    e = store.append("note", bodies.note())
    assert e.time > 1_600_000_000_000 and e.mono >= 0


def test_duplicate_request_writes_nothing_and_returns_existing(store):
    first = store.append("settlement", bodies.settlement("R-7"), time_ms=1, mono_ns=1)
    with pytest.raises(DuplicateRequest) as info:
        store.append("settlement", bodies.settlement("R-7", medfee=9999), time_ms=2, mono_ns=2)
    assert info.value.entry.raw == first.raw
    assert info.value.code == "duplicate_request"
    assert store.count() == 1 and store.head()[0] == 1


def test_bad_body_is_refused_before_anything_is_written(store):
    body = bodies.settlement("R-8")
    del body["basis"]
    with pytest.raises(EntryFormatError, match="basis"):
        store.append("settlement", body, time_ms=1, mono_ns=1)
    with pytest.raises(EntryFormatError, match="floats"):
        store.append("note", {"what": 1.5}, time_ms=1, mono_ns=1)
    with pytest.raises(EntryFormatError, match="kind"):
        store.append("gossip", {"what": "x"}, time_ms=1, mono_ns=1)
    assert store.count() == 0


def test_outbox_pending_ack_rewind_quarantine(store):
    for i in range(10):
        store.append("note", bodies.note(f"n{i}"), time_ms=1000 + i, mono_ns=i)
    assert [e.seq for e in store.pending(limit=3)] == [1, 2, 3]
    size = len(store.get(1).raw)
    assert [e.seq for e in store.pending(max_bytes=size * 2)] == [1, 2]
    assert [e.seq for e in store.pending(max_bytes=1)] == [1]  # always at least one
    assert store.backlog().count == 10 and store.backlog().oldest_time_ms == 1000
    store.mark_acked(4)
    assert store.acked_seq == 4
    assert [e.seq for e in store.pending()] == [5, 6, 7, 8, 9, 10]
    store.mark_acked(2)  # an older ack never moves the mark back
    assert store.acked_seq == 4
    store.quarantine(6, "bad_basis", "unknown policy version")
    assert [e.seq for e in store.pending()] == [5, 7, 8, 9, 10]
    assert store.quarantined() == [(6, "bad_basis", "unknown policy version")]
    assert store.backlog().count == 5
    assert store.unacknowledged() == 6
    store.rewind_ack(1)  # the centre restored a backup that holds only seq 1
    assert store.acked_seq == 1
    assert [e.seq for e in store.pending()] == [2, 3, 4, 5, 7, 8, 9, 10]
    store.release(6)
    assert 6 in [e.seq for e in store.pending()]
    store.mark_acked(10)
    assert store.pending() == [] and store.unacknowledged() == 0
    with pytest.raises(AckBeyondHead):
        store.mark_acked(11)
    with pytest.raises(UnknownEntry):
        store.quarantine(99, "x", "y")


def test_quarantine_survives_ack(store):
    for i in range(3):
        store.append("note", bodies.note(f"n{i}"), time_ms=i, mono_ns=i)
    store.quarantine(2, "rejected", "why")
    store.mark_acked(3)
    assert store.quarantined() == [(2, "rejected", "why")]
    assert store.pending() == []


def test_open_refuses_another_device_or_key(db_path, key, store):
    store.append("note", bodies.note(), time_ms=1, mono_ns=1)
    store.close()
    with pytest.raises(JournalMismatch, match="D-S330300001-9"):
        JournalStore.open(db_path, signing_key=key, device="D-S330300001-9")
    with pytest.raises(JournalMismatch, match="key"):
        JournalStore.open(db_path, signing_key=SigningKey.generate(), device=DEVICE)
    # Read-only opening needs neither key nor device id (verify/export after a key loss).
    with JournalStore.open(db_path, signing_key=None, device=None) as ro:
        assert ro.device == DEVICE and ro.count() == 1
        with pytest.raises(KeyMissing):
            ro.append("note", bodies.note(), time_ms=1, mono_ns=1)


def test_garbage_file_is_journal_corrupt(db_path, key):
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(JournalCorrupt) as info:
        JournalStore.open(db_path, signing_key=key, device=DEVICE)
    assert info.value.code == "journal_corrupt" and info.value.hint


def test_threads_share_one_store(store):
    errors = []

    def worker(n):
        try:
            for i in range(20):
                store.append("note", bodies.note(f"{n}-{i}"), time_ms=i, mono_ns=i)
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.count() == 80
    assert verify_entries(store.raw_entries(), store.verify_key).ok


def test_reset_refuses_while_unsent_and_forced_reset_exports_first(store, tmp_path, key, db_path):
    for i in range(3):
        store.append("note", bodies.note(f"n{i}"), time_ms=i, mono_ns=i)
    store.mark_acked(1)
    with pytest.raises(UnsentEntries) as info:
        store.reset()
    assert info.value.unsent == 2
    with pytest.raises(ExportRequired):
        store.reset(force=True)
    assert store.count() == 3
    out = tmp_path / "before-reset.ssj"
    report = store.reset(force=True, export_to=out)
    assert report.removed == 3 and report.unsent == 2 and report.exported_to == out
    assert store.closed
    assert verify_export(out, pubkey=key.verify_key).report.count == 3
    # The emptied journal never restarts the old chain (seq 1 again would be a fork at the centre)...
    with pytest.raises(JournalMismatch, match="reset"):
        JournalStore.open(db_path, signing_key=key, device=DEVICE)
    with pytest.raises(JournalMismatch, match="reset"):
        JournalStore.open(db_path, signing_key=SigningKey.generate(), device=DEVICE)
    # ...but starts over for a newly enrolled device and key.
    new_key = SigningKey.generate()
    with JournalStore.open(db_path, signing_key=new_key, device="D-S330300001-2") as fresh:
        assert fresh.head() == (0, GENESIS)


def test_reset_allowed_when_everything_is_acknowledged(store):
    store.append("note", bodies.note(), time_ms=1, mono_ns=1)
    store.mark_acked(1)
    assert store.reset().removed == 1


def test_device_key_file(tmp_path):
    path = tmp_path / "new" / "device.key"
    key = create_device_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert bytes(load_device_key(path)) == bytes(key)
    with pytest.raises(KeyExists):
        create_device_key(path)
    assert bytes(load_device_key(path)) == bytes(key)  # not overwritten
    assert verify_key_from_text(public_key_b64(key)) == key.verify_key
    assert verify_key_from_text(bytes(key.verify_key).hex()) == key.verify_key
    with pytest.raises(ValueError):
        verify_key_from_text("not a key")
    os.chmod(path, 0o644)
    with pytest.raises(KeyPermissions, match="chmod 600"):
        load_device_key(path)
    os.chmod(path, 0o600)
    path.write_bytes(b"short")
    with pytest.raises(KeyCorrupt):
        load_device_key(path)
    with pytest.raises(KeyMissing) as info:
        load_device_key(tmp_path / "absent.key")
    assert "edge enroll" in info.value.hint


def test_stored_bytes_decode_to_the_returned_entry(store):
    e = store.append("claim", bodies.claim("C-1"), time_ms=5, mono_ns=5)
    assert decode(store.get(1).raw) == e


def test_reading_never_creates_a_journal(tmp_path):
    from edge.journal import JournalMissing

    path = tmp_path / "nothing" / "journal.db"
    with pytest.raises(JournalMissing) as info:
        JournalStore.open(path, signing_key=None, device=None)
    assert info.value.code == "journal_missing"
    assert not path.exists() and not path.parent.exists()


def test_oversized_body_is_refused(store):
    with pytest.raises(EntryFormatError, match="larger than"):
        store.append("note", {"what": "x" * (600 * 1024)}, time_ms=1, mono_ns=1)
    assert store.count() == 0


def test_a_damaged_last_entry_stops_appends_but_not_verification(db_path, key):
    import sqlite3 as _sqlite3

    with JournalStore.open(db_path, signing_key=key, device=DEVICE) as s:
        for i in range(4):
            s.append("note", bodies.note(f"payload-{i}"), time_ms=i, mono_ns=i)
    conn = _sqlite3.connect(db_path)
    with conn:
        raw = conn.execute("SELECT raw FROM entries WHERE seq = 4").fetchone()[0]
        at = raw.index(b"payload-3") + 8
        conn.execute("UPDATE entries SET raw = ? WHERE seq = 4", (raw[:at] + b"X" + raw[at + 1:],))
    conn.close()
    with pytest.raises(JournalCorrupt, match="seq 4"):
        JournalStore.open(db_path, signing_key=key, device=DEVICE)
    with JournalStore.open(db_path, signing_key=None, device=None) as reader:
        report = reader.verify()
    assert (report.ok, report.first_bad_seq, report.reason) == (False, 4, "bad_signature")


def test_checkpoint_moves_the_wal_into_the_database_without_blocking_appends(store, db_path):
    for i in range(30):
        store.append("note", bodies.note(f"n{i}"), time_ms=i, mono_ns=i)
    wal_pages, done = store.checkpoint()
    assert wal_pages > 0 and done == wal_pages
    nxt = store.append("note", bodies.note("after"), time_ms=99, mono_ns=99)
    assert nxt.seq == 31
    assert verify_entries(store.raw_entries(), store.verify_key).ok
