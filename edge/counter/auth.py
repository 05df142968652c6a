"""Who is calling the counter API: the HIS with the installation token, or a clerk logged in at the page.

Loopback binding keeps other machines out, not other programs on the clinic PC (issue 14, finding 5).
So every route answers 401 (the API's coded error body, nothing personal) unless the caller shows:

* **the installation token** - ``api.token`` in the state directory, written once at first start
  (mode 0640, never overwritten; a file others may read, its group may write, or a link is refused at
  start; the clinic gives the HIS's user the file's group, docs/his.md). The
  HIS sends ``Authorization: Bearer <token>``; a HIS that can only set a URL may append
  ``?access_token=<token>`` on the HIS routes (``/fsi/...``) only: a URL lands in logs and histories,
  so the counter's own access log writes it as ``[secret]``. The token acts as the operator ``HIS``
  (医院信息系统) with the roles settle, cancel and payout (docs/decisions.md: the HIS is the till);
  the shift close is a named clerk's.
* **a clerk's session** - ``POST /api/login`` with an operator id and password (edge/counter/operators.py)
  sets ``counter_session`` (HttpOnly, SameSite=Strict, Path=/, Max-Age = one shift). Sessions live in
  memory (a restart logs clerks out) and look at the operator store again at least every
  ``RECHECK_S``, and at once for anything but a read: a disabled clerk changes nothing from then on. Wrong passwords are
  throttled per operator id (and overall): after ``FREE_TRIES`` failures each further try waits,
  doubling up to ``MAX_LOCK_S``, whether or not the password is then right; failures are logged
  (``login_failed``, with the id only when it is an operator's: text typed into the id field may be a
  password).

Open without a credential: the page shell ``/`` (it holds no data; it shows the login), the login
itself, ``/openapi.json`` (the API's shape) and ``/metrics`` (counts only, for the local scraper). A
cookie-carrying request with a foreign ``Origin`` is refused (``not_local``): with SameSite=Strict and
JSON-only bodies this is a third line against a page elsewhere driving the clerk's browser. "Foreign"
includes another port of 127.0.0.1 (another program's web page on the PC): the cookie reaches this
port from there, and a POST without a body needs no preflight.

Tokens and session ids are compared in constant time (``hmac.compare_digest``).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import math
import os
import secrets
import stat
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qsl, urlencode, urlsplit

import trio
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse

from .errors import CounterError
from .operators import Operator, OperatorStore

log = logging.getLogger("edge.counter.auth")
access_log = logging.getLogger("edge.counter.access")

TOKEN_FILE = "api.token"
TOKEN_MODE = 0o640
MIN_TOKEN = 32
COOKIE = "counter_session"
SESSION_S = 12 * 3600           # a long shift; the clerk logs in again after it
RECHECK_S = 30.0                # a session looks at the operator store again after this
MAX_SESSIONS = 64
FREE_TRIES = 5                  # wrong passwords per operator id before each try must wait
FIRST_LOCK_S = 30.0
MAX_LOCK_S = 900.0
GLOBAL_FAILS = 50               # wrong passwords per minute over all ids before every login waits
OPEN_PATHS = frozenset({"/", "/openapi.json", "/metrics", "/api/login", "/favicon.ico"})
HIS_PREFIX = "/fsi/"
HIS = Operator("HIS", "医院信息系统", frozenset({"settle", "cancel", "payout"}))
NO_FRAMES = ((b"x-frame-options", b"DENY"), (b"content-security-policy", b"frame-ancestors 'none'"))
CREDENTIAL = "counter.credential"   # scope keys: how the caller proved itself, and as whom
OPERATOR = "counter.operator"


class Unauthenticated(CounterError):
    code = "unauthenticated"
    zh = "请先登录（或由医院信息系统提供本机接口令牌）"
    status = 401


class LoginFailed(CounterError):
    code = "login_failed"
    zh = "工号或密码不正确"
    status = 401


class LoginThrottled(CounterError):
    code = "login_throttled"
    zh = "登录失败次数过多，请稍后再试"
    status = 429


class TokenFileError(CounterError):
    code = "token_file_bad"
    zh = "本机接口令牌文件损坏，请联系技术人员"
    status = 500


# ------------------------------------------------------------------------------- the token file ---
def _read_token(path: Path) -> str:
    text = path.read_text(encoding="ascii", errors="replace").strip()
    if len(text) < MIN_TOKEN or not text.isprintable() or " " in text:
        raise TokenFileError(f"{path} holds no usable token (empty, shorter than {MIN_TOKEN} characters or not "
                             "plain text): move it aside so the counter writes a new one, then give the HIS the new "
                             "token", hint=f"mv {path} {path}.bad && systemctl restart counter-edge")
    return text


def _check_file(path: Path) -> None:
    """A token file only the counter's user may write and only its group read (0640 or stricter), and
    the file itself, not a link: a link points at a file whose permissions and writer are elsewhere (a
    dangling one would have the token written wherever it points)."""
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISREG(st.st_mode):
        raise TokenFileError(f"{path} is a link or not a plain file: the token must be the file itself",
                             zh="本机接口令牌文件不是普通文件（可能被替换为链接），请联系技术人员",
                             hint=f"mv {path} {path}.bad && systemctl restart counter-edge (then give the HIS the "
                                  "new token)")
    if stat.S_IMODE(st.st_mode) & 0o027:
        raise TokenFileError(f"{path} is mode {stat.S_IMODE(st.st_mode):04o}: others can read it or its group can "
                             "write it; the token file must be 0640 or stricter",
                             zh="本机接口令牌文件权限过宽（其他用户可读或可改），请联系技术人员",
                             hint=f"chmod 0640 {path}; if other users could read it, move it aside and restart to "
                                  f"issue a new token: mv {path} {path}.old && systemctl restart counter-edge")


def read_token(state_dir: str | Path) -> str | None:
    """The installation token, or None when there is none or it cannot be read (diagnose, ``edge status``)."""
    try:
        return _read_token(Path(state_dir) / TOKEN_FILE)
    except (OSError, TokenFileError):
        return None


def ensure_token(state_dir: str | Path) -> str:
    """The installation token: read, or written once (mode 0640) if there is none. Never overwritten: a
    HIS configured with it keeps working across restarts and upgrades; replacing it is a person's act
    (move the file aside, restart, give the HIS the new one)."""
    state = Path(state_dir)
    state.mkdir(parents=True, exist_ok=True)
    path = state / TOKEN_FILE
    if path.is_symlink() or path.exists():
        _check_file(path)
        return _read_token(path)
    token = secrets.token_urlsafe(32)
    tmp = state / f".{TOKEN_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, (token + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.chmod(tmp, TOKEN_MODE)     # whatever the umask: the owner writes, the group reads, others nothing
        os.link(tmp, path)            # atomic and never replaces: a file made meanwhile wins
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
    return _read_token(path)


# ----------------------------------------------------------------------------------- throttling ---
class Throttle:
    """Wrong-password bookkeeping: per id (bounded) and overall, on the monotonic clock ``clock``."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._ids: dict[str, tuple[int, float]] = {}     # id -> (failures, locked until)
        self._recent: deque[float] = deque(maxlen=GLOBAL_FAILS)

    def wait_s(self, key: str) -> float:
        now = self.clock()
        wait = max(0.0, self._ids.get(key, (0, 0.0))[1] - now)
        if len(self._recent) == GLOBAL_FAILS and now - self._recent[0] < 60:
            wait = max(wait, 60 - (now - self._recent[0]))
        return wait

    def failed(self, key: str) -> None:
        now = self.clock()
        n, _ = self._ids.pop(key, (0, 0.0))
        n += 1
        lock = now + min(FIRST_LOCK_S * 2 ** (n - FREE_TRIES), MAX_LOCK_S) if n >= FREE_TRIES else 0.0
        self._ids[key] = (n, lock)
        while len(self._ids) > 1000:
            # The id with the fewest failures goes (the oldest among equals), never simply the oldest:
            # failing 1000 made-up ids must not wipe a real clerk's lock and give 5 free guesses again.
            self._ids.pop(min(self._ids, key=lambda k: self._ids[k][0]))
        self._recent.append(now)

    def succeeded(self, key: str) -> None:
        self._ids.pop(key, None)


