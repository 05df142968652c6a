"""Bounded resources at the centre: decompression bombs and endless bodies are refused with a code.

Findings (issue 14): an 8 KB zstd frame declaring 256 MiB decompressed whole (python-zstandard
ignores ``max_output_size`` when the frame states its size); a 20-byte frame declaring 1 TiB raised
MemoryError -> 500; a 50 MB chunked body was read whole (only Content-Length was checked).
Peak memory under these is measured in bench/bombs.py, not here.
"""

from __future__ import annotations

import httpx
import pytest
import trio
import zstandard

from sync import wire
from sync.centre.app import MAX_BODY
from sync.errors import WireError

HEADERS = {"content-type": wire.CONTENT_TYPE}


def declared_frame(size: int, *, fill: int) -> bytes:
    """A zstd sync frame whose header declares ``size`` bytes and which holds ``fill`` zero bytes."""
    c = zstandard.ZstdCompressor(level=3).compressobj(size=size)
    out = bytearray()
    block = bytes(1024 * 1024)
    for _ in range(fill // len(block)):
        out += c.compress(block)
    out += c.flush()
    return wire.MAGIC + bytes((wire.VERSION, wire.ZSTD)) + bytes(out)


@pytest.fixture(scope="module")
def bomb_256m() -> bytes:
    frame = declared_frame(256 * 1024 * 1024, fill=256 * 1024 * 1024)
    assert len(frame) < 16 * 1024   # the 8 KB frame of the finding
    return frame


def test_decoded_size_is_capped_whatever_the_header_declares(bomb_256m):
    with pytest.raises(WireError) as exc:
        wire.decode(bomb_256m)
    assert exc.value.code == "frame_too_large" and exc.value.status == 413
    just_over = declared_frame(wire.MAX_FRAME + 1024 * 1024, fill=wire.MAX_FRAME + 1024 * 1024)
    with pytest.raises(WireError) as exc:
        wire.decode(just_over)
    assert exc.value.code == "frame_too_large"


def test_a_frame_declaring_a_terabyte_is_refused_not_allocated():
    frame = declared_frame(2**40, fill=0)
    assert len(frame) <= 20
    with pytest.raises(WireError) as exc:
        wire.decode(frame)
    assert exc.value.code == "bad_wire"


@pytest.mark.parametrize("path", ["/v1/enrol", "/v1/upload", "/v1/feed"])
async def test_bombs_over_http_get_a_code_not_a_500(running_centre, path, bomb_256m):
    centre = running_centre
    async with httpx.AsyncClient(trust_env=False, timeout=60) as http:
        r = await http.post(centre.url + path, content=bomb_256m, headers=HEADERS)
        if path == "/v1/enrol":   # unauthenticated: the frame itself is refused
            assert r.status_code == 413 and wire.decode(r.content)["code"] == "frame_too_large"
        else:                     # signed endpoints refuse the unsigned caller before decoding anything
            assert r.status_code == 401
        tiny = declared_frame(2**40, fill=0)
        r = await http.post(centre.url + path, content=tiny, headers=HEADERS)
        assert 400 <= r.status_code < 500 and wire.decode(r.content)["code"]


async def test_a_chunked_body_is_refused_while_reading(running_centre):
    """50 MB sent chunked (no Content-Length) over a raw socket: the centre answers 413 too_large
    after about MAX_BODY bytes, and the client stops sending when it does."""
    host, port = running_centre.url.removeprefix("http://").split(":")
    stream = await trio.open_tcp_stream(host, int(port))
    head = (f"POST /v1/enrol HTTP/1.1\r\nHost: {host}\r\nContent-Type: {wire.CONTENT_TYPE}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n").encode()
    block = b"\0" * (1024 * 1024)
    chunk = b"%x\r\n" % len(block) + block + b"\r\n"
    sent, answer = 0, b""
    async with stream:
        await stream.send_all(head)
        with trio.fail_after(60):
            for _ in range(50):
                try:
                    await stream.send_all(chunk)
                except trio.BrokenResourceError:
                    break   # the centre answered and closed: it read no further
                sent += len(block)
                with trio.move_on_after(0.01):
                    answer += await stream.receive_some(65536)
                if answer:
                    break
            while b"\r\n\r\n" not in answer:
                data = await stream.receive_some(65536)
                if not data:
                    break
                answer += data
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < 50 * 1024 * 1024 and sent <= MAX_BODY + 8 * len(block)


async def endless_chunked(url: str, path: str, ctype: str, *, megabytes: int = 40) -> tuple[bytes, int]:
    """POST ``megabytes`` MiB chunked to ``path`` until the centre answers; (the answer, bytes sent)."""
    host, port = url.removeprefix("http://").split(":")
    stream = await trio.open_tcp_stream(host, int(port))
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {ctype}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n").encode()
    block = b"{" * (1024 * 1024)
    chunk = b"%x\r\n" % len(block) + block + b"\r\n"
    sent, answer = 0, b""
    async with stream:
        await stream.send_all(head)
        with trio.fail_after(60):   # a guard against a hang, not a timing assertion
            for _ in range(megabytes):
                try:
                    await stream.send_all(chunk)
                except trio.BrokenResourceError:
                    break
                sent += len(block)
                with trio.move_on_after(0.01):
                    answer += await stream.receive_some(65536)
                if answer:
                    break
            while True:
                try:
                    data = await stream.receive_some(65536)
                except trio.BrokenResourceError:
                    break
                if not data:
                    break
                answer += data
    return answer, sent


@pytest.mark.parametrize("path,ctype", [("/v1/review/login", "application/json"),
                                        ("/review/login", "application/x-www-form-urlencoded"),
                                        ("/v1/online/settle", "application/json"),
                                        ("/v1/ectoken/resolve", "application/json")])
async def test_every_route_refuses_an_endless_body_while_reading(running_centre, path, ctype):
    """Finding of the outside attack: the review desk's login (unauthenticated) read a 300 MB chunked
    body whole (the centre's peak RSS grew by 600 MB); so did every route outside the sync handlers.
    The cap now holds in front of every route."""
    answer, sent = await endless_chunked(running_centre.url, path, ctype)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert b'"too_large"' in answer
    assert sent <= MAX_BODY + 8 * 1024 * 1024
