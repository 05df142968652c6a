"""What keeps the review desk's sessions to their owner: the same-origin check, the CSRF token,
login throttling with its journal, and the session cookie's attributes.

* Origin: every POST whose ``Origin`` (or, without one, ``Referer``) is not the desk's own origin
  (scheme and Host of the request) is refused 403. Clients that send neither (scripts, the CLI) pass
  this check; a browser always sends ``Origin`` on a cross-site POST.
* CSRF token: a session that rides on the cookie (an ambient credential a browser attaches by itself)
  must show the session's token on every POST: the hidden ``csrf`` form field or the ``X-CSRF-Token``
  header. The token is an HMAC of the session token, so it is per session, costs no storage, and
  another site cannot read it. A ``Bearer`` header is not ambient, so it needs no token.
* Throttle: after ``LIMIT`` wrong logins for one name, or from one client address, within ``WINDOW_MS``,
  further logins are refused (429) until the window passes, even with the right password. Every
  refused login is journaled in ``store.security`` (time, name tried, client address, reason).
* Cookie: HttpOnly, SameSite=Strict, Max-Age of the server-side session (8 hours), and Secure when the
  request came over https (on plain-HTTP loopback, the demo, a Secure cookie would never come back).
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from sync.centre import reviewers as A

COOKIE = "review_session"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
LIMIT = 5
WINDOW_MS = 15 * 60_000

CROSS_SITE_ZH = "请求来自其他网站，已拒绝（请从审核页面操作）"
NO_TOKEN_ZH = "页面已过期或请求无效，请刷新页面后重试"
THROTTLED_ZH = "登录失败次数过多，请15分钟后再试"


def own_origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.headers.get('host', '')}".lower()


def check_origin(request: Request) -> None:
    """Refuse (403) a request whose Origin, or Referer when there is no Origin, is another site."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if source is None:
        return
    parts = urlsplit(source)
    if f"{parts.scheme}://{parts.netloc}".lower() != own_origin(request):
        raise A.WrongRole(f"POST from another origin ({source[:80]}): refused", code="cross_site",
                          zh=CROSS_SITE_ZH, status=403)


def csrf_token(session_token: str) -> str:
    return hmac.new(session_token.encode("utf-8"), b"review-desk-csrf", hashlib.sha256).hexdigest()


def check_csrf(session_token: str, supplied: str | None) -> None:
    if not supplied or not hmac.compare_digest(csrf_token(session_token), supplied):
        raise A.WrongRole("a POST carried by the session cookie needs the session's CSRF token", code="csrf_missing",
                          zh=NO_TOKEN_ZH, status=403)


def client_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def login(store, name: str, password: str, client: str, *, now: int) -> str:
    """The throttled login (blocking: run it in a worker thread); returns the new session token."""
    by_name, by_client = store.security.recent_failures(name, client, since=now - WINDOW_MS)
    if by_name >= LIMIT or by_client >= LIMIT:
        store.security.record_failure(name, client, "throttled", now=now)
        raise A.BadLogin(f"{max(by_name, by_client)} failed logins in 15 minutes: wait", code="login_throttled",
                         zh=THROTTLED_ZH, status=429)
    try:
        return store.accounts.login(name, password, now=now)
    except A.BadLogin:
        store.security.record_failure(name, client, "bad_login", now=now)
        raise


def set_session(response: Response, request: Request, token: str) -> None:
    response.set_cookie(COOKIE, token, max_age=A.SESSION_MS // 1000, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path="/")


def clear_session(response: Response, request: Request) -> None:
    response.delete_cookie(COOKIE, httponly=True, samesite="strict", secure=request.url.scheme == "https", path="/")
