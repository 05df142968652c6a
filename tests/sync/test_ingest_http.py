"""Uploads over real HTTP on both store backends: normal flow, and every kind of bad upload with its code."""

from __future__ import annotations

import pytest
import trio
from nacl.signing import SigningKey

from edge.journal.entry import make_entry
from edge.uplink import wall_ms
from sync import auth, protocol, wire
from sync.centre.server import start_centre
from sync.centre.store import open_store
from harness.simulate import SimDevice


async def upload(http, centre, device, items, *, key=None, headers=None):
    """POST an upload signed by ``key`` (default: the device's own); returns (status, decoded answer)."""
    body = wire.encode(protocol.Upload(device.device, items).to_msg())
    h = headers or auth.sign_request(key or device.key, device.device, "POST", "/v1/upload", body, time_ms=wall_ms())
    r = await http.post(centre.url + "/v1/upload", content=body, headers={"content-type": wire.CONTENT_TYPE, **h})
    return r.status_code, wire.decode(r.content), h


def codes(answer):
    return [(r[0], r[1], r[2]) for r in answer["results"]]


def register(centre, name="D-S330300001-1"):
    dev = SimDevice(name)
    centre.store.register_device(dev.device, "S330300001", dev.pubkey)
    return dev


async def test_batches_and_exactly_once(centre_any, http):
    devs = [register(centre_any, f"D-S330300001-{i}") for i in range(1, 4)]
    for dev in devs:
        dev.extend(300)
        for start in (1, 101, 51, 201):  # overlapping re-sends are duplicates, not copies
            status, ans, _ = await upload(http, centre_any, dev, dev.items(start, start + 99))
            assert status == 200
        assert ans["ack"] == 300
    assert centre_any.store.entry_count() == 900
    rows = centre_any.store.accepted_entries(0, 2000)
    assert sorted((r["device"], r["seq"]) for r in rows) == sorted((d.device, s) for d in devs for s in range(1, 301))


async def test_bad_uploads_each_get_their_code(centre_any, http):
    dev = register(centre_any)
    dev.extend(6)
    # reordered: 3 before 1 and 2 -> 3 deferred (gap), 1 and 2 stored
    status, ans, _ = await upload(http, centre_any, dev, [dev.items()[2], dev.items()[0], dev.items()[1]])
    assert status == 200 and ans["ack"] == 2
    assert codes(ans) == [(3, "deferred", "gap"), (1, "accepted", None), (2, "accepted", None)]
    # replayed request: the very same signed request again
    status, ans, h = await upload(http, centre_any, dev, dev.items(3, 3))
    assert codes(ans) == [(3, "accepted", None)]
    status, ans, _ = await upload(http, centre_any, dev, dev.items(3, 3), headers=h)
    assert (status, ans["code"]) == (401, "replayed_request")
    # the same entries in a fresh request are duplicates: success
    status, ans, _ = await upload(http, centre_any, dev, dev.items(1, 3))
    assert [c[1] for c in codes(ans)] == ["duplicate"] * 3
    # tampered: one byte of entry 4 changed after signing
    raw4 = bytearray(dev.entries[3].raw)
    raw4[raw4.index(b"POS-") + 4] ^= 1
    # forged: a valid-looking entry 5 signed by another key
    forger = SigningKey.generate()
    forged = make_entry(forger, seq=5, prev=dev.entries[3].hash, device=dev.device, time=1, mono=1, kind="note",
                        body={"what": "forged"})
    status, ans, _ = await upload(http, centre_any, dev, [(4, bytes(raw4)), (5, forged.raw), (6, dev.entries[5].raw)])
    assert codes(ans) == [(4, "rejected", "bad_signature"), (5, "rejected", "bad_signature"), (6, "accepted", None)]
    assert all(r[3] for r in ans["results"][:2])  # every rejection says why
    # fork: another entry 2, properly signed by the device
    fork = make_entry(dev.key, seq=2, prev=dev.entries[0].hash, device=dev.device, time=9, mono=9, kind="note",
                      body={"what": "rewritten"})
    status, ans, _ = await upload(http, centre_any, dev, [(2, fork.raw)])
    assert codes(ans) == [(2, "rejected", "fork")]
    # forged request: signed by a key that is not the device's
    status, ans, _ = await upload(http, centre_any, dev, dev.items(1, 1), key=forger)
    assert (status, ans["code"]) == (401, "bad_request_signature")
    # unknown device
    stranger = SimDevice("D-S330300001-77")
    stranger.extend(1)
    status, ans, _ = await upload(http, centre_any, stranger, stranger.items())
    assert (status, ans["code"]) == (401, "unknown_device") and "edge enroll" in ans["message"]
    # everything bad was recorded for the report, nothing silently dropped
    rej = [(r["seq"], r["code"]) for r in centre_any.store.rejections(dev.device)]
    assert rej == [(4, "bad_signature"), (5, "bad_signature"), (2, "fork")]
    assert centre_any.store.entry_count() == 4 and centre_any.store.high_water(dev.device) == 6


@pytest.mark.slow
async def test_verification_in_worker_processes(nursery, http, tmp_path):
    store = open_store(tmp_path / "centre.db")
    centre = await start_centre(nursery, store, verify_processes=2)
    try:
        dev = register(centre)
        dev.extend(300)
        items = dev.items()
        raw = bytearray(items[150][1])
        raw[raw.index(b"POS-") + 4] ^= 1
        items[150] = (151, bytes(raw))
        status, ans, _ = await upload(http, centre, dev, items)
        assert status == 200 and ans["ack"] == 300
        assert [r[:3] for r in ans["results"] if r[1] != "accepted"] == [[151, "rejected", "bad_signature"]]
        rows = {r["seq"]: r for r in store.accepted_entries(0, 1000)}
        assert len(rows) == 299 and rows[1]["psn_no"] == dev.entries[0].body["psn_no"]
        assert rows[152]["chain_checked"] == 0 and rows[300]["raw"] == dev.entries[299].raw
    finally:
        centre.stop()
        await trio.sleep(0.1)
        store.close()
