"""The 两定接口 envelopes (HSA-INTERFACE.md sections 2 and 3), parsed and answered exactly.

Request: a JSON object with ``infno`` (or the infno at the end of the URL), ``msgid`` and ``input``
(an object, or a JSON string holding one: some HIS send it so). JSON numbers are read as ``Decimal``
(money.py turns yuan into fen exactly). The other header fields (``mdtrtarea_admvs``, ``opter``,
``sign_no``, ...) are kept as text for the answer and the log; none of them is trusted for money.

Response: ``infcode`` a JSON number (0 or -1: satisfies clients that compare as int or as text),
``inf_refmsgid`` = receiver area (6) + yyyyMMddHHmmss (14) + serial (10), ``refmsg_time`` and
``respond_time`` as yyyyMMddHHmmssSSS, ``err_msg`` Chinese text or null, ``output``, and the extra
fields real servers send (``warn_msg``, ``cainfo``, ``signtype``, ``enctype``). Amounts in ``output``
are ``Decimal`` yuan with two places and are written as JSON numbers (never through a float).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import re
import secrets
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Mapping

from .errors import EnvelopeError
from .money import number

CST = dt.timezone(dt.timedelta(hours=8))
MAX_MSGID = 30
_serial = itertools.count(secrets.randbelow(10**9))
_DEC = "\x1fdec:"        # marks a Decimal while json.dumps runs; never left in the output
_DEC_RE = re.compile(r'"\\u001fdec:(-?\d+(?:\.\d+)?)"')


@dataclass(frozen=True)
class Request:
    infno: str
    msgid: str
    input: dict
    header: dict          # the other envelope fields, as sent (text)
    received: dt.datetime

    @property
    def digest(self) -> str:
        """What the request asks for (infno and input, not the header's times): a msgid sent again must
        carry the same, or it is another request under a used msgid."""
        canon = json.dumps([self.infno, self.input], sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(canon.encode("utf-8")).hexdigest()


def parse(raw: bytes, *, path_infno: str | None, served: frozenset[str], now: dt.datetime) -> Request:
    """The request envelope, or :class:`EnvelopeError` saying in Chinese what is wrong with it."""
    try:
        data = _json(raw or b"")
    except (ValueError, UnicodeError, RecursionError):
        raise EnvelopeError("the body is not valid JSON", zh="报文不是有效的JSON格式（须为UTF-8编码）") from None
    if not isinstance(data, dict):
        raise EnvelopeError("the body must be a JSON object (the envelope)", zh="报文应为JSON对象")
    infno = data.get("infno")
    if infno is None or infno == "":
        infno = path_infno
    elif path_infno is not None and str(infno) != path_infno:
        raise EnvelopeError(f"infno {infno} in the body disagrees with {path_infno} in the URL",
                            zh=f"报文中的交易编号{infno}与地址中的{path_infno}不一致", field="infno")
    if infno is None or infno == "":
        raise EnvelopeError("infno is missing", zh="缺少交易编号(infno)", field="infno")
    infno = str(infno).strip()
    if infno not in served:
        raise EnvelopeError(f"infno {infno} is not served here", zh=f"不支持的交易编号：{infno[:10]}", field="infno")
    msgid = data.get("msgid")
    if not isinstance(msgid, str) or not msgid.strip() or len(msgid.strip()) > MAX_MSGID:
        raise EnvelopeError("msgid must be text of 1 to 30 characters", zh="发送方报文ID(msgid)缺失或超过30位",
                            field="msgid")
    body = data.get("input")
    if isinstance(body, str):
        try:
            body = _json(body)
        except (ValueError, UnicodeError, RecursionError):
            raise EnvelopeError("input is a string that is not JSON", zh="交易输入(input)不是有效的JSON",
                                field="input") from None
    if not isinstance(body, dict):
        raise EnvelopeError("input must be a JSON object (or a JSON string holding one)",
                            zh="交易输入(input)应为JSON对象", field="input")
    header = {k: v if isinstance(v, str) else str(v) for k, v in data.items()
              if k not in ("input", "infno", "msgid") and v is not None}
    return Request(infno, msgid.strip(), body, header, now)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json(text: bytes | str) -> Any:
    """Strict JSON: numbers with a fraction as ``Decimal``; NaN and Infinity (which Python's reader takes)
    refused; "\\ud800" (valid JSON that no UTF-8 store can hold) refused before any work."""
    data = json.loads(text, parse_float=number, parse_constant=_no_constant)
    json.dumps(data, ensure_ascii=False, default=str).encode("utf-8")
    return data


def area(header: Mapping[str, str]) -> str:
    a = header.get("mdtrtarea_admvs", "")
    return a if len(a) == 6 and a.isdigit() else "000000"


def stamp17(t: dt.datetime) -> str:
    return t.astimezone(CST).strftime("%Y%m%d%H%M%S") + f"{t.microsecond // 1000:03d}"


def dt_text(t: dt.datetime) -> str:
    """``DT`` fields: yyyy-MM-dd HH:mm:ss (China Standard Time)."""
    return t.astimezone(CST).strftime("%Y-%m-%d %H:%M:%S")


def answer(req_area: str, received: dt.datetime, now: dt.datetime, *, output: Any = None, err_msg: str | None = None,
           warn_msg: str | None = None) -> dict:
    """The response envelope: infcode 0 with ``output``, or -1 with a Chinese ``err_msg``."""
    serial = next(_serial) % 10**10
    return {"infcode": 0 if err_msg is None else -1,
            "inf_refmsgid": f"{req_area}{now.astimezone(CST):%Y%m%d%H%M%S}{serial:010d}",
            "refmsg_time": stamp17(received), "respond_time": stamp17(now),
            "err_msg": err_msg, "warn_msg": warn_msg, "cainfo": None, "signtype": None, "enctype": None,
            "output": {} if output is None else output}


def _mark(obj: Any) -> Any:
    if isinstance(obj, Decimal):
        return _DEC + format(obj, "f")
    if isinstance(obj, dict):
        return {k: _mark(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_mark(v) for v in obj]
    if isinstance(obj, float):
        raise TypeError("a float in a 两定接口 answer: amounts are Decimal yuan")
    if isinstance(obj, str) and obj.startswith(_DEC[0]):
        return obj[1:]        # an echoed text can never pose as a marked number
    return obj


def dumps(obj: Any) -> bytes:
    """JSON with every ``Decimal`` written as a number with its exact digits (``4.52``, not ``"4.52"``)."""
    text = json.dumps(_mark(obj), ensure_ascii=False, separators=(",", ":"))
    return _DEC_RE.sub(lambda m: m.group(1), text).encode("utf-8")
