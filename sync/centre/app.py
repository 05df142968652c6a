"""The centre's HTTP service: a Starlette app (served by hypercorn's trio worker, see :mod:`.server`).

Routes (sync frames of :mod:`sync.wire` in and out, except health):

    POST /v1/enrol            one-time token -> device id, site, pinned bundle key
    POST /v1/upload           signed; a batch of entries -> per-entry results and the ack
    POST /v1/feed             signed; downlink messages since a cursor (+ the device's high-water)
    GET  /v1/bundle/{kind}    signed; the newest full bundle of a kind (after a broken delta chain)
    GET  /health              JSON: ok, store backend, devices, entries
    GET  /metrics             Prometheus text, loopback only (sync.centre.metrics)
  every route behind :class:`sync.centre.limits.Guard`: a bound on concurrent requests (503 busy) and
  per-client rate limits on enrolment and the review desk's login (429 rate_limited)
  + the ``routes`` of sync.centre.online (online settlement) and sync.centre.review_web (review),
    listed in :data:`ROUTE_MODULES`: plain imports, so a broken module stops the centre at start.

Handlers are thin: decode, authenticate, call the store in a worker thread, encode. Upload verifies
signatures in parallel worker threads before the (short) store transaction; the response is sent
only after the store committed, so an ack is never lost.
"""

from __future__ import annotations

import logging
from contextlib import aclosing
from typing import Any

import trio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sync import protocol, wire
from sync.centre import ectoken, online, review_web
from sync.centre.auth import authenticate_device
from sync.centre.limits import MAX_CONCURRENT, Gate, Guard, Rate
from sync.centre.metrics import CentreMetrics
from sync.centre.store import now_ms
from sync.centre.verify import Verifier
from sync.errors import SyncError
from sync.keys import key_id

log = logging.getLogger("sync.centre")
ROUTE_MODULES = (online, review_web, ectoken)   # each exports ``routes``
MAX_BODY = 16 * 1024 * 1024


def frame_response(message: dict, status: int = 200) -> Response:
    return Response(wire.encode(message), status_code=status, media_type=wire.CONTENT_TYPE)


def error_response(exc: SyncError) -> Response:
    return frame_response(protocol.error_message(exc), getattr(exc, "status", 400))


def _too_large() -> SyncError:
    return SyncError(f"request body larger than {MAX_BODY} bytes: send smaller batches", code="too_large",
                     status=413)


async def _body(request: Request) -> bytes:
    """The body, refused once it passes MAX_BODY *while reading*: a chunked body states no length, and
    a Content-Length may lie, so the cap is on the bytes received, not on a header."""
    try:
        declared = int(request.headers.get("content-length") or 0)
    except ValueError:
        raise SyncError("Content-Length is not a number", code="bad_request") from None
    if declared > MAX_BODY:
        raise _too_large()
    received = bytearray()
    async with aclosing(request.stream()) as stream:
        async for chunk in stream:
            received += chunk
            if len(received) > MAX_BODY:
                raise _too_large()
    return bytes(received)


def _handler(fn):
    async def wrapped(request: Request) -> Response:
        try:
            return await fn(request)
        except SyncError as exc:
            # Refused requests are reported (log + the caller gets the code), never silently dropped.
            who = request.headers.get("x-settle-device", "-")
            peer = request.client.host if request.client else "-"
            log.warning("centre: %s %s refused for device %s from %s: %s (%s)", request.method,
                        request.url.path, who, peer, exc.code, exc.message)
            return error_response(exc)
    return wrapped


@_handler
async def enrol(request: Request) -> Response:
    from nacl.exceptions import BadSignatureError
    from nacl.signing import VerifyKey

    from sync.errors import BadRequestSignature

    msg = protocol.Enrol.from_msg(wire.decode(await _body(request)))
    try:
        VerifyKey(msg.pubkey).verify(protocol.Enrol.signed_bytes(msg.token, msg.pubkey), msg.sig)
    except (BadSignatureError, ValueError):
        raise BadRequestSignature("the enrolment request is not signed by the key it registers") from None
    state = request.app.state
    info = await trio.to_thread.run_sync(lambda: state.store.enrol(msg.token, msg.pubkey, now=state.clock()))
    vk = state.bundle_key.verify_key
    log.info("centre: enrolled %s (site %s)", info.device, info.site)
    return frame_response(protocol.Enrolled(info.device, info.site, bytes(vk), key_id(vk)).to_msg())


@_handler
async def upload(request: Request) -> Response:
    body = await _body(request)
    info = await authenticate_device(request, body)
    msg = protocol.Upload.from_msg(wire.decode(body))
    if msg.device != info.device:
        from sync.errors import BadRequestSignature

        raise BadRequestSignature(f"upload names device {msg.device} but was signed by {info.device}")
    state = request.app.state
    checked = await state.verifier.check(msg.entries, info.device, info.verify_key)
    outcome = await trio.to_thread.run_sync(lambda: state.store.put_checked(info.device, checked, now=state.clock()))
    state.centre_metrics.observe_results(outcome.results)
    bad = [r for r in outcome.results if r.status == protocol.REJECTED]
    for r in bad:
        log.warning("centre: %s seq %s rejected: %s", info.device, r.seq, r.code)
    return frame_response(protocol.upload_result(outcome))


