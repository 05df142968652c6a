"""Device authentication for the centre's HTTP handlers (ours and the reconciliation engineer's).

``await authenticate_device(request) -> DeviceInfo`` checks the signed headers of :mod:`sync.auth`
against the enrolled key, the clock skew and the nonce store; it raises an :class:`AuthError`
(``.status`` 401 or 403, ``.code``) that :func:`sync.centre.app.error_response` turns into a response.
The store is ``request.app.state.store``; the clock is ``request.app.state.clock`` (ms).
"""

from __future__ import annotations

import trio

from sync import auth
from sync.centre.store import DeviceInfo
from sync.errors import StaleRequest


async def authenticate_device(request, body: bytes | None = None) -> DeviceInfo:
    """Authenticate the device that signed ``request`` (its body is read if not given)."""
    state = request.app.state
    if body is None:
        body = await request.body()
    signed = auth.parse_headers(request.headers)
    info = await trio.to_thread.run_sync(state.store.require_device, signed.device)
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    now = state.clock()
    auth.verify_request(signed, info.verify_key, request.method, path, body, now_ms=now,
                        max_skew_ms=state.max_skew_ms)
    # Nonces newer than a restored backup were lost with it: refuse anything signed before the restore.
    restored = (await trio.to_thread.run_sync(state.store.restores.epoch)).started_ms
    if signed.time_ms < restored:
        raise StaleRequest(f"request signed before the centre was restored from a backup (at {restored} ms): "
                           "sign a fresh request", retryable=True)
    await trio.to_thread.run_sync(lambda: state.store.use_nonce(signed.device, signed.nonce, signed.time_ms,
                                                                keep_ms=2 * state.max_skew_ms))
    return info