@dataclass
class Session:
    operator: Operator
    expires: float
    checked: float


# ------------------------------------------------------------------------------------ the check ---
class Auth:
    """The installation token, the operator store and the clerks' sessions of one counter API."""

    def __init__(self, *, token: str, operators: OperatorStore, clock: Callable[[], float] = time.monotonic) -> None:
        if len(token) < MIN_TOKEN:
            raise ValueError(f"an installation token has at least {MIN_TOKEN} characters")
        self.token = token
        self.operators = operators
        self.clock = clock
        self.throttle = Throttle(clock)
        self._sessions: dict[str, Session] = {}
        self._verify = trio.Lock()     # one password check at a time: parallel guesses queue up, then wait

    @classmethod
    def in_state_dir(cls, state_dir: str | Path) -> "Auth":
        """The daemon's: ``api.token`` (written at first start) and ``operators.db``."""
        return cls(token=ensure_token(state_dir), operators=OperatorStore.in_state_dir(state_dir))

    @classmethod
    def ephemeral(cls, clock: Callable[[], float] = time.monotonic) -> "Auth":
        """A random token and no operators (an app built without a state directory: tests, benches)."""
        return cls(token=secrets.token_urlsafe(32), operators=OperatorStore.open(":memory:"), clock=clock)

    def close(self) -> None:
        self.operators.close()

    @property
    def headers(self) -> dict[str, str]:
        """What a HIS sends (and what the harness's clients send)."""
        return {"Authorization": f"Bearer {self.token}"}

    def _token_ok(self, presented: str) -> bool:
        return hmac.compare_digest(presented.encode("utf-8", "replace"), self.token.encode("ascii"))

    async def identify(self, request: Request) -> tuple[str, Operator] | None:
        """(how, operator) of the caller, or None."""
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return ("token", HIS) if self._token_ok(value.strip()) else None
        if header:
            return None
        if request.url.path.startswith(HIS_PREFIX):
            values = [v for k, v in parse_qsl(request.url.query, keep_blank_values=True) if k == "access_token"]
            if values:
                return ("query", HIS) if len(values) == 1 and self._token_ok(values[0]) else None
        sid = request.cookies.get(COOKIE)
        if sid:
            # Anything but a read looks at the operator store now: a clerk disabled a moment ago changes
            # no money in the recheck window (a primary-key read; reads may lag by RECHECK_S).
            op = await self._session(sid, recheck=request.method not in ("GET", "HEAD"))
            if op is not None:
                return ("session", op)
        return None

    async def _session(self, sid: str, *, recheck: bool = False) -> Operator | None:
        now = self.clock()
        found = None
        for key, s in list(self._sessions.items()):
            if s.expires <= now:
                del self._sessions[key]
            elif hmac.compare_digest(key.encode(), sid.encode("utf-8", "replace")):
                found = key
        if found is None:
            return None
        s = self._sessions[found]
        if recheck or now - s.checked >= RECHECK_S:
            fresh = await trio.to_thread.run_sync(self.operators.get, s.operator.id)
            if fresh is None or not fresh.enabled:
                self._sessions.pop(found, None)
                log.info("session of a disabled operator ended", extra={"event": "session_ended",
                                                                         "operator": s.operator.id})
                return None
            s.operator, s.checked = fresh, now
        return s.operator

    async def login(self, op_id: Any, secret: Any) -> tuple[str, Operator]:
        key = op_id if isinstance(op_id, str) and len(op_id) <= 64 else "?"
        async with self._verify:
            wait = self.throttle.wait_s(key)
            if wait > 0:
                secs = math.ceil(wait)
                log.warning("login throttled", extra={"event": "login_throttled", "operator": await self._loggable(key)})
                raise LoginThrottled(f"too many wrong passwords for {key}: try again in {secs} s",
                                     zh=f"登录失败次数过多，请 {secs} 秒后再试", retry_after_s=secs)
            op = await trio.to_thread.run_sync(self.operators.verify, key, secret if isinstance(secret, str) else "")
            if op is None:
                self.throttle.failed(key)
                log.warning("login failed", extra={"event": "login_failed", "operator": await self._loggable(key)})
                raise LoginFailed("wrong operator id or password (or the operator is disabled)")
            self.throttle.succeeded(key)
        sid = secrets.token_urlsafe(32)
        now = self.clock()
        self._sessions[sid] = Session(op, now + SESSION_S, now)
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.pop(next(iter(self._sessions)))
        log.info("operator logged in", extra={"event": "login", "operator": op.id})
        return sid, op

    async def _loggable(self, key: str) -> str:
        """The id tried, as the log may show it: an operator's id, never text that is none (a clerk who
        typed the password into the id field would have it logged)."""
        known = await trio.to_thread.run_sync(self.operators.get, key) is not None
        return key if known else "(unknown id)"

    def logout(self, sid: str | None) -> None:
        if sid:
            self._sessions.pop(sid, None)


