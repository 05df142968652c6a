"""The centre store on both backends: enrolment, ingest rules, bundles, downlink feed."""

from __future__ import annotations

import hashlib

import cbor2
import pytest
from nacl.signing import SigningKey

from edge.journal.entry import make_entry
from sync import bundles
from sync.centre.store import open_store
from sync.errors import BadEnrolmentToken, DeviceRevoked, ReplayedRequest, UnknownDevice
from harness.simulate import SimDevice


@pytest.fixture
def store(db_url):
    s = open_store(db_url)
    yield s
    s.close()


def enrolled(store, name="D-S330300001-1", site="S330300001"):
    dev = SimDevice(name)
    store.register_device(dev.device, site, dev.pubkey)
    return dev


def statuses(outcome):
    return [(r.seq, r.status, r.code) for r in outcome.results]


def test_enrol_token_is_one_time(store):
    token = store.create_enrol_token("S330300001", now=1000)
    k1, k2 = SigningKey.generate(), SigningKey.generate()
    info = store.enrol(token, bytes(k1.verify_key), now=2000)
    assert (info.device, info.site, info.high_water) == ("D-S330300001-1", "S330300001", 0)
    # the same device retrying after a lost answer gets the same identity
    assert store.enrol(token, bytes(k1.verify_key), now=3000).device == "D-S330300001-1"
    with pytest.raises(BadEnrolmentToken, match="already used"):
        store.enrol(token, bytes(k2.verify_key), now=3000)
    second = store.enrol(store.create_enrol_token("S330300001", now=4000), bytes(k2.verify_key), now=5000)
    assert second.device == "D-S330300001-2"
    with pytest.raises(BadEnrolmentToken, match="unknown"):
        store.enrol("ET-nonsense", bytes(k2.verify_key))
    late = store.create_enrol_token("S330300002", ttl_ms=10, now=0)
    with pytest.raises(BadEnrolmentToken, match="expired"):
        store.enrol(late, bytes(k2.verify_key), now=11)


def test_batch_accepted_then_duplicates_are_success(store):
    dev = enrolled(store)
    dev.extend(10)
    out = store.put_entries(dev.device, dev.items(1, 6))
    assert out.ack == 6 and out.count("accepted") == 6
    out = store.put_entries(dev.device, dev.items(4, 10))
    assert out.ack == 10
    assert statuses(out)[:3] == [(4, "duplicate", None), (5, "duplicate", None), (6, "duplicate", None)]
    assert out.count("accepted") == 4
    assert store.entry_count(dev.device) == 10 and store.high_water(dev.device) == 10
    rows = store.accepted_entries(0, 100)
    assert [r["seq"] for r in rows] == list(range(1, 11))
    assert rows[0]["body"]["req"] == dev.entries[0].body["req"] and rows[0]["raw"] == dev.entries[0].raw
    assert rows[0]["psn_no"] == dev.entries[0].body["psn_no"]
    assert store.accepted_entries(rows[4]["id"], 2)[0]["seq"] == 6


def test_gap_is_deferred_not_stored(store):
    dev = enrolled(store)
    dev.extend(5)
    out = store.put_entries(dev.device, [dev.items()[3], dev.items()[0]])  # 4 then 1: reordered
    assert statuses(out) == [(4, "deferred", "gap"), (1, "accepted", None)]
    assert out.ack == 1 and store.entry_count() == 1
    assert store.put_entries(dev.device, dev.items(2, 5)).ack == 5


