"""Attacks on the centre's limits (sync.centre.limits) from outside, each found holding or not.

The rate limits count attempts per client *address*. An IPv6 caller is handed a whole /64 by its
provider and may send from any of its 2^64 addresses; a dual-stack socket shows an IPv4 caller as
``::ffff:a.b.c.d``. Both must count as the one caller they are, else the bound on enrolment tokens
and passwords guessed is no bound (and the table of remembered addresses is flushed by rotation).
"""

from __future__ import annotations

import json
import logging

import pytest
import trio

from sync.centre import limits
from sync.centre.server import start_centre
from sync.centre.store import open_store


async def _ok_app(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def _post(guard: limits.Guard, address: str, path: str = "/v1/enrol") -> tuple[int, dict]:
    """One POST through the guard as the ASGI server would hand it over from ``address``."""
    scope = {"type": "http", "method": "POST", "path": path, "headers": [(b"content-type", b"application/json")],
             "client": (address, 40000)}
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    await guard(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body)


def _guard() -> limits.Guard:
    return limits.Guard(_ok_app, gate=limits.Gate(), max_body=1024, clock=lambda: 0.0)


async def test_enrolments_rotating_through_one_ipv6_64_are_one_client():
    guard = _guard()
    statuses = [(await _post(guard, f"2001:db8:1:2::{i + 1:x}"))[0] for i in range(limits.ENROL.burst + 5)]
    assert statuses[:limits.ENROL.burst] == [200] * limits.ENROL.burst
    assert statuses[limits.ENROL.burst:] == [429] * 5
    # Another /64 is another caller.
    assert (await _post(guard, "2001:db8:1:3::1"))[0] == 200


async def test_logins_from_an_ipv4_address_and_its_mapped_form_are_one_client():
    guard = _guard()
    statuses = []
    for i in range(limits.LOGIN.burst + 2):
        address = "127.0.0.9" if i % 2 else "::ffff:127.0.0.9"
        statuses.append((await _post(guard, address, "/v1/review/login"))[0])
    assert statuses[limits.LOGIN.burst:] == [429, 429]


def test_ipv6_rotation_cannot_flush_a_guessers_bucket():
    buckets = limits.Buckets(limits.ENROL, max_clients=100, clock=lambda: 0.0)
    for _ in range(limits.ENROL.burst):
        assert buckets.take(limits.client_key("198.51.100.7")) == 0
    for i in range(200):   # 200 addresses of one /64 would push the guesser out of a 100-address table
        buckets.take(limits.client_key(f"2001:db8:9:9::{i + 1:x}"))
    assert buckets.take(limits.client_key("198.51.100.7")) > 0




async def _raw_answer(port: int, head: bytes) -> bytes:
    """Send only ``head`` (request line and headers, no body) and read the centre's final answer (an
    interim ``100 Continue`` skipped: hypercorn sends it by itself before the app sees the request)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    data = b""
    try:
        await stream.send_all(head)
        with trio.fail_after(10):
            while True:
                while data.startswith(b"HTTP/1.1 100") and b"\r\n\r\n" in data:
                    data = data.partition(b"\r\n\r\n")[2]
                if data and not data.startswith(b"HTTP/1.1 100") and b"\r\n\r\n" in data:
                    head_part, _, rest = data.partition(b"\r\n\r\n")
                    length = int(next((line.split(b":", 1)[1] for line in head_part.split(b"\r\n")
                                       if line.lower().startswith(b"content-length:")), b"0"))
                    if len(rest) >= length:
                        return data
                chunk = await stream.receive_some(4096)
                if not chunk:
                    return data
                data += chunk
    finally:
        await stream.aclose()


@pytest.mark.parametrize("path", ["/v1/review/login", "/review/login", "/v1/enrol"])
async def test_a_declared_body_past_the_cap_is_refused_before_inviting_it(nursery, tmp_path, path):
    # Expect: 100-continue with Content-Length 10 GB and no body sent: the centre must answer 413 at
    # once, not wait for the body (up to the cap, or until the 60 s deadline) in a slot of the worker.
    store = open_store(tmp_path / "centre.db")
    try:
        centre = await start_centre(nursery, store)
        port = int(centre.url.rsplit(":", 1)[1])
        answer = await _raw_answer(port, (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                          f"Expect: 100-continue\r\nContent-Length: {10**10}\r\n\r\n").encode())
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        head, _, body = answer.partition(b"\r\n\r\n")
        assert b"connection: close" in head.lower()
        assert json.loads(body)["error"]["code"] == "too_large"
    finally:
        store.close()


@pytest.mark.parametrize("path", ["/v1/review/login", "/v1/enrol"])
async def test_a_sender_hanging_up_mid_body_is_not_an_error_with_a_traceback(nursery, tmp_path, caplog, path):
    # Anyone can open a connection, send half a body and hang up, as often as they like: each time the
    # error log got "Error in ASGI Framework" and a 30-line traceback, burying real errors.
    caplog.set_level(logging.INFO, logger="sync.centre")
    store = open_store(tmp_path / "centre.db")
    try:
        centre = await start_centre(nursery, store)
        port = int(centre.url.rsplit(":", 1)[1])
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all((f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                               "Content-Length: 1000\r\n\r\n{\"name\":").encode())
        await trio.sleep(0.2)   # let the route start reading the body
        await stream.aclose()
        with trio.fail_after(10):
            while not any("hung up before" in r.getMessage() or r.levelno >= logging.ERROR for r in caplog.records):
                await trio.sleep(0.05)
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert errors == []
    finally:
        store.close()


async def test_the_desk_page_login_and_the_api_login_share_one_bound():
    # Both check the same passwords: spending the burst on one must not leave a fresh burst on the other.
    guard = _guard()
    for _ in range(limits.LOGIN.burst):
        assert (await _post(guard, "127.0.0.11", "/v1/review/login"))[0] == 200
    assert (await _post(guard, "127.0.0.11", "/review/login"))[0] == 429
