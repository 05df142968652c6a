"""Store-and-forward sync: the wire protocol, signed bundles and the city centre service.

Public names here are the error tree (every failure the package reports, each with a ``code``);
the modules hold the rest: :mod:`sync.protocol` (sans-I/O protocol), :mod:`sync.wire` (framing),
:mod:`sync.auth` (request signing), :mod:`sync.bundles` (signed bundles), :mod:`sync.centre`
(the centre service and its store). See docs/sync.md.
"""

from .errors import (
    AuthError, BadEnrolmentToken, BadRequestSignature, CentreRefused, DeviceRevoked, MessageError, ProtocolError,
    ReplayedRequest, StaleRequest, StoreConflict, StoreError, SyncError, TransportError, UnknownDevice, WireError,
)

__all__ = [
    "SyncError", "ProtocolError", "WireError", "MessageError", "AuthError", "UnknownDevice", "DeviceRevoked",
    "BadRequestSignature", "StaleRequest", "ReplayedRequest", "BadEnrolmentToken", "StoreError", "StoreConflict",
    "TransportError", "CentreRefused",
]
