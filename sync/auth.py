"""Request signing between an enrolled device and the centre. Pure (time and nonce are arguments).

Every request after enrolment carries four headers::

    X-Settle-Device     the device id (D-<site>-<n>)
    X-Settle-Time       wall-clock milliseconds when the device signed
    X-Settle-Nonce      32 hex characters, fresh per request
    X-Settle-Signature  base64 Ed25519 signature over :func:`signing_bytes`

The signature covers method, path (with query), device, time, nonce and the SHA-256 of the body,
so neither the body nor the route can be swapped. The centre refuses a time further than
``MAX_SKEW_MS`` from its own clock (``stale_request``) and a nonce it has seen (``replayed_request``);
it remembers nonces for twice the skew, after which the time check alone refuses a replay.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from dataclasses import dataclass
from typing import Mapping

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from sync.errors import BadRequestSignature, MessageError, StaleRequest

DOMAIN = b"settle-request-v1"
MAX_SKEW_MS = 5 * 60 * 1000
H_DEVICE, H_TIME, H_NONCE, H_SIG = "x-settle-device", "x-settle-time", "x-settle-nonce", "x-settle-signature"


def signing_bytes(method: str, path: str, device: str, time_ms: int, nonce: str, body: bytes) -> bytes:
    return b"\n".join([DOMAIN, method.upper().encode(), path.encode("utf-8"), device.encode("utf-8"),
                       str(time_ms).encode(), nonce.encode(), hashlib.sha256(body).hexdigest().encode()])


def sign_request(key: SigningKey, device: str, method: str, path: str, body: bytes, *, time_ms: int,
                 nonce: str | None = None) -> dict[str, str]:
    nonce = nonce or secrets.token_hex(16)
    sig = key.sign(signing_bytes(method, path, device, time_ms, nonce, body)).signature
    return {H_DEVICE: device, H_TIME: str(time_ms), H_NONCE: nonce, H_SIG: base64.b64encode(sig).decode()}


@dataclass(frozen=True)
class SignedRequest:
    device: str
    time_ms: int
    nonce: str
    sig: bytes


def parse_headers(headers: Mapping[str, str]) -> SignedRequest:
    """Read the four headers (case-insensitive mapping); raises MessageError naming what is missing."""
    try:
        device, t, nonce, sig = (headers[h] for h in (H_DEVICE, H_TIME, H_NONCE, H_SIG))
    except KeyError as exc:
        raise BadRequestSignature(f"the request is not signed (header {exc.args[0]} missing): enrol the device "
                                  "with `edge enroll` and send through the uplink") from None
    if not t.isdigit() or len(nonce) < 16 or len(nonce) > 64:
        raise MessageError("X-Settle-Time must be milliseconds and X-Settle-Nonce 16-64 characters")
    try:
        raw = base64.b64decode(sig, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequestSignature("X-Settle-Signature is not base64") from None
    return SignedRequest(device, int(t), nonce, raw)


def verify_request(signed: SignedRequest, verify_key: VerifyKey, method: str, path: str, body: bytes, *,
                   now_ms: int, max_skew_ms: int = MAX_SKEW_MS) -> None:
    try:
        verify_key.verify(signing_bytes(method, path, signed.device, signed.time_ms, signed.nonce, body), signed.sig)
    except (BadSignatureError, ValueError):
        raise BadRequestSignature(f"the request signature does not verify with the key enrolled for {signed.device}: "
                                  "the body was altered or the device key changed (re-enrol the device)") from None
    if abs(now_ms - signed.time_ms) > max_skew_ms:
        raise StaleRequest(f"the request was signed at {signed.time_ms} but the centre's clock says {now_ms} "
                           f"(more than {max_skew_ms // 1000} s apart): fix the counter PC's clock")
