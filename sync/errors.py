"""Errors of the sync package: one tree, each class with a stable ``code``.

::

    Problem (sync.problem)              the one error base of the project
    └── SyncError                       base here; .code, .message (says what to do next), .zh, .retryable
        ├── ProtocolError               a peer sent something the protocol does not allow
        │   ├── WireError               not our framing: bad magic/version, not CBOR, bad compression
        │   ├── MessageError            well-formed CBOR but the wrong fields or types
        │   └── BodyError               a journal entry body breaks its contract (sync.bodies)
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

Every class takes :class:`sync.problem.Problem`'s one constructor shape
``(message, *, zh=None, hint=None, code=None, retryable=None, status=None, **detail)``; ``to_dict`` gives
``code``, ``message``, ``zh`` and ``retryable`` (plus ``hint`` and any detail).
"""

from __future__ import annotations

from .problem import Problem


class SyncError(Problem):
    code = "sync_error"
    zh = "与医保中心的数据交换失败，请稍后重试或联系技术支持"
    retryable = False
    status = 400


class ProtocolError(SyncError):
    code = "protocol_error"


class WireError(ProtocolError):
    code = "bad_wire"


class MessageError(ProtocolError):
    code = "bad_message"


class BodyError(ProtocolError):
    """A journal entry body is not what its kind's contract (docs/entries.md, :mod:`sync.bodies`) allows."""

    code = "bad_body"
    zh = "记账内容不符合格式要求，已拒收"


class AuthError(SyncError):
    code = "auth_error"
    zh = "本机未通过医保中心的身份验证，请联系技术支持"
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
    zh = "医保中心数据库暂时不可用，请稍后重试"
    retryable = True
    status = 503


class StoreConflict(StoreError):
    code = "store_conflict"
    retryable = False
    status = 409


class TransportError(SyncError):
    code = "transport_error"
    zh = "无法连接医保中心，请稍后重试"
    retryable = True


class CentreRefused(TransportError):
    """The centre answered with a typed error (``code`` is the centre's)."""

    code = "centre_refused"
    zh = "医保中心拒绝了本次请求"
    retryable = False


BY_CODE = {cls.code: cls for cls in (
    ProtocolError, WireError, MessageError, BodyError, AuthError, UnknownDevice, DeviceRevoked, BadRequestSignature,
    StaleRequest, ReplayedRequest, BadEnrolmentToken, StoreError, StoreConflict)}
