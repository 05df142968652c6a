"""Attacks on backup and restore from outside: the CLI, the files an operator touches, the HTTP API and
a real counter daemon. Each test is one finding or one attack that held (named in its docstring)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import httpx
import pytest
import trio
from nacl.signing import SigningKey

from sync import auth, bundles, wire
from sync.centre import backup as centre_backup
from sync.centre.errors import BackupError
from sync.centre.keys import load_or_create
from sync.centre.server import start_centre
from sync.centre.store import open_store

SITE = "S330300001"
DAY = 86_400_000


def centre(*args):
    return subprocess.run([sys.executable, "-m", "sync.centre.cli", *args], capture_output=True, text=True,
                          timeout=120)


def _hotlist(store, key, now, *cards):
    version = store.bundle_versions().get("hotlist", 0) + 1
    store.put_bundle(bundles.build(key, kind="hotlist", version=version, created=now,
                                   payload={"cards": [{"card_id": c, "reason": "lost"} for c in cards]}), now=now)
    return version


def _sqlite(tmp_path):
    data = tmp_path / "centre"
    key = load_or_create(data)
    return data, key, f"sqlite:///{tmp_path}/centre.db"


# -- restore twice, an older backup after a newer one, a restore host whose clock lags -------------------
def test_restoring_an_older_backup_after_a_newer_one_keeps_versions_and_feed_ids_rising(tmp_path):
    """Restore B (newer), then A (older); each restore starts a new epoch and every version and feed
    position handed out after it is above anything handed out before. Finding: A was taken while its
    feed row was not yet published (pos NULL); the restore lifted the id sequence but not the position
    clock, so that row and the re-signed bundles got positions 1, 2, 3 again (notices are deduplicated by
    position: a lost-timeline notice at the same position hides a new one)."""
    data, key, url = _sqlite(tmp_path)
    now = 1_790_000_000_000
    store = open_store(url)
    _hotlist(store, key, now, "C1")
    store.close()
    older, newer = tmp_path / "a.backup", tmp_path / "b.backup"
    centre_backup.backup(url, older, now_ms=now)
    store = open_store(url)
    _hotlist(store, key, now + 1000, "C1", "C2")
    store.close()
    centre_backup.backup(url, newer, now_ms=now + 2000)
    first = centre_backup.restore(url, newer, data_dir=data, now_ms=now + 3000)
    store = open_store(url)
    seen = _hotlist(store, key, now + 4000, "C3")
    store.publish_feed(wait=True)
    feed_top = store.feed_head()
    store.close()
    second = centre_backup.restore(url, older, data_dir=data, now_ms=now + 5000)
    assert second.epoch != first.epoch
    assert second.republished["hotlist"] > seen > first.republished["hotlist"]
    store = open_store(url)
    try:
        _hotlist(store, key, now + 6000, "C4")
        store.publish_feed(wait=True)
        assert store.feed_head() > feed_top
        assert [r["epoch"] for r in store.restores.history()] == [second.epoch]   # A predates restore 1
    finally:
        store.close()


def test_restore_refuses_a_clock_behind_the_backup(tmp_path):
    """Finding: ``centre restore`` on a host whose clock lags (set back a day) numbered the re-signed
    bundles ``max(now, top + 1)``. After an earlier restore, versions are milliseconds; the lost database
    had issued top + 1, top + 2 with other content, so the re-signed hotlist reused top + 1 and the next
    publish top + 2: counters holding those skipped both as already held (a blocked card stayed usable
    offline). A clock behind the backup's own creation time is certainly wrong: refuse, say what to fix."""
    data, key, url = _sqlite(tmp_path)
    now = 1_790_000_000_000
    store = open_store(url)
    _hotlist(store, key, now, "C1")
    store.close()
    archive = tmp_path / "b.backup"
    centre_backup.backup(url, archive, now_ms=now)
    with pytest.raises(BackupError, match="clock"):
        centre_backup.restore(url, archive, data_dir=data, now_ms=now - DAY)
    store = open_store(url)
    try:
        assert store.restores.history() == []          # nothing was restored
    finally:
        store.close()


def test_restore_refuses_a_clock_behind_an_earlier_restore(tmp_path):
    """Same finding, second path: restore twice, the second time with the clock set back below the first
    restore (the backup itself is older than both)."""
    data, key, url = _sqlite(tmp_path)
    now = 1_790_000_000_000
    open_store(url).close()
    archive = tmp_path / "b.backup"
    centre_backup.backup(url, archive, now_ms=now)
    centre_backup.restore(url, archive, data_dir=data, now_ms=now + DAY)
    later = tmp_path / "c.backup"
    centre_backup.backup(url, later, now_ms=now + DAY + 1000)
    with pytest.raises(BackupError, match="clock"):
        centre_backup.restore(url, later, data_dir=data, now_ms=now + 1000)


