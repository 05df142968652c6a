"""``centre backup`` / ``centre restore`` as commands: the file is verified before anything is touched."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest

from sync.centre import backup as centre_backup
from sync.centre.errors import BackupError
from sync.centre.keys import load_or_create
from sync.centre.store import open_store

SITE = "S330300001"


def centre(*args):
    return subprocess.run([sys.executable, "-m", "sync.centre.cli", *args], capture_output=True, text=True,
                          timeout=120)


def test_backup_and_restore_commands_round_trip(tmp_path, db_url):
    data = tmp_path / "centre"
    load_or_create(data)
    store = open_store(db_url)
    store.create_enrol_token(SITE)
    store.close()
    archive = tmp_path / "b.backup"
    done = centre("backup", str(archive), "--db", db_url, "--data-dir", str(data))
    assert done.returncode == 0, done.stderr
    manifest, _ = centre_backup.read_manifest(archive)
    assert manifest.backend == ("postgres" if db_url.startswith("postgresql") else "sqlite")
    assert "restore-001-epoch" in manifest.migrations
    store = open_store(db_url)
    before = store.restores.epoch().id
    store.create_enrol_token(SITE)            # after the backup: gone after the restore
    store.close()
    done = centre("restore", str(archive), "--db", db_url, "--data-dir", str(data))
    assert done.returncode == 0, done.stderr
    assert "epoch" in done.stdout
    store = open_store(db_url)
    try:
        assert store.restores.epoch().id != before
        assert store.db.scalar("SELECT count(*) FROM enrol_tokens") == 1
        assert [r["backup_sha256"] for r in store.restores.history()] == [manifest.payload_sha256]
    finally:
        store.close()


@pytest.mark.parametrize("damage", ["flip", "truncate", "header", "manifest"])
def test_restore_refuses_a_file_it_cannot_verify(tmp_path, damage):
    data = tmp_path / "centre"
    load_or_create(data)
    url = f"sqlite:///{tmp_path}/centre.db"
    open_store(url).close()
    archive = tmp_path / "b.backup"
    centre_backup.backup(url, archive)
    raw = bytearray(archive.read_bytes())
    if damage == "flip":
        raw[-100] ^= 0xFF
        expect = "corrupt"
    elif damage == "truncate":
        raw = raw[:-4096]
        expect = "truncated"
    elif damage == "header":
        raw[:8] = b"SQLite f"
        expect = "not a centre backup"
    else:
        start = raw.index(b"\n") + 1
        raw[start:start + 12] = b"{not json..."
        expect = "manifest"
    archive.write_bytes(bytes(raw))
    target = tmp_path / "centre.db"
    before = target.read_bytes()
    done = centre("restore", str(archive), "--db", url, "--data-dir", str(data))
    assert done.returncode == 1
    assert expect in done.stderr and "bad_backup" in done.stderr
    assert target.read_bytes() == before          # nothing was touched


def test_restore_refuses_the_wrong_backend(tmp_path, pg_url):
    data = tmp_path / "centre"
    load_or_create(data)
    url = f"sqlite:///{tmp_path}/centre.db"
    open_store(url).close()
    archive = tmp_path / "b.backup"
    centre_backup.backup(url, archive)
    done = centre("restore", str(archive), "--db", pg_url, "--data-dir", str(data))
    assert done.returncode == 1
    assert "is a sqlite backup and the target store is postgres" in done.stderr


def test_restore_refuses_while_the_centre_has_the_database_open(tmp_path, db_url):
    data = tmp_path / "centre"
    load_or_create(data)
    archive = tmp_path / "b.backup"
    store = open_store(db_url)
    try:
        centre_backup.backup(db_url, archive)
        with pytest.raises(BackupError, match="stop the centre"):
            centre_backup.restore(db_url, archive, data_dir=data)
    finally:
        store.close()


def test_sqlite_restore_leaves_no_stale_wal(tmp_path):
    """A -wal of the newer database beside the restored file would corrupt it (issue 19, finding 4)."""
    data = tmp_path / "centre"
    load_or_create(data)
    url = f"sqlite:///{tmp_path}/centre.db"
    store = open_store(url)
    store.create_enrol_token(SITE)
    store.close()
    archive = tmp_path / "b.backup"
    centre_backup.backup(url, archive)
    store = open_store(url)
    for _ in range(200):
        store.create_enrol_token(SITE)
    store.close()
    (tmp_path / "centre.db-wal").write_bytes(b"\x37\x7f\x06\x82" + b"\0" * 4092)   # a stale WAL left behind
    (tmp_path / "centre.db-shm").write_bytes(b"\0" * 32768)
    centre_backup.restore(url, archive, data_dir=data)
    assert not (tmp_path / "centre.db-wal").exists() or (tmp_path / "centre.db-wal").stat().st_size == 0
    with sqlite3.connect(tmp_path / "centre.db") as c:
        assert c.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert c.execute("SELECT count(*) FROM enrol_tokens").fetchone() == (1,)
    c.close()
