"""Errors of the sync package: one tree, each class with a stable ``code``.

::

    SyncError                       base; .code, .message (says what to do next), .retryable
    ├── ProtocolError               a peer sent something the protocol does not allow
    │   ├── WireError               not our framing: bad magic/version, not CBOR, bad compression
    │   └── MessageError            well-formed CBOR but the wrong fields or types
    ├── AuthError                   request signing / enrolment
    │   ├── UnknownDevice           device id not enrolled at this centre            (HTTP 401)
    │   ├── DeviceRevoked           device enrolled but revoked                      (HTTP 403)
    │   ├── BadRequestSignature     signature does not verify with the enrolled key  (HTTP 401)
    │   ├── StaleRequest            timestamp outside the allowed skew               (HTTP 401)
    │   ├── ReplayedRequest         nonce already seen                               (HTTP 401)
    │   └── BadEnrolmentToken       unknown, used or expired one-time token          (HTTP 403)
    ├── StoreError                  the centre's database failed (retryable)
    │   └── StoreConflict           a uniqueness rule was broken
    └── TransportError              the edge could not talk to the centre (retryable)
        └── CentreRefused           the centre answered with a typed error

Foreign exceptions (sqlite3, psycopg, httpx, cbor2) are mapped to these at the module boundary with
``raise X from exc``; nothing foreign escapes the package.
"""

from __future__ import annotations


class SyncError(Exception):
    code = "sync_error"
    retryable = False
    status = 400

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "retryable": self.retryable}


class ProtocolError(SyncError):
    code = "protocol_error"


class WireError(ProtocolError):
    code = "bad_wire"


class MessageError(ProtocolError):
    code = "bad_message"


class AuthError(SyncError):
    code = "auth_error"
    status = 401


class UnknownDevice(AuthError):
    code = "unknown_device"


class DeviceRevoked(AuthError):
    code = "device_revoked"
    status = 403


class BadRequestSignature(AuthError):
    code = "bad_request_signature"


class StaleRequest(AuthError):
    code = "stale_request"


class ReplayedRequest(AuthError):
    code = "replayed_request"


class BadEnrolmentToken(AuthError):
    code = "bad_enrolment_token"
    status = 403


class StoreError(SyncError):
    code = "store_error"
    retryable = True
    status = 503


class StoreConflict(StoreError):
    code = "store_conflict"
    retryable = False
    status = 409


class TransportError(SyncError):
    code = "transport_error"
    retryable = True


class CentreRefused(TransportError):
    """The centre answered with a typed error (``code`` is the centre's)."""

    code = "centre_refused"

    def __init__(self, message: str, *, code: str | None = None, retryable: bool = False, status: int = 400) -> None:
        super().__init__(message, code=code)
        self.retryable = retryable
        self.status = status


BY_CODE = {cls.code: cls for cls in (
    ProtocolError, WireError, MessageError, AuthError, UnknownDevice, DeviceRevoked, BadRequestSignature,
    StaleRequest, ReplayedRequest, BadEnrolmentToken, StoreError, StoreConflict)}
