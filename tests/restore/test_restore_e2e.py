"""A centre restored from an older backup, end to end, on SQLite and PostgreSQL (issue 19).

Real centre (HTTP on loopback) and real counter uplinks with their caches: backup; more traffic
(entries, a hotlist change, an enrolment spending a token issued before the backup); ``centre
restore``; more traffic. Every entry ends up stored exactly once, the hotlist published after the
restore reaches every counter and blocks the card offline, the spent token is refused, and the
counter enrolled after the backup drains within seconds of ``centre register`` without a wake-up.
"""

from __future__ import annotations

import base64
import json
import time

import pytest
import trio

from edge.cache.store import Cache
from edge.enrol import enroll
from edge.journal.keys import load_device_key
from edge.journal.store import JournalStore
from edge.uplink import CentreClient, Uplink
from harness.simulate import pharmacy_sale
from sync.centre import backup as centre_backup
from sync.centre.cli import main as centre_main
from sync.centre.keys import load_or_create
from sync.centre.publish import publish
from sync.centre.server import start_centre
from sync.centre.store import open_store
from sync.errors import SyncError

SITE = "S330300001"
T0 = 1_790_000_000_000     # entry times: late 2026 (the centre refuses times outside 2020..2100)


class Counter:
    """One counter: journal, cache and uplink over a state directory, as the daemon wires them."""

    def __init__(self, cfg, state, http, url):
        self.cfg, self.state = cfg, state
        self.key = load_device_key(state / "device.key")
        self.journal = JournalStore.open(state / "journal.db", signing_key=self.key, device=cfg.device)
        self.cache = Cache.open(state / "cache.db")
        self.http = http
        self.connect(url)

    def connect(self, url, **options):
        self.uplink = Uplink(self.journal, CentreClient(url, self.cfg.device, self.key, client=self.http),
                             state_dir=self.state, on_downlink=self.on_downlink, **options)
        return self.uplink

    async def on_downlink(self, m):
        if m["kind"] == "bundle":
            await trio.to_thread.run_sync(lambda: self.cache.apply_bundle(
                bytes(m["payload"]), self.cfg.bundle_verify_key, now_ms=int(time.time() * 1000)))

    def sell(self, a, b):
        for i in range(a, b + 1):
            self.journal.append("settlement", pharmacy_sale(i, device=self.cfg.device), time_ms=T0 + i, mono_ns=i)

    def close(self):
        self.journal.close()
        self.cache.close()


def hotlist(src, *cards):
    src.mkdir(exist_ok=True)
    (src / "hotlist.json").write_text(json.dumps({"cards": [{"card_id": c, "reason": "lost"} for c in cards]}))
    return src


@pytest.mark.slow
async def test_backup_traffic_restore_traffic(nursery, http, tmp_path, db_url, caplog):
    data = tmp_path / "centre"
    key = load_or_create(data)
    store = open_store(db_url)
    src = tmp_path / "src"
    publish(store, key, hotlist(src, "CARD-OLD"), kinds=("hotlist",))
    centre = await start_centre(nursery, store, key)
    counters = []
    try:
        for n in range(2):
            state = tmp_path / f"edge{n}"
            cfg = await enroll(centre.url, store.create_enrol_token(SITE), state, client=http)
            counters.append(Counter(cfg, state, http, centre.url))
        early_token = store.create_enrol_token(SITE)         # issued before the backup, spent after it
        for c in counters:
            c.sell(1, 20)
            await c.uplink.sync_once()
            assert c.cache.hotlisted("CARD-OLD")

        archive = tmp_path / "nightly.backup"
        centre_backup.backup(db_url, archive)

        # -- after the backup: entries, a hotlist change, an enrolment with the early token ----------
        publish(store, key, hotlist(src, "CARD-OLD", "CARD-LOST"), kinds=("hotlist",))
        late_state = tmp_path / "late"
        late_cfg = await enroll(centre.url, early_token, late_state, client=http)
        late = Counter(late_cfg, late_state, http, centre.url)
        counters.append(late)
        for c in counters:
            c.sell(21 if c is not late else 1, 40)
            await c.uplink.sync_once()
            assert c.cache.hotlisted("CARD-LOST")
        assert store.entry_count() == 120

        # -- disaster: the centre comes back from the nightly backup --------------------------------
        centre.stop()
        await trio.sleep(0)
        store.close()
        centre_backup.restore(db_url, archive, data_dir=data)
        store = open_store(db_url)
        assert store.entry_count() == 40
        centre = await start_centre(nursery, store, key)

        # the hotlist published after the restore blocks a new card on every counter
        publish(store, key, hotlist(src, "CARD-OLD", "CARD-NEW"), kinds=("hotlist",))
        newest = store.latest_bundle("hotlist", full=False)
        assert newest is not None

        # the early token, spent after the backup, is refused to a new key
        with pytest.raises(SyncError) as refused:
            await enroll(centre.url, early_token, tmp_path / "thief", client=http)
        assert refused.value.code == "bad_enrolment_token"

        # the counter enrolled after the backup is unknown: it keeps trying on its own
        up = late.connect(centre.url)
        running = trio.CancelScope()

        async def keep_running():
            with running:
                await up.run()
        nursery.start_soon(keep_running)
        for c in counters[:2]:
            c.sell(41, 50)
            c.connect(centre.url)
            await c.uplink.sync_once()
            assert c.uplink.status.resyncs and "restored" in c.uplink.status.resyncs[0]   # the new epoch seen
        await trio.sleep(1)
        assert up.status.last_error is not None and up.status.last_error["code"] == "unknown_device"

        pub = base64.b64encode(bytes(late.key.verify_key)).decode()
        assert await trio.to_thread.run_sync(centre_main, ["register", late_cfg.device, "--site", SITE,
                                                           "--pubkey", pub, "--db", db_url,
                                                           "--data-dir", str(data)]) == 0
        registered = trio.current_time()
        with trio.fail_after(10):                      # seconds, not the 300 s backoff; no wake()
            while (await trio.to_thread.run_sync(store.entry_count, late_cfg.device) < 40
                   or (await trio.to_thread.run_sync(late.journal.backlog)).count):
                await trio.sleep(0.1)
        assert trio.current_time() - registered < 10
        said = [r.getMessage() for r in caplog.records if r.name == "edge.uplink"]
        assert any(f"centre register {late_cfg.device} --site {SITE} --pubkey {pub}" in m for m in said)
        assert not any("edge enroll" in m for m in said)

        # every entry exactly once, in each counter's own chain
        assert store.entry_count() == 140 and store.rejections() == []
        for c in counters:
            rows = store.db.query("SELECT seq, hash FROM entries WHERE device = ? ORDER BY seq", (c.cfg.device,))
            assert [bytes(r["hash"]) for r in rows] == [e.hash for e in c.journal.entries()]
            assert c.journal.backlog().count == 0

        # every counter holds exactly the centre's newest hotlist: the new card blocked offline, the
        # card blocked only in the lost timeline no longer
        for c in counters:
            await c.uplink.sync_once()
            held = c.cache.versions()["hotlist"]
            assert held["version"] == newest["version"]
            assert c.cache.hotlisted("CARD-NEW") and c.cache.hotlisted("CARD-OLD")
            assert c.cache.hotlisted("CARD-LOST") is None
        running.cancel()
    finally:
        for c in counters:
            c.close()
        centre.stop()
        await trio.sleep(0)
        store.close()
