"""Key ids: the short name of an Ed25519 public key, the same on the counter and at the centre.

A key id is the first 16 hex digits (64 bits) of the SHA-256 of the 32 raw public-key bytes. Bundles
name the centre key that signed them with it, enrolment answers name the pinned key with it, and the
journal names the device key with it; one definition keeps all three comparable. Pure.
"""

from __future__ import annotations

import hashlib

from nacl.signing import VerifyKey


def key_id(verify_key: VerifyKey | bytes) -> str:
    return hashlib.sha256(bytes(verify_key)).hexdigest()[:16]