# -- files an operator touches --------------------------------------------------------------------------
def test_restore_refuses_a_sound_sqlite_file_that_is_not_a_centre_database(tmp_path):
    """Finding: a backup file with a consistent header and hash whose payload is some other SQLite file
    (a counter's journal.db wrapped by hand, a renamed file) was put in place of centre.db and migrated
    into an empty centre. The payload must hold the migrations its manifest names."""
    data, key, url = _sqlite(tmp_path)
    store = open_store(url)
    store.create_enrol_token(SITE)
    store.close()
    foreign = tmp_path / "journal.db"
    with sqlite3.connect(foreign) as c:
        c.execute("CREATE TABLE entries (seq INTEGER)")
    c.close()
    archive = tmp_path / "forged.backup"
    centre_backup.backup(url, archive)
    manifest, _ = centre_backup.read_manifest(archive)
    digest, size = centre_backup._sha256(foreign)
    forged = centre_backup.Manifest(manifest.backend, manifest.migrations, manifest.created_ms, manifest.epoch,
                                    size, digest)
    archive.write_bytes(centre_backup.MAGIC + forged.to_json() + foreign.read_bytes())
    before = (tmp_path / "centre.db").read_bytes()
    done = centre("restore", str(archive), "--db", url, "--data-dir", str(data))
    assert done.returncode == 1 and "bad_backup" in done.stderr and "migrations" in done.stderr, done.stderr
    assert (tmp_path / "centre.db").read_bytes() == before


def test_backup_of_a_database_with_a_newer_schema_is_refused_by_this_version(tmp_path):
    """Attack that held: restore a backup written by a newer centre (a migration unknown here)."""
    data, key, url = _sqlite(tmp_path)
    store = open_store(url)
    store.db.execute("INSERT INTO schema_migrations (name, applied_ms) VALUES ('zz-999-future', 0)")
    store.close()
    archive = tmp_path / "b.backup"
    centre_backup.backup(url, archive)
    done = centre("restore", str(archive), "--db", url, "--data-dir", str(data))
    assert done.returncode == 1 and "zz-999-future" in done.stderr and "newer centre" in done.stderr


def test_backup_taken_mid_write_is_consistent(tmp_path):
    """Attack that held: a backup while another process writes (WAL growing) restores to a sound file
    holding a prefix of the writes."""
    data, key, url = _sqlite(tmp_path)
    open_store(url).close()
    writer = subprocess.Popen([sys.executable, "-c", (
        "import sys\nfrom sync.centre.store import open_store\n"
        f"s = open_store({url!r})\n"
        "for i in range(400):\n    s.create_enrol_token('S330300001')\n"
        "s.close()\n")])
    archives = []
    try:
        for n in range(5):
            a = tmp_path / f"b{n}.backup"
            centre_backup.backup(url, a)
            archives.append(a)
    finally:
        assert writer.wait(120) == 0
    for a in archives:
        centre_backup.restore(url, a, data_dir=data)
        with sqlite3.connect(tmp_path / "centre.db") as c:
            assert c.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        c.close()


# -- signed requests and tokens across the restore (HTTP API) -------------------------------------------
def _signed_feed(device, sk, time_ms, nonce=None):
    body = wire.encode({"t": "feed", "cursor": 0, "limit": 10})
    headers = auth.sign_request(sk, device, "POST", "/v1/feed", body, time_ms=time_ms, nonce=nonce)
    return headers, body


async def _post(http, url, headers, body):
    return await http.post(url + "/v1/feed", content=body,
                           headers={**headers, "content-type": wire.CONTENT_TYPE})


async def _restored_centre(nursery, tmp_path, http, *, lead_ms):
    """A centre, one device, a feed request captured ``lead_ms`` ahead of the centre's clock; backup;
    restore; the centre again. Returns (running centre, store, the captured request, device, key)."""
    from sync.centre.store import now_ms
    data, key, url = _sqlite(tmp_path)
    store = open_store(url)
    sk = SigningKey.generate()
    device = f"D-{SITE}-9"
    store.register_device(device, SITE, bytes(sk.verify_key))
    archive = tmp_path / "b.backup"
    centre_backup.backup(url, archive)
    running = await start_centre(nursery, store, key)
    captured = _signed_feed(device, sk, now_ms() + lead_ms)
    first = await _post(http, running.url, *captured)
    running.stop()
    await trio.sleep(0)
    store.close()
    centre_backup.restore(url, archive, data_dir=data)
    store = open_store(url)
    running = await start_centre(nursery, store, key)
    return running, store, captured, first


