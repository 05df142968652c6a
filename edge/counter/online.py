"""Online settlement: ask the centre (which runs the same engine on its fresh state), and remember
whether it answered, so the page can show the online/offline banner.

The call takes no timeout: the counter wraps it in ``trio.move_on_after(online_timeout)`` and falls
back to the offline decision when it gives up. httpx errors never leave this module: they become
:class:`CentreUnreachable` (try offline) or :class:`CentreRefusal` (the centre said no, with a code).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Callable

import httpx

from .clock import centre_ms_of

PATH = "/v1/online/settle"
LOOKUP_PATH = "/v1/online/lookup"
HEALTH_PATH = "/health"


class CentreUnreachable(Exception):
    """No usable answer from the centre (network, timeout, 5xx): settle offline instead."""


class CentreRefusal(Exception):
    def __init__(self, code: str, message: str, detail: dict | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail = detail or {}     # e.g. a req_conflict's two totals


@dataclass
class Connectivity:
    """What the counter knows about the link to the centre. Times are wall ms from the caller, for display
    and the retry pause only: which contact came last is the order of the calls, never the wall clock's
    (a failure timed a week ahead by a wrong clock must not outrank the successes after the correction)."""

    last_ok_ms: int | None = None
    last_fail_ms: int | None = None
    last_error: str | None = None
    last_was_ok: bool = False

    def ok(self, now_ms: int) -> None:
        self.last_ok_ms, self.last_error, self.last_was_ok = now_ms, None, True

    def failed(self, now_ms: int, why: str) -> None:
        self.last_fail_ms, self.last_error, self.last_was_ok = now_ms, why, False

    @property
    def online(self) -> bool:
        """Online when the latest contact (success or failure) was a success."""
        return self.last_ok_ms is not None and self.last_was_ok

    def should_try(self, now_ms: int, retry_after_ms: int) -> bool:
        """Try the centre unless it failed very recently (so an outage costs no wait per visit). A clock
        now before the failure (set back since) says nothing about the pause: try."""
        if self.online or self.last_fail_ms is None:
            return True
        return not 0 <= now_ms - self.last_fail_ms < retry_after_ms


class CentreClient:
    """Signed JSON calls to the centre. ``sign(method, path, body) -> headers``."""

    def __init__(self, base_url: str, sign: Callable[[str, str, bytes], dict[str, str]], *,
                 verify: Any = True, on_time: Callable[[int], None] | None = None) -> None:
        # verify: the centre's TLS trust (edge.transport.tls_context: the pinned CA), as the uplink's.
        self.base_url = base_url.rstrip("/")
        self._sign = sign
        self._client = httpx.AsyncClient(timeout=None, trust_env=False, verify=verify)
        # Told the centre's clock (its Date header) on every answer that is the centre's own (JSON): the
        # counter's time floor and clock check (edge.counter.clock).
        self.on_time = on_time
        # The centre's own word that this PC's clock is off: its last signed request was refused for its time
        # (401 stale_request), whatever the Date header said (a proxy can forge that), with the wall and
        # monotonic clocks then. Cleared by the next signed request the centre answers on its merits. The
        # counter reads it as a clock fault until then or until the wall clock is moved (set right).
        self.skew_refused: tuple[int, int] | None = None

    def _saw(self, resp: httpx.Response) -> None:
        if self.on_time is None or "json" not in resp.headers.get("content-type", ""):
            return       # a proxy's or gateway's page says nothing about the centre's clock
        centre_ms = centre_ms_of(resp.headers.get("date"))
        if centre_ms is not None:
            self.on_time(centre_ms)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def settle(self, request: dict[str, Any]) -> dict[str, Any]:
        data = await self._call(PATH, request)
        if not isinstance(data, dict) or not isinstance(data.get("result"), dict):
            raise CentreUnreachable("centre answer lacks a result")
        return data

    async def lookup(self, request: dict[str, Any]) -> dict[str, Any] | None:
        """Did the centre settle this req (an earlier answer lost or late)? Its answer, or None if not."""
        data = await self._call(LOOKUP_PATH, request)
        if not isinstance(data, dict) or not isinstance(data.get("settled"), bool):
            raise CentreUnreachable("centre lookup answer lacks 'settled'")
        if not data["settled"]:
            return None
        if not isinstance(data.get("result"), dict):
            raise CentreUnreachable("centre lookup answer lacks a result")
        return {k: v for k, v in data.items() if k != "settled"}

    async def _call(self, path: str, request: dict[str, Any]) -> Any:
        body = json.dumps(request, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        headers = {"content-type": "application/json", **self._sign("POST", path, body)}
        try:
            resp = await self._client.post(self.base_url + path, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise CentreUnreachable(f"{type(exc).__name__}: {exc}") from exc
        self._saw(resp)
        if resp.status_code == 401 and _error_code(resp) == "stale_request":
            self.skew_refused = (time.time_ns() // 1_000_000, time.monotonic_ns())
            # The centre refused the signing time: the PC clock is off. Not "unreachable" (that would try
            # offline, where the same wrong clock measures the limits): a refusal the visit turns into a
            # full payment, telling the clerk to fix the clock (edge.offline.after_centre).
            raise CentreRefusal("clock_skew", "the centre refused the request's time: the PC clock is more than "
                                              "5 minutes off the centre's")
        if resp.status_code >= 500 or resp.status_code in (401, 403, 404, 405, 408, 429):
            # 404/405: this centre has no online route (older centre); auth problems are the uplink's
            # to report. Either way the visit goes on offline.
            raise CentreUnreachable(f"centre answered HTTP {resp.status_code}")
        try:
            data = resp.json()
        except ValueError as exc:
            raise CentreUnreachable("centre answer is not JSON") from exc
        self.skew_refused = None        # the centre accepted the request's time (answered 200 or on its merits)
        if resp.status_code != 200:
            err = (data or {}).get("error") or {}
            detail = {k: v for k, v in err.items() if k not in ("code", "message")} if isinstance(err, dict) else {}
            raise CentreRefusal(str(err.get("code", "centre_refused")), str(err.get("message", "")), detail)
        return data

    async def ping(self) -> bool:
        """Any HTTP answer from the centre counts as reachable."""
        try:
            resp = await self._client.get(self.base_url + HEALTH_PATH)
        except httpx.HTTPError:
            return False
        self._saw(resp)
        return True


def _error_code(resp: httpx.Response) -> str | None:
    try:
        err = resp.json().get("error")
    except (ValueError, AttributeError):
        return None
    return err.get("code") if isinstance(err, dict) else None
