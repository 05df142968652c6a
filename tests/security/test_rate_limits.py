"""One caller cannot stop the centre: per-client rate limits on enrolment and the review-desk login
(429 ``rate_limited`` with Retry-After), and a bound on concurrent requests per worker (503 ``busy``
with Retry-After, answered at once: nothing queues without bound) (issue 14, "Bounded resources").

Another client is told apart by its address: the tests send from 127.0.0.2 (all of 127/8 is loopback).
"""

from __future__ import annotations

import h11
import httpx
import pytest
import trio
from nacl.signing import SigningKey

from sync import protocol, wire
from sync.centre import limits
from sync.centre.server import start_centre
from sync.centre.store import now_ms, open_store

SITE = "S330300001"


def enrol_frame(token: str, key: SigningKey | None = None) -> bytes:
    key = key or SigningKey.generate()
    pub = bytes(key.verify_key)
    return wire.encode(protocol.Enrol(token, pub, key.sign(protocol.Enrol.signed_bytes(token, pub)).signature).to_msg())


def client_from(address: str, url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, trust_env=False,
                             transport=httpx.AsyncHTTPTransport(local_address=address))


@pytest.fixture
async def centre(nursery, tmp_path):
    store = open_store(tmp_path / "centre.db")
    try:
        yield await start_centre(nursery, store)
    finally:
        store.close()


async def enrol(http: httpx.AsyncClient, token: str) -> httpx.Response:
    return await http.post("/v1/enrol", content=enrol_frame(token), headers={"content-type": wire.CONTENT_TYPE})


def refused(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, (r.status_code, r.content[:200])
    assert wire.decode(r.content)["code"] == code
    assert int(r.headers["retry-after"]) >= 1


async def test_fifty_enrolments_from_one_client_are_refused_past_the_bound_and_others_still_enrol(centre):
    bound = limits.ENROL.burst
    assert bound < 50
    answers = []
    async with client_from("127.0.0.1", centre.url) as http:
        for i in range(50):
            answers.append(await enrol(http, f"ET-guess-{i}"))
    # Guesses within the bound are judged (a wrong token is 403); past it the centre does not even look.
    assert [r.status_code for r in answers[:bound]] == [403] * bound
    for r in answers[bound:]:
        refused(r, 429, "rate_limited")
    token = await trio.to_thread.run_sync(centre.store.create_enrol_token, SITE)
    async with client_from("127.0.0.2", centre.url) as other:
        r = await enrol(other, token)
    assert r.status_code == 200, r.content
    assert protocol.Enrolled.from_msg(wire.decode(r.content)).site == SITE


async def test_the_edge_reads_the_rate_limit_as_a_retryable_coded_refusal(centre, tmp_path):
    from edge.enrol import enroll
    from sync.errors import SyncError

    async with client_from("127.0.0.1", centre.url) as http:
        for i in range(limits.ENROL.burst):
            await enrol(http, f"ET-guess-{i}")
    token = await trio.to_thread.run_sync(centre.store.create_enrol_token, SITE)
    with pytest.raises(SyncError) as exc:
        await enroll(centre.url, token, tmp_path / "edge")
    assert exc.value.code == "rate_limited" and exc.value.retryable
    assert not (tmp_path / "edge" / "device.json").exists()


async def test_review_desk_logins_from_one_client_are_limited_and_others_still_log_in(centre):
    centre.store.accounts.add("rev", "reviewer-pass", "reviewer", now=now_ms())
    centre.store.accounts.add("aud", "auditor-pass", "auditor", now=now_ms())
    statuses = []
    async with client_from("127.0.0.1", centre.url) as http:
        for _ in range(50):
            r = await http.post("/v1/review/login", json={"name": "rev", "password": "reviewer-pass"})
            statuses.append(r.status_code)
            if r.status_code == 429:
                last = r
    bound = limits.LOGIN.burst
    assert statuses[:bound] == [200] * bound and set(statuses[bound:]) == {429}
    assert last.json()["error"]["code"] == "rate_limited" and int(last.headers["retry-after"]) >= 1
    assert "登录" in last.json()["error"]["zh"]
    async with client_from("127.0.0.2", centre.url) as other:
        r = await other.post("/v1/review/login", json={"name": "aud", "password": "auditor-pass"})
    assert r.status_code == 200, r.text


async def test_a_throttled_login_says_when_to_come_back(centre):
    centre.store.accounts.add("rev", "reviewer-pass", "reviewer", now=now_ms())
    async with client_from("127.0.0.1", centre.url) as http:
        for _ in range(6):
            r = await http.post("/v1/review/login", json={"name": "rev", "password": "wrong"})
    assert r.status_code == 429 and r.json()["error"]["code"] == "login_throttled"
    assert int(r.headers["retry-after"]) >= 1


# ------------------------------------------------------------------------ concurrency bound ---
class SlowRequest:
    """A POST whose body is held back: the request is in the centre (counted) until ``finish``."""

    def __init__(self, stream: trio.SocketStream, body: bytes) -> None:
        self.stream, self.body = stream, body

    @classmethod
    async def start(cls, url: str, path: str, body: bytes) -> SlowRequest:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        stream = await trio.open_tcp_stream(host, int(port))
        head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {wire.CONTENT_TYPE}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        await stream.send_all(head + body[:8])
        return cls(stream, body)

    async def finish(self) -> tuple[int, bytes]:
        await self.stream.send_all(self.body[8:])
        return await read_response(self.stream)


async def read_response(stream: trio.SocketStream) -> tuple[int, bytes]:
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))   # h11 state only: not sent
    conn.send(h11.EndOfMessage())
    status, body = 0, b""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(65536))
        elif isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            body += bytes(event.data)
        elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
            await stream.aclose()
            return status, body


