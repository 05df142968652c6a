"""The review desk against a forged request: another site's POST (form or text/plain) is refused,
a cookie-borne POST needs the session's CSRF token, password guessing is throttled and journaled,
and the session cookie is HttpOnly, SameSite=Strict, expiring, and Secure over https (issue 14, finding 4)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import httpx
import pytest
import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "centre"))

from sync.centre import reconcile, review  # noqa: E402
from sync.centre import webauth as W  # noqa: E402


class Clock:
    """Wall-clock time (signed uploads must be fresh) plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.t = 0
        self.frozen: int | None = None

    def __call__(self) -> int:
        from sync.centre.store import now_ms
        return (now_ms() if self.frozen is None else self.frozen) + self.t


@pytest.fixture
async def desk(nursery, tmp_path):
    """A real centre on loopback (SQLite) whose clock the test steers, one reviewer, one pending claim."""
    import recon_support as rs
    from recon_support import PlayedEdge, claim_body, person, visit
    from sync.centre.server import start_centre
    from sync.centre.store import open_store

    store = open_store(tmp_path / "centre.db")
    for raw in (rs.CAT_RAW, rs.POL_RAW, rs.PERSONS_RAW, rs.HOT_RAW):
        store.put_bundle(raw, now=rs.T0 - rs.DAY)
    store.ledger.seed_from_persons(rs.PERSONS)
    clock = Clock()
    running = await start_centre(nursery, store, rs.KEY, clock=clock)
    store.accounts.add("rev", "reviewer-pass", "reviewer", now=rs.T0)
    async with httpx.AsyncClient(trust_env=False) as http:
        edge = await PlayedEdge.enrol(running, http, tmp_path, "S-A")
        await edge.journal_entry("claim", claim_body(person("P0004"), visit(0), "card_unreadable", keyed_in=True),
                                 time=rs.T0)
        await edge.sync()
    await trio.to_thread.run_sync(reconcile.run_pending, store)
    [claim] = review.claims(store)
    try:
        yield running, clock, claim["claim_no"]
    finally:
        running.stop()
        store.close()


def _client(url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, trust_env=False, follow_redirects=False)


async def _log_in(web: httpx.AsyncClient) -> None:
    r = await web.post("/review/login", data={"name": "rev", "password": "reviewer-pass"})
    assert r.status_code == 303, r.text


def _status(store, no: str) -> str:
    return review.claim(store, no)["status"]


