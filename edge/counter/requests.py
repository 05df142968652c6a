"""Parsing of the counter API's JSON requests into checked values (pure). Field names follow the
national interface where it has one (med_type, acct_used_flag, med_list_codg, cnt, pric, certno).

A visit request::

    {"req": "POS-20261124-0001",                 idempotency key (a double submit -> one entry)
     "reader": "…" | null,                       which reader (optional with one card present)
     "card_id": "…" | null,                      the card the clerk saw (checked again before journaling)
     "keyed_in": {"card_no": "A12345678", "certno": "…18…"} | null,   damaged card typed in
     "med_type": "11", "acct_used_flag": true, "chronic_code": null, "observation": false,
     "items": [{"med_list_codg": "XJ01…", "cnt": "2", "pric": 1280}],  pric optional (catalogue price)
     "pin": "123456" | null}
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Mapping

from edge.settle import InvalidInput, parse_items

from .errors import BadRequest

MAX_REQ = 64


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


def _bad(message: str, zh: str, field: str, code: str = "invalid_input") -> BadRequest:
    return BadRequest(message, zh, code=code, field=field)


def _opt_text(data: Mapping, key: str, zh: str, *, max_len: int = 200) -> str | None:
    v = data.get(key)
    if v is None or v == "":
        return None
    if not isinstance(v, str) or len(v) > max_len:
        raise _bad(f"{key} must be text of at most {max_len} characters", f"{zh}格式不正确", key)
    return v.strip()


def _flag(data: Mapping, key: str, default: bool) -> bool:
    v = data.get(key, default)
    if isinstance(v, bool):
        return v
    if v in ("1", 1):
        return True
    if v in ("0", 0, None):
        return False
    raise _bad(f"{key} must be true/false (or \"1\"/\"0\")", f"{key} 应为是/否", key)


def parse_visit_request(data: Any, *, need_req: bool) -> VisitRequest:
    if not isinstance(data, Mapping):
        raise _bad("the request body must be a JSON object", "请求格式不正确", "body")
    req = _opt_text(data, "req", "业务流水号", max_len=MAX_REQ)
    if need_req and not req:
        raise _bad("req (the caller's unique request id, e.g. POS-20261124-0001) is required so that a "
                   "repeated submit settles once", "缺少业务流水号 req", "req")
    keyed = data.get("keyed_in")
    keyed_pair = None
    if keyed is not None:
        if not isinstance(keyed, Mapping) or not isinstance(keyed.get("card_no"), str) \
                or not isinstance(keyed.get("certno"), str):
            raise _bad("keyed_in needs card_no and certno (the card number and the social security number)",
                       "手工录入需填写卡号和社会保障号码", "keyed_in")
        keyed_pair = (keyed["card_no"], keyed["certno"])
    med_type = data.get("med_type", "11")
    if not isinstance(med_type, str) or not med_type.isdigit() or len(med_type) > 4:
        raise _bad(f"med_type must be a code like \"11\", got {med_type!r}", "就诊类型不正确", "med_type")
    raw_items = data.get("items")
    if not isinstance(raw_items, list) or not raw_items:
        raise _bad("items must be a non-empty list: add at least one item", "请至少添加一个项目", "items")
    items = []
    for i, it in enumerate(raw_items):
        if not isinstance(it, Mapping):
            raise _bad(f"items[{i}] must be an object", "项目格式不正确", f"items[{i}]")
        code = it.get("med_list_codg", it.get("code"))
        if not isinstance(code, str) or not code.strip():
            raise _bad(f"items[{i}].med_list_codg (the item code) is missing", "项目缺少编码", f"items[{i}].med_list_codg")
        cnt = it.get("cnt", "1")
        pric = it.get("pric")
        if isinstance(cnt, float):
            cnt = repr(cnt)
        if isinstance(cnt, (int, Decimal)) and not isinstance(cnt, bool):
            cnt = str(cnt)
        items.append({"code": code.strip(), "cnt": cnt, "pric": pric})
    # The engine's own parser checks counts (> 0, at most 6 places) and prices, with its messages.
    try:
        parse_items([{**it, "pric": it["pric"] if it["pric"] is not None else 0} for it in items])
    except InvalidInput as exc:
        field = exc.field or "items"
        zh = "数量必须大于0" if field.endswith(".cnt") else "项目数据不正确"
        raise BadRequest(exc.message, zh, code="invalid_input", field=field) from exc
    pin = data.get("pin")
    if pin is not None and (not isinstance(pin, str) or not pin.isdigit() or not 4 <= len(pin) <= 12):
        raise _bad("pin must be 4 to 12 digits", "密码应为4至12位数字", "pin")
    return VisitRequest(
        req=req, reader=_opt_text(data, "reader", "读卡器"), card_id=_opt_text(data, "card_id", "卡识别码"),
        keyed_in=keyed_pair, med_type=med_type, acct_used_flag=_flag(data, "acct_used_flag", False),
        chronic_code=_opt_text(data, "chronic_code", "慢特病代码"), observation=_flag(data, "observation", False),
        items=tuple(items), pin=pin or None)
