"""The HTTP face of the drop-in, mounted on the counter API (edge/counter/api.py):

* ``POST /fsi/api/rsfComIfsService/callService`` with ``infno`` in the body (most vendors);
* ``POST /fsi/api/rsfComIfsService/callService/{infno}`` (the base-URL-plus-infno form).

Always HTTP 200 with an envelope, even for a body that is not JSON (real servers answer business
errors so, and a HIS reads ``infcode``). The counter API's guards (loopback only) wrap these routes like
every other.

Caller authentication hook: ``his_routes(counter, authenticate=...)``. ``authenticate(request)`` is the
counter API's caller check (the HIS's installation token, in a header or, for a HIS that can only set
a URL, in the query string ``?access_token=``); it returns the operator the HIS acts as, or raises the
API's error (answered as HTTP 401/403 with the API's error body: an unauthenticated caller gets no
envelope). The operator is passed to every ``Counter`` call as ``operator=``. The counter API wires it
to ``edge.counter.auth.his_caller`` (the installation token only; a clerk's page session does not open
these routes); ``authenticate=None`` is for a bare service in tests.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Awaitable, Callable

import trio
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .envelope import CST, answer, dumps
from .service import HisService

log = logging.getLogger("edge.his")
PATH = "/fsi/api/rsfComIfsService/callService"
MAX_BODY = 1024 * 1024
JSON_UTF8 = "application/json;charset=utf-8"


def his_routes(counter: Any, authenticate: Callable[[Request], Awaitable[Any]] | None = None) -> list[Route]:
    service: HisService | None = None
    opening = trio.Lock()      # two first requests at once still open one service (one msgid lock)

    async def call(request: Request) -> Response:
        nonlocal service
        import datetime as dt

        async with opening:
            if service is None:   # opened on first use, off the event loop (a SQLite file and its migrations)
                service = await trio.to_thread.run_sync(HisService.beside_journal, counter)
        operator = await authenticate(request) if authenticate is not None else None
        raw = await _capped_body(request)
        if raw is None:
            now = dt.datetime.now(CST)
            return Response(dumps(answer("000000", now, now, err_msg=f"报文过大（超过{MAX_BODY // 1024}KB），未受理")),
                            media_type=JSON_UTF8)
        try:
            body = await service.handle(raw, request.path_params.get("infno"), operator=operator)
        except Exception:
            log.exception("HIS message failed", extra={"event": "his_error"})
            now = dt.datetime.now(CST)
            body = dumps(answer("000000", now, now, err_msg="内部错误，本交易结果不确定，请用冲正(2601)或查询后再处理"))
        return Response(body, media_type=JSON_UTF8)

    return [Route(PATH, call, methods=["POST"]), Route(PATH + "/{infno}", call, methods=["POST"])]


async def _capped_body(request: Request) -> bytes | None:
    """The body, or None once it passes MAX_BODY: read in chunks and given up on at the limit, so a 10 MB
    or endless chunked body never sits in memory (``request.body()`` would read it all first)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        return None
    parts, size = [], 0
    async with contextlib.aclosing(request.stream()) as stream:
        async for chunk in stream:
            size += len(chunk)
            if size > MAX_BODY:
                return None
            parts.append(chunk)
    return b"".join(parts)


def openapi_paths() -> dict:
    """The two routes in the counter API's OpenAPI document (the envelope itself is docs/his.md's)."""
    op = {"post": {"summary": "the national 两定接口 (HIS drop-in): one envelope in, one out; always HTTP 200, "
                              "infcode 0 or -1 (docs/his.md)",
                   "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}},
                   "responses": {"200": {"description": "the response envelope",
                                         "content": {"application/json": {"schema": {"type": "object"}}}}}}}
    with_infno = {"post": {**op["post"], "parameters": [{"name": "infno", "in": "path", "required": True,
                                                         "schema": {"type": "string"}}]}}
    return {PATH: op, PATH + "/{infno}": with_infno}
