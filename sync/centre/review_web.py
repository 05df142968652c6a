"""Reviewer page and API of the centre (mounted by sync.centre.app through ``routes``).

JSON API (session token in ``Authorization: Bearer <token>`` or the ``review_session`` cookie)::

    POST /v1/review/login                     {"name", "password"} -> {"token", "name", "role"}
    POST /v1/review/logout
    GET  /v1/review/claims?status=pending     reviewer, auditor
    GET  /v1/review/claims/{claim_no}         reviewer, auditor: claim, items, the engine's split now
    POST /v1/review/claims/{no}/approve       reviewer: {"note", ? "psn_no", ? "med_type"}
    POST /v1/review/claims/{no}/deny          reviewer: {"note"}
    POST /v1/review/claims/{no}/admission     reviewer: {"admitted": bool, "note"} (emergency observation)
    GET  /v1/review/report?site=S&date=D[&format=json|csv|html]   reviewer, auditor
    GET  /v1/review/actions[?target=claim_no|psn_no]              reviewer, auditor: the action journal
    GET  /v1/review/settlements[?status=open|all]                 reviewer, auditor: disputed settlements
    POST /v1/review/settlements/{device}/{seq}/decide             reviewer: {"accept": bool, "note"}
    POST /v1/review/settlements/{device}/{seq}/cancel             reviewer: {"reason"} (cancel at the centre)

The page (plain HTML forms, no script, no CDN): ``/review`` (log in, then the queue),
``/review/claims/{no}`` (detail with approve / deny), ``/review/report?site=&date=``, ``/review/cancel``
(cancel a reconciled settlement at the centre: device, seq, reason and a confirmation).
Every POST from another origin is refused; a POST carried by the session cookie also shows the session's
CSRF token (form field ``csrf`` or header ``X-CSRF-Token``); logins are throttled and failures journaled;
the cookie is HttpOnly, SameSite=Strict, expires with the session, Secure over https (:mod:`sync.centre.webauth`).
Every decision is recorded in ``recon_actions`` with who and when (by :mod:`sync.centre.review`).
Blocking store work runs in worker threads (``trio.to_thread.run_sync``).
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs, quote

import trio
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from sync.centre import cancel as C
from sync.centre import report as R
from sync.centre import review as RV
from sync.centre import reviewers as A
from sync.centre import webauth as W
from sync.centre.pages import render
from sync.errors import SyncError

COOKIE = W.COOKIE
READ = ("reviewer", "auditor")
DECIDE = ("reviewer",)


def _store(request: Request):
    return request.app.state.store


def _now(request: Request) -> int:
    return request.app.state.clock()


def _bearer(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else None


def _token(request: Request) -> str | None:
    return _bearer(request) or request.cookies.get(COOKIE)


async def _csrf_supplied(request: Request) -> str | None:
    if request.headers.get(W.CSRF_HEADER):
        return request.headers[W.CSRF_HEADER]
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return (await _form(request)).get(W.CSRF_FIELD)
    return None


async def _account(request: Request, roles) -> dict:
    """The session's account with its CSRF token; a POST riding on the cookie must show that token."""
    accounts = _store(request).accounts
    token, now = _token(request), _now(request)
    account = A.authorize(await trio.to_thread.run_sync(lambda: accounts.session(token, now=now)), *roles)
    token = token or ""   # session() has refused a missing token already
    if request.method == "POST" and _bearer(request) is None:
        W.check_csrf(token, await _csrf_supplied(request))
    return {**account, "csrf": W.csrf_token(token)}


def _error(exc: Exception, status: int | None = None) -> JSONResponse:
    if isinstance(exc, SyncError):
        return JSONResponse({"error": {"code": exc.code, "message": exc.message}}, status_code=status or exc.status)
    return JSONResponse({"error": {"code": getattr(exc, "code", "bad_request"), "message": str(exc)}},
                        status_code=status or 400)


