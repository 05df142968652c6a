"""Each kind of tampering is detected with the right first bad seq and reason, in the local journal
(verify_entries over the stored bytes) and in an export file (verify_export, the auditor's tool)."""

from __future__ import annotations

import cbor2
import pytest
from nacl.signing import SigningKey

import journal_bodies as bodies
from journal_bodies import DEVICE
from edge.journal import GENESIS, canonical, make_entry, verify_entries, verify_export, write_export

N = 8


@pytest.fixture
def raws(store):
    for i in range(1, N + 1):
        kind, body = (("settlement", bodies.settlement(f"R-{i:04d}")) if i % 3 == 0
                      else ("note", bodies.note(f"payload-{i:04d}")))
        store.append(kind, body, time_ms=1_764_000_000_000 + i, mono_ns=i)
    return list(store.raw_entries())


def _flip(raw: bytes, needle: bytes) -> bytes:
    at = raw.index(needle) + len(needle) - 1
    return raw[:at] + bytes([raw[at] ^ 0x01]) + raw[at + 1:]


def _resign(raw: bytes, key: SigningKey, **changes) -> bytes:
    data = cbor2.loads(raw)
    fields = {k: data[k] for k in ("seq", "prev", "device", "time", "mono", "kind", "body")}
    fields.update(changes)
    return make_entry(key, **fields).raw


def _tamper(raws, key, case):
    r = list(raws)
    if case == "modified_byte":
        r[4] = _flip(r[4], b"payload-0005")
    elif case == "garbled_cbor":
        r[4] = r[4][:3] + b"\xff" + r[4][4:]
    elif case == "deleted":
        del r[4]
    elif case == "reordered":
        r[3], r[4] = r[4], r[3]
    elif case == "duplicated":
        r.insert(5, r[4])
    elif case == "other_key":
        r[4] = _resign(r[4], SigningKey.generate())
    elif case == "forked":  # a validly signed entry 5 that does not link to entry 4
        r[4] = _resign(r[4], key, prev=GENESIS)
    elif case == "other_device":
        r[4] = _resign(r[4], key, device="D-S330300001-7")
    elif case == "schema":
        r[2] = _resign(r[2], key, body={"req": "R-0003", "mode": "offline"})
    return r


CASES = [  # case, first bad seq, reason
    ("modified_byte", 5, "bad_signature"),
    ("garbled_cbor", 5, "malformed"),
    ("deleted", 5, "missing"),
    ("reordered", 4, "out_of_order"),
    ("duplicated", 5, "duplicate"),
    ("other_key", 5, "bad_signature"),
    ("forked", 5, "prev_mismatch"),
    ("other_device", 5, "wrong_device"),
    ("schema", 3, "schema"),
]


def test_untouched_journal_verifies(raws, key):
    report = verify_entries(raws, key.verify_key, device=DEVICE)
    assert report.ok and report.count == N and report.head_seq == N
    assert report.first_bad_seq is None and "OK: 8 entries" in report.text()


@pytest.mark.parametrize(("case", "seq", "reason"), CASES)
def test_tampered_entries_are_detected(raws, key, case, seq, reason):
    report = verify_entries(_tamper(raws, key, case), key.verify_key, device=DEVICE)
    assert (report.ok, report.first_bad_seq, report.reason) == (False, seq, reason)
    assert report.count == (seq if reason == "duplicate" else seq - 1)  # a duplicate follows a good copy
    assert f"FAILED at seq {seq}: {reason}" in report.text()


def test_another_devices_key_fails_on_the_first_entry(raws):
    report = verify_entries(raws, SigningKey.generate().verify_key)
    assert (report.first_bad_seq, report.reason) == (1, "bad_signature")


def _export_items(path):
    with open(path, "rb") as f:
        dec = cbor2.CBORDecoder(f)
        items = []
        while f.peek(1):
            items.append(dec.decode())
    return items


def _write_items(path, items):
    path.write_bytes(b"".join(cbor2.dumps(i, canonical=True) for i in items))


@pytest.fixture
def export(raws, store, tmp_path):
    path = tmp_path / "journal.ssj"
    summary = write_export(store, path)
    assert (summary.count, summary.first_seq, summary.last_seq) == (N, 1, N)
    return path


