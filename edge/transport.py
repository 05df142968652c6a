"""Sync frames over HTTP: POST one frame to the centre and read its answer (httpx, trio).

Shared by enrolment (:mod:`edge.enrol`, before the device has an identity) and the uplink
(:mod:`edge.uplink`, signed requests); it sits below both so neither imports the other for it.
httpx exceptions never escape: they become :class:`sync.errors.TransportError`, and a typed error
frame from the centre becomes the error it names (:func:`sync.protocol.error_from_message`).
"""

from __future__ import annotations

from typing import Any

import httpx

from sync import protocol, wire
from sync.errors import SyncError, TransportError


async def post_frame(url: str, message: Any, *, client: httpx.AsyncClient | None = None,
                     headers: dict | None = None, body: bytes | None = None, wait_s: float = 30.0) -> Any:
    """POST a sync frame and return the decoded answer; typed errors for every failure.

    ``wait_s`` is handed to httpx as its own network timeout: httpx then ends a stuck request
    cleanly (a trio cancellation in the middle of httpx's body stream leaves an async generator
    unfinished). Callers still bound the whole call with ``fail_after``."""
    body = wire.encode(message) if body is None else body
    own = client is None
    http = httpx.AsyncClient() if client is None else client
    try:
        try:
            request = http.build_request(
                "POST", url, timeout=httpx.Timeout(wait_s),
                headers={"content-type": wire.CONTENT_TYPE, "content-length": str(len(body)), **(headers or {})})
            request.stream = _OneChunk(body)
            resp = await http.send(request)
        except httpx.HTTPError as exc:
            raise TransportError(f"cannot reach the centre at {url}: {exc.__class__.__name__} {exc}; "
                                 "entries stay queued and are sent when it answers") from exc
        return answer_of(url, resp.status_code, resp.headers.get("content-type", ""), resp.content)
    finally:
        if own:
            await http.aclose()


class _OneChunk(httpx.AsyncByteStream):
    """The request body as a plain async iterator. httpx's own ByteStream is an async generator, which
    trio reports (ResourceWarning) whenever a failed connection leaves it unfinished."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def __aiter__(self):
        return _OneChunkIter(self.body)


class _OneChunkIter:
    def __init__(self, body: bytes) -> None:
        self.body: bytes | None = body

    async def __anext__(self) -> bytes:
        if self.body is None:
            raise StopAsyncIteration
        body, self.body = self.body, None
        return body


def answer_of(url: str, status: int, ctype: str, content: bytes) -> Any:
    if wire.CONTENT_TYPE not in ctype:
        # a proxy's or gateway's page, not the centre: transient
        raise TransportError(f"the centre at {url} answered HTTP {status} without a sync frame; retrying later")
    try:
        msg = wire.decode(content)
    except SyncError as exc:
        raise TransportError(f"the answer from {url} was damaged in transit ({exc.message}); retrying") from exc
    if status != 200:
        if isinstance(msg, dict) and msg.get("t") == "error":
            raise protocol.error_from_message(msg, status)
        raise TransportError(f"the centre at {url} answered HTTP {status}")
    return msg
