"""Journal entry bodies: one typed builder and one parser per kind, shared by counter and centre. Pure.

docs/entries.md describes the kinds; this module is the code both sides run, so the counter cannot
write a body the centre would read differently. The envelope (seq, prev, device, sig…) is
:mod:`edge.journal.entry`'s; only bodies live here.

Theory of operation
-------------------
Each contract kind has a frozen dataclass (:class:`Settlement`, :class:`Cancel`, :class:`Claim`,
:class:`Refusal`, :class:`Outcome`, :class:`Payout`) with

* ``build() -> dict``: the body to journal (plain maps, lists, text, int, bytes: what CBOR holds);
* ``parse(body) -> instance`` (a classmethod): the one place a body is checked. Anything malformed
  raises :class:`sync.errors.BodyError` (code ``bad_body``) whose message names the field path.

``build`` runs ``parse`` over its own output, so a builder cannot write what the parser refuses.
:func:`parse` dispatches on the entry kind; the free-form kinds (``card_event``, ``config``,
``enrol``, ``note``) come back as a :class:`FreeForm`.

Bounds, all checked in the parser (fail closed)
-----------------------------------------------
* money: integer fen (never bool, never float), ``0 <= fen <= MAX_FEN``; a balance may be negative
  down to ``-MAX_FEN`` (the centre's ledger lets a person owe); ``edge.settle`` uses this same
  ``MAX_FEN``, so an amount the engine accepts is an amount a body accepts;
* sums: a settlement's ``medfee_sumamt == hifp_pay + acct_pay + psn_cash_pay``; a claim's
  ``medfee_sumamt == acct_pay + psn_cash_pay``;
* text: valid Unicode (no lone surrogates), ids at most :data:`MAX_ID` characters with no control
  characters, free text at most :data:`MAX_TEXT`;
* at most :data:`MAX_LINES` fee lines, :data:`MAX_LIMITS` offline limits, :data:`MAX_CHRONIC`
  chronic filings;
* fee lines: ``cnt`` an exact positive decimal (at most :data:`MAX_CNT_PLACES` places), each line's
  ``cnt * pric`` and the sum over the lines within ``MAX_FEN`` (:func:`check_lines`): a bill of
  100 lines of 10^6 x 10^11 fen is refused here, before it is journaled or reconciled;
* entry times: :func:`check_time` keeps ``time`` within [:data:`MIN_TIME_MS`, :data:`MAX_TIME_MS`)
  (2020-01-01 .. 2100-01-01 UTC), far inside every store's and the engine's integer range.

Bodies may carry keys this module does not know (the contract grows by adding fields, and an old
parser must not refuse a newer counter's entries): the parser ignores them, a builder never writes
them.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from typing import Any, ClassVar, Mapping

from .errors import BodyError

# 1e11 fen = 1 billion yuan: far above any outpatient bill, far below int64 overflow in SQLite/CBOR.
# edge.settle.money imports this: the engine and the contract share one bound.
MAX_FEN = 10**11
MAX_ID = 64
MAX_TEXT = 1000
MAX_LINES = 500
MAX_LIMITS = 32
MAX_CHRONIC = 64
MAX_EC_TOKEN = 50     # 医保电子凭证 token: the interface's mdtrt_cert_no is C(50)
MAX_CNT_PLACES = 6
# Entry times a device may sign (ms since the epoch, UTC): 2020-01-01 .. 2100-01-01. A clock outside
# this window is broken; 2^64 would overflow the centre's bigint columns and the engine's dates.
MIN_TIME_MS = 1_577_836_800_000
MAX_TIME_MS = 4_102_444_800_000

AMOUNT_KEYS = ("medfee_sumamt", "fulamt_ownpay_amt", "overlmt_selfpay", "preselfpay_amt", "inscp_scp_amt",
               "act_pay_dedc", "hifp_pay", "acct_pay", "psn_cash_pay")
PAID_KEYS = ("medfee_sumamt", "acct_pay", "psn_cash_pay")
STATE_KEYS = ("balc", "deductible_used", "fund_paid")
# Why a visit was paid in full by the patient and journaled as a claim (DOMAIN.md, docs/entries.md).
CLAIM_CAUSES = ("offline_limit", "pending_review", "arrears", "card_unreadable", "emergency_observation",
                "other_region")
MODES = ("online", "offline")
FREE_FORM_KINDS = frozenset({"card_event", "config", "enrol", "note"})


# ------------------------------------------------------------------------------------ checking ---
def _fail(path: str, why: str) -> BodyError:
    return BodyError(f"{path} {why} (see docs/entries.md)", field=path)


# C0 and C1 control characters (one regex scan: ingest checks every identifier of every entry).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def _is_map(value: Any) -> bool:
    # A dict first: the typing ABC's isinstance is slow, and bodies decoded from CBOR or JSON are dicts.
    return type(value) is dict or isinstance(value, Mapping)


def _map(value: Any, path: str) -> Mapping[str, Any]:
    if not _is_map(value):
        raise _fail(path, "must be a map")
    return value


def _get(body: Mapping[str, Any], key: str, path: str) -> Any:
    if key not in body:
        raise _fail(path + key, "is missing")
    return body[key]


def _unicode(value: str, path: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _fail(path, "is not valid Unicode") from None
    return value


def _id(value: Any, path: str, *, null: bool = False) -> Any:
    """Short identifiers (req, psn_no, codes): text, 1..MAX_ID characters, no control characters."""
    # Fast path, the usual identifier: printable ASCII (no C0 control or DEL; C1 is not ASCII) of a
    # valid length is valid Unicode with no control characters. Ingest runs this ~40 times per entry.
    if type(value) is str and 0 < len(value) <= MAX_ID and value.isascii() and value.isprintable():
        return value
    if value is None and null:
        return None
    if type(value) is not str:
        raise _fail(path, f"must be text, got {type(value).__name__}")
    if not value or len(value) > MAX_ID:
        raise _fail(path, f"must be 1 to {MAX_ID} characters")
    if _CONTROL.search(value):
        raise _fail(path, "contains control characters")
    return _unicode(value, path)


def _text(value: Any, path: str) -> str:
    """Free text (detail, what, reason): at most MAX_TEXT characters of valid Unicode."""
    if type(value) is not str:
        raise _fail(path, f"must be text, got {type(value).__name__}")
    if len(value) > MAX_TEXT:
        raise _fail(path, f"is longer than {MAX_TEXT} characters")
    return value if value.isascii() else _unicode(value, path)


def _bool(value: Any, path: str) -> bool:
    if type(value) is not bool:
        raise _fail(path, "must be true or false")
    return value


def _int(value: Any, path: str, lo: int, hi: int) -> int:
    if type(value) is not int:  # bool and float are refused: money is integer fen
        raise _fail(path, f"must be a whole number, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise _fail(path, f"is out of range ({lo}..{hi})")
    return value


def _fen(value: Any, path: str, *, negative: bool = False) -> int:
    return _int(value, path, -MAX_FEN if negative else 0, MAX_FEN)


def _list(value: Any, path: str, most: int) -> list[Any]:
    if not isinstance(value, (list, tuple)):
        raise _fail(path, "must be a list")
    if len(value) > most:
        raise _fail(path, f"has more than {most} entries")
    return list(value)


def _fens(body: Mapping[str, Any], keys: tuple[str, ...], path: str) -> dict[str, int]:
    m = _map(body, path)
    return {k: _fen(_get(m, k, path + "."), f"{path}.{k}") for k in keys}


# ---------------------------------------------------------------------------------------- parts ---
@dataclass(frozen=True, slots=True)
class Card:
    card_id: str | None
    keyed_in: bool

    def build(self) -> dict[str, Any]:
        return {"card_id": self.card_id, "keyed_in": self.keyed_in}

    @classmethod
    def parse(cls, value: Any, path: str = "card") -> "Card":
        m = _map(value, path)
        return cls(_id(_get(m, "card_id", path + "."), path + ".card_id", null=True),
                   _bool(_get(m, "keyed_in", path + "."), path + ".keyed_in"))


@dataclass(frozen=True, slots=True)
class Visit:
    med_type: str
    level: str | None
    date: _dt.date
    acct_used_flag: bool
    chronic_code: str | None = None
    observation: bool = False

    def build(self) -> dict[str, Any]:
        out: dict[str, Any] = {"med_type": self.med_type, "date": self.date.isoformat(),
                               "acct_used_flag": self.acct_used_flag}
        if self.level is not None:
            out["level"] = self.level
        if self.chronic_code:
            out["chronic_code"] = self.chronic_code
        if self.observation:
            out["observation"] = True
        return out

    @classmethod
    def parse(cls, value: Any, path: str = "visit") -> "Visit":
        m = _map(value, path)
        day = _id(_get(m, "date", path + "."), path + ".date")
        try:
            date = _dt.date.fromisoformat(day)
        except ValueError:
            raise _fail(path + ".date", "must be a date YYYY-MM-DD") from None
        return cls(med_type=_id(_get(m, "med_type", path + "."), path + ".med_type"),
                   level=_id(m.get("level"), path + ".level", null=True),
                   date=date,
                   acct_used_flag=_bool(m.get("acct_used_flag", False), path + ".acct_used_flag"),
                   chronic_code=_id(m.get("chronic_code"), path + ".chronic_code", null=True),
                   observation=_bool(m.get("observation", False), path + ".observation"))


@dataclass(frozen=True, slots=True)
class Item:
    """One fee line as journaled: ``cnt`` stays text (an exact decimal, never a float)."""

    code: str
    cnt: str
    pric: int

    def build(self) -> dict[str, Any]:
        return {"code": self.code, "cnt": self.cnt, "pric": self.pric}

    @classmethod
    def parse(cls, value: Any, path: str) -> "Item":
        m = _map(value, path)
        return cls(_id(_get(m, "code", path + "."), path + ".code"),
                   _id(_get(m, "cnt", path + "."), path + ".cnt"),
                   _fen(_get(m, "pric", path + "."), path + ".pric"))


def _count(value: str, path: str) -> Decimal | int:
    # Fast path: a whole count in ASCII digits ("1", "12") is exact as an int; Decimal is for the rest.
    if value.isascii() and value.isdigit() and value[0] != "0":
        return int(value)
    try:
        cnt = Decimal(value)
    except InvalidOperation:
        raise _fail(path, "must be a decimal count such as 2 or 0.5") from None
    exponent = cnt.as_tuple().exponent
    if not cnt.is_finite() or cnt <= 0 or (isinstance(exponent, int) and exponent < -MAX_CNT_PLACES):
        raise _fail(path, f"must be a count > 0 with at most {MAX_CNT_PLACES} decimal places")
    return cnt


def check_lines(lines: Any) -> int:
    """The bound on a bill: each ``cnt * pric`` and their sum within MAX_FEN; returns the sum (fen,
    rounded up). ``lines`` are maps with ``cnt`` (text) and ``pric`` (fen, or None: not known yet).
    The counter's request parser and every claim/settlement body run this, so no bill beyond the
    engine's bound is journaled, uploaded or reconciled."""
    total = Decimal(0)
    for i, line in enumerate(_list(lines, "items", MAX_LINES)):
        m = _map(line, f"items[{i}]")
        cnt = _count(_id(_get(m, "cnt", f"items[{i}]."), f"items[{i}].cnt"), f"items[{i}].cnt")
        pric = m.get("pric")
        if pric is None:
            continue
        fee = cnt * _fen(pric, f"items[{i}].pric")
        if fee > MAX_FEN:
            raise _fail(f"items[{i}]", f"costs more than the bound of {MAX_FEN} fen (cnt x pric)")
        total += fee
        if total > MAX_FEN:
            raise _fail("items", f"add up to more than the bound of {MAX_FEN} fen")
    return int(total.to_integral_value(rounding=ROUND_CEILING))


