"""Yuan on the wire, integer fen inside: exact both ways, never through a binary float.

The 两定接口 sends amounts as yuan (JSON numbers or strings, N(16,2)). A request's JSON is parsed with
``parse_float=Decimal`` (envelope.py), so ``12.8`` arrives as ``Decimal("12.8")``; :func:`fen` turns it
into 1280 and refuses a third decimal place (``12.805``), a float, a bool, NaN, an exponent or text
that is not a plain decimal. Trailing zeros do not count as precision (``12.800000`` is 1280: unit
prices are N(16,6) in the interface, and a HIS pads them). :func:`yuan` is the way back, as a
``Decimal`` with exactly two places, which the envelope writes as a JSON number.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from .errors import MoneyError

_PLAIN = re.compile(r"^-?[0-9]{1,14}(\.[0-9]+)?$")   # ASCII digits only: re's \d takes "１２" too
MAX_FEN = 10**16   # N(16,2)


class ExpNumber(Decimal):
    """A JSON number written with an exponent (``3.56e1``, ``1e2``): not an N(16,2) amount or an N(16,4)
    count, refused whatever its value (the envelope's reader makes these, :func:`number`)."""


def number(text: str) -> Decimal:
    """``parse_float`` for a request: exact, and an exponent form marked so that it is refused."""
    return ExpNumber(text) if "e" in text or "E" in text else Decimal(text)


def fen(value: Any, field: str, *, allow_negative: bool = False) -> int:
    """Yuan (Decimal, int or decimal text) -> integer fen; more than two decimals is refused."""
    if isinstance(value, (bool, float, ExpNumber)) or value is None:
        raise MoneyError(f"{field}: {value!r} is not an amount in yuan", zh=f"{field} 金额格式不正确", field=field)
    text = str(value).strip() if isinstance(value, (str, int, Decimal)) else None
    if text is None or not _PLAIN.match(text):
        raise MoneyError(f"{field}: {value!r} is not an amount in yuan", zh=f"{field} 金额格式不正确", field=field)
    try:
        d = Decimal(text)
    except InvalidOperation:   # pragma: no cover - the pattern admits only plain decimals
        raise MoneyError(f"{field}: {value!r} is not a number", zh=f"{field} 金额格式不正确", field=field) from None
    scaled = d * 100
    if scaled != scaled.to_integral_value():
        raise MoneyError(f"{field}: {text} has more than two decimal places (yuan to the fen only)",
                         zh=f"{field} 金额最多两位小数：{text}", field=field)
    n = int(scaled)
    if n < 0 and not allow_negative:
        raise MoneyError(f"{field}: {text} is negative", zh=f"{field} 金额不能为负数", field=field)
    if abs(n) >= MAX_FEN:
        raise MoneyError(f"{field}: {text} is too large", zh=f"{field} 金额过大", field=field)
    return n


def yuan(n: int) -> Decimal:
    """Integer fen -> yuan with exactly two places (``452`` -> ``Decimal("4.52")``)."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"fen must be an int, not {type(n).__name__}")
    return Decimal(n).scaleb(-2).quantize(Decimal("0.01"))


def ratio(text: Any) -> Decimal | None:
    """A proportion (selfpay_prop N(5,4)) from the catalogue's text, exact; None when absent."""
    if text is None or text == "":
        return None
    try:
        return Decimal(str(text)).quantize(Decimal("0.0001"))
    except InvalidOperation:
        return None
