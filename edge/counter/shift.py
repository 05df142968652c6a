"""The clerk's day: today's visits and the shift close (交班/日结), read from the journal only.

The journal is the record of what the counter did, so the close is computed from it (never from a
second tally that could drift): for one day and, when asked, one operator, the counts of settlements,
claims and cancels, the fund / account / cash totals (a cancel counts against them), payouts, and the
cash the clerk hands over - cash taken at settlements and claims, less cash given back by cancels and
payouts. All in integer fen.

A day's entries are found by a binary search on the entry time over ``journal.get`` (the journal's
public read API) and then read forward, so a long journal costs a few reads, not a full scan. Routes
(``shift_routes``) are mounted by the counter API behind the same guards as every other route; the
close needs the ``close_shift`` role, today's visits any logged-in operator.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import trio
from jinja2 import Environment, PackageLoader, Template, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from edge.settle import yuan

from .auth import operator_of as caller_of
from .errors import BadRequest
from .operators import require
from .receipt_page import MED_TYPE_ZH, mask_name

VISIT_KINDS = ("settlement", "claim", "cancel", "payout")
KIND_ZH = {"settlement": "结算", "claim": "全额垫付", "cancel": "撤销", "payout": "报销支付"}
NO_OPERATOR = "（未记录操作员）"


def operator_of(body: dict) -> str:
    op = body.get("operator")
    if isinstance(op, dict):
        return str(op.get("name") or op.get("id") or NO_OPERATOR)
    return str(op) if op else NO_OPERATOR


def _amounts(entry) -> dict[str, int]:
    """medfee / fund / account / cash of an entry, signed: a cancel reverses, a payout is cash out."""
    b = entry.body
    if entry.kind == "settlement":
        a = b["amounts"]
        return {"medfee": a["medfee_sumamt"], "fund": a["hifp_pay"], "acct": a["acct_pay"], "cash": a["psn_cash_pay"]}
    if entry.kind == "claim":
        p = b["paid"]
        return {"medfee": p["medfee_sumamt"], "fund": 0, "acct": p["acct_pay"], "cash": p["psn_cash_pay"]}
    if entry.kind == "cancel":
        a = b["amounts"]
        return {"medfee": -a["medfee_sumamt"], "fund": -a["hifp_pay"], "acct": -a["acct_pay"],
                "cash": -a["psn_cash_pay"]}
    if entry.kind == "payout":
        amount = b.get("amount", b.get("psn_cash_pay", 0))
        return {"medfee": 0, "fund": 0, "acct": 0, "cash": -int(amount)}
    return {"medfee": 0, "fund": 0, "acct": 0, "cash": 0}


def day_bounds(day: dt.date, tz: dt.tzinfo) -> tuple[int, int]:
    start = dt.datetime.combine(day, dt.time(), tz)
    return int(start.timestamp() * 1000), int((start + dt.timedelta(days=1)).timestamp() * 1000)


def day_entries(journal, day: dt.date, tz: dt.tzinfo) -> list:
    """The journal entries of ``day`` (visit kinds only), in seq order."""
    lo_ms, hi_ms = day_bounds(day, tz)
    head, _ = journal.head()
    lo, hi = 1, head + 1                 # the first seq whose time is >= the day's start
    while lo < hi:
        mid = (lo + hi) // 2
        e = journal.get(mid)
        if e is not None and e.time < lo_ms:
            lo = mid + 1
        else:
            hi = mid
    out = []
    for e in journal.entries(lo):
        if e.time >= hi_ms:
            break
        if e.kind in VISIT_KINDS:
            out.append(e)
    return out


@dataclass
class Tally:
    operator: str
    settlements: int = 0
    claims: int = 0
    cancels: int = 0
    payouts: int = 0
    payout_fen: int = 0
    totals: dict[str, int] = field(default_factory=lambda: {"medfee": 0, "fund": 0, "acct": 0, "cash": 0})

    def add(self, entry) -> None:
        a = _amounts(entry)
        for k, v in a.items():
            self.totals[k] += v
        if entry.kind == "settlement":
            self.settlements += 1
        elif entry.kind == "claim":
            self.claims += 1
        elif entry.kind == "cancel":
            self.cancels += 1
        elif entry.kind == "payout":
            self.payouts += 1
            self.payout_fen -= a["cash"]

    def to_dict(self) -> dict[str, Any]:
        t = self.totals
        return {"operator": self.operator, "settlements": self.settlements, "claims": self.claims,
                "cancels": self.cancels, "payouts": self.payouts, "payout_fen": self.payout_fen,
                "medfee": t["medfee"], "fund": t["fund"], "acct": t["acct"], "cash_to_hand_over": t["cash"]}


def close(entries: list, operator: str | None = None) -> dict[str, Any]:
    """The shift close: one tally per operator (or the one asked for) and the day's total."""
    per: dict[str, Tally] = {}
    total = Tally("全部操作员")
    for e in entries:
        who = operator_of(e.body)
        if operator is not None and who != operator:
            continue
        per.setdefault(who, Tally(who)).add(e)
        total.add(e)
    return {"operators": [t.to_dict() for t in per.values()], "total": total.to_dict()}


