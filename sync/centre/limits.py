"""What keeps one caller from stopping the centre: per-client rate limits and a bound on concurrent requests.

Both live in one ASGI middleware (:class:`Guard`) in front of every route, so they act before any
body is read, any signature checked or any password hashed.

* **Concurrency bound** (per worker process): at most ``Gate.limit`` requests are inside the app at
  once (:data:`MAX_CONCURRENT` by default; each may hold up to 16 MiB of body). One more is answered
  at once with 503 ``busy`` and ``Retry-After: 1``: a caller waits on its side, never in a queue on
  ours. ``/metrics`` (loopback only) is outside the bound, so an overloaded worker can still be seen.
* **Rate limits** (per client address, per worker): the unauthenticated entry points that cost the
  centre work per try, enrolment (a signature check and a database transaction, and a one-time token
  to guess) and the review desk's login (scrypt), allow each address a burst of ``burst`` attempts,
  refilled at one per ``every_s`` seconds (a token bucket). Past it: 429 ``rate_limited`` with the
  seconds until the next attempt counts in ``Retry-After``. The store-backed login throttle
  (:mod:`.webauth`: five wrong passwords per name or address in 15 minutes) is the line across
  workers for passwords; this one bounds the work any address can ask for. A 429 the desk's own
  throttle answers gets a ``Retry-After`` of its window here.
* **One address's share**: at most ``Gate.per_client`` of those requests (a quarter by default) come
  from one client address; one more from it is 503 ``busy`` too. Found by attacking: 70 held-back
  bodies from one address took every slot of the worker for as long as the sender liked.
* **Bodies** (every route, not only the sync handlers): a body is refused 413 ``too_large`` as soon as
  more than ``max_body`` bytes arrived, chunked or not, and 408 ``too_slow`` when it has not fully
  arrived :data:`BODY_S` seconds after the request began (a slow sender holds a slot and a
  connection). Found by attacking: the review desk's login read a 300 MB chunked body whole.
  Either refusal is answered here, in the caller's format, with ``Connection: close`` (the rest of the
  body is never read, so the connection cannot carry another request).
* Memory stays bounded: at most :data:`MAX_CLIENTS` addresses are remembered (least recently seen
  forgotten first; a forgotten address starts with a full bucket, which is no more than a new one).

Refusals are in the caller's format: a sync frame when the request was one (the edge reads the code
and retries later), else JSON ``{"error": {...}}``, as every other error of the centre.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

from starlette.requests import ClientDisconnect

from sync import protocol, wire
from sync.centre.errors import Busy, RateLimited
from sync.centre.webauth import WINDOW_MS
from sync.errors import SyncError

log = logging.getLogger("sync.centre")
MAX_CONCURRENT = 64
MAX_CLIENTS = 10_000
# The whole body must arrive within this: 16 MiB at 300 KB/s. An edge's upload batch is at most
# 256 KB (sync.protocol.BATCH_MAX_BYTES), under 3 s even at 100 KB/s on a weak 4G line.
BODY_S = 60.0
UNBOUNDED = ("/metrics",)


@dataclass(frozen=True)
class Rate:
    burst: int          # attempts an address may make at once
    every_s: float      # one more attempt per this many seconds


ENROL = Rate(burst=30, every_s=30.0)     # a clinic enrols a few PCs a year; a test harness a few dozen
LOGIN = Rate(burst=20, every_s=15.0)     # a reviewer logs in a few times a day
RATES = {"/v1/enrol": ENROL, "/v1/review/login": LOGIN, "/review/login": LOGIN}
THROTTLE_RETRY_S = WINDOW_MS // 1000    # the desk's own throttle window

RATE_ZH = {"/v1/enrol": "注册请求过于频繁，请稍后再试", "/v1/review/login": "登录请求过于频繁，请稍后再试",
           "/review/login": "登录请求过于频繁，请稍后再试"}


class Gate:
    """The per-worker count of requests inside the app, in all and per client address (trio: one
    thread, so plain counters)."""

    def __init__(self, limit: int = MAX_CONCURRENT, *, per_client: int | None = None) -> None:
        if limit < 1:
            raise ValueError("the concurrency bound must be at least 1")
        self.limit = limit
        self.per_client = max(1, limit // 4) if per_client is None else per_client
        self.in_flight = 0
        self.refused = 0
        self._by_client: dict[str, int] = {}   # only addresses with a request inside: bounded by ``limit``

    def enter(self, client: str = "") -> str | None:
        """Admit a request: None, or why not (``"full"``, ``"client"``)."""
        why = ("full" if self.in_flight >= self.limit else
               "client" if self._by_client.get(client, 0) >= self.per_client else None)
        if why is not None:
            self.refused += 1
            return why
        self.in_flight += 1
        self._by_client[client] = self._by_client.get(client, 0) + 1
        return None

    def leave(self, client: str = "") -> None:
        self.in_flight -= 1
        n = self._by_client.get(client, 0) - 1
        if n > 0:
            self._by_client[client] = n
        else:
            self._by_client.pop(client, None)


class Buckets:
    """Token buckets per client address, at most ``max_clients`` of them."""

    def __init__(self, rate: Rate, *, max_clients: int = MAX_CLIENTS, clock: Callable[[], float] = time.monotonic):
        self.rate, self.max_clients, self.clock = rate, max_clients, clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()   # client -> (tokens, at)

    def take(self, client: str) -> float:
        """Spend one attempt for ``client``: 0 when allowed, else the seconds until one is."""
        now = self.clock()
        tokens, at = self._buckets.pop(client, (float(self.rate.burst), now))
        tokens = min(float(self.rate.burst), tokens + (now - at) / self.rate.every_s)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) * self.rate.every_s
        self._buckets[client] = (tokens, now)
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return wait

    def __len__(self) -> int:
        return len(self._buckets)


def _client(scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def client_key(address: str) -> str:
    """The caller an address belongs to, for the rate limits and the per-address share: an IPv6 caller
    is its /64 (a provider hands each subscriber one and any address of it can send), an IPv4-mapped
    ``::ffff:a.b.c.d`` is ``a.b.c.d``. Found by attacking: rotating through one /64 made every guess a
    new client with a full bucket, and flushed the table of remembered addresses."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def _is_frame(scope) -> bool:
    for name, value in scope.get("headers") or ():
        if name == b"content-type":
            return wire.CONTENT_TYPE.encode() in value
    return False


