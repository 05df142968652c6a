"""Integer fen and exact ratios.

Money is ``int`` fen everywhere. Counts and ratios are ``Decimal`` parsed from their text, never from
binary floats. The only rounding is ROUND_HALF_UP to the whole fen, done by :func:`round_fen` at the
steps DOMAIN.md names. A private context keeps the arithmetic exact and independent of the caller's
thread-local decimal context (so the engine is pure even inside a host that changed it).
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation

from .errors import InvalidInput

# 1e11 fen = 1 billion yuan: far above any outpatient bill, far below int64 overflow in SQLite/CBOR.
MAX_FEN = 10**11
MAX_CNT = Decimal(1_000_000)
MAX_CNT_PLACES = 6

_CTX = Context(prec=60, rounding=ROUND_HALF_UP, Emax=999, Emin=-999)
_ONE = Decimal(1)
ZERO = Decimal(0)


def mul(a: Decimal | int, b: Decimal | int) -> Decimal:
    return _CTX.multiply(Decimal(a), Decimal(b))


def round_fen(value: Decimal) -> int:
    """ROUND_HALF_UP to the whole fen (0.5 fen -> 1 fen)."""
    return int(value.quantize(_ONE, rounding=ROUND_HALF_UP, context=_CTX))


def yuan(fen: int) -> str:
    """12345 -> '123.45' for people; never parsed back."""
    if type(fen) is int:   # the common case, several times per reason text: one formatting step
        return "%d.%02d" % divmod(fen, 100) if fen >= 0 else "-%d.%02d" % divmod(-fen, 100)
    sign = "-" if fen < 0 else ""
    q, r = divmod(abs(fen), 100)
    return f"{sign}{q}.{r:02d}"


def parse_fen(value: object, field: str, *, allow_negative: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(
            f"{field} must be a whole number of fen (e.g. 1280 for ¥12.80), got {value!r}", field=field
        )
    if value < 0 and not allow_negative:
        raise InvalidInput(f"{field} must not be negative, got {value}", field=field)
    if abs(value) > MAX_FEN:
        raise InvalidInput(f"{field} is implausibly large ({value} fen); check the amount", field=field)
    return value


def parse_opt_fen(value: object, field: str) -> int | None:
    """Like :func:`parse_fen`, but an absent amount (``None``) stays absent: caps that may be unset."""
    return None if value is None else parse_fen(value, field)


def parse_decimal(value: object, field: str) -> Decimal:
    """Exact decimal from a string, an int or a Decimal (JSON parsed with parse_float=Decimal)."""
    if isinstance(value, bool):
        raise InvalidInput(f"{field} must be a decimal number like \"0.5\", got {value!r}", field=field)
    if isinstance(value, (int, Decimal)):
        d = Decimal(value)
    elif isinstance(value, str):
        try:
            d = Decimal(value.strip())
        except InvalidOperation:
            raise InvalidInput(f"{field} must be a decimal number like \"0.5\", got {value!r}", field=field) from None
    elif isinstance(value, float):
        # A binary float is not exact; its shortest repr is what the sender meant to write.
        d = Decimal(repr(value))
    else:
        raise InvalidInput(f"{field} must be a decimal number like \"0.5\", got {value!r}", field=field)
    if not d.is_finite():
        raise InvalidInput(f"{field} must be a finite number, got {value!r}", field=field)
    return d


def parse_ratio(value: object, field: str) -> Decimal:
    d = parse_decimal(value, field)
    if d < 0 or d > 1:
        raise InvalidInput(f"{field} must be between 0 and 1, got {value!r}", field=field)
    return d


def parse_cnt(value: object, field: str) -> Decimal:
    d = parse_decimal(value, field)
    if d <= 0:
        raise InvalidInput(f"{field} must be greater than 0, got {value!r}", field=field)
    if d > MAX_CNT:
        raise InvalidInput(f"{field} is implausibly large ({value}); check the quantity", field=field)
    # parse_decimal refused NaN and infinity, whose exponent is a letter; a finite one is an int.
    exponent = d.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MAX_CNT_PLACES:
        raise InvalidInput(f"{field} has more than {MAX_CNT_PLACES} decimal places: {value!r}", field=field)
    return d