def api(roles):
    def wrap(fn):
        async def handler(request: Request) -> Response:
            try:
                if request.method == "POST":
                    W.check_origin(request)
                account = await _account(request, roles) if roles else None
                return await fn(request, account)
            except (SyncError, R.ReportError) as exc:
                return _error(exc)
        return handler
    return wrap


async def _json(request: Request) -> dict:
    try:
        data = json.loads(await request.body() or b"{}")
    except ValueError:
        raise SyncError("the body must be a JSON object", code="bad_json") from None
    if not isinstance(data, dict):
        raise SyncError("the body must be a JSON object", code="bad_json")
    return data


def _run(fn, *args, **kw):
    return trio.to_thread.run_sync(lambda: fn(*args, **kw))


# ------------------------------------------------------------------------------------ JSON API ---
@api(None)
async def api_login(request, _):
    data = await _json(request)
    name, password = data.get("name"), data.get("password")
    if not isinstance(name, str) or not isinstance(password, str):
        raise A.BadLogin("give name and password")
    store, now = _store(request), _now(request)
    token = await _run(W.login, store, name, password, W.client_of(request), now=now)
    account = await _run(store.accounts.session, token, now=now)
    resp = JSONResponse({"token": token, **account, "csrf": W.csrf_token(token)})
    W.set_session(resp, request, token)
    return resp


@api(READ)
async def api_logout(request, account):
    await _run(_store(request).accounts.logout, _token(request))
    resp = JSONResponse({"ok": True})
    W.clear_session(resp, request)
    return resp


@api(READ)
async def api_claims(request, account):
    status = request.query_params.get("status", "pending")
    return JSONResponse({"claims": await _run(RV.claims, _store(request), status=None if status == "all" else status)})


@api(READ)
async def api_claim(request, account):
    no = request.path_params["claim_no"]
    store = _store(request)
    c = await _run(RV.claim, store, no)
    c["preview"] = await _run(RV.preview, store, no) if c["status"] == RV.PENDING else None
    return JSONResponse(c)


@api(DECIDE)
async def api_approve(request, account):
    data = await _json(request)
    out = await _run(RV.approve, _store(request), request.path_params["claim_no"], who=account["name"],
                     note=str(data.get("note") or ""), psn_no=data.get("psn_no"), med_type=data.get("med_type"),
                     now=_now(request))
    return JSONResponse(out)


@api(DECIDE)
async def api_deny(request, account):
    data = await _json(request)
    out = await _run(RV.deny, _store(request), request.path_params["claim_no"], who=account["name"],
                     note=str(data.get("note") or ""), now=_now(request))
    return JSONResponse(out)


@api(DECIDE)
async def api_admission(request, account):
    data = await _json(request)
    if not isinstance(data.get("admitted"), bool):
        raise SyncError("say whether the patient was admitted: {\"admitted\": true|false}", code="bad_json")
    out = await _run(RV.decide_admission, _store(request), request.path_params["claim_no"], admitted=data["admitted"],
                     who=account["name"], note=str(data.get("note") or ""), now=_now(request))
    return JSONResponse(out)


@api(READ)
async def api_disputed(request, account):
    open_only = request.query_params.get("status", "open") == "open"
    return JSONResponse({"settlements": await _run(RV.disputed, _store(request), open_only=open_only)})


@api(DECIDE)
async def api_decide_settlement(request, account):
    data = await _json(request)
    if not isinstance(data.get("accept"), bool):
        raise SyncError("say whether the settlement is accepted: {\"accept\": true|false, \"note\": \"...\"}",
                        code="bad_json")
    p = request.path_params
    out = await _run(RV.decide_settlement, _store(request), p["device"], int(p["seq"]), accept=data["accept"],
                     who=account["name"], note=str(data.get("note") or ""), now=_now(request))
    return JSONResponse(out)


@api(READ)
async def api_actions(request, account):
    target = request.query_params.get("target")
    return JSONResponse({"actions": await _run(_store(request).ledger.actions, target)})