def check_time(value: Any, path: str = "time") -> int:
    """An entry's wall-clock time (ms): a whole number within [MIN_TIME_MS, MAX_TIME_MS)."""
    return _int(value, path, MIN_TIME_MS, MAX_TIME_MS - 1)


# Leaves check_tree passes without a look (valid whatever their value).
_PLAIN_LEAVES = frozenset({int, bool, float, bytes, type(None)})


def _tree_ok(value: Any, depth: int) -> bool:
    """The fast pass of :func:`check_tree`: True when every text is valid Unicode and nothing is nested
    deeper than ``depth`` (below ``value``). No paths are built; False (or a type it does not know, such
    as a Mapping that is not a dict) sends the caller to the slow walk, which names the field."""
    t = type(value)
    if t is dict:
        children = value.values()
        for k in value:
            if type(k) is str and not k.isascii() and not _utf8(k):
                return False
    elif t is list or t is tuple:
        children = value
    else:
        return True
    for sub in children:
        ts = type(sub)
        if depth <= 0:
            return False   # a child of a node already at the depth bound: the slow walk says where
        if ts is str:
            if not sub.isascii() and not _utf8(sub):
                return False
        elif ts in _PLAIN_LEAVES:
            continue
        elif ts is dict or ts is list or ts is tuple:
            if not _tree_ok(sub, depth - 1):
                return False
        else:
            return False
    return True


