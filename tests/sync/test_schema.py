"""Messages the protocol builds follow firmware-interfaces/sync.cddl (validated with pycddl)."""

from __future__ import annotations

from pathlib import Path

import cbor2
import pycddl
import pytest

from sync import protocol
from sync.errors import UnknownDevice
from harness.simulate import SimDevice

CDDL = Path(__file__).resolve().parents[2] / "firmware-interfaces" / "sync.cddl"
SCHEMA = pycddl.Schema(CDDL.read_text(encoding="utf-8"))


def good_messages():
    dev = SimDevice("D-S330300001-1")
    dev.extend(2)
    yield protocol.Enrol("ET-abc", dev.pubkey, b"\x01" * 64).to_msg()
    yield protocol.Enrolled("D-S330300001-1", "S330300001", dev.pubkey, "0123456789abcdef").to_msg()
    yield protocol.Upload(dev.device, dev.items()).to_msg()
    yield protocol.UploadResult(2, [protocol.EntryResult(1, "accepted"),
                                    protocol.EntryResult(2, "rejected", "bad_signature", "why")]).to_msg()
    yield protocol.FeedRequest(0, 100).to_msg()
    yield protocol.FeedPage([{"kind": "bundle", "id": 3, "payload": b"\xa0"},
                             {"kind": "outcome", "id": 4, "payload": {"ref_seq": 1}}], 4, False, 2).to_msg()
    yield protocol.error_message(UnknownDevice("not enrolled"))


@pytest.mark.parametrize("msg", list(good_messages()), ids=lambda m: m["t"])
def test_messages_follow_the_schema(msg):
    SCHEMA.validate_cbor(cbor2.dumps(msg))


@pytest.mark.parametrize("bad", [
    {"t": "upload", "device": "D", "entries": [[0, b"x"]]},
    {"t": "upload_result", "ack": 1, "results": [[1, "maybe", None, None]]},
    {"t": "feed", "cursor": 0, "limit": 0},
    {"t": "enrolled", "device": "D", "site": "S", "bundle_key": b"short", "bundle_key_id": "x"},
])
def test_schema_refuses_bad_messages(bad):
    with pytest.raises(pycddl.ValidationError):
        SCHEMA.validate_cbor(cbor2.dumps(bad))
