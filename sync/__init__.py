"""The contract shared by the counter (edge) and the centre (sync.centre), and the centre itself.

The root of this package is what both sides run, and it imports neither of them (import-linter
contract ``sync-root`` in pyproject.toml): :mod:`sync.bodies` (one typed builder and parser per
journal body kind, and the shared constants), :mod:`sync.protocol` (sans-I/O protocol),
:mod:`sync.wire` (framing), :mod:`sync.auth` (request signing), :mod:`sync.bundles` (signed bundles),
:mod:`sync.keys` (key ids), :mod:`sync.metrics` (the ``/metrics`` plumbing), :mod:`sync.problem`
(the project's one error base) and :mod:`sync.errors` (this package's error tree, re-exported here).
:mod:`sync.centre` is the centre service. See docs/sync.md.
"""

from .errors import (
    AuthError, BadEnrolmentToken, BadRequestSignature, BodyError, CentreRefused, DeviceRevoked, MessageError,
    ProtocolError, ReplayedRequest, StaleRequest, StoreConflict, StoreError, SyncError, TransportError, UnknownDevice,
    WireError,
)

__all__ = [
    "SyncError", "ProtocolError", "WireError", "MessageError", "BodyError", "AuthError", "UnknownDevice",
    "DeviceRevoked", "BadRequestSignature", "StaleRequest", "ReplayedRequest", "BadEnrolmentToken", "StoreError",
    "StoreConflict", "TransportError", "CentreRefused",
]