def _utf8(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_tree(value: Any, path: str = "body", *, depth: int = 16) -> None:
    """Every text (map keys included) valid Unicode and nesting at most ``depth`` deep, in keys the
    typed parsers ignore too: a lone surrogate anywhere must be refused here, not fail a store insert."""
    if type(value) is str:
        _unicode(value, path)
        return
    if _tree_ok(value, depth):
        return   # the usual body (ingest checks every entry's): no path strings built
    stack: list[tuple[Any, str, int]] = [(value, path, 0)]
    while stack:
        v, p, d = stack.pop()
        if d > depth:
            raise _fail(p, f"is nested more than {depth} levels deep")
        if type(v) is str:
            _unicode(v, p)
        elif _is_map(v):
            for k, sub in v.items():
                if type(k) is str:
                    _unicode(k, p + ".<key>")
                stack.append((sub, f"{p}.{k}" if type(k) is str and k.isascii() else p + ".<key>", d + 1))
        elif isinstance(v, (list, tuple)):
            stack.extend((sub, f"{p}[{i}]", d + 1) for i, sub in enumerate(v))


def _items(value: Any) -> tuple[Item, ...]:
    items = tuple(Item.parse(v, f"items[{i}]") for i, v in enumerate(_list(value, "items", MAX_LINES)))
    # Fast path: whole counts in ASCII digits give an exact bill in ints; within the bound, every line
    # is too (no line is negative). Anything else, or a bill beyond the bound, goes through
    # check_lines, which is exact for decimals and names the line at fault.
    total = 0
    for it in items:
        cnt = it.cnt
        if not (cnt.isascii() and cnt.isdigit() and cnt[0] != "0"):
            total = MAX_FEN + 1
            break
        total += int(cnt) * it.pric
    if total > MAX_FEN:
        check_lines([it.build() for it in items])
    return items


def _is_fen_pair(a: Any, b: Any) -> bool:
    return type(a) is int and type(b) is int and -MAX_FEN <= a <= MAX_FEN and -MAX_FEN <= b <= MAX_FEN


@dataclass(frozen=True, slots=True)
class Person:
    """The state the counter settled on (the centre replays the engine with it)."""

    insutype: str
    psn_type: str
    status: str
    chronic: tuple[Any, ...]        # disease codes, or filings {code, begndate?, enddate?, items?}
    balc: int
    deductible_used: int
    fund_paid: int
    # The policy year the flat totals belong to and the totals per (year, accumulator), as the engine read
    # them (journal.cddl person-state): without them the centre's replay of the edge's own inputs would
    # count last year's totals in a new year. None: absent, as in every entry before policy years.
    year: int | None = None
    accumulators: Mapping[str, Any] | None = None

    def build(self) -> dict[str, Any]:
        out = {"insutype": self.insutype, "psn_type": self.psn_type, "status": self.status,
               "chronic": [c if isinstance(c, str) else dict(c) for c in self.chronic], "balc": self.balc,
               "deductible_used": self.deductible_used, "fund_paid": self.fund_paid}
        if self.year is not None:
            out["year"] = self.year
        if self.accumulators:
            out["accumulators"] = {y: {a: dict(t) for a, t in accs.items()} for y, accs in self.accumulators.items()}
        return out

    @classmethod
    def parse(cls, value: Any, path: str = "person") -> "Person":
        m = _map(value, path)
        chronic = _list(m.get("chronic", []), path + ".chronic", MAX_CHRONIC)
        return cls(insutype=_id(_get(m, "insutype", path + "."), path + ".insutype"),
                   psn_type=_id(_get(m, "psn_type", path + "."), path + ".psn_type"),
                   status=_id(_get(m, "status", path + "."), path + ".status"),
                   chronic=tuple(_filing(c, f"{path}.chronic[{i}]") for i, c in enumerate(chronic)),
                   balc=_fen(_get(m, "balc", path + "."), path + ".balc", negative=True),
                   deductible_used=_fen(_get(m, "deductible_used", path + "."), path + ".deductible_used"),
                   fund_paid=_fen(_get(m, "fund_paid", path + "."), path + ".fund_paid"),
                   year=None if m.get("year") is None else _int(m["year"], path + ".year", 2000, 2200),
                   accumulators=_accumulators(m.get("accumulators"), path + ".accumulators"))


def _filing(value: Any, path: str) -> Any:
    """A chronic filing as the engine reads it: its disease code, or ``{"code", "begndate"?, "enddate"?,
    "items"?}`` when it has dates or covers only some items (the centre replays the entry with the scope)."""
    if isinstance(value, str):
        return _id(value, path)
    m = _map(value, path)
    out: dict[str, Any] = {"code": _id(_get(m, "code", path + "."), path + ".code")}
    for key in ("begndate", "enddate"):
        if m.get(key) is not None:
            out[key] = _id(m[key], f"{path}.{key}")
    if m.get("items") is not None:
        out["items"] = [_id(c, f"{path}.items[{i}]") for i, c in enumerate(_list(m["items"], path + ".items", MAX_LINES))]
    return out


def _accumulators(value: Any, path: str) -> Mapping[str, Any] | None:
    """``{"2027": {"outpatient": {"deductible_used": fen, "fund_paid": fen}}}`` (journal.cddl person-state)."""
    if value is None:
        return None
    out: dict[str, Any] = {}
    for year, accs in _map(value, path).items():
        at = f"{path}.{_id(year, path)}"
        out[year] = {_id(name, at): _fens(totals, ("deductible_used", "fund_paid"), f"{at}.{name}")
                     for name, totals in _map(accs, at).items()}
    return out


@dataclass(frozen=True, slots=True)
class BundleRef:
    """Which published bundle a decision used: version, and for catalogue/policy the bundle's hex hash."""

    version: int
    hash: str | None = None
    policy_version: str | None = None

    def build(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": self.version}
        if self.hash is not None:
            out["hash"] = self.hash
        if self.policy_version is not None:
            out["policy_version"] = self.policy_version
        return out

    @classmethod
    def parse(cls, value: Any, path: str, *, hashed: bool) -> "BundleRef":
        m = _map(value, path)
        digest = _get(m, "hash", path + ".") if hashed else m.get("hash")
        return cls(version=_int(_get(m, "version", path + "."), path + ".version", 0, 2**53),
                   hash=_id(digest, path + ".hash", null=not hashed),
                   policy_version=_id(m.get("policy_version"), path + ".policy_version", null=True))


@dataclass(frozen=True, slots=True)
class Basis:
    """The bundles a settlement or claim was decided on, and for offline the limits checked."""

    catalogue: BundleRef
    policy: BundleRef
    persons: BundleRef | None      # None: an unknown person (never settled offline)
    hotlist: BundleRef | None = None
    limits: Mapping[str, tuple[int, int]] | None = None   # name -> (value, limit)
    centre: "Basis | None" = None  # online: what the centre settled with

    def build(self) -> dict[str, Any]:
        out: dict[str, Any] = {"catalogue": self.catalogue.build(), "policy": self.policy.build(),
                               "persons": self.persons.build() if self.persons else None,
                               "limits": {k: list(v) for k, v in self.limits.items()} if self.limits else None}
        if self.hotlist is not None:  # absent, not null: older verifiers want a map when the key is there
            out["hotlist"] = self.hotlist.build()
        if self.centre is not None:
            out["centre"] = {"catalogue": self.centre.catalogue.build(), "policy": self.centre.policy.build()}
        return out

    @classmethod
    def parse(cls, value: Any, path: str = "basis", *, nested: bool = False) -> "Basis":
        m = _map(value, path)
        cat = BundleRef.parse(_get(m, "catalogue", path + "."), path + ".catalogue", hashed=True)
        pol = BundleRef.parse(_get(m, "policy", path + "."), path + ".policy", hashed=True)
        if nested:
            return cls(cat, pol, None)
        persons = _get(m, "persons", path + ".")
        hotlist = m.get("hotlist")
        limits_raw = m.get("limits")
        limits: dict[str, tuple[int, int]] | None = None
        if limits_raw is not None:
            lm = _map(limits_raw, path + ".limits")
            if len(lm) > MAX_LIMITS:
                raise _fail(path + ".limits", f"has more than {MAX_LIMITS} entries")
            limits = {}
            for name, pair in lm.items():
                if type(pair) is list and len(pair) == 2 and _is_fen_pair(pair[0], pair[1]) and \
                        type(name) is str and 0 < len(name) <= MAX_ID and name.isascii() and name.isprintable():
                    limits[name] = (pair[0], pair[1])   # the usual limit: no path built
                    continue
                p = f"{path}.limits.{_id(name, path + '.limits')}"
                if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
                    raise _fail(p, "must be a pair [value, limit] of whole numbers")
                limits[name] = (_fen(pair[0], p + "[0]", negative=True), _fen(pair[1], p + "[1]", negative=True))
        centre = m.get("centre")
        return cls(catalogue=cat, policy=pol,
                   persons=None if persons is None else BundleRef.parse(persons, path + ".persons", hashed=False),
                   hotlist=None if hotlist is None else BundleRef.parse(hotlist, path + ".hotlist", hashed=False),
                   limits=limits or None,
                   centre=None if centre is None else cls.parse(centre, path + ".centre", nested=True))


# ---------------------------------------------------------------------------------------- kinds ---
class _Body:
    kind: ClassVar[str]

    def _dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def build(self) -> dict[str, Any]:
        """The body to journal; checked by :meth:`parse` first, so nothing malformed is ever written."""
        out = self._dict()
        type(self).parse(out)
        return out

    @classmethod
    def parse(cls, body: Any) -> Any:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Settlement(_Body):
    kind: ClassVar[str] = "settlement"
    req: str
    mode: str
    psn_no: str
    card: Card
    visit: Visit
    items: tuple[Item, ...]
    person: Person
    acct_limit: int | None
    amounts: Mapping[str, int]
    result_sha256: bytes | None
    basis: Basis
    operator: Mapping[str, str] | None = None     # who settled (optional: older entries name nobody)

    def _dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"req": self.req, "mode": self.mode, "psn_no": self.psn_no, "card": self.card.build(),
               "visit": self.visit.build(), "items": [it.build() for it in self.items],
               "person": self.person.build(), "acct_limit": self.acct_limit,
               "amounts": {k: self.amounts[k] for k in AMOUNT_KEYS}, "basis": self.basis.build()}
        if self.result_sha256 is not None:
            out["result_sha256"] = self.result_sha256
        if self.operator is not None:
            out["operator"] = dict(self.operator)
        return out

    @classmethod
    def parse(cls, body: Any) -> "Settlement":
        m = _map(body, "body")
        mode = _get(m, "mode", "")
        if mode not in MODES:
            raise _fail("mode", "must be 'online' or 'offline'")
        limit = _get(m, "acct_limit", "")
        amounts = _fens(_get(m, "amounts", ""), AMOUNT_KEYS, "amounts")
        if amounts["hifp_pay"] + amounts["acct_pay"] + amounts["psn_cash_pay"] != amounts["medfee_sumamt"]:
            raise _fail("amounts", "do not add up (medfee_sumamt must equal hifp_pay + acct_pay + psn_cash_pay)")
        sha = m.get("result_sha256")
        if sha is not None and not (type(sha) is bytes and len(sha) == 16):
            raise _fail("result_sha256", "must be 16 bytes")
        basis = Basis.parse(_get(m, "basis", ""))
        if mode == "offline" and basis.persons is None:
            raise _fail("basis.persons", "is null (unknown person) but offline settlement needs a person snapshot")
        return cls(req=_id(_get(m, "req", ""), "req"), mode=mode, psn_no=_id(_get(m, "psn_no", ""), "psn_no"),
                   card=Card.parse(_get(m, "card", "")), visit=Visit.parse(_get(m, "visit", "")),
                   items=_items(_get(m, "items", "")), person=Person.parse(_get(m, "person", "")),
                   acct_limit=None if limit is None else _fen(limit, "acct_limit"),
                   amounts=amounts, result_sha256=sha, basis=basis, operator=_operator(m.get("operator")))


@dataclass(frozen=True, slots=True)
class Cancel(_Body):
    kind: ClassVar[str] = "cancel"
    req: str
    cancels: int
    psn_no: str
    amounts: Mapping[str, int]          # the reversed amounts, as positive numbers
    state_after: Mapping[str, int]

    def _dict(self) -> dict[str, Any]:
        return {"req": self.req, "cancels": self.cancels, "psn_no": self.psn_no,
                "amounts": {k: self.amounts[k] for k in AMOUNT_KEYS},
                "state_after": {k: self.state_after[k] for k in STATE_KEYS}}

    @classmethod
    def parse(cls, body: Any) -> "Cancel":
        m = _map(body, "body")
        after = _map(_get(m, "state_after", ""), "state_after")
        return cls(req=_id(_get(m, "req", ""), "req"), cancels=_int(_get(m, "cancels", ""), "cancels", 1, 2**53),
                   psn_no=_id(_get(m, "psn_no", ""), "psn_no"),
                   amounts=_fens(_get(m, "amounts", ""), AMOUNT_KEYS, "amounts"),
                   state_after={"balc": _fen(_get(after, "balc", "state_after."), "state_after.balc", negative=True),
                                **{k: _fen(_get(after, k, "state_after."), f"state_after.{k}")
                                   for k in STATE_KEYS[1:]}})


@dataclass(frozen=True, slots=True)
class Claim(_Body):
    """Full payment (全额垫付): the patient paid everything; the fund's share is decided on review."""

    kind: ClassVar[str] = "claim"
    req: str
    cause: str
    detail: str
    psn_no: str | None
    certno: str | None                 # only when psn_no is unknown (keyed-in or unknown person)
    card: Card
    visit: Visit
    items: tuple[Item, ...]
    paid: Mapping[str, int]
    basis: Basis
    # An e-voucher the counter could not resolve (offline): the centre resolves it when the claim
    # arrives. Written only when present, so a claim without one is byte-for-byte the old body.
    ec_token: str | None = None
    operator: Mapping[str, str] | None = None     # who took the full payment (optional, as on a settlement)

    def _dict(self) -> dict[str, Any]:
        out = {"req": self.req, "cause": self.cause, "detail": self.detail, "psn_no": self.psn_no,
               "card": self.card.build(), "visit": self.visit.build(), "items": [it.build() for it in self.items],
               "paid": {k: self.paid[k] for k in PAID_KEYS}, "basis": self.basis.build()}
        if self.psn_no is None and (self.certno is not None or self.ec_token is None):
            out["certno"] = self.certno
        if self.ec_token is not None:
            out["ec_token"] = self.ec_token
        if self.operator is not None:
            out["operator"] = dict(self.operator)
        return out

    @classmethod
    def parse(cls, body: Any) -> "Claim":
        m = _map(body, "body")
        cause = _get(m, "cause", "")
        if cause not in CLAIM_CAUSES:
            raise _fail("cause", f"must be one of {', '.join(CLAIM_CAUSES)}")
        psn_no = _id(_get(m, "psn_no", ""), "psn_no", null=True)
        ec_token = _ec_token(m.get("ec_token"))
        certno = (_id(_get(m, "certno", ""), "certno") if psn_no is None and ec_token is None
                  else _id(m.get("certno"), "certno", null=True))
        paid = _fens(_get(m, "paid", ""), PAID_KEYS, "paid")
        if paid["acct_pay"] + paid["psn_cash_pay"] != paid["medfee_sumamt"]:
            raise _fail("paid", "does not add up (medfee_sumamt must equal acct_pay + psn_cash_pay)")
        return cls(req=_id(_get(m, "req", ""), "req"), cause=cause, detail=_text(_get(m, "detail", ""), "detail"),
                   psn_no=psn_no, certno=certno, card=Card.parse(_get(m, "card", "")),
                   visit=Visit.parse(_get(m, "visit", "")), items=_items(_get(m, "items", "")), paid=paid,
                   basis=Basis.parse(_get(m, "basis", "")), ec_token=ec_token,
                   operator=_operator(m.get("operator")))


def _ec_token(value: Any) -> str | None:
    """An e-voucher token: opaque short text (1..MAX_EC_TOKEN characters, no control characters)."""
    if value is None:
        return None
    if type(value) is str and not 0 < len(value) <= MAX_EC_TOKEN:
        raise _fail("ec_token", f"must be 1 to {MAX_EC_TOKEN} characters")
    return _id(value, "ec_token")


@dataclass(frozen=True, slots=True)
class Refusal(_Body):
    """A visit refused at the counter; names the card's region, never the patient."""

    kind: ClassVar[str] = "refusal"
    req: str | None
    code: str
    what: str
    region: str | None = None
    keyed_in: bool = False

    def _dict(self) -> dict[str, Any]:
        return {"req": self.req, "code": self.code, "what": self.what,
                "card": {"region": self.region, "keyed_in": self.keyed_in}}

    @classmethod
    def parse(cls, body: Any) -> "Refusal":
        m = _map(body, "body")
        card = _map(m.get("card", {}), "card")
        return cls(req=_id(m.get("req"), "req", null=True), code=_id(_get(m, "code", ""), "code"),
                   what=_text(m.get("what", ""), "what"), region=_id(card.get("region"), "card.region", null=True),
                   keyed_in=_bool(card.get("keyed_in", False), "card.keyed_in"))


@dataclass(frozen=True, slots=True)
class Outcome(_Body):
    """A reconciliation outcome or a claim's reimbursement, as the centre sent it down."""

    kind: ClassVar[str] = "outcome"
    req: str
    what: str                          # "outcome" | "reimbursement"
    ref_seq: int | None
    claim_no: str | None
    outcome: str
    credit: int
    reimbursement: int
    reason: str

    def _dict(self) -> dict[str, Any]:
        return {"req": self.req, "what": self.what, "ref_seq": self.ref_seq, "claim_no": self.claim_no,
                "outcome": self.outcome, "credit": self.credit, "reimbursement": self.reimbursement,
                "reason": self.reason}

    @classmethod
    def parse(cls, body: Any) -> "Outcome":
        m = _map(body, "body")
        ref = m.get("ref_seq")
        return cls(req=_id(_get(m, "req", ""), "req"), what=_id(_get(m, "what", ""), "what"),
                   ref_seq=None if ref is None else _int(ref, "ref_seq", 1, 2**53),
                   claim_no=_id(m.get("claim_no"), "claim_no", null=True), outcome=_id(_get(m, "outcome", ""), "outcome"),
                   credit=_fen(m.get("credit", 0), "credit"), reimbursement=_fen(m.get("reimbursement", 0), "reimbursement"),
                   reason=_text(m.get("reason", ""), "reason"))


PAYOUT_PREFIXES = ("P-", "C-", "X-")   # a credit's cash share, an approved claim, a centre cancel's cash
PAYOUT_METHODS = ("cash",)


def _operator(value: Any, path: str = "operator") -> Mapping[str, str] | None:
    """Who did it at the counter (optional on every kind: older entries have none)."""
    if value is None:
        return None
    m = _map(value, path)
    return {"id": _id(_get(m, "id", path + "."), path + ".id"), "name": _text(_get(m, "name", path + "."), path + ".name")}


@dataclass(frozen=True, slots=True)
class Payout(_Body):
    """Money the centre owed a patient, paid at the counter (the patient signs the receipt)."""

    kind: ClassVar[str] = "payout"
    req: str
    payout_no: str
    psn_no: str
    amount: int
    method: str
    reason: str
    operator: Mapping[str, str] | None = None

    def _dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"req": self.req, "payout_no": self.payout_no, "psn_no": self.psn_no,
                               "amount": self.amount, "method": self.method, "reason": self.reason}
        if self.operator is not None:
            out["operator"] = dict(self.operator)
        return out

    @classmethod
    def parse(cls, body: Any) -> "Payout":
        m = _map(body, "body")
        payout_no = _id(_get(m, "payout_no", ""), "payout_no")
        if not payout_no.startswith(PAYOUT_PREFIXES):
            raise _fail("payout_no", f"must start with one of {', '.join(PAYOUT_PREFIXES)}")
        method = _get(m, "method", "")
        if method not in PAYOUT_METHODS:
            raise _fail("method", f"must be one of {', '.join(PAYOUT_METHODS)}")
        amount = _fen(_get(m, "amount", ""), "amount")
        if amount <= 0:
            raise _fail("amount", "must be more than 0")
        return cls(req=_id(_get(m, "req", ""), "req"), payout_no=payout_no, psn_no=_id(_get(m, "psn_no", ""), "psn_no"),
                   amount=amount, method=method, reason=_text(_get(m, "reason", ""), "reason"),
                   operator=_operator(m.get("operator")))