def test_tampered_entry_rejected_and_does_not_block_the_rest(store):
    dev = enrolled(store)
    dev.extend(5)
    items = dev.items()
    raw3 = bytearray(items[2][1])
    i = raw3.index(b"POS-")
    raw3[i + 4] ^= 0x01  # still canonical CBOR, signature now wrong
    items[2] = (3, bytes(raw3))
    out = store.put_entries(dev.device, items)
    assert statuses(out) == [(1, "accepted", None), (2, "accepted", None), (3, "rejected", "bad_signature"),
                             (4, "accepted", None), (5, "accepted", None)]
    assert out.ack == 5
    rej = store.rejections(dev.device)
    assert [(r["seq"], r["code"], r["slot"]) for r in rej] == [(3, "bad_signature", 1)]
    rows = {r["seq"]: r for r in store.accepted_entries(0, 100)}
    assert rows[4]["chain_checked"] == 0 and rows[5]["chain_checked"] == 1
    # re-sending the same bad entry gets the same answer, not a new slot
    again = store.put_entries(dev.device, [(3, bytes(raw3))])
    assert statuses(again) == [(3, "rejected", "bad_signature")] and again.ack == 5


def test_fork_forged_wrong_device_garbage(store):
    dev = enrolled(store)
    dev.extend(3)
    store.put_entries(dev.device, dev.items())
    # a fork: another entry 2 signed by the right key
    fork = make_entry(dev.key, seq=2, prev=dev.entries[0].hash, device=dev.device, time=1, mono=1,
                      kind="note", body={"what": "rewritten"})
    assert statuses(store.put_entries(dev.device, [(2, fork.raw)])) == [(2, "rejected", "fork")]
    # forged: right device name, wrong key
    forger = SigningKey.generate()
    forged = make_entry(forger, seq=4, prev=dev.entries[2].hash, device=dev.device, time=1, mono=1,
                        kind="note", body={"what": "forged"})
    # another device's entry inside this device's upload
    other = SimDevice("D-S330300001-9")
    other.extend(1)
    out = store.put_entries(dev.device, [(4, forged.raw), (5, other.entries[0].raw), (6, b"\xff\x00garbage")])
    assert statuses(out) == [(4, "rejected", "bad_signature"), (5, "rejected", "seq_mismatch"),
                             (6, "rejected", "malformed")]
    assert store.entry_count() == 3
    assert all(r.message for r in out.results)


def test_broken_chain(store):
    dev = enrolled(store)
    dev.extend(2)
    bad = make_entry(dev.key, seq=3, prev=b"\x01" * 32, device=dev.device, time=1_780_000_000_000, mono=1, kind="note",
                     body={"what": "x"})
    out = store.put_entries(dev.device, dev.items() + [(3, bad.raw)])
    assert statuses(out)[-1] == (3, "rejected", "broken_chain") and out.ack == 3


def test_unknown_and_revoked_devices(store):
    dev = SimDevice("D-S330300001-7")
    dev.extend(1)
    with pytest.raises(UnknownDevice) as exc:
        store.put_entries(dev.device, dev.items())
    assert exc.value.code == "unknown_device" and "edge enroll" in exc.value.message
    store.register_device(dev.device, "S330300001", dev.pubkey)
    store.revoke_device(dev.device)
    with pytest.raises(DeviceRevoked):
        store.put_entries(dev.device, dev.items())
    assert store.entry_count() == 0


def test_nonce_replay(store):
    dev = enrolled(store)
    store.use_nonce(dev.device, "n1", 1000, keep_ms=600_000)
    with pytest.raises(ReplayedRequest):
        store.use_nonce(dev.device, "n1", 1000, keep_ms=600_000)
    store.use_nonce(dev.device, "n2", 1000, keep_ms=600_000)


