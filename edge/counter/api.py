"""The local counter API (127.0.0.1 only) and the counter page, as one Starlette app.

Three guards keep it local: the daemon binds only a loopback address (config refuses anything else),
every request from a non-loopback peer is answered 403, and a ``Host`` that is not a loopback name is
refused (a web page elsewhere cannot reach it through DNS rebinding). POSTs must be JSON, so a foreign
web page cannot post to it without a CORS preflight, which this API never grants.

Inside those guards, the caller is authenticated (:mod:`edge.counter.auth`): the HIS with the
installation token, a clerk with the session cookie of ``POST /api/login``; anything else gets 401.
The operator found is passed to every ``Counter`` call (roles checked there) and so lands on every
entry and receipt.

Errors always have one shape: ``{"error": {"code", "message", "zh", ...}}`` with a 4xx/5xx status.
:func:`serve` runs it on hypercorn's trio worker inside the daemon's nursery.
"""

from __future__ import annotations

import json
import logging
from decimal import Decimal
from importlib import resources
from typing import Any

import trio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from sync import bodies
from sync.errors import BodyError

from .auth import COOKIE, SESSION_S, Auth, Guard, his_caller, is_loopback, operator_of
from .errors import BadRequest, CounterError
from .openapi import spec
from .receipts import qr_svg
from .requests import parse_items_query, parse_simulated_card

log = logging.getLogger("edge.counter.api")
LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1", "[::1]"}
MAX_BODY = 256 * 1024
_ZH_NAMES = {"seq": "流水号"}


def _asset(name: str) -> str:
    return resources.files("edge.counter").joinpath("static", name).read_text(encoding="utf-8")


def _json(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status)


def _error(exc: CounterError) -> JSONResponse:
    return _json({"error": exc.to_dict()}, exc.status)


async def _body(request: Request) -> Any:
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("application/json"):
        raise BadRequest("send the request body as JSON (Content-Type: application/json)", zh="请求格式不正确",
                         code="invalid_input", status=415, field="content-type")
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise BadRequest("request body too large", zh="请求过大", code="invalid_input", status=413, field="body")
    try:
        # Exact decimals: a count 0.5 stays 0.5, never a binary float.
        data = json.loads(raw or b"null", parse_float=Decimal)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}", zh="请求内容不是有效的数据格式",
                         field="body") from exc
    try:
        # "\ud800" is valid JSON but no journal can encode a lone surrogate: refused before any work.
        bodies.check_tree(data)
    except BodyError as exc:
        raise BadRequest(exc.message, zh="请求中含有无效字符或层级过深", code="invalid_input",
                         field=exc.detail.get("field") or "body") from None
    return data


def _int(value: str, name: str) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise BadRequest(f"{name} must be a whole number", zh=f"{_ZH_NAMES.get(name, '编号')}应为整数",
                         field=name) from None
    if n < 1:
        raise BadRequest(f"{name} must be ≥ 1", zh=f"{_ZH_NAMES.get(name, '编号')}应大于0", field=name)
    if n > 2**53:       # the contract's bound on a seq (sync.bodies); a larger one is no entry, and no SQLite integer
        raise BadRequest(f"{name} must be ≤ 2^53", zh=f"{_ZH_NAMES.get(name, '编号')}过大", field=name)
    return n