async def his_caller(request: Request) -> Operator:
    """The HIS routes' ``authenticate`` hook (edge/his/routes.py): the installation token only; a clerk's
    session is for the page, not for the 两定接口."""
    if request.scope.get(CREDENTIAL) not in ("token", "query"):
        raise Unauthenticated("the HIS routes need the installation token (Authorization: Bearer, or "
                              "?access_token=)", zh="医保接口需要本机接口令牌")
    return request.scope[OPERATOR]


def operator_of(request: Request) -> Operator | None:
    return request.scope.get(OPERATOR)


# ---------------------------------------------------------------------------------- middleware ---
def redacted_target(scope: dict) -> str:
    """The request's path and query as the access log writes it: ``access_token`` as ``[secret]``."""
    path = scope.get("path", "")
    query = scope.get("query_string", b"").decode("latin-1")
    if not query:
        return path
    pairs = [(k, "[secret]" if k == "access_token" else v) for k, v in parse_qsl(query, keep_blank_values=True)]
    return f"{path}?{urlencode(pairs, safe='[]')}"


_PAGE_401 = ("<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><title>请先登录</title></head>"
             "<body style=\"font-family:sans-serif;padding:16px\"><h1 id=\"needlogin\">请先登录</h1>"
             "<p><a href=\"/\">返回柜台登录</a></p></body></html>")