def visits(entries: list, names, q: str = "") -> list[dict[str, Any]]:
    """Today's visits, newest first; ``q`` matches a masked name, seq, item code or item name."""
    cancelled = {e.body["cancels"]: e.seq for e in entries if e.kind == "cancel"}
    out = []
    for e in reversed(entries):
        b = e.body
        a = _amounts(e)
        items = [{"code": it["code"], "name": names.item(it["code"])} for it in b.get("items", [])]
        row = {"seq": e.seq, "kind": e.kind, "kind_zh": KIND_ZH.get(e.kind, e.kind), "time_ms": e.time,
               "patient": mask_name(names.person(b.get("psn_no"))) if b.get("psn_no") else "（未知）",
               "med_type": MED_TYPE_ZH.get((b.get("visit") or {}).get("med_type", ""), ""),
               "items": items, "operator": operator_of(b), "cancelled_by": cancelled.get(e.seq),
               "cancels": b.get("cancels"), **a}
        text = " ".join([str(e.seq), row["patient"]] + [i["code"] + " " + i["name"] for i in items]).lower()
        if q and q.lower() not in text:
            continue
        out.append(row)
    return out


class Names:
    """Item and person names from the cache (a cancel has no items of its own: the original's)."""

    def __init__(self, cache, journal) -> None:
        self.cache, self.journal = cache, journal

    def item(self, code: str) -> str:
        it = self.cache.item(code)
        return str((it or {}).get("name", code))

    def person(self, psn_no: str | None) -> str | None:
        p = self.cache.person(psn_no) if psn_no else None
        return (p.snapshot or {}).get("name") if p is not None else None


@lru_cache(maxsize=1)
def _env() -> Environment:
    env = Environment(loader=PackageLoader("edge.counter", "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True))
    env.filters["yuan"] = lambda fen: ("-¥" if fen < 0 else "¥") + yuan(abs(int(fen)))
    return env


def _template(name: str) -> Template:
    return _env().get_template(name)


def _day(request: Request, counter) -> dt.date:
    text = request.query_params.get("date")
    if not text:
        return counter.clock.today()
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise BadRequest("date must be YYYY-MM-DD", zh="日期格式应为 2026-01-31", field="date") from None


def shift_routes(counter) -> list[Route]:
    """Today's visits and the shift close, as JSON and as printable pages."""
    tz = counter.clock.tz

    async def _read(day: dt.date) -> list:
        return await trio.to_thread.run_sync(day_entries, counter.journal, day, tz)

    async def _visits(request: Request) -> tuple[dt.date, str, list]:
        day, q = _day(request, counter), (request.query_params.get("q") or "").strip()[:50]
        entries = await _read(day)
        names = Names(counter.cache, counter.journal)
        rows = await trio.to_thread.run_sync(lambda: visits(entries, names, q))
        for r in rows:
            r["time"] = f"{dt.datetime.fromtimestamp(r['time_ms'] / 1000, tz):%H:%M}"
        return day, q, rows

    async def api_visits(request: Request) -> Response:
        day, q, rows = await _visits(request)
        return JSONResponse({"date": day.isoformat(), "q": q, "visits": rows})

    async def visits_page(request: Request) -> Response:
        day, q, rows = await _visits(request)
        return HTMLResponse(_template("visits.html").render(day=day.isoformat(), q=q, rows=rows))

    async def _close(request: Request) -> tuple[dt.date, dict]:
        # The close is signed by a named clerk (交班人签字): the close_shift role (edge/counter/operators.py).
        require(caller_of(request), "close_shift")
        day = _day(request, counter)
        return day, close(await _read(day), request.query_params.get("operator") or None)

    async def api_shift(request: Request) -> Response:
        day, c = await _close(request)
        return JSONResponse({"date": day.isoformat(), **c})

    async def shift_page(request: Request) -> Response:
        day, c = await _close(request)
        now = dt.datetime.fromtimestamp(counter.clock.wall_ms() / 1000, tz)
        return HTMLResponse(_template("shift.html").render(day=day.isoformat(), now=f"{now:%Y-%m-%d %H:%M}",
                                                           device=counter.journal.device, **c))

    return [Route("/api/visits", api_visits), Route("/visits", visits_page),
            Route("/api/shift", api_shift), Route("/shift", shift_page)]


def openapi_paths() -> dict[str, Any]:
    day = {"name": "date", "in": "query", "schema": {"type": "string", "format": "date"},
           "description": "YYYY-MM-DD (default: today, China time)"}
    ok = {"200": {"description": "ok", "content": {"application/json": {}}}}
    page = {"200": {"description": "HTML page", "content": {"text/html": {}}}}
    return {
        "/api/visits": {"get": {"summary": "the day's visits from the journal (newest first), optional search q",
                                "parameters": [day, {"name": "q", "in": "query", "schema": {"type": "string"}}],
                                "responses": ok}},
        "/visits": {"get": {"summary": "today's visits page: search, reprint, cancel", "parameters": [day],
                            "responses": page}},
        "/api/shift": {"get": {"summary": "shift close (交班/日结) per operator: counts, fund/account/cash totals, "
                                          "payouts, cash to hand over",
                               "parameters": [day, {"name": "operator", "in": "query", "schema": {"type": "string"}}],
                               "responses": ok}},
        "/shift": {"get": {"summary": "printable shift close page", "parameters": [day], "responses": page}},
    }