@_handler
async def feed(request: Request) -> Response:
    body = await _body(request)
    info = await authenticate_device(request, body)
    req = protocol.FeedRequest.from_msg(wire.decode(body))
    store = request.app.state.store

    def page():
        msgs, cursor = store.downlink_page(info.device, req.cursor, req.limit)
        more = store.feed_head() > cursor and bool(msgs)
        return protocol.FeedPage(msgs, cursor, more, store.high_water(info.device),
                                 epoch=store.restores.epoch().id, head=store.feed_head())  # restore epoch: docs/sync.md

    result = await trio.to_thread.run_sync(page)
    return frame_response(result.to_msg())


@_handler
async def bundle(request: Request) -> Response:
    await authenticate_device(request, b"")
    kind = request.path_params["kind"]
    row = await trio.to_thread.run_sync(request.app.state.store.latest_bundle, kind)
    if row is None:
        raise SyncError(f"the centre has published no {kind} bundle yet: run `centre publish`", code="no_bundle")
    return Response(row["raw"], media_type="application/cbor")


async def health(request: Request) -> Response:
    store = request.app.state.store

    def counts():
        return {"ok": True, "backend": store.backend, "devices": len(store.devices()), "entries": store.entry_count(),
                "bundles": store.bundle_versions()}

    try:
        return JSONResponse(await trio.to_thread.run_sync(counts))
    except SyncError as exc:
        return JSONResponse({"ok": False, "code": exc.code, "message": exc.message}, status_code=503)


async def _sync_error(request: Request, exc: SyncError) -> Response:
    # Routes of other modules (JSON bodies) raising our typed errors, e.g. from authenticate_device.
    if wire.CONTENT_TYPE in request.headers.get("content-type", ""):
        return error_response(exc)
    return JSONResponse({"error": exc.to_dict()}, status_code=getattr(exc, "status", 400))


async def _bad_text(request: Request, exc: UnicodeError) -> Response:
    # Backstop: a lone surrogate (JSON "\ud800") that a route's parser let through fails when the store
    # encodes it; that is the caller's invalid text, refused with a code, not a 500.
    # The message does not quote the text: echoing a lone surrogate would fail the JSON encoder too.
    return await _sync_error(request, SyncError("the request holds text that is not valid Unicode (a lone surrogate)",
                                                zh="请求中含有无效字符", code="bad_text", status=400))


async def _too_deep(request: Request, exc: RecursionError) -> Response:
    # A JSON body nested thousands deep ("[[[[...]]]]") exhausts the parser's recursion: the caller's
    # input, refused with a code (the fuzz test found it as a 500 on the review desk's login).
    return await _sync_error(request, SyncError("the request body nests too deeply", zh="请求数据嵌套层数过多，已拒收",
                                                code="too_deep", status=400))


def create_app(store, bundle_key, *, clock=now_ms, max_skew_ms: int | None = None,
               verify_threads: int = 2, verifier: Verifier | None = None, max_concurrent: int = MAX_CONCURRENT,
               gate: Gate | None = None, rates: dict[str, Rate] | None = None) -> Starlette:
    """The ASGI app over ``store`` (a :class:`sync.centre.store.Store`); ``bundle_key`` signs bundles
    and is pinned by edges; ``clock`` returns wall-clock ms (tests steer it); ``verifier`` checks
    entries (default: ``verify_threads`` worker threads; the caller closes a verifier it passes);
    ``max_concurrent`` bounds the requests inside this app at once (or ``gate``, one the caller watches);
    ``rates``: the per-client rate limits by path (default :data:`sync.centre.limits.RATES`)."""
    from sync.auth import MAX_SKEW_MS

    metrics = CentreMetrics().track_store(store)
    routes = [
        Route("/v1/enrol", enrol, methods=["POST"]),
        Route("/v1/upload", upload, methods=["POST"]),
        Route("/v1/feed", feed, methods=["POST"]),
        Route("/v1/bundle/{kind}", bundle, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        metrics.route(),       # /metrics, once, loopback only (docs/operations.md)
        *(route for module in ROUTE_MODULES for route in module.routes),
    ]
    handlers: dict[Any, Any] = {SyncError: _sync_error, UnicodeError: _bad_text, RecursionError: _too_deep}
    gate = gate or Gate(max_concurrent)
    guard = Middleware(Guard, gate=gate, max_body=MAX_BODY, rates=rates)
    app = Starlette(routes=routes, exception_handlers=handlers, middleware=[guard])
    app.state.gate = gate
    app.state.centre_metrics = metrics
    app.state.store = store
    app.state.bundle_key = bundle_key
    app.state.clock = clock
    app.state.max_skew_ms = MAX_SKEW_MS if max_skew_ms is None else max_skew_ms
    app.state.verifier = verifier or Verifier(threads=verify_threads)
    return app
