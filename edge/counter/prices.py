"""The site's own price list: what this clinic or pharmacy charges for an item, in integer fen.

The catalogue the centre publishes says what the fund covers (class, ceiling), not what this site
charges; typing every price by hand is slow and error-prone, so the site keeps its prices here
(``prices.db`` in the state directory, one small table) and the counter page fills them in. A HIS that
sends ``pric`` in the visit request needs none of this: its price wins.

Import is from CSV (``edge prices import FILE.csv``): a header row with ``med_list_codg`` (or ``code``)
and ``pric`` (yuan, at most two places, e.g. ``12.80``); the whole file is one transaction, so a bad
row leaves the old list in place. Prices are parsed as exact decimals, never floats.
"""

from __future__ import annotations

import csv
import sqlite3
import time
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Iterable

from edge.storage import atomic, migrate

from .errors import BadRequest

FILE = "prices.db"
MAX_FEN = 100_000_000 * 100       # ¥100,000,000: anything above is a typing slip, not a price
_MIGRATIONS = [("0001_prices", lambda c: c.execute(
    "CREATE TABLE IF NOT EXISTS prices (code TEXT PRIMARY KEY, pric INTEGER NOT NULL, updated_ms INTEGER NOT NULL)"
    " WITHOUT ROWID"))]


class PriceError(BadRequest):
    """A price list row that cannot be used (the message names the line)."""


def fen_from_yuan(text: str, *, where: str) -> int:
    """``"12.80"`` -> 1280; at most two places, ≥ 0, exact (Decimal, not float)."""
    try:
        d = Decimal(text.strip().replace(",", "").lstrip("¥"))
    except InvalidOperation:
        raise PriceError(f"{where}: price {text!r} is not a number", zh=f"{where}：单价“{text}”不是数字",
                         code="invalid_price") from None
    fen = d * 100
    if not d.is_finite() or fen != fen.to_integral_value() or d < 0 or fen > MAX_FEN:
        raise PriceError(f"{where}: price {text!r} must be yuan with at most two places",
                         zh=f"{where}：单价“{text}”应为元，最多两位小数", code="invalid_price")
    return int(fen)


@dataclass(frozen=True)
class Price:
    code: str
    pric: int


def parse_csv(lines: Iterable[str]) -> list[Price]:
    """Rows of a price CSV; refuses the whole file on the first bad row (naming its line)."""
    reader = csv.DictReader(lines)
    fields = {f.strip().lower(): f for f in reader.fieldnames or []}
    code_col = fields.get("med_list_codg") or fields.get("code")
    price_col = fields.get("pric") or fields.get("price")
    if not code_col or not price_col:
        raise PriceError("the CSV needs columns med_list_codg (or code) and pric (yuan)",
                         zh="价格表需要两列：med_list_codg（项目编码）和 pric（单价，元）", code="invalid_price")
    out: dict[str, Price] = {}
    for n, row in enumerate(reader, start=2):
        code = (row.get(code_col) or "").strip()
        if not code:
            raise PriceError(f"line {n}: empty code", zh=f"第{n}行：项目编码为空", code="invalid_price")
        out[code] = Price(code, fen_from_yuan(row.get(price_col) or "", where=f"第{n}行"))
    return list(out.values())


class PriceList:
    """The price table; reads are cheap primary-key lookups (safe from a worker thread per call)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        conn = self._connect()
        try:
            migrate(conn, _MIGRATIONS)
        finally:
            conn.close()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=5.0)
        conn.execute("PRAGMA journal_mode=WAL")
        return conn

    @classmethod
    def in_state_dir(cls, state_dir: str | Path) -> "PriceList":
        return cls(Path(state_dir) / FILE)

    def replace(self, prices: list[Price], *, now_ms: int | None = None) -> int:
        """Make ``prices`` the whole list (one transaction); returns how many rows it holds."""
        now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        conn = self._connect()
        try:
            with atomic(conn):
                conn.execute("DELETE FROM prices")
                conn.executemany("INSERT INTO prices (code, pric, updated_ms) VALUES (?, ?, ?)",
                                 [(p.code, p.pric, now) for p in prices])
            return len(prices)
        finally:
            conn.close()

    def lookup(self, codes: list[str]) -> dict[str, int]:
        if not codes:
            return {}
        conn = self._connect()
        try:
            marks = ",".join("?" * len(codes))
            return dict(conn.execute(f"SELECT code, pric FROM prices WHERE code IN ({marks})", codes).fetchall())  # noqa: S608  placeholders only
        finally:
            conn.close()

    def count(self) -> int:
        conn = self._connect()
        try:
            return int(conn.execute("SELECT count(*) FROM prices").fetchone()[0])
        finally:
            conn.close()

    def fill(self, items: list[dict]) -> list[dict]:
        """Search results with the site's price as ``pric`` where the catalogue has none."""
        known = self.lookup([it["med_list_codg"] for it in items if it.get("pric") is None])
        return [{**it, "pric": known[it["med_list_codg"]]} if it.get("pric") is None and it["med_list_codg"] in known
                else it for it in items]
