"""Signed, versioned bundles the centre publishes and the edge caches. Pure (no I/O, no clock).

A bundle is ``canonical CBOR {"signed": <envelope bytes>, "sig": <Ed25519 over envelope bytes>}``
with the envelope::

    {"v": 1, "kind": "catalogue"|"policy"|"persons"|"hotlist", "version": 7, "base": 6 | None,
     "created": <ms since epoch>, "key_id": "…", "sha256": <of payload>, "payload": <CBOR bytes>}

``base`` is None for a full bundle; a delta names the version it applies on, so an edge holding
version 6 can take delta 6->7 but must refuse it while holding 5 (broken version chain) and ask for a
full bundle instead. Versions only go up; an older or equal version is refused as stale.

Payloads (decoded CBOR; money in integer fen, ratios as text):
    catalogue  full {"items": [catalogue item, …]}           delta {"upsert": [...], "delete": [code]}
    policy     full {"version": "2026.3", "rules": [...], "offline": {...limits...}}   (no delta)
    persons    full {"persons": [person snapshot, …]}         delta {"upsert": [...], "delete": [psn_no]}
    hotlist    full {"cards": [{"card_id", "reason"}, …]}      delta {"upsert": [...], "delete": [card_id]}
Catalogue items and persons have the shapes of the case files (``edge.settle.parse_*`` reads them);
a person snapshot adds ``certno`` (the SSN read from the card), ``card_ids`` and ``pending_review``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Mapping

import cbor2
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from sync.errors import SyncError
from sync.keys import key_id

KINDS = ("catalogue", "policy", "persons", "hotlist")
KEYS = {"catalogue": "code", "persons": "psn_no", "hotlist": "card_id"}
_COLLECTION = {"catalogue": "items", "persons": "persons", "hotlist": "cards"}


class BundleError(SyncError):
    """A bundle was refused; ``code`` is stable, the message says what to do."""

    code = "bundle_error"
    zh = "医保目录或政策数据包无效，未采用；请等待重新下载或联系医保中心"


class BundleMalformed(BundleError):
    code = "bundle_malformed"


class BundleBadSignature(BundleError):
    code = "bundle_bad_signature"


class BundleBrokenChain(BundleError):
    code = "bundle_broken_chain"


class BundleStale(BundleError):
    code = "bundle_stale"


def envelope(raw: bytes) -> dict:
    """The envelope fields of a bundle without verifying it (for storing and routing); raises
    BundleMalformed for anything that is not a bundle."""
    try:
        env = cbor2.loads(cbor2.loads(raw)["signed"])
        fields = {k: env[k] for k in ("kind", "version", "base", "created", "key_id")}
    except Exception:
        raise BundleMalformed("not a bundle (the bytes do not decode): build it with `centre publish`") from None
    if fields["kind"] not in KINDS or not isinstance(fields["version"], int) or \
            not (fields["base"] is None or isinstance(fields["base"], int)):
        raise BundleMalformed("bundle envelope is malformed (kind, version or base)")
    return fields


def read_stored(raw: bytes) -> "Bundle":
    """A bundle the centre signed and keeps in its own store, decoded without checking the signature
    (it never left the store; :func:`open_bundle` is for anything that crossed the network). Raises
    BundleMalformed for anything that is not a bundle."""
    fields = envelope(raw)
    try:
        env = cbor2.loads(cbor2.loads(raw)["signed"])
        payload = cbor2.loads(env["payload"])
    except Exception:
        raise BundleMalformed("stored bundle payload does not decode") from None
    if not isinstance(payload, dict):
        raise BundleMalformed("bundle payload must be a map")
    return Bundle(fields["kind"], fields["version"], fields["base"], fields["created"], fields["key_id"], payload,
                  bytes(raw))


def _canonical(data: Any) -> bytes:
    return cbor2.dumps(data, canonical=True)


@dataclass(frozen=True)
class Bundle:
    kind: str
    version: int
    base: int | None
    created: int
    key_id: str
    payload: Mapping[str, Any]
    raw: bytes

    @property
    def is_delta(self) -> bool:
        return self.base is not None

    @property
    def hash(self) -> str:
        """Hex SHA-256 of the whole signed bundle: what settlement provenance records."""
        return hashlib.sha256(self.raw).hexdigest()


def build(signing_key: SigningKey, *, kind: str, version: int, payload: Mapping[str, Any], created: int,
          base: int | None = None) -> bytes:
    if kind not in KINDS:
        raise BundleMalformed(f"unknown bundle kind {kind!r}")
    if kind == "policy" and base is not None:
        raise BundleMalformed("policy bundles are always full")
    if base is not None and base >= version:
        raise BundleMalformed("a delta's base must be below its version")
    body = _canonical(dict(payload))
    envelope = {"v": 1, "kind": kind, "version": version, "base": base, "created": created,
                "key_id": key_id(signing_key.verify_key), "sha256": hashlib.sha256(body).digest(), "payload": body}
    signed = _canonical(envelope)
    return _canonical({"signed": signed, "sig": signing_key.sign(signed).signature})


def open_bundle(raw: bytes, verify_key: VerifyKey, *, kind: str | None = None,
                current_version: int | None = None) -> Bundle:
    """Verify signature, integrity, kind and version chain; return the decoded bundle."""
    try:
        outer = cbor2.loads(raw)
        signed, sig = outer["signed"], outer["sig"]
        env = cbor2.loads(signed)
        body = env["payload"]
        fields = (env["kind"], env["version"], env["base"], env["created"], env["key_id"], env["sha256"])
    except Exception as exc:
        raise BundleMalformed(f"not a bundle ({exc.__class__.__name__}): the download is corrupt; fetch it again") from None
    try:
        verify_key.verify(signed, sig)
    except (BadSignatureError, ValueError, TypeError):
        raise BundleBadSignature(
            "bundle signature does not verify with the pinned centre key: it was altered or signed by "
            "someone else; it was not applied. Report this to the centre") from None
    b_kind, version, base, created, kid, digest = fields
    if b_kind not in KINDS or not isinstance(version, int) or not isinstance(body, bytes):
        raise BundleMalformed("bundle envelope is malformed")
    if kind is not None and b_kind != kind:
        raise BundleMalformed(f"expected a {kind} bundle, got {b_kind}")
    if hashlib.sha256(body).digest() != digest:
        raise BundleMalformed("bundle payload does not match its hash: fetch it again")
    if current_version is not None:
        if version <= current_version:
            raise BundleStale(f"{b_kind} bundle version {version} is not newer than the cached {current_version}")
        if base is not None and base != current_version:
            raise BundleBrokenChain(
                f"{b_kind} delta {base}->{version} does not apply to the cached version {current_version}: "
                "a full bundle is needed")
    elif base is not None:
        raise BundleBrokenChain(f"{b_kind} delta {base}->{version} needs a cached base; a full bundle is needed")
    try:
        payload = cbor2.loads(body)
    except Exception:
        raise BundleMalformed("bundle payload is not CBOR") from None
    if not isinstance(payload, dict):
        raise BundleMalformed("bundle payload must be a map")
    return Bundle(b_kind, version, base, created, kid, payload, bytes(raw))


def apply_delta(kind: str, full: Mapping[str, Any], delta: Mapping[str, Any]) -> dict:
    """Content of a full bundle after a delta (upserts then deletes, by the kind's key)."""
    if kind not in KEYS:
        raise BundleMalformed(f"{kind} bundles have no deltas")
    key, coll = KEYS[kind], _COLLECTION[kind]
    rows = {r[key]: r for r in full.get(coll, [])}
    for r in delta.get("upsert", []):
        rows[r[key]] = r
    for k in delta.get("delete", []):
        rows.pop(k, None)
    return {coll: [rows[k] for k in sorted(rows)]}
