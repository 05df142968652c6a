"""The counter API's request bodies as pydantic models: the one definition that the API validates
with and that ``/openapi.json`` is generated from (:mod:`edge.counter.openapi`). Field names follow
the national interface where it has one (med_type, acct_used_flag, med_list_codg, cnt, pric, certno).

A visit request::

    {"req": "POS-20261124-0001",                 idempotency key (a double submit -> one entry)
     "reader": "…" | null,                       which reader (optional with one card present)
     "card_id": "…" | null,                      the card the clerk saw (checked again before journaling)
     "keyed_in": {"card_no": "A12345678", "certno": "…18…"} | null,   damaged card typed in
     "med_type": "11", "acct_used_flag": true, "chronic_code": null, "observation": false,
     "items": [{"med_list_codg": "XJ01…", "cnt": "2", "pric": 1280}],  pric optional (catalogue price)
     "pin": "123456" | null}

Money stays integer fen: ``pric`` is a strict integer (no float, no decimal text, no bool). A count
is exact decimal text; a JSON number is turned into its exact text (the API parses JSON floats as
``Decimal``). Any refusal is one :class:`BadRequest` (``invalid_input``) naming the field, with a
Chinese ``zh`` for the clerk; the engine's own checks (count > 0, at most 6 places, plausible sizes)
run after the shape check, with its messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, Mapping

from pydantic import (
    AliasChoices, BaseModel, BeforeValidator, Field, StringConstraints, ValidationError,
)

from edge.settle import InvalidInput, parse_items
from sync import bodies
from sync.errors import BodyError

from .errors import BadRequest

MAX_REQ = 64
MAX_ITEMS = 500  # the engine's MAX_LINES: a bill longer than this is split


def _blank_is_none(v: Any) -> Any:
    return None if v == "" else v


def _flag(v: Any) -> Any:
    # HIS systems send flags as JSON booleans or as the national interface's "1"/"0".
    if isinstance(v, bool):
        return v
    if v in ("1", 1):
        return True
    if v in ("0", 0, None):
        return False
    return v  # anything else: the boolean check refuses it


def _count_text(v: Any) -> Any:
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (int, Decimal)) and not isinstance(v, bool):
        return str(v)
    return v


Text = Annotated[Annotated[str, Field(strict=True), StringConstraints(max_length=200, strip_whitespace=True)] | None,
                 BeforeValidator(_blank_is_none)]
Flag = Annotated[bool, BeforeValidator(_flag), Field(strict=True)]
Fen = Annotated[int, Field(strict=True, ge=0, description="integer fen (1/100 yuan)")]


class KeyedIn(BaseModel):
    """A damaged card: its number and the holder's social security number, typed in by the clerk."""

    card_no: Annotated[str, Field(strict=True)]
    certno: Annotated[str, Field(strict=True)]


class VisitItem(BaseModel):
    """One fee line."""

    med_list_codg: Annotated[str, Field(strict=True), StringConstraints(strip_whitespace=True, min_length=1)] = Field(
        validation_alias=AliasChoices("med_list_codg", "code"),
        description="national item code (also accepted as `code`)")
    cnt: Annotated[str, BeforeValidator(_count_text), Field(strict=True)] = Field(
        "1", description="count as exact decimal text, > 0, at most 6 places", examples=["2"])
    pric: Fen | None = Field(None, description="unit price in fen; default: the catalogue price")


class VisitBody(BaseModel):
    """Body of /api/presettle, /api/settle and /api/claim."""

    req: Annotated[Annotated[str, Field(strict=True), StringConstraints(max_length=MAX_REQ, strip_whitespace=True)]
                   | None, BeforeValidator(_blank_is_none)] = Field(
        None, description="caller's unique id; required for settle/claim: a repeated submit returns the first "
                          "receipt")
    reader: Text = Field(None, description="PC/SC reader (optional when one card is present)")
    card_id: Text = Field(None, description="card identification code the clerk saw; checked again before "
                                            "journaling (card_changed)")
    keyed_in: KeyedIn | None = Field(None, description="damaged card: number and social security number typed in")
    med_type: Annotated[str, Field(strict=True, pattern=r"^\d{1,4}$")] = Field(
        "11", description="11 outpatient, 13 emergency, 14 chronic, 41 pharmacy")
    acct_used_flag: Flag = Field(False, description="patient agrees to pay from the account (needs pin)")
    chronic_code: Text = None
    observation: Flag = Field(False, description="emergency observation: full payment")
    items: list[VisitItem] = Field(min_length=1, max_length=MAX_ITEMS)
    pin: Annotated[str, Field(strict=True, pattern=r"^\d{4,12}$")] | None = Field(
        None, description="card PIN, verified on the card")


class CancelBody(BaseModel):
    """Body of /api/settlements/{seq}/cancel (optional; the reason is for the people reading the log)."""

    reason: str | None = None


class SimulatedCard(BaseModel):
    """Body of POST /api/card/simulate (demo only)."""

    # Any JSON scalar is taken as its text, as the demo page always did.
    card_id: Annotated[str, BeforeValidator(str)]
    certno: Annotated[str, BeforeValidator(str)]
    psn_name: Annotated[str, BeforeValidator(str)] = ""