def build_app(counter, *, openapi: dict | None = None, prices=None, auth: Auth | None = None) -> "LoopbackOnly":
    """The app; ``auth`` is the daemon's (token file and operators in the state directory); without one,
    a random token and no operators (``app.auth.headers`` is then the only way in)."""
    auth = auth if auth is not None else Auth.ephemeral()

    async def page(request: Request) -> Response:
        return HTMLResponse(_asset("index.html"))

    async def receipt_page(request: Request) -> Response:
        from .receipt_page import page as receipt_html   # a Chinese page for an unknown receipt, too
        code, html = await receipt_html(counter, request.path_params["seq"], request.query_params.get("paper"))
        return HTMLResponse(html, status_code=code)

    document = openapi or spec()   # generated once from the request models

    async def openapi_doc(request: Request) -> Response:
        return _json(document)

    async def login(request: Request) -> Response:
        data = await _body(request)
        if not isinstance(data, dict):
            raise BadRequest("send {\"operator\": id, \"password\": ...}", zh="请输入工号和密码", field="body")
        sid, op = await auth.login(data.get("operator"), data.get("password"))
        resp = _json({"operator": op.to_dict()})
        resp.set_cookie(COOKIE, sid, max_age=SESSION_S, path="/", httponly=True, samesite="strict")
        return resp

    async def logout(request: Request) -> Response:
        auth.logout(request.cookies.get(COOKIE))
        resp = _json({"logged_out": True})
        resp.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return resp

    async def me(request: Request) -> Response:
        op = operator_of(request)
        return _json({"operator": op.to_dict() if op is not None else None})

    async def status(request: Request) -> Response:
        return _json(await counter.status())

    async def card(request: Request) -> Response:
        return _json(await counter.read_card_status(request.query_params.get("reader") or None))

    async def simulate_card(request: Request) -> Response:
        from .cards import simulated_identity
        if not counter.cards.simulated:
            raise BadRequest("card simulation is off (it is for the demo only)", zh="未启用模拟读卡",
                             code="not_simulated", status=404)
        if request.method == "DELETE":
            counter.cards.remove()
            return _json({"present": False})
        card = parse_simulated_card(await _body(request))
        counter.cards.insert(simulated_identity(card_id=card.card_id, ssn=card.certno, name=card.psn_name))
        return _json(await counter.read_card_status())

    async def items(request: Request) -> Response:
        query = parse_items_query(request.query_params)
        found = await trio.to_thread.run_sync(counter.search, query.q, query.limit)
        if prices is not None:   # the site's own price list (edge/counter/prices.py) fills what the catalogue lacks
            found = await trio.to_thread.run_sync(prices.fill, found)
        return _json({"items": found})

    async def presettle(request: Request) -> Response:
        return _json(await counter.presettle(await _body(request), operator=operator_of(request)))

    async def settle(request: Request) -> Response:
        return _json(await counter.settle(await _body(request), operator=operator_of(request)))

    async def claim(request: Request) -> Response:
        return _json(await counter.claim(await _body(request), operator=operator_of(request)))

    async def cancel(request: Request) -> Response:
        data = await _body(request) if request.headers.get("content-length", "0") != "0" else {}
        return _json(await counter.cancel(_int(request.path_params["seq"], "seq"), data, operator=operator_of(request)))

    async def pay_out(request: Request) -> Response:
        data = await _body(request) if request.headers.get("content-length", "0") != "0" else {}
        return _json(await counter.pay_out(request.path_params["payout_no"], data, operator=operator_of(request)))

    async def receipt(request: Request) -> Response:
        return _json(await counter.receipt(_int(request.path_params["seq"], "seq")))

    async def receipt_qr(request: Request) -> Response:
        view = await counter.receipt(_int(request.path_params["seq"], "seq"))
        return Response(qr_svg(view["qr"]), media_type="image/svg+xml")

    routes = [
        Route("/", page), Route("/receipt/{seq}", receipt_page), Route("/openapi.json", openapi_doc),
        Route("/api/login", login, methods=["POST"]), Route("/api/logout", logout, methods=["POST"]),
        Route("/api/me", me),
        Route("/api/status", status), Route("/api/card", card),
        Route("/api/card/simulate", simulate_card, methods=["POST", "DELETE"]),
        Route("/api/items", items), Route("/api/presettle", presettle, methods=["POST"]),
        Route("/api/settle", settle, methods=["POST"]), Route("/api/claim", claim, methods=["POST"]),
        Route("/api/settlements/{seq}/cancel", cancel, methods=["POST"]),
        Route("/api/payouts/{payout_no}/pay", pay_out, methods=["POST"]),
        Route("/api/receipt/{seq}", receipt), Route("/api/receipt/{seq}/qr.svg", receipt_qr),
    ]
    from edge.metrics import counter_metrics_route  # Prometheus /metrics, loopback only (docs/operations.md)
    routes.append(counter_metrics_route(counter))
    from edge.his import his_routes  # the national 两定接口 for an existing HIS (docs/his.md), behind the same guards
    routes.extend(his_routes(counter, authenticate=his_caller))   # the installation token only
    from .shift import shift_routes  # today's visits and the shift close (交班/日结), same guards
    routes.extend(shift_routes(counter))

    async def on_counter_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, CounterError)  # starlette calls this handler for CounterError only
        return _error(exc)

    async def on_body_error(request: Request, exc: Exception) -> Response:
        # A body the contract refuses (sync.bodies) is the caller's input, refused before journaling:
        # the builders parse their own output before anything is written.
        assert isinstance(exc, BodyError)
        return _json({"error": {"code": "invalid_input", "message": exc.message, "zh": "数据超出允许范围，未记账",
                                "field": exc.detail.get("field")}}, 422)

    async def on_http(request: Request, exc: Exception) -> Response:
        # Starlette's own 404/405 as the API's coded body (a plain-text page would be the one uncoded answer).
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        zh = {404: "没有这个地址", 405: "不支持此请求方式"}.get(exc.status_code, "请求未受理")
        return _json({"error": {"code": code, "message": str(exc.detail), "zh": zh}}, exc.status_code)

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error in the counter API", extra={"event": "api_error", "path": request.url.path})
        return _json({"error": {"code": "internal_error", "message": "internal error; nothing was recorded unless a "
                                "receipt was returned", "zh": "内部错误，请重试或联系技术人员"}}, 500)

    app = Starlette(routes=routes, exception_handlers={CounterError: on_counter_error, BodyError: on_body_error,
                                                       HTTPException: on_http, Exception: on_unexpected})
    return LoopbackOnly(Guard(app, auth), auth)


class LoopbackOnly:
    """ASGI middleware: refuse non-loopback peers and non-loopback Host headers with 403. ``auth`` is the
    app's caller check (``app.auth.headers`` gives a client the installation token)."""

    def __init__(self, app, auth: Auth | None = None) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] in ("http", "websocket"):
            client = scope.get("client")
            host = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
            hostname = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
            if client is None or not is_loopback(client[0]) or not is_loopback(hostname):
                log.warning("refused a non-local request", extra={"event": "non_loopback_refused"})
                resp = JSONResponse({"error": {"code": "not_local", "message": "the counter API answers only on this "
                                     "computer (127.0.0.1)", "zh": "仅允许本机访问"}}, status_code=403)
                await resp(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def serve(app, host: str, port: int, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Run the app on hypercorn's trio worker; reports the bound URL through task_status."""
    from hypercorn.config import Config
    from hypercorn.trio import serve as hyper_serve

    if not is_loopback(host):
        raise ValueError(f"the counter API binds only to a loopback address, not {host!r}")
    config = Config()
    config.bind = [f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"]
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 2.0
    await hyper_serve(app, config, task_status=task_status)