@api(READ)
async def api_report(request, account):
    q = request.query_params
    fmt = q.get("format", "json")
    if fmt not in ("json", "csv", "html"):
        raise R.ReportError("format is json, csv or html")
    rep = await _run(R.daily, _store(request), q.get("site", ""), q.get("date", ""))
    if fmt == "json":
        return JSONResponse(rep)
    if fmt == "csv":
        return Response(R.to_csv(rep), media_type="text/csv; charset=utf-8")
    return HTMLResponse(R.to_html(rep))


# ---------------------------------------------------------------------------------------- page ---
def _page(template: str, title: str, status: int = 200, account: dict | None = None, **context) -> HTMLResponse:
    return HTMLResponse(render(template, title=title, account=account, **context), status_code=status)


def _message(title: str, message: str, status: int, account: dict | None = None, *, back: bool = False) -> HTMLResponse:
    return _page("message.html", title, status, account, message=message, back=back)


def _login_form(message: str = "", status: int = 200) -> HTMLResponse:
    return _page("login.html", "全额垫付审核 · 登录", status, message=message)


# What the reviewer reads: Chinese for every refusal the desk can meet (stored codes, never raw English).
_ERROR_ZH = {"bad_login": "用户名或密码错误", "not_logged_in": "请先登录", "session_expired": "登录已过期，请重新登录",
             "wrong_role": "当前账号无权执行此操作", "claim_not_found": "没有这个理赔号",
             "claim_decided": "该理赔已处理，不能重复决定",
             "claim_not_computable": "无法计算报销金额：参保人未识别或数据不全，请填写参保人编号或驳回并说明理由",
             "note_required": "驳回必须填写理由（柜台会告知患者）",
             "not_observation": "该理赔不是急诊留观", "bad_form": "请选择批准或驳回"}


def _zh(exc: Exception) -> str:
    code = getattr(exc, "code", None)
    return getattr(exc, "zh", None) or _ERROR_ZH.get(str(code), f"操作未完成（代码 {code}），请联系技术人员")


def _site(device: str | None) -> str:
    parts = (device or "").split("-")
    return "-".join(parts[1:-1]) if len(parts) >= 3 and parts[0] == "D" else "（未知）"


def _dup_key(c: dict) -> tuple:
    items = tuple(sorted((str(it.get("code")), str(it.get("cnt")), str(it.get("pric"))) for it in c.get("items", [])))
    return (c.get("psn_no") or c.get("certno"), c.get("date"), items)


def _duplicates(claims: list[dict]) -> dict[str, list[str]]:
    """Claims of the same person, day and items: each claim number -> the others like it."""
    groups: dict[tuple, list[str]] = {}
    for c in claims:
        groups.setdefault(_dup_key(c), []).append(c["claim_no"])
    return {no: [o for o in nos if o != no] for nos in groups.values() if len(nos) > 1 for no in nos}


FILTERS = ("site", "person", "date", "cause")


def _filters(request: Request) -> dict[str, str]:
    return {k: (request.query_params.get(k) or "").strip()[:64] for k in FILTERS}


def _matches(c: dict, f: dict[str, str]) -> bool:
    person = " ".join(str(c.get(k) or "") for k in ("psn_no", "certno"))
    return ((not f["site"] or f["site"] in _site(c.get("device"))) and (not f["person"] or f["person"] in person)
            and (not f["date"] or str(c.get("date") or "") == f["date"])
            and (not f["cause"] or c.get("cause") == f["cause"]))


async def _form(request: Request) -> dict[str, str]:
    W.check_origin(request)
    data = parse_qs((await request.body()).decode("utf-8", "replace"))
    return {k: v[0] for k, v in data.items()}


def page(roles):
    def wrap(fn):
        async def handler(request: Request) -> Response:
            try:
                if request.method == "POST":
                    W.check_origin(request)
                account = await _account(request, roles)
            except A.NotLoggedIn as exc:
                return _login_form(exc.message, 401)
            except A.WrongRole as exc:
                return _message("无权操作", _zh(exc), 403)
            try:
                return await fn(request, account)
            except (SyncError, R.ReportError) as exc:
                return _message("操作未完成", _zh(exc), getattr(exc, "status", 400), account, back=True)
        return handler
    return wrap