async def _refuse(scope, send, exc: SyncError, retry_after: float) -> None:
    # Reported like every refusal of the centre (app._handler): the operator sees who is being held off.
    log.warning("centre: %s %s refused for %s: %s (%s)", scope.get("method"), scope.get("path"), _client(scope),
                exc.code, exc.message)
    if _is_frame(scope):
        body, ctype = wire.encode(protocol.error_message(exc)), wire.CONTENT_TYPE
    else:
        body, ctype = json.dumps({"error": exc.to_dict()}, ensure_ascii=False).encode("utf-8"), "application/json"
    headers = [(b"content-type", ctype.encode()), (b"content-length", str(len(body)).encode()),
               (b"retry-after", str(max(1, math.ceil(retry_after))).encode()),
               # The body was not read: the connection cannot carry another request, and the client must
               # know (else its next request on it meets a hang-up instead of an answer).
               (b"connection", b"close")]
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _too_large(max_body: int) -> SyncError:
    return SyncError(f"request body larger than {max_body} bytes: send smaller batches", code="too_large", status=413,
                     zh="请求数据过大，已拒收")


def _declared(scope) -> int:
    """The Content-Length the request states (0 when none; h11 has refused one that is not a number)."""
    for name, value in scope.get("headers") or ():
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


class _BodyRefused(Exception):
    """Raised into the app by :class:`_Body` and caught by :class:`Guard`, which answers (routes catch
    SyncError and would answer in their own way: a login form would say "wrong password")."""

    def __init__(self, error: SyncError) -> None:
        super().__init__(error.message)
        self.error = error