async def test_a_cross_site_text_plain_post_cannot_approve(desk):
    centre, _, no = desk
    async with _client(centre.url) as web:
        await _log_in(web)
        # What a page on evil.example can send without a preflight: text/plain, cookie attached.
        r = await web.post(f"/v1/review/claims/{no}/approve", content='{"note": "x", "psn_no": "P0004"}',
                           headers={"content-type": "text/plain", "origin": "http://evil.example"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "cross_site"
        # The same body from the desk's own origin still needs the session's token when it rides on the cookie.
        r = await web.post(f"/v1/review/claims/{no}/approve", content='{"note": "x", "psn_no": "P0004"}',
                           headers={"content-type": "text/plain", "origin": centre.url})
        assert r.status_code == 403 and r.json()["error"]["code"] == "csrf_missing"
        # A Referer from another site counts as its origin when Origin is absent.
        r = await web.post(f"/review/claims/{no}/decide", data={"decision": "approve", "psn_no": "P0004"},
                           headers={"referer": "http://evil.example/page"})
        assert r.status_code == 403 and "其他网站" in r.text
        assert _status(centre.store, no) == "pending"


async def test_a_form_post_needs_the_session_token(desk):
    centre, _, no = desk
    async with _client(centre.url) as web:
        await _log_in(web)
        # No Origin, no token: refused, in Chinese; a token of another session is no better.
        r = await web.post(f"/review/claims/{no}/decide", data={"decision": "deny", "note": "伪造"})
        assert r.status_code == 403 and "刷新页面" in r.text
        r = await web.post(f"/review/claims/{no}/decide",
                           data={"decision": "deny", "note": "伪造", "csrf": W.csrf_token("another-session")})
        assert r.status_code == 403
        assert _status(centre.store, no) == "pending"
        # The real page carries the token in a hidden field; posting it (with our own Origin) decides.
        page = (await web.get(f"/review/claims/{no}")).text
        [token] = re.findall(r'name=csrf value="([0-9a-f]+)"', page.split("/decide", 1)[1])
        r = await web.post(f"/review/claims/{no}/decide", headers={"origin": centre.url},
                           data={"decision": "deny", "note": "身份不符", "csrf": token})
        assert r.status_code == 303
        assert _status(centre.store, no) == "denied"
        # Logging out is a POST too: without the token the session survives.
        assert (await web.post("/review/logout")).status_code == 403
        assert (await web.get("/review")).text.count("退出登录") == 1


async def test_wrong_passwords_lock_the_name_for_fifteen_minutes_and_are_journaled(desk):
    centre, clock, _ = desk
    from sync.centre.store import now_ms
    clock.frozen = now_ms()
    async with httpx.AsyncClient(base_url=centre.url, trust_env=False) as web:
        for _ in range(W.LIMIT):
            r = await web.post("/v1/review/login", json={"name": "rev", "password": "guess"})
            assert r.status_code == 401 and r.json()["error"]["code"] == "bad_login"
        # The right password is refused too while the window lasts; the page says so in Chinese.
        r = await web.post("/v1/review/login", json={"name": "rev", "password": "reviewer-pass"})
        assert r.status_code == 429 and r.json()["error"]["code"] == "login_throttled"
        r = await web.post("/review/login", data={"name": "rev", "password": "reviewer-pass"})
        assert r.status_code == 429 and "登录失败次数过多" in r.text
        clock.t += W.WINDOW_MS - 1
        r = await web.post("/v1/review/login", json={"name": "rev", "password": "reviewer-pass"})
        assert r.status_code == 429
        clock.t += 1 + 1
        r = await web.post("/v1/review/login", json={"name": "rev", "password": "reviewer-pass"})
        assert r.status_code == 200 and r.json()["name"] == "rev"
    journal = centre.store.security.failures()
    assert [(f["name"], f["client"], f["reason"]) for f in journal] == \
        [("rev", "127.0.0.1", "bad_login")] * W.LIMIT + [("rev", "127.0.0.1", "throttled")] * 3
    assert all(isinstance(f["at_ms"], int) and f["at_ms"] > 0 for f in journal)


async def test_one_client_guessing_many_names_is_throttled(desk):
    centre, _, _ = desk
    async with httpx.AsyncClient(base_url=centre.url, trust_env=False) as web:
        for i in range(W.LIMIT):
            assert (await web.post("/v1/review/login", json={"name": f"x{i}", "password": "guess"})).status_code == 401
        r = await web.post("/v1/review/login", json={"name": "rev", "password": "reviewer-pass"})
        assert r.status_code == 429


async def test_the_session_cookie_is_httponly_strict_and_expires_with_the_session(desk):
    centre, clock, _ = desk
    async with httpx.AsyncClient(base_url=centre.url, trust_env=False) as web:
        for r in (await web.post("/review/login", data={"name": "rev", "password": "reviewer-pass"}),
                  await web.post("/v1/review/login", json={"name": "rev", "password": "reviewer-pass"})):
            cookie = r.headers["set-cookie"].lower()
            assert "httponly" in cookie and "samesite=strict" in cookie and "max-age=28800" in cookie, cookie
            assert "secure" not in cookie   # plain-HTTP loopback: a Secure cookie would never come back
        token = r.json()["token"]
        clock.t += 8 * 3_600_000 + 1       # the server forgets the session when the cookie does
        assert (await web.get("/v1/review/claims", headers={"authorization": f"Bearer {token}"})).status_code == 401


def test_the_cookie_is_secure_when_the_request_came_over_https():
    from starlette.requests import Request
    from starlette.responses import Response

    def cookie(scheme: str) -> str:
        request = Request({"type": "http", "scheme": scheme, "method": "POST", "path": "/review/login",
                           "headers": [(b"host", b"centre.example")], "server": ("centre.example", 443)})
        resp = Response()
        W.set_session(resp, request, "t")
        return resp.headers["set-cookie"].lower()

    assert "; secure" in cookie("https") and "httponly" in cookie("https") and "samesite=strict" in cookie("https")
    assert "secure" not in cookie("http")
