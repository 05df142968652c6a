"""Downlink through the real uplink into the real edge cache: full, delta, refused bundles, outcomes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import trio
from nacl.signing import SigningKey

from edge.cache import Cache
from edge.enrol import enroll
from edge.journal.keys import load_device_key
from edge.journal.store import JournalStore
from edge.uplink import CentreClient, DownlinkDeferred, Uplink, wall_ms
from sync import bundles
from sync.centre.publish import publish

SAMPLE = Path(__file__).resolve().parents[2] / "sync" / "centre" / "sample"


async def edge_with_cache(centre, http, tmp_path, *, defer_outcomes=False):
    token = centre.store.create_enrol_token("S330300001")
    state = tmp_path / "edge"
    cfg = await enroll(centre.url, token, state, client=http)
    key = load_device_key(state / "device.key")
    journal = JournalStore.open(state / "journal.db", signing_key=key, device=cfg.device)
    cache = Cache.open(state / "cache.db")
    inbox = []

    async def on_downlink(m):
        if m["kind"] == "bundle":
            await trio.to_thread.run_sync(lambda: cache.apply_bundle(m["payload"], cfg.bundle_verify_key,
                                                                     now_ms=wall_ms()))
        elif defer_outcomes:
            raise DownlinkDeferred()
        else:
            inbox.append(m)

    up = Uplink(journal, CentreClient(cfg.centre_url, cfg.device, key, client=http), state_dir=state,
                on_downlink=on_downlink)
    return cfg, journal, cache, up, inbox


def versions(cache):
    return {k: v["version"] for k, v in cache.versions().items()}


async def test_bundles_full_then_delta_then_refusals(centre, http, tmp_path):
    publish(centre.store, centre.key, SAMPLE)
    cfg, journal, cache, up, inbox = await edge_with_cache(centre, http, tmp_path)
    try:
        report = await up.sync_once()
        assert report.downlink == 4 and versions(cache) == {"catalogue": 1, "policy": 1, "persons": 1, "hotlist": 1}
        assert json.loads((tmp_path / "edge" / "downlink.json").read_text())["cursor"] == up.status.cursor > 0
        # a changed catalogue goes down as a delta only
        src = tmp_path / "src"
        shutil.copytree(SAMPLE, src)
        cat = json.loads((src / "catalogue.json").read_text(encoding="utf-8"))
        cat["items"] = [it for it in cat["items"] if it["code"] != "HEALTH-SUPP-0002"]
        cat["items"].append({"code": "XNEW0001", "name": "新药片 10mg*10", "class": "A", "begndate": "2026-01-01",
                             "enddate": None})
        (src / "catalogue.json").write_text(json.dumps(cat, ensure_ascii=False), encoding="utf-8")
        rows = publish(centre.store, centre.key, src)
        assert [(r["kind"], r["version"], r["base"], r["offered"]) for r in rows] == [
            ("catalogue", 2, 1, True), ("catalogue", 2, None, False)]
        before = cache.item_count()
        report = await up.sync_once()
        assert report.downlink == 1 and versions(cache)["catalogue"] == 2
        assert cache.item("XNEW0001")["name"] == "新药片 10mg*10" and cache.item("HEALTH-SUPP-0002") is None
        assert cache.item_count() == before
        # a bundle signed by someone else is refused and reported; the cache keeps version 2
        forged = bundles.build(SigningKey.generate(), kind="catalogue", version=3, payload={"items": []}, created=1)
        centre.store.put_bundle(forged)
        await up.sync_once()
        assert versions(cache)["catalogue"] == 2
        assert [r["code"] for r in up.status.refused] == ["bundle_bad_signature"]
        # a delta from a version the edge does not hold: broken chain -> the uplink fetches the full bundle
        d = bundles.build(centre.key, kind="hotlist", version=5, base=4, payload={"upsert": [], "delete": []}, created=2)
        full = bundles.build(centre.key, kind="hotlist", version=5, payload={"cards": []}, created=2)
        centre.store.put_bundle(full, offer=False)
        centre.store.put_bundle(d)
        await up.sync_once()
        assert versions(cache)["hotlist"] == 5
        assert up.status.refused[-1]["code"] == "bundle_broken_chain"
    finally:
        journal.close()
        cache.close()


async def test_outcomes_reach_the_callback_once_and_deferral_keeps_them(centre, http, tmp_path):
    cfg, journal, cache, up, inbox = await edge_with_cache(centre, http, tmp_path, defer_outcomes=True)
    try:
        centre.store.post_downlink(cfg.device, "outcome", {"ref_seq": 1, "outcome": "confirmed"})
        centre.store.post_downlink("D-S330300001-99", "outcome", {"ref_seq": 1, "outcome": "not ours"})
        await up.sync_once()
        assert up.status.cursor == 0  # deferred: still on the feed for whoever owns outcomes
        up.on_downlink = lambda m, inbox=inbox: _collect(inbox, m)
        await up.sync_once()
        await up.sync_once()
        assert [m["payload"] for m in inbox] == [{"ref_seq": 1, "outcome": "confirmed"}]
    finally:
        journal.close()
        cache.close()


async def _collect(inbox, m):
    inbox.append(m)