def test_bundles_and_feed(store):
    key = SigningKey.generate()
    full1 = bundles.build(key, kind="hotlist", version=1, payload={"cards": []}, created=1)
    full2 = bundles.build(key, kind="hotlist", version=2, payload={"cards": [{"card_id": "X", "reason": "lost"}]},
                          created=2)
    delta = bundles.build(key, kind="hotlist", version=3, base=2, payload={"upsert": [], "delete": ["X"]}, created=3)
    for raw in (full1, full2, delta, full2):  # publishing twice is idempotent
        store.put_bundle(raw)
    assert store.bundle("hotlist", 2) == full2 and store.bundle("hotlist", 3, base=2) == delta
    assert store.latest_bundle("hotlist")["version"] == 2
    assert store.latest_bundle("hotlist", full=False)["version"] == 3
    assert store.bundle_by_hash(hashlib.sha256(delta).hexdigest()) == delta
    dev = enrolled(store)
    oid = store.post_downlink(dev.device, "outcome", {"ref_seq": 1, "outcome": "confirmed"})
    store.post_downlink("D-other", "outcome", {"ref_seq": 1})
    # a new device (cursor 0) skips the superseded full bundle 1
    msgs, cursor = store.downlink_page(dev.device, 0)
    def shown(m):
        return cbor2.loads(cbor2.loads(m["payload"])["signed"])["version"] if m["kind"] == "bundle" else m["payload"]
    assert [(m["kind"], shown(m)) for m in msgs] == [("bundle", 2), ("bundle", 3),
                                                     ("outcome", {"ref_seq": 1, "outcome": "confirmed"})]
    assert cursor == oid
    assert store.downlink_since(dev.device, cursor) == []
    # a device that had seen bundle 1 gets everything after it
    assert len(store.downlink_since(dev.device, msgs[0]["id"] - 1)) == 3


def test_signed_bytes_cut_from_the_entry_equal_reencoding():
    from edge.journal.entry import canonical, unsigned_bytes

    dev = SimDevice("D-S330300001-1")
    dev.extend(20)
    dev.append("note", {"what": "sig" * 30})
    dev.append("note", {"what": "x", "sig": b"\x00" * 64})  # a body that itself holds a "sig" key
    for e in dev.entries:
        assert unsigned_bytes(e.raw) == canonical(e.unsigned())


def test_a_reencoded_entry_does_not_pass_ingest_without_the_canonical_check():
    # Same content, other bytes: the sig pair moved to the end, or a non-minimal map header. Ingest
    # skips the re-encoding comparison, so these must fail on the signature cut instead.
    from sync.centre.ingest import check_entry

    dev = SimDevice("D-S330300001-1")
    dev.extend(1)
    e = dev.entries[0]
    i = e.raw.find(b"\x63sig\x58\x40")
    moved = e.raw[:i] + e.raw[i + 70:] + e.raw[i:i + 70]
    longhead = b"\xb9\x00\x09" + e.raw[1:]
    assert check_entry(1, e.raw, dev.device, dev.key.verify_key).entry is not None
    for raw in (moved, longhead):
        assert cbor2.loads(raw) == cbor2.loads(e.raw)          # a verifier re-encoding would accept these
        checked = check_entry(1, raw, dev.device, dev.key.verify_key)
        assert checked.entry is None and checked.code in ("malformed", "bad_signature")


def test_a_corrupt_bundle_is_refused_with_its_code(store):
    from sync.bundles import BundleMalformed

    for raw in (b"", b"\xa0", cbor2.dumps({"signed": cbor2.dumps({"kind": "nonsense", "version": 1, "base": None,
                                                                  "created": 0, "key_id": "x"}), "sig": b""})):
        with pytest.raises(BundleMalformed) as exc:
            store.put_bundle(raw)
        assert exc.value.code == "bundle_malformed" and exc.value.message
    assert store.bundle_versions() == {}


def test_feed_pages_are_bounded_by_bytes(store):
    dev = enrolled(store)
    ids = [store.post_downlink(dev.device, "outcome", {"ref_seq": i, "pad": "x" * 1000}) for i in range(5)]
    msgs, cursor = store.downlink_page(dev.device, 0, max_bytes=2500)
    assert [m["id"] for m in msgs] == ids[:2] and cursor == ids[1]
    msgs, cursor = store.downlink_page(dev.device, cursor, max_bytes=10)  # one message always goes
    assert [m["id"] for m in msgs] == ids[2:3]
    assert [m["payload"]["ref_seq"] for m in store.downlink_since(dev.device, cursor)] == [3, 4]