@pytest.mark.parametrize("lead_ms", [0, -60_000])
async def test_a_request_captured_before_the_restore_is_refused_after_it(nursery, tmp_path, lead_ms):
    """Attack that held: replay a signed request captured before the restore (counter clock right or
    lagging); its nonce was lost with the newer database, the restore time refuses it."""
    async with httpx.AsyncClient(trust_env=False) as http:
        running, store, captured, first = await _restored_centre(nursery, tmp_path, http, lead_ms=lead_ms)
        try:
            assert first.status_code == 200, first.text
            again = await _post(http, running.url, *captured)
            assert again.status_code == 401 and wire.decode(again.content)["code"] == "stale_request", again.text
        finally:
            running.stop()
            await trio.sleep(0)
            store.close()


@pytest.mark.xfail(strict=True, reason="open finding, sync/centre/auth.py (not this area's file): a request signed "
                   "by a counter whose clock leads the centre's is dated after the restore time and replays once")
async def test_a_request_captured_from_a_leading_clock_is_refused_after_the_restore(nursery, tmp_path):
    """Finding (reported): a counter whose clock leads by 4 min signs a request dated after the restore
    even though it was sent before it; its nonce was lost, so it replays once after the restore."""
    async with httpx.AsyncClient(trust_env=False) as http:
        running, store, captured, first = await _restored_centre(nursery, tmp_path, http, lead_ms=240_000)
        try:
            assert first.status_code == 200, first.text
            again = await _post(http, running.url, *captured)
            assert again.status_code == 401, again.text
        finally:
            running.stop()
            await trio.sleep(0)
            store.close()


# -- the gap: a hotlist published after the restore, through a real counter daemon ----------------------
async def _until(check, within: float = 60.0):
    with trio.fail_after(within):
        while not await check():
            await trio.sleep(0.1)


@pytest.mark.slow
async def test_daemon_refuses_offline_a_card_hotlisted_after_the_restore(nursery, tmp_path):
    """The real counter daemon (demo stack, SQLite): backup; a hotlist published after the backup reaches
    the counter (a version the restore loses); restore; the card is hotlisted at the restored centre;
    the counter takes it; with the centre stopped, the counter's /api/settle refuses the card offline."""
    demo = pytest.importorskip("harness.demo")
    from sync.centre.store import now_ms

    stack = await demo.start_stack(nursery, tmp_path, simulated=True, probe_s=0.5, idle_s=0.5)
    url = f"sqlite:///{tmp_path}/centre/centre.db"
    async with httpx.AsyncClient(base_url=stack.daemon.url, trust_env=False, headers=stack.daemon.headers) as api:
        async def status():
            return (await api.get("/api/status")).json()

        async def holds_hotlist(version):
            return (await status())["cache"]["bundles"].get("hotlist", {}).get("version") == version

        await _until(lambda: holds_hotlist(stack.store.bundle_versions()["hotlist"]))
        archive = tmp_path / "nightly.backup"
        await trio.to_thread.run_sync(lambda: centre_backup.backup(url, archive))
        lost = _hotlist(stack.store, stack.key, now_ms(), "330300D15600000500000000000000FF")
        await _until(lambda: holds_hotlist(lost))

        await demo.stop_centre(stack)
        stack.store.close()
        await trio.to_thread.run_sync(lambda: centre_backup.restore(url, archive, data_dir=tmp_path / "centre"))
        stack.store = open_store(url)
        blocked = _hotlist(stack.store, stack.key, now_ms(), demo.ZHANGSAN["card_id"])
        assert blocked > lost
        await demo.restart_centre(nursery, stack)
        await _until(lambda: holds_hotlist(blocked))

        await demo.stop_centre(stack)
        await _until(lambda: _offline(api))
        (await api.post("/api/card/simulate", json=demo.ZHANGSAN)).raise_for_status()
        await _until(lambda: _present(api))
        r = await api.post("/api/settle", json={"req": "R-1", "med_type": "11", "acct_used_flag": True,
                                                "pin": "123456", "items": demo.ITEMS})
        assert r.status_code != 200 and r.json()["error"]["code"] == "card_hotlisted", r.text
        assert r.json()["error"].get("zh"), r.text       # the clerk is told, in Chinese
    stack.store.close()


async def _offline(api):
    return not (await api.get("/api/status")).json()["online"]


async def _present(api):
    return (await api.get("/api/card")).json()["present"]
