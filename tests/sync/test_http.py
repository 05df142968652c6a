"""The centre over real HTTP (hypercorn trio worker on loopback) with the real uplink."""

from __future__ import annotations

import json

import pytest
import trio

from edge.enrol import AlreadyEnrolled, enroll, load_device
from edge.journal.keys import load_device_key
from edge.journal.store import JournalStore
from edge.uplink import CentreClient, Uplink
from sync import auth, wire
from sync.errors import BadEnrolmentToken, CentreRefused
from harness.simulate import pharmacy_sale


async def enrolled_edge(centre, http, tmp_path, name="edge1", site="S330300001"):
    token = await trio.to_thread.run_sync(centre.store.create_enrol_token, site)
    state = tmp_path / name
    cfg = await enroll(centre.url, token, state, client=http)
    key = load_device_key(state / "device.key")
    journal = JournalStore.open(state / "journal.db", signing_key=key, device=cfg.device)
    client = CentreClient(cfg.centre_url, cfg.device, key, client=http)
    return cfg, journal, client


def append_sales(journal, n, start=1):
    for i in range(start, start + n):
        journal.append("settlement", pharmacy_sale(i, device=journal.device), time_ms=1_764_000_000_000 + i,
                       mono_ns=i)


async def test_health(centre, http):
    r = await http.get(centre.url + "/health")
    assert r.status_code == 200 and r.json()["ok"] is True and r.json()["backend"] == "sqlite"


async def test_enrol_pins_key_and_refuses_reuse(centre, http, tmp_path):
    cfg, journal, _ = await enrolled_edge(centre, http, tmp_path)
    journal.close()
    saved = json.loads((tmp_path / "edge1" / "device.json").read_text())
    assert saved["device"] == cfg.device == "D-S330300001-1" and saved["site"] == "S330300001"
    assert load_device(tmp_path / "edge1").bundle_verify_key == centre.key.verify_key
    with pytest.raises(AlreadyEnrolled):
        await enroll(centre.url, "ET-x", tmp_path / "edge1", client=http)
    with pytest.raises(CentreRefused) as exc:
        await enroll(centre.url, "ET-wrong", tmp_path / "edge2", client=http)
    assert exc.value.code == BadEnrolmentToken.code and exc.value.status == 403


async def test_uplink_sends_everything_once(centre, http, tmp_path):
    cfg, journal, client = await enrolled_edge(centre, http, tmp_path)
    with journal:
        append_sales(journal, 120)
        up = Uplink(journal, client, state_dir=tmp_path / "edge1", batch_entries=50)
        report = await up.sync_once()
        assert report.uploaded == 120 and report.batches == 3
        assert journal.backlog().count == 0 and journal.acked_seq == 120
        assert centre.store.entry_count(cfg.device) == 120
        # nothing new: a second round sends nothing
        assert (await up.sync_once()).uploaded == 0
        # the centre lost its tail (restored from a backup): the edge notices on the next poll and re-sends
        centre.store.db.execute("DELETE FROM entries WHERE device = ? AND seq > 70", (cfg.device,))
        last = centre.store.db.query_one("SELECT hash FROM entries WHERE device = ? AND seq = 70", (cfg.device,))
        centre.store.db.execute("UPDATE devices SET high_water = 70, last_hash = ? WHERE device = ?",
                                (last["hash"], cfg.device))
        report = await up.sync_once()
        assert report.uploaded == 50 and up.status.rewinds == [(120, 70)]
        assert centre.store.entry_count(cfg.device) == 120 and journal.acked_seq == 120
    metrics = (await http.get(centre.url + "/metrics")).text
    assert "centre_entries_total 120" in metrics
    assert 'centre_upload_results_total{status="accepted"} 170' in metrics  # 120 + 50 re-sent after the rewind


async def test_request_auth_errors(centre, http, tmp_path, caplog):
    cfg, journal, client = await enrolled_edge(centre, http, tmp_path)
    journal.close()
    key = load_device_key(tmp_path / "edge1" / "device.key")
    body = wire.encode({"t": "feed", "cursor": 0, "limit": 10})

    async def post(headers, data=body):
        r = await http.post(centre.url + "/v1/feed", content=data, headers={"content-type": wire.CONTENT_TYPE, **headers})
        return r.status_code, wire.decode(r.content)

    now = auth.sign_request(key, cfg.device, "POST", "/v1/feed", body, time_ms=client.clock())
    status, msg = await post(now)
    assert status == 200 and msg["t"] == "feed_page"
    status, msg = await post(now)  # the same request again
    assert (status, msg["code"]) == (401, "replayed_request")
    fresh = auth.sign_request(key, cfg.device, "POST", "/v1/feed", body, time_ms=client.clock())
    status, msg = await post(fresh, wire.encode({"t": "feed", "cursor": 5, "limit": 10}))  # body swapped
    assert (status, msg["code"]) == (401, "bad_request_signature")
    old = auth.sign_request(key, cfg.device, "POST", "/v1/feed", body, time_ms=client.clock() - 3_600_000)
    status, msg = await post(old)
    assert (status, msg["code"]) == (401, "stale_request")
    unknown = auth.sign_request(key, "D-S330300001-99", "POST", "/v1/feed", body, time_ms=client.clock())
    with caplog.at_level("WARNING", logger="sync.centre"):
        status, msg = await post(unknown)
    assert (status, msg["code"]) == (401, "unknown_device")
    assert any("D-S330300001-99" in r.getMessage() and "unknown_device" in r.getMessage() for r in caplog.records)
    status, msg = await post({})
    assert (status, msg["code"]) == (401, "bad_request_signature") and "not signed" in msg["message"]
    centre.store.revoke_device(cfg.device)
    status, msg = await post(auth.sign_request(key, cfg.device, "POST", "/v1/feed", body, time_ms=client.clock()))
    assert (status, msg["code"]) == (403, "device_revoked")
    centre.store.db.execute("UPDATE devices SET status = 'active'")
    garbage = b"SSY\x01\x01not zstd"
    signed = auth.sign_request(key, cfg.device, "POST", "/v1/upload", garbage, time_ms=client.clock())
    r = await http.post(centre.url + "/v1/upload", content=garbage, headers={"content-type": wire.CONTENT_TYPE, **signed})
    assert r.status_code == 400 and wire.decode(r.content)["code"] == "bad_wire"
    r = await http.post(centre.url + "/v1/upload", content=b"garbage", headers={"content-type": wire.CONTENT_TYPE})
    assert r.status_code == 401  # unsigned: refused before the body is even parsed
