"""Key ids: the short name of an Ed25519 public key, the same on the counter and at the centre.

A key id is the first 16 hex digits (64 bits) of the SHA-256 of the 32 raw public-key bytes. Bundles
name the centre key that signed them with it, enrolment answers name the pinned key with it, and the
journal names the device key with it; one definition keeps all three comparable. The text forms
of a public key (base64 as enrolment sends it, or hex) are read and written here too, for the
counter's CLI and the centre's ``register-device`` alike. Pure.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

from nacl.signing import SigningKey, VerifyKey


def key_id(verify_key: VerifyKey | bytes) -> str:
    return hashlib.sha256(bytes(verify_key)).hexdigest()[:16]


def public_key_b64(key: SigningKey | VerifyKey) -> str:
    """The public key as standard base64 (what enrolment sends and `edge journal export` embeds)."""
    verify = key.verify_key if isinstance(key, SigningKey) else key
    return base64.b64encode(bytes(verify)).decode("ascii")


def verify_key_from_text(text: str) -> VerifyKey:
    """Parse a public key given as base64 (44 chars) or hex (64 chars); ValueError says which forms work."""
    text = text.strip()
    raw: bytes | None = None
    if len(text) == 64:
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raw = None
    if raw is None:
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raw = None
    if raw is None or len(raw) != 32:
        raise ValueError("a public key is 32 bytes written as base64 (44 characters) or hex (64 characters)")
    return VerifyKey(raw)
