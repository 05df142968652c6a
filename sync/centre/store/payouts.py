"""Money the centre moves after reconciliation, outside a device's journal: cancels of reconciled
settlements done at the centre (``centre cancel``), each a reversing adjustment recorded beside the
outcome it reverses (never an edit of it).

The centre reaches it as ``store.payouts``; the rules (who, when, the ledger, the downlink) live in
:mod:`sync.centre.cancel`.
"""

from __future__ import annotations

from typing import Any, Mapping

from .db import Database

KEYS = ("medfee", "fund", "acct", "cash", "dedc")


class Payouts:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- cancels at the centre ---------------------------------------------------------------------
    def cancel_of(self, device: str, seq: int) -> dict | None:
        return self.db.query_one("SELECT * FROM centre_cancels WHERE device = ? AND seq = ?", (device, seq))

    def cancelled(self, device: str, seq: int) -> bool:
        return self.cancel_of(device, seq) is not None

    def add_cancel(self, device: str, seq: int, *, site: str, psn_no: str, date: str, reason: str, who: str,
                   reversed_: Mapping[str, int], credit: int, now: int) -> None:
        self.db.execute(
            "INSERT INTO centre_cancels (device, seq, site, psn_no, date, reason, who, r_medfee, r_fund, r_acct, "
            "r_cash, r_dedc, credit, at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (device, seq, site, psn_no, date, reason, who, *(int(reversed_[k]) for k in KEYS), credit, now))

    def cancels_of_day(self, site: str, date: str) -> list[dict[str, Any]]:
        return self.db.query("SELECT * FROM centre_cancels WHERE site = ? AND date = ? ORDER BY device, seq",
                             (site, date))

    def counter_cancelled(self, device: str, seq: int) -> bool:
        """The device journaled its own cancel of ``seq`` (its req is ``@cancel:N``; ``cancel:N`` before
        the counter's key space)."""
        row = self.db.query_one("SELECT 1 AS x FROM entries WHERE device = ? AND kind = 'cancel' AND req IN (?, ?)",
                                (device, f"@cancel:{seq}", f"cancel:{seq}"))
        return row is not None