def test_untouched_export_verifies_with_and_without_pinned_key(export, key):
    pinned = verify_export(export, pubkey=key.verify_key)
    assert pinned.ok and pinned.report.count == N and pinned.pinned and pinned.device == DEVICE
    assert pinned.report.warnings == ()
    loose = verify_export(export)
    assert loose.ok and any("--pubkey" in w for w in loose.report.warnings)


@pytest.mark.parametrize(("case", "seq", "reason"), CASES)
def test_tampered_export_is_detected(export, key, case, seq, reason):
    items = _export_items(export)
    header, entries, trailer = items[0], items[1:-1], items[-1]
    _write_items(export, [header, *_tamper(entries, key, case), trailer])
    report = verify_export(export, pubkey=key.verify_key).report
    assert (report.ok, report.first_bad_seq, report.reason) == (False, seq, reason)


def test_modified_byte_in_the_file_itself(export, key):
    data = export.read_bytes()
    export.write_bytes(_flip(data, b"payload-0007"))
    report = verify_export(export, pubkey=key.verify_key).report
    assert (report.first_bad_seq, report.reason) == (7, "bad_signature")


@pytest.mark.parametrize("cut", ["mid_entry", "entry_boundary", "no_trailer"])
def test_truncated_export_is_detected(export, key, cut):
    data = export.read_bytes()
    items = _export_items(export)
    if cut == "mid_entry":
        data = data[:data.index(b"payload-0007")]
    elif cut == "entry_boundary":  # a well-formed file with entries 7 and 8 dropped: the signed manifest tells
        _write_items(export, [items[0], *items[1:7], {"end": "ssj-journal-export", "count": 6}])
        data = export.read_bytes()
    else:
        data = data[:len(data) - len(cbor2.dumps(items[-1], canonical=True))]
    export.write_bytes(data)
    report = verify_export(export, pubkey=key.verify_key).report
    assert (report.ok, report.reason) == (False, "truncated")
    assert report.first_bad_seq == (7 if cut != "no_trailer" else N + 1)


def test_export_with_another_pinned_key_is_refused(export):
    report = verify_export(export, pubkey=SigningKey.generate().verify_key)
    assert (report.ok, report.report.reason) == (False, "key_mismatch")


def test_forged_manifest_is_detected(export, key):
    items = _export_items(export)
    manifest = cbor2.loads(items[0]["manifest"])
    manifest["count"] = 6
    items[0]["manifest"] = canonical(manifest)
    _write_items(export, items)
    assert verify_export(export, pubkey=key.verify_key).report.reason == "manifest"


def test_not_an_export(tmp_path, key):
    path = tmp_path / "x.ssj"
    path.write_bytes(b"hello world")
    assert verify_export(path, pubkey=key.verify_key).report.reason == "manifest"


def test_empty_journal_exports_and_verifies(store, tmp_path, key):
    path = tmp_path / "empty.ssj"
    write_export(store, path)
    report = verify_export(path, pubkey=key.verify_key)
    assert report.ok and report.report.count == 0


def test_partial_export_from_a_seq(raws, store, tmp_path, key):
    path = tmp_path / "tail.ssj"
    summary = write_export(store, path, from_seq=5)
    assert (summary.first_seq, summary.count) == (5, N - 4)
    report = verify_export(path, pubkey=key.verify_key).report
    assert report.ok and report.count == N - 4 and report.head_seq == N
    assert any("starts at seq 5" in w for w in report.warnings)


def test_a_wall_clock_stepping_back_is_a_warning_not_a_failure(store, key):
    store.append("note", bodies.note("a"), time_ms=1_764_000_000_000, mono_ns=1)
    store.append("note", bodies.note("b"), time_ms=1_764_000_000_000 - 3_600_000, mono_ns=2)
    store.append("note", bodies.note("c"), time_ms=1_764_000_000_000 - 3_599_000, mono_ns=3)
    report = verify_entries(store.raw_entries(), key.verify_key)
    assert report.ok and report.warnings == ("wall clock went back 3600 s at seq 2",)
    assert "warning: wall clock went back" in report.text()