class Guard:
    """ASGI middleware: every route but ``OPEN_PATHS`` needs a credential (default deny: a new route is
    guarded without anyone remembering to); writes the access log (``edge.counter.access``)."""

    def __init__(self, app, auth: Auth) -> None:
        self.app = app
        self.auth = auth

    @property
    def routes(self) -> list:
        """The guarded app's routes (what the OpenAPI document is checked against)."""
        return self.app.routes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = {"code": 0}

        async def sending(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                # Never in a frame: a page on another port of 127.0.0.1 is the same site, so a frame of
                # the counter there would carry the clerk's session and its buttons (clickjacking).
                message = {**message, "headers": [*message.get("headers", []), *NO_FRAMES]}
            await send(message)

        try:
            await self._guarded(scope, receive, sending)
        finally:
            method, code = scope.get("method", ""), status["code"]
            # Polls (the page asks for the card every second) are DEBUG; changes and refusals INFO.
            level = logging.DEBUG if method in ("GET", "HEAD") and 0 < code < 400 else logging.INFO
            # The token wherever a misconfigured HIS put it (another query key, the path) is [secret] too.
            target = redacted_target(scope).replace(self.auth.token, "[secret]")
            access_log.log(level, "%s %s %s", method, target, code,
                           extra={"event": "access", "method": method, "status": code})

    async def _guarded(self, scope, receive, send) -> None:
        path = scope.get("path", "")
        if path in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        found = await self.auth.identify(request)
        if found is None:
            await self._refuse(path, scope, receive, send)
            return
        how, op = found
        if how == "session" and scope.get("method") not in ("GET", "HEAD"):
            origin = request.headers.get("origin")
            if origin is not None and not _local_origin(origin, (scope.get("server") or (None, None))[1]):
                log.warning("refused a cross-site request", extra={"event": "cross_site_refused"})
                await JSONResponse({"error": {"code": "not_local", "message": "requests from another site are refused",
                                              "zh": "仅允许本机页面访问"}}, status_code=403)(scope, receive, send)
                return
        scope[CREDENTIAL], scope[OPERATOR] = how, op
        await self.app(scope, receive, send)

    @staticmethod
    async def _refuse(path: str, scope, receive, send) -> None:
        if path.startswith(("/api/", HIS_PREFIX)) or scope.get("method") not in ("GET", "HEAD"):
            exc = Unauthenticated("log in at the counter page, or send the installation token "
                                  "(Authorization: Bearer <token>; docs/his.md)")
            resp: Any = JSONResponse({"error": exc.to_dict()}, status_code=401,
                                     headers={"WWW-Authenticate": "Bearer"})
        else:
            resp = HTMLResponse(_PAGE_401, status_code=401)
        await resp(scope, receive, send)


def is_loopback(host: str | None) -> bool:
    """A loopback address or ``localhost`` (the API's peer, Host and Origin checks)."""
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _local_origin(origin: str, port: int | None) -> bool:
    """The counter's own page: a loopback name *and this server's port*. A browser sends a SameSite=Strict
    cookie to any port of the same host (a site has no port), so another program's page on
    ``127.0.0.1:<other port>`` is same-site; only the Origin's port tells it from ours."""
    try:
        parts = urlsplit(origin)
        theirs = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        return False
    return parts.scheme == "http" and is_loopback(parts.hostname) and port is not None and theirs == port
