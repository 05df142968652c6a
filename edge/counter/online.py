"""Online settlement: ask the centre (which runs the same engine on its fresh state), and remember
whether it answered, so the page can show the online/offline banner.

The call takes no timeout: the counter wraps it in ``trio.move_on_after(online_timeout)`` and falls
back to the offline decision when it gives up. httpx errors never leave this module: they become
:class:`CentreUnreachable` (try offline) or :class:`CentreRefusal` (the centre said no, with a code).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

import httpx

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
    """What the counter knows about the link to the centre. Times are wall ms from the caller."""

    last_ok_ms: int | None = None
    last_fail_ms: int | None = None
    last_error: str | None = None

    def ok(self, now_ms: int) -> None:
        self.last_ok_ms, self.last_error = now_ms, None

    def failed(self, now_ms: int, why: str) -> None:
        self.last_fail_ms, self.last_error = now_ms, why

    @property
    def online(self) -> bool:
        """Online when the latest contact (success or failure) was a success."""
        if self.last_ok_ms is None:
            return False
        return self.last_fail_ms is None or self.last_ok_ms >= self.last_fail_ms

    def should_try(self, now_ms: int, retry_after_ms: int) -> bool:
        """Try the centre unless it failed very recently (so an outage costs no wait per visit)."""
        if self.online or self.last_fail_ms is None:
            return True
        return now_ms - self.last_fail_ms >= retry_after_ms


class CentreClient:
    """Signed JSON calls to the centre. ``sign(method, path, body) -> headers``."""

    def __init__(self, base_url: str, sign: Callable[[str, str, bytes], dict[str, str]], *,
                 verify: Any = True) -> None:
        # verify: the centre's TLS trust (edge.transport.tls_context: the pinned CA), as the uplink's.
        self.base_url = base_url.rstrip("/")
        self._sign = sign
        self._client = httpx.AsyncClient(timeout=None, trust_env=False, verify=verify)

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
        if resp.status_code >= 500 or resp.status_code in (401, 403, 404, 405, 408, 429):
            # 404/405: this centre has no online route (older centre); auth problems are the uplink's
            # to report. Either way the visit goes on offline.
            raise CentreUnreachable(f"centre answered HTTP {resp.status_code}")
        try:
            data = resp.json()
        except ValueError as exc:
            raise CentreUnreachable("centre answer is not JSON") from exc
        if resp.status_code != 200:
            err = (data or {}).get("error") or {}
            detail = {k: v for k, v in err.items() if k not in ("code", "message")} if isinstance(err, dict) else {}
            raise CentreRefusal(str(err.get("code", "centre_refused")), str(err.get("message", "")), detail)
        return data

    async def ping(self) -> bool:
        """Any HTTP answer from the centre counts as reachable."""
        try:
            await self._client.get(self.base_url + HEALTH_PATH)
            return True
        except httpx.HTTPError:
            return False