async def test_requests_beyond_the_bound_are_answered_busy_at_once_and_the_rest_succeed(nursery, tmp_path):
    store = open_store(tmp_path / "centre.db")
    bound = 4
    try:
        gate = limits.Gate(bound, per_client=bound)   # all from one address here: its share is the whole bound
        centre = await start_centre(nursery, store, gate=gate)
        tokens = [store.create_enrol_token(SITE) for _ in range(bound)]
        slow = [await SlowRequest.start(centre.url, "/v1/enrol", enrol_frame(t)) for t in tokens]
        with trio.fail_after(30):   # a guard against a hang, not a timing assertion
            while gate.in_flight < bound:
                await trio.sleep(0.01)
        async with httpx.AsyncClient(base_url=centre.url, trust_env=False) as http:
            excess = [await http.get("/health") for _ in range(3)]
            excess.append(await enrol(http, store.create_enrol_token(SITE)))
        for r in excess[:3]:
            assert r.status_code == 503 and r.json()["error"]["code"] == "busy", r.text
            assert int(r.headers["retry-after"]) >= 1 and r.json()["error"]["zh"]
        refused(excess[3], 503, "busy")
        answers = [await s.finish() for s in slow]
        assert [status for status, _ in answers] == [200] * bound
        assert len(store.devices()) == bound        # the refused one enrolled nobody
        async with httpx.AsyncClient(base_url=centre.url, trust_env=False) as http:
            assert (await http.get("/health")).status_code == 200   # slots are given back
    finally:
        store.close()


async def test_one_address_cannot_take_every_slot(nursery, tmp_path):
    """Finding of the outside attack: 70 held-back bodies from one address took all 64 slots of the
    worker, for as long as the sender liked; every other caller got 503. One address now gets a share."""
    store = open_store(tmp_path / "centre.db")
    try:
        gate = limits.Gate(8)
        assert gate.per_client == 2
        centre = await start_centre(nursery, store, gate=gate)
        slow = [await SlowRequest.start(centre.url, "/v1/enrol", enrol_frame(store.create_enrol_token(SITE)))
                for _ in range(gate.per_client)]
        with trio.fail_after(30):   # a guard against a hang, not a timing assertion
            while gate.in_flight < gate.per_client:
                await trio.sleep(0.01)
        async with client_from("127.0.0.1", centre.url) as same, client_from("127.0.0.2", centre.url) as other:
            r = await same.get("/health")
            assert r.status_code == 503 and r.json()["error"]["code"] == "busy", r.text
            assert "this address" in r.json()["error"]["message"] and int(r.headers["retry-after"]) >= 1
            assert (await other.get("/health")).status_code == 200
        assert [status for status, _ in [await s.finish() for s in slow]] == [200] * gate.per_client
    finally:
        store.close()


async def test_a_body_that_does_not_arrive_in_time_is_refused_and_its_slot_freed(nursery, tmp_path, autojump_clock):
    """A held-back body is cut off BODY_S after its request began (408 too_slow): a slow sender cannot
    keep a slot. The clock jumps while everyone waits (pytest-trio's autojump clock), so no real wait."""
    store = open_store(tmp_path / "centre.db")
    try:
        gate = limits.Gate(4)
        centre = await start_centre(nursery, store, gate=gate)
        start = trio.current_time()
        slow = await SlowRequest.start(centre.url, "/v1/enrol", enrol_frame(store.create_enrol_token(SITE)))
        status, body = await read_response(slow.stream)
        assert status == 408 and wire.decode(body)["code"] == "too_slow"
        assert trio.current_time() - start >= limits.BODY_S    # the virtual clock: cut off at the bound, not before
        with trio.fail_after(30):   # the slot is given back once the answer is out
            while gate.in_flight:
                await trio.sleep(0.01)
        assert store.devices() == []
    finally:
        store.close()
