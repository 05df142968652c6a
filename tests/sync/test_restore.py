"""The centre restored from an older backup: edges notice its lower high-water mark and re-send."""

from __future__ import annotations

import sqlite3

import pytest
import trio

from edge.enrol import enroll
from edge.journal.keys import load_device_key
from edge.journal.store import JournalStore
from edge.uplink import CentreClient, Uplink
from sync.centre.server import start_centre
from sync.centre.store import open_store
from harness.simulate import pharmacy_sale

# Entry times must be plausible wall-clock times (the body contract refuses 1970).
T0 = 1_780_000_000_000



def backup(src, dst):
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)
    a.close()
    b.close()


@pytest.mark.slow
async def test_restore_from_older_backup(nursery, http, tmp_path):
    db = tmp_path / "centre.db"
    store = open_store(db)
    centre = await start_centre(nursery, store)
    edges = []
    for d in range(3):
        state = tmp_path / f"edge{d}"
        cfg = await enroll(centre.url, store.create_enrol_token("S330300001"), state, client=http)
        key = load_device_key(state / "device.key")
        journal = JournalStore.open(state / "journal.db", signing_key=key, device=cfg.device)
        edges.append((cfg, journal, key, state))

    def sell(journal, a, b):
        for i in range(a, b + 1):
            journal.append("settlement", pharmacy_sale(i, device=journal.device), time_ms=T0 + i, mono_ns=i)

    async def sync_all(url):
        for cfg, journal, key, state in edges:
            up = Uplink(journal, CentreClient(url, cfg.device, key, client=http), state_dir=state)
            await up.sync_once()
            yield up

    try:
        for _, j, _, _ in edges:
            sell(j, 1, 40)
        [u async for u in sync_all(centre.url)]
        backup(db, tmp_path / "backup.db")            # the nightly backup holds 40 per device
        for _, j, _, _ in edges:
            sell(j, 41, 100)
        [u async for u in sync_all(centre.url)]
        assert store.entry_count() == 300 and all(j.acked_seq == 100 for _, j, _, _ in edges)

        # disaster: the centre's disk is lost; it comes back from the backup, same key, new process
        centre.stop()
        store.close()
        backup(tmp_path / "backup.db", db)
        store = open_store(db)
        assert store.entry_count() == 120
        centre = await start_centre(nursery, store, centre.key)
        for _, j, _, _ in edges[:1]:
            sell(j, 101, 105)                          # one counter kept selling meanwhile
        ups = [u async for u in sync_all(centre.url)]
        assert [u.status.rewinds for u in ups] == [[(100, 40)]] * 3
        assert store.entry_count() == 305 and store.rejections() == []
        for cfg, j, _, _ in edges:
            head = j.head()[0]
            assert store.high_water(cfg.device) == head == j.acked_seq and j.backlog().count == 0
            rows = store.db.query("SELECT seq, hash FROM entries WHERE device = ? ORDER BY seq", (cfg.device,))
            assert [bytes(r["hash"]) for r in rows] == [e.hash for e in j.entries()]
    finally:
        for _, j, _, _ in edges:
            j.close()
        centre.stop()
        await trio.sleep(0)
        store.close()
