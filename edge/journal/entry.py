"""Journal entries: deterministic CBOR, hash chain, Ed25519 signature. Pure (no I/O, no clock).

Theory of operation
-------------------
An entry is a CBOR map with text keys::

    {"v": 1, "seq": 7, "prev": h(entry 6), "device": "D-330300-0001", "time": 1764000000123,
     "mono": 81234567890, "kind": "settlement", "body": {...}, "sig": <64 bytes>}

* ``seq`` counts 1, 2, 3… per device with no gaps; ``prev`` is the SHA-256 of the previous entry's
  full encoded bytes (signature included), :data:`GENESIS` for seq 1.
* ``time`` is wall-clock milliseconds since the Unix epoch (UTC) and ``mono`` a monotonic reading in
  nanoseconds, both passed in by the caller: the pair lets a verifier see clock jumps.
* ``sig`` is Ed25519 over the canonical CBOR of the map without ``sig``.
* Encoding is cbor2 canonical (RFC 8949 core deterministic): the same entry is always the same bytes,
  whatever the dict order of the caller. Floats are refused: money is integer fen, ratios are text.

Anyone with the device's public key verifies an entry alone (signature) and a run of entries together
(``seq`` continuity and ``prev`` links); see :mod:`edge.journal.verify`.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any, Mapping

import cbor2
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from sync.keys import key_id  # noqa: F401  (one definition, shared with the centre)

FORMAT_VERSION = 1
GENESIS = bytes(32)
KINDS = frozenset({"enrol", "config", "settlement", "cancel", "claim", "card_event", "refusal", "outcome", "note", "payout"})
_FIELDS = ("v", "seq", "prev", "device", "time", "mono", "kind", "body")


class EntryFormatError(ValueError):
    """The bytes or fields are not a well-formed journal entry (says which field and why)."""


_PLAIN = frozenset({str, int, bytes, bool, type(None)})


def _check_value(value: Any, path: str) -> None:
    # Exact-type fast paths first: isinstance against typing.Mapping is an ABC check, and this runs
    # on every value of every entry the verifier reads (it was half of verify's time).
    t = type(value)
    if t in _PLAIN:
        return
    if t is dict:
        for k, v in value.items():
            if type(k) is not str:
                raise EntryFormatError(f"{path}: map keys must be text, got {k!r}")
            if type(v) not in _PLAIN:
                _check_value(v, f"{path}.{k}")
        return
    if t is list:
        for i, v in enumerate(value):
            if type(v) not in _PLAIN:
                _check_value(v, f"{path}[{i}]")
        return
    if isinstance(value, float):
        raise EntryFormatError(f"{path}: floats are not allowed in journal entries (use int fen or text)")
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise EntryFormatError(f"{path}: map keys must be text, got {k!r}")
            _check_value(v, f"{path}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_value(v, f"{path}[{i}]")
    elif value is None or isinstance(value, (str, int, bytes, bool)):
        return
    else:
        raise EntryFormatError(f"{path}: {type(value).__name__} cannot be journaled (convert it to text)")


def canonical(data: Any) -> bytes:
    return cbor2.dumps(data, canonical=True)


@dataclass(frozen=True, slots=True)
class Entry:
    seq: int
    prev: bytes
    device: str
    time: int
    mono: int
    kind: str
    body: Mapping[str, Any]
    sig: bytes
    raw: bytes  # the exact encoded bytes (what is stored, hashed and exported)

    @property
    def hash(self) -> bytes:
        return hashlib.sha256(self.raw).digest()

    @property
    def digest(self) -> str:
        return receipt_digest(self.raw)

    def unsigned(self) -> dict:
        return {"v": FORMAT_VERSION, "seq": self.seq, "prev": self.prev, "device": self.device,
                "time": self.time, "mono": self.mono, "kind": self.kind, "body": self.body}


def _validate_fields(seq, prev, device, time, mono, kind, body) -> None:
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        raise EntryFormatError(f"seq must be a whole number ≥ 1, got {seq!r}")
    if not isinstance(prev, bytes) or len(prev) != 32:
        raise EntryFormatError("prev must be 32 bytes (SHA-256 of the previous entry)")
    if not isinstance(device, str) or not device:
        raise EntryFormatError(f"device must be a non-empty text id, got {device!r}")
    for name, v in (("time", time), ("mono", mono)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise EntryFormatError(f"{name} must be a whole number ≥ 0, got {v!r}")
    if kind not in KINDS:
        raise EntryFormatError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
    if not isinstance(body, Mapping):
        raise EntryFormatError("body must be a map")
    _check_value(body, "body")


def make_entry(signing_key: SigningKey, *, seq: int, prev: bytes, device: str, time: int, mono: int,
               kind: str, body: Mapping[str, Any]) -> Entry:
    """Build and sign an entry. ``time``/``mono`` come from the caller (this module reads no clock)."""
    _validate_fields(seq, prev, device, time, mono, kind, body)
    unsigned = {"v": FORMAT_VERSION, "seq": seq, "prev": prev, "device": device, "time": time,
                "mono": mono, "kind": kind, "body": dict(body)}
    message = canonical(unsigned)
    sig = signing_key.sign(message).signature
    raw = _insert_sig(message, sig) or canonical({**unsigned, "sig": sig})
    # Read our own bytes back so body holds exactly what a verifier will see (tuples -> lists...).
    data = cbor2.loads(raw)
    return Entry(seq=seq, prev=prev, device=device, time=time, mono=mono, kind=kind, body=data["body"],
                 sig=sig, raw=raw)


def _seq_end(raw: bytes, header: int) -> int | None:
    """Offset just after the ``seq`` value in canonical entry bytes starting with map ``header``.

    Canonical order sorts keys by length, then bytewise: v, seq, sig, body, kind, mono, prev, time,
    device. So the ``sig`` pair sits right after ``seq`` and can be cut out or put in without
    re-encoding (an append then encodes once, a verify never re-encodes).
    """
    if len(raw) < 10 or raw[0] != header or raw[1:8] != b"\x61v\x01\x63seq":
        return None
    head = raw[8]
    if head >> 5 != 0:
        return None
    size = 1 if head & 0x1F < 24 else {24: 2, 25: 3, 26: 5, 27: 9}.get(head & 0x1F)
    return None if size is None else 8 + size


_SIG_KEY = b"\x63sig\x58\x40"  # text "sig", then a 64-byte byte string header


def _insert_sig(message: bytes, sig: bytes) -> bytes | None:
    at = _seq_end(message, 0xA8)
    if at is None or len(sig) != 64:
        return None
    return b"\xa9" + message[1:at] + _SIG_KEY + sig + message[at:]


def decode(raw: bytes, *, check_canonical: bool = True) -> Entry:
    """Parse entry bytes; refuse anything that is not exactly the canonical form we write.

    ``check_canonical=False`` skips the re-encoding comparison (two thirds of the decode cost). Only
    for a caller that then verifies the signature over :func:`unsigned_bytes` (the centre's ingest):
    that cut is taken at the one canonical position of the ``sig`` pair, so the signature holds only
    for the exact bytes the device signed, and a re-encoding by anyone else cannot verify.
    """
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise EntryFormatError("an entry is bytes")
    raw = bytes(raw)
    try:
        data = cbor2.loads(raw)
    except Exception as exc:  # cbor2 raises several types for truncated/garbage input
        raise EntryFormatError(f"not CBOR: {exc}") from None
    if not isinstance(data, dict) or set(data) != set(_FIELDS) | {"sig"}:
        raise EntryFormatError("not a journal entry map (fields differ)")
    if data["v"] != FORMAT_VERSION:
        raise EntryFormatError(f"unsupported entry format version {data['v']!r}")
    _validate_fields(data["seq"], data["prev"], data["device"], data["time"], data["mono"], data["kind"], data["body"])
    sig = data["sig"]
    if not isinstance(sig, bytes) or len(sig) != 64:
        raise EntryFormatError("sig must be 64 bytes")
    if check_canonical and canonical(data) != raw:
        raise EntryFormatError("not in canonical encoding (bytes were altered or re-encoded)")
    return Entry(seq=data["seq"], prev=data["prev"], device=data["device"], time=data["time"],
                 mono=data["mono"], kind=data["kind"], body=data["body"], sig=sig, raw=raw)


def unsigned_bytes(raw: bytes) -> bytes | None:
    """The signed message of canonical entry bytes, cut out of ``raw`` without re-encoding.

    Returns None when ``raw`` does not have the expected shape (then re-encode with
    :func:`canonical`). Only for bytes that :func:`decode` accepted: it relies on them being canonical.
    """
    at = _seq_end(raw, 0xA9)
    if at is None or raw[at:at + 6] != _SIG_KEY or len(raw) < at + 70:
        return None
    return b"\xa8" + raw[1:at] + raw[at + 70:]


def signature_ok(entry: Entry, verify_key: VerifyKey) -> bool:
    try:
        verify_key.verify(canonical(entry.unsigned()), entry.sig)
        return True
    except BadSignatureError:
        return False


def receipt_digest(raw: bytes) -> str:
    """Short digest a receipt prints: 12 base32 characters (60 bits) of the entry's SHA-256."""
    return base64.b32encode(hashlib.sha256(raw).digest()).decode("ascii")[:12]


def qr_payload(entry: Entry) -> str:
    """What the receipt's QR code holds: scheme, device, seq, digest."""
    return f"SSJ1:{entry.device}:{entry.seq}:{entry.digest}"


def parse_qr_payload(text: str) -> tuple[str, int, str]:
    parts = text.split(":")
    if len(parts) != 4 or parts[0] != "SSJ1" or not parts[2].isdigit():
        raise EntryFormatError(f"not a receipt QR payload: {text!r}")
    return parts[1], int(parts[2]), parts[3]