class _Body:
    """The app's ``receive``, counting body bytes against the cap and the deadline until the body is
    complete; after that (a disconnect watcher) it passes through untouched."""

    def __init__(self, receive, max_body: int, deadline: float) -> None:
        self.receive, self.max_body, self.deadline = receive, max_body, deadline
        self.received = 0
        self.complete = False

    async def __call__(self) -> dict:
        import trio

        if self.complete:
            return await self.receive()
        try:
            with trio.fail_at(self.deadline):
                message = await self.receive()
        except trio.TooSlowError:
            raise _BodyRefused(SyncError(f"the request body did not arrive within {BODY_S:g} s: send it at once",
                                         code="too_slow", status=408, zh="请求数据发送过慢，已中止，请重试")) from None
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.max_body:
                raise _BodyRefused(_too_large(self.max_body))
            self.complete = not message.get("more_body", False)
        else:
            self.complete = True
        return message


class Guard:
    """The ASGI middleware (Starlette: ``Middleware(Guard, gate=..., max_body=...)``)."""

    def __init__(self, app, *, gate: Gate, max_body: int, rates: dict[str, Rate] | None = None,
                 clock: Callable[[], float] = time.monotonic, body_s: float = BODY_S) -> None:
        self.app, self.gate, self.max_body, self.body_s = app, gate, max_body, body_s
        # Paths given the same Rate object share its buckets: the desk's page login and its API login check
        # the same passwords, and each had its own burst (found by attacking).
        shared: dict[int, Buckets] = {}
        self.buckets = {path: shared.setdefault(id(rate), Buckets(rate, clock=clock))
                        for path, rate in (RATES if rates is None else rates).items()}

    async def __call__(self, scope, receive, send) -> None:
        import trio

        if scope["type"] != "http" or scope["path"] in UNBOUNDED:
            await self.app(scope, receive, send)
            return
        if _declared(scope) > self.max_body:
            # Refused before any body is asked for: a sender that declared 10 GB (after hypercorn's own
            # "100 Continue") would else hold a slot until the cap or the deadline. Found by attacking.
            await _refuse(scope, send, _too_large(self.max_body), 1)
            return
        client = client_key(_client(scope))
        why = self.gate.enter(client)
        if why is not None:
            text = (f"this centre worker is serving its limit of {self.gate.limit} requests" if why == "full" else
                    f"this address already has {self.gate.per_client} requests in this centre worker")
            await _refuse(scope, send, Busy(text + ": try again in a moment"), 1)
            return
        started = False

        async def tracked(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if not body.complete:   # answered before the body was read: the connection ends with it
                    message = {**message, "headers": [*(message.get("headers") or []), (b"connection", b"close")]}
            await out(message)

        body = _Body(receive, self.max_body, trio.current_time() + self.body_s)
        out = send
        try:
            buckets = self.buckets.get(scope["path"]) if scope["method"] == "POST" else None
            if buckets is not None:
                wait = buckets.take(client)
                if wait > 0:
                    rate = buckets.rate
                    await _refuse(scope, send, RateLimited(
                        f"too many attempts from this address ({rate.burst} allowed at once, then one per "
                        f"{rate.every_s:g} s): try again in {math.ceil(wait)} s", zh=RATE_ZH.get(scope["path"])), wait)
                    return
                out = _with_retry_after(send)
            await self.app(scope, body, tracked)
        except _BodyRefused as exc:
            if started:
                raise
            await _refuse(scope, send, exc.error, 1)
        except ClientDisconnect:
            # The sender hung up before its body was complete: nobody to answer. Anyone can do this at
            # will, so it is an info line, not "Error in ASGI Framework" and a traceback (found by attacking).
            log.info("centre: %s %s: the sender at %s hung up before its body was complete", scope.get("method"),
                     scope.get("path"), _client(scope))
        finally:
            self.gate.leave(client)


def _with_retry_after(send):
    """A 429 from a rate-limited route's own throttle (the desk's lockout) says when to come back."""
    async def wrapped(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start" and message["status"] == 429:
            headers = list(message.get("headers") or [])
            if not any(name.lower() == b"retry-after" for name, _ in headers):
                headers.append((b"retry-after", str(THROTTLE_RETRY_S).encode()))
                message = {**message, "headers": headers}
        await send(message)
    return wrapped