async def page_root(request: Request) -> Response:
    try:
        account = await _account(request, READ)
    except (A.NotLoggedIn, A.WrongRole):
        return _login_form()
    return await _queue(request, account)


async def _queue(request, account) -> Response:
    store, f = _store(request), _filters(request)
    every = await _run(RV.claims, store, status=None)
    for c in every:
        c["site"] = _site(c.get("device"))
    shown = [c for c in every if _matches(c, f)]
    pending = [c for c in shown if c["status"] == RV.PENDING]
    decided = [c for c in shown if c["status"] != RV.PENDING][-20:]
    disputes = await _run(RV.disputed, store)
    from sync.centre.pages import CAUSE_ZH
    return _page("queue.html", "全额垫付审核", account=account, pending=pending, decided=decided,
                 disputes=disputes, can_decide=account["role"] in DECIDE, filters=f, causes=list(CAUSE_ZH.items()),
                 dups=_duplicates(every))


def _cell(value: str) -> str:
    """A note or a name is what someone typed: a spreadsheet must not run it as a formula (CSV injection),
    so a cell that would start one is led by an apostrophe, which spreadsheets show as text."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


@page(READ)
async def page_claims_csv(request, account):
    """The filtered claims as CSV (UTF-8 with BOM so that spreadsheet programs read the Chinese)."""
    import csv
    import io

    from edge.settle import yuan
    from sync.centre.pages import CAUSE_ZH, STATUS_ZH

    f = _filters(request)
    every = await _run(RV.claims, _store(request), status=None)
    dups = _duplicates(every)
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["理赔号", "原因", "参保人编号", "证件号", "机构", "就诊日期", "患者已付(元)", "状态", "报销金额(元)",
                "审核人", "审核意见", "疑似重复"])
    for c in every:
        if _matches(c, f):
            w.writerow([_cell(v) for v in [
                        c["claim_no"], CAUSE_ZH.get(c["cause"], c["cause"]), c.get("psn_no") or "", c.get("certno") or "",
                        _site(c.get("device")), c.get("date") or "", yuan(int(c.get("medfee") or 0)),
                        STATUS_ZH.get(c["status"], c["status"]),
                        yuan(int(c["amount"])) if c.get("amount") is not None and c["status"] != RV.PENDING else "",
                        c.get("decided_by") or "", c.get("note") or "", "、".join(dups.get(c["claim_no"], []))]])
    return Response("\ufeff" + out.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"content-disposition": "attachment; filename=claims.csv"})


@page(READ)
async def page_claim(request, account):
    return await _claim_page(request, account, request.path_params["claim_no"])


async def _claim_page(request, account, no: str, *, error: str = "", form: dict | None = None,
                      status: int = 200) -> Response:
    """The claim with its split as tables; ``error`` is shown on this same page, above the form it came from."""
    store = _store(request)
    c = await _run(RV.claim, store, no)
    split = c["split"] if c["status"] != RV.PENDING else await _run(RV.preview, store, no)
    others = [o for o in await _run(RV.claims, store, status=None, psn_no=c["psn_no"]) if o["claim_no"] != no] \
        if c.get("psn_no") else []
    dup_of = [o["claim_no"] for o in others if _dup_key(o) == _dup_key(c)]
    return _page("claim.html", f"理赔 {no}", status, account=account, c=c, split=split, site=_site(c.get("device")),
                 split_error="参保人未识别或数据不全" if split and "error" in split else "暂无",
                 dup_of=dup_of, error=error, form=form or {},
                 can_decide=c["status"] == RV.PENDING and account["role"] in DECIDE)


@page(DECIDE)
async def page_decide(request, account):
    form = await _form(request)
    no = request.path_params["claim_no"]
    store, now = _store(request), _now(request)
    note, decision, admitted = form.get("note", "").strip(), form.get("decision"), form.get("admitted")
    c = await _run(RV.claim, store, no)
    # Refusals are shown on the claim's own page, with what was typed kept (never a page leading elsewhere).
    problem = ""
    if decision not in ("approve", "deny"):
        problem = _ERROR_ZH["bad_form"]
    elif decision == "deny" and not note:
        problem = _ERROR_ZH["note_required"]
    elif c["cause"] == "emergency_observation" and decision == "approve":
        if admitted not in ("yes", "no"):
            problem = "急诊留观：请先选择患者是否入院（转入住院），再批准"
        elif form.get("confirm") != "1":
            problem = "请勾选“我已核实入院情况”以确认入院决定"
    if problem:
        return await _claim_page(request, account, no, error=problem, form=form, status=400)
    try:
        if c["cause"] == "emergency_observation" and decision == "approve":
            yes = admitted == "yes"
            await _run(RV.decide_admission, store, no, admitted=yes, who=account["name"],
                       note=note or ("已转入住院，费用并入住院结算" if yes else "未转入住院，按急诊报销"), now=now)
        elif decision == "approve":
            await _run(RV.approve, store, no, who=account["name"], note=note, psn_no=form.get("psn_no") or None, now=now)
        else:
            await _run(RV.deny, store, no, who=account["name"], note=note, now=now)
    except SyncError as exc:
        return await _claim_page(request, account, no, error=_zh(exc), form=form, status=getattr(exc, "status", 400))
    return RedirectResponse(f"/review/claims/{quote(no)}", status_code=303)


@page(DECIDE)
async def page_decide_settlement(request, account):
    form = await _form(request)
    p = request.path_params
    if form.get("decision") not in ("accept", "reject"):
        raise SyncError("choose accept or reject", code="bad_form", zh="请选择接受或拒绝")
    await _run(RV.decide_settlement, _store(request), p["device"], int(p["seq"]),
               accept=form["decision"] == "accept", who=account["name"], note=form.get("note", ""),
               now=_now(request))
    return RedirectResponse("/review", status_code=303)


async def page_login(request: Request) -> Response:
    try:
        form = await _form(request)
        token = await _run(W.login, _store(request), form.get("name", ""), form.get("password", ""),
                           W.client_of(request), now=_now(request))
    except SyncError as exc:
        return _login_form(_zh(exc), exc.status if exc.status in (401, 403, 429) else 401)
    resp = RedirectResponse("/review", status_code=303)
    W.set_session(resp, request, token)
    return resp


async def page_logout(request: Request) -> Response:
    token = _token(request)
    try:
        W.check_origin(request)
        if token:
            W.check_csrf(token, await _csrf_supplied(request))
    except A.WrongRole as exc:
        return _message("无权操作", _zh(exc), 403)
    if token:
        await _run(_store(request).accounts.logout, token)
    resp = RedirectResponse("/review", status_code=303)
    W.clear_session(resp, request)
    return resp


# ------------------------------------------------------------------------- cancel at the centre ---
# What a counter cannot cancel (its person snapshot gone, the patient at another site, the day closed)
# is cancelled here: a reviewer names the settlement, gives the reason the patient is told, confirms,
# and sync.centre.cancel reverses it (a reversing adjustment, the cash owed back queued as a payout,
# the counter notified). Idempotent: a second submit answers the first cancel.
def _cancel_target(device: object, seq: object) -> tuple[str, int]:
    device = device.strip() if isinstance(device, str) else ""
    seq_text = str(seq).strip() if isinstance(seq, (str, int)) and not isinstance(seq, bool) else ""
    if not device or len(device) > 64 or not seq_text.isdigit() or len(seq_text) > 12:
        raise SyncError("name the settlement: its device and journal seq", code="bad_form",
                        zh="请填写结算所在的设备号和流水号（数字）")
    return device, int(seq_text)


async def _cancel_page(request, account, *, form: dict, error: str = "", status: int = 200) -> Response:
    store = _store(request)
    row = done = None
    try:
        device, seq = _cancel_target(form.get("device"), form.get("seq"))
    except SyncError:
        device, seq = "", 0
    if device:
        row = await _run(store.recon.outcome, device, seq)
        done = await _run(store.payouts.cancel_of, device, seq)
        if done is not None:
            done = {**done, "payouts": await _run(store.payouts.payouts_of, device, seq)}
    return _page("cancel.html", "医保中心撤销结算", status, account=account, form=form, error=error, row=row,
                 done=done, can_decide=account["role"] in DECIDE)


@page(READ)
async def page_cancel(request, account):
    q = request.query_params
    return await _cancel_page(request, account, form={"device": q.get("device", ""), "seq": q.get("seq", "")})


@page(DECIDE)
async def page_cancel_post(request, account):
    form = await _form(request)
    reason = form.get("reason", "").strip()
    # Refusals are shown on the same form with what was typed kept.
    try:
        device, seq = _cancel_target(form.get("device"), form.get("seq"))
    except SyncError as exc:
        return await _cancel_page(request, account, form=form, error=_zh(exc), status=400)
    if not reason:
        return await _cancel_page(request, account, form=form, error="撤销必须填写原因（柜台会告知参保人）", status=400)
    if form.get("confirm") != "1":
        return await _cancel_page(request, account, form=form, error="请勾选“我已核实此笔结算应撤销”以确认", status=400)
    try:
        await _run(C.cancel_settlement, _store(request), device, seq, reason=reason[:200], who=account["name"],
                   now=_now(request))
    except SyncError as exc:
        return await _cancel_page(request, account, form=form, error=_zh(exc), status=getattr(exc, "status", 400))
    return RedirectResponse(f"/review/cancel?device={quote(device)}&seq={seq}", status_code=303)


@api(DECIDE)
async def api_cancel(request, account):
    data = await _json(request)
    p = request.path_params
    reason = data.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise SyncError("a cancel needs a reason: {\"reason\": \"...\"}", code="reason_required", status=400)
    device, seq = _cancel_target(p["device"], p["seq"])
    out = await _run(C.cancel_settlement, _store(request), device, seq, reason=reason.strip()[:200],
                     who=account["name"], now=_now(request))
    return JSONResponse(out)


@page(READ)
async def page_report(request, account):
    q = request.query_params
    rep = await _run(R.daily, _store(request), q.get("site", ""), q.get("date", ""))
    return HTMLResponse(R.to_html(rep))


routes = [
    Route("/v1/review/login", api_login, methods=["POST"]),
    Route("/v1/review/logout", api_logout, methods=["POST"]),
    Route("/v1/review/claims", api_claims, methods=["GET"]),
    Route("/v1/review/claims/{claim_no}", api_claim, methods=["GET"]),
    Route("/v1/review/claims/{claim_no}/approve", api_approve, methods=["POST"]),
    Route("/v1/review/claims/{claim_no}/deny", api_deny, methods=["POST"]),
    Route("/v1/review/claims/{claim_no}/admission", api_admission, methods=["POST"]),
    Route("/v1/review/report", api_report, methods=["GET"]),
    Route("/v1/review/actions", api_actions, methods=["GET"]),
    Route("/v1/review/settlements", api_disputed, methods=["GET"]),
    Route("/v1/review/settlements/{device}/{seq:int}/decide", api_decide_settlement, methods=["POST"]),
    Route("/review/settlements/{device}/{seq:int}/decide", page_decide_settlement, methods=["POST"]),
    Route("/v1/review/settlements/{device}/{seq:int}/cancel", api_cancel, methods=["POST"]),
    Route("/review/cancel", page_cancel, methods=["GET"]),
    Route("/review/cancel", page_cancel_post, methods=["POST"]),
    Route("/review", page_root, methods=["GET"]),
    Route("/review/login", page_login, methods=["POST"]),
    Route("/review/logout", page_logout, methods=["POST"]),
    Route("/review/report", page_report, methods=["GET"]),
    Route("/review/claims.csv", page_claims_csv, methods=["GET"]),
    Route("/review/claims/{claim_no}", page_claim, methods=["GET"]),
    Route("/review/claims/{claim_no}/decide", page_decide, methods=["POST"]),
]