@dataclass(frozen=True, slots=True)
class FreeForm:
    """``card_event``, ``config``, ``enrol``, ``note``: free-form maps with a ``what`` text."""

    kind: str
    what: str
    fields: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def parse_kind(cls, kind: str, body: Any) -> "FreeForm":
        m = _map(body, "body")
        return cls(kind, _text(m.get("what", ""), "what"), dict(m))


KINDS: Mapping[str, type[_Body]] = {c.kind: c for c in (Settlement, Cancel, Claim, Refusal, Outcome, Payout)}


def parse(kind: str, body: Any) -> Any:
    """The typed body of an entry of ``kind``; BodyError (``bad_body``) when it breaks the contract."""
    check_tree(body)
    if kind in KINDS:
        return KINDS[kind].parse(body)
    if kind in FREE_FORM_KINDS:
        return FreeForm.parse_kind(kind, body)
    raise BodyError(f"unknown entry kind {kind!r}", field="kind")


# ------------------------------------------------------------------------------------ builders ---
def build_settlement(**fields: Any) -> dict[str, Any]:
    return Settlement(**fields).build()


def build_cancel(**fields: Any) -> dict[str, Any]:
    return Cancel(**fields).build()


def build_claim(**fields: Any) -> dict[str, Any]:
    return Claim(**fields).build()


def build_refusal(**fields: Any) -> dict[str, Any]:
    return Refusal(**fields).build()


def build_outcome(**fields: Any) -> dict[str, Any]:
    return Outcome(**fields).build()


def build_payout(**fields: Any) -> dict[str, Any]:
    return Payout(**fields).build()
