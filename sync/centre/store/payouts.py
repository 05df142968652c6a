"""Money the centre moves after reconciliation, outside a device's journal: cancels of reconciled
settlements done at the centre (``centre cancel``), each a reversing adjustment recorded beside the
outcome it reverses (never an edit of it), and the payout queue: money owed to a patient in cash
(the cash share of a credit, an approved claim's reimbursement), ``owed`` until a counter pays it
(``paid``) or the settlement it came from is cancelled (``void``).

The centre reaches it as ``store.payouts``; the rules live in :mod:`sync.centre.cancel` and
:mod:`sync.centre.payouts`.
"""

from __future__ import annotations

from typing import Any, Mapping

from .db import Database

KEYS = ("medfee", "fund", "acct", "cash", "dedc")
OWED, PAID, VOID = "owed", "paid", "void"


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

    def journaled_req(self, device: str, req: str) -> bool:
        """The device uploaded a settlement or claim under ``req`` (settled offline, or a claim)."""
        row = self.db.query_one("SELECT 1 AS x FROM entries WHERE device = ? AND req = ? AND kind IN "
                                "('settlement', 'claim')", (device, req))
        return row is not None

    def counter_cancelled(self, device: str, seq: int) -> bool:
        """The device journaled its own cancel of ``seq`` (its req is ``@cancel:N``; ``cancel:N`` before
        the counter's key space)."""
        row = self.db.query_one("SELECT 1 AS x FROM entries WHERE device = ? AND kind = 'cancel' AND req IN (?, ?)",
                                (device, f"@cancel:{seq}", f"cancel:{seq}"))
        return row is not None

    # -- the payout queue --------------------------------------------------------------------------
    def add_payout(self, payout_no: str, *, source: str, device: str, seq: int, site: str, psn_no: str, date: str,
                   amount: int, now: int) -> None:
        """Queue money owed to a patient (once per payout number: a re-run adds nothing)."""
        self.db.execute("INSERT INTO payouts (payout_no, source, device, seq, site, psn_no, date, amount, status, "
                        "created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                        (payout_no, source, device, seq, site, psn_no, date, amount, OWED, now))

    def payout(self, payout_no: str) -> dict | None:
        return self.db.query_one("SELECT * FROM payouts WHERE payout_no = ?", (payout_no,))

    def payouts_of(self, device: str, seq: int) -> list[dict[str, Any]]:
        return self.db.query("SELECT * FROM payouts WHERE device = ? AND seq = ? ORDER BY payout_no", (device, seq))

    def close_payout(self, payout_no: str, status: str, *, note: str, now: int) -> bool:
        """owed -> paid or void; False when it was not owed (paid or void already)."""
        row = self.db.query_one("UPDATE payouts SET status = ?, closed_ms = ?, note = ? WHERE payout_no = ? AND "
                                "status = ? RETURNING payout_no", (status, now, note, payout_no, OWED))
        return row is not None

    def payouts_of_day(self, site: str, date: str) -> list[dict[str, Any]]:
        return self.db.query("SELECT * FROM payouts WHERE site = ? AND date = ? ORDER BY psn_no, payout_no",
                             (site, date))