def _digits(v: Any) -> Any:
    # Query text must be plain digits ("20"), as before: no sign, no spaces, no "1e2".
    if isinstance(v, str) and not v.isdigit():
        raise ValueError("must be a whole number")
    return v


class ItemsQuery(BaseModel):
    """Query of GET /api/items."""

    q: str = Field("", max_length=64, description="code prefix, pinyin initials (amxl) or part of the name")
    limit: Annotated[int, BeforeValidator(_digits)] = Field(20, ge=1, le=100, description="how many matches")


@dataclass(frozen=True)
class VisitRequest:
    req: str | None
    reader: str | None
    card_id: str | None
    keyed_in: tuple[str, str] | None
    med_type: str
    acct_used_flag: bool
    chronic_code: str | None
    observation: bool
    items: tuple[dict, ...]        # {"code", "cnt" (text), "pric" | None}
    pin: str | None


# What the clerk reads when a field is refused (the English message says what exactly was wrong).
_ZH = {"body": "请求格式不正确", "req": "业务流水号格式不正确", "reader": "读卡器格式不正确",
       "card_id": "卡识别码格式不正确", "keyed_in": "手工录入需填写卡号和社会保障号码", "med_type": "就诊类型不正确",
       "acct_used_flag": "是否使用个人账户应为是或否", "chronic_code": "慢特病代码格式不正确",
       "observation": "是否急诊留观应为是或否", "items": "请至少添加一个项目", "pin": "密码应为4至12位数字",
       "item": "项目格式不正确", "q": "搜索内容过长", "limit": "显示条数应为1到100", "med_list_codg": "项目缺少编码",
       "cnt": "数量必须大于0", "pric": "单价应为以分计的非负整数"}


def _field(loc: tuple[int | str, ...]) -> tuple[str, str]:
    """The field name the API reports (``items[0].cnt``) and the Chinese text for it."""
    if not loc:
        return "body", _ZH["body"]
    head = str(loc[0])
    if head == "items" and len(loc) >= 2 and isinstance(loc[1], int):
        if len(loc) == 2:
            return f"items[{loc[1]}]", _ZH["item"]
        sub = "med_list_codg" if loc[2] == "code" else str(loc[2])
        return f"items[{loc[1]}].{sub}", _ZH.get(sub, _ZH["item"])
    return head, _ZH.get(head, _ZH["body"])


def refusal(exc: ValidationError) -> BadRequest:
    """The first problem pydantic found, as the API's coded 422 (field named, zh in Chinese)."""
    err = exc.errors(include_url=False)[0]
    field, zh = _field(tuple(err["loc"]))
    return BadRequest(f"{field}: {err['msg']}", zh=zh, code="invalid_input", field=field)


def parse_visit_request(data: Any, *, need_req: bool) -> VisitRequest:
    if not isinstance(data, Mapping):
        raise BadRequest("the request body must be a JSON object", zh=_ZH["body"], field="body")
    try:
        # JSON's "\ud800" escape decodes to a lone surrogate that no journal can encode: refused here.
        bodies.check_tree(data)
    except BodyError as exc:
        raise BadRequest(exc.message, zh="请求中含有无效字符", code="invalid_input",
                         field=exc.detail.get("field") or "body") from None
    try:
        body = VisitBody.model_validate(dict(data))
    except ValidationError as exc:
        raise refusal(exc) from None
    if need_req and not body.req:
        raise BadRequest("req (the caller's unique request id, e.g. POS-20261124-0001) is required so that a "
                         "repeated submit settles once", zh="缺少业务流水号", field="req")
    items = tuple({"code": it.med_list_codg, "cnt": it.cnt, "pric": it.pric} for it in body.items)
    # The engine's own parser checks counts (> 0, at most 6 places) and prices, with its messages.
    try:
        parse_items([{**it, "pric": it["pric"] if it["pric"] is not None else 0} for it in items])
    except InvalidInput as exc:
        field = exc.field or "items"
        zh = "数量必须大于0" if field.endswith(".cnt") else "项目数据不正确"
        raise BadRequest(exc.message, zh=zh, code="invalid_input", field=field) from exc
    try:
        # The contract's bound on a bill (sync.bodies.check_lines), before anything is priced or
        # journaled: 100 lines of 10^6 x 10^11 fen must never reach a journal (issue 14).
        bodies.check_lines(items)
    except BodyError as exc:
        raise BadRequest(exc.message, zh="金额超出上限，请核对数量和单价", code="invalid_input",
                         field=exc.detail.get("field") or "items") from None
    keyed = (body.keyed_in.card_no, body.keyed_in.certno) if body.keyed_in is not None else None
    return VisitRequest(
        req=body.req, reader=body.reader, card_id=body.card_id, keyed_in=keyed, med_type=body.med_type,
        acct_used_flag=body.acct_used_flag, chronic_code=body.chronic_code, observation=body.observation,
        items=items, pin=body.pin)


def parse_items_query(params: Mapping[str, str]) -> ItemsQuery:
    try:
        return ItemsQuery.model_validate({k: params[k] for k in ("q", "limit") if k in params})
    except ValidationError as exc:
        raise refusal(exc) from None


def parse_simulated_card(data: Any) -> SimulatedCard:
    try:
        return SimulatedCard.model_validate(data)
    except ValidationError as exc:
        raise BadRequest("simulate needs card_id and certno", zh="模拟读卡需要卡识别码和社会保障号码") from exc
