"""The review queue's repository: full-payment claims and disputed settlements.

The centre reaches it as ``store.claims``; the decisions (who may decide what, the engine's
reimbursement, the downlink) live in :mod:`sync.centre.review`.
"""

from __future__ import annotations

import json
from typing import Any, Iterable

from .db import Database


def _claim_row(row: dict) -> dict:
    out = dict(row)
    out.update(json.loads(row["body"]))
    del out["body"]
    out["split"] = json.loads(row["split"]) if row.get("split") else None
    return out


class Claims:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- claims ------------------------------------------------------------------------------------
    def find(self, *, status: str | None = None, psn_no: str | None = None) -> list[dict]:
        where: list[str] = []
        params: list[Any] = []
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if psn_no is not None:
            where.append("psn_no = ?")
            params.append(psn_no)
        sql = ("SELECT * FROM recon_claims" + (" WHERE " + " AND ".join(where) if where else "")
               + " ORDER BY time, claim_no")
        return [_claim_row(r) for r in self.db.query(sql, params)]

    def pending_of(self, psn_nos: Iterable[str]) -> list[dict]:
        """Pending claims of the given persons (auto-approval's targeted re-check), oldest first."""
        out: list[dict] = []
        names = sorted(set(psn_nos))
        for i in range(0, len(names), 500):
            chunk = names[i:i + 500]
            marks = ", ".join("?" * len(chunk))
            out += [_claim_row(r) for r in self.db.query(
                f"SELECT * FROM recon_claims WHERE status = 'pending' AND psn_no IN ({marks})", chunk)]
        return sorted(out, key=lambda c: (c["time"], c["claim_no"]))

    def get(self, claim_no: str, *, lock: bool = False) -> dict | None:
        sql = "SELECT * FROM recon_claims WHERE claim_no = ?"
        # PostgreSQL: lock the claim for the deciding transaction (two reviewers, one decision).
        row = self.db.query_one({"sqlite": sql, "postgres": sql + " FOR UPDATE"} if lock else sql, (claim_no,))
        return None if row is None else _claim_row(row)

    def set_person(self, claim_no: str, psn_no: str) -> None:
        self.db.execute("UPDATE recon_claims SET psn_no = ? WHERE claim_no = ?", (psn_no, claim_no))

    def decide(self, claim_no: str, *, status: str, amount: int, who: str, now: int, note: str,
               split: dict | None = None) -> None:
        if split is None:
            self.db.execute("UPDATE recon_claims SET status = ?, amount = ?, decided_by = ?, decided_ms = ?, note = ?, "
                            "waiting = NULL WHERE claim_no = ?", (status, amount, who, now, note, claim_no))
        else:
            self.db.execute("UPDATE recon_claims SET status = ?, amount = ?, split = ?, decided_by = ?, decided_ms = ?, "
                            "note = ?, waiting = NULL WHERE claim_no = ?",
                            (status, amount, json.dumps(split, ensure_ascii=False), who, now, note, claim_no))

    def set_waiting(self, claim_no: str, waiting: str, *, status: str) -> None:
        self.db.execute("UPDATE recon_claims SET waiting = ? WHERE claim_no = ? AND status = ?",
                        (waiting, claim_no, status))

    def summary(self) -> dict[str, int]:
        return {r["status"]: int(r["n"])
                for r in self.db.query("SELECT status, count(*) AS n FROM recon_claims GROUP BY status")}

    # -- disputed settlements ----------------------------------------------------------------------
    def disputed(self, *, open_only: bool = True) -> list[dict]:
        """Settlements under review, and every entry reconciliation quarantined (``replay_failed``, any kind,
        its person known or not): a quarantined entry must reach a reviewer."""
        cond = "AND v.decision IS NULL" if open_only else ""
        return self.db.query(
            "SELECT v.id, v.psn_no, v.device, v.seq, v.code, v.reason, v.opened_ms, v.closed_ms, v.closed_by, "
            "v.decision, v.note, o.site, o.date, o.j_medfee, o.j_fund, o.j_acct, o.j_cash FROM recon_reviews v "
            f"JOIN recon_outcomes o ON o.device = v.device AND o.seq = v.seq "
            f"WHERE (o.kind = 'settlement' OR v.code = 'replay_failed') {cond} "
            "ORDER BY v.id")

    def review_of(self, device: str, seq: int) -> dict | None:
        """The review opened for a settlement, locked for the deciding transaction (PostgreSQL)."""
        sql = "SELECT * FROM recon_reviews WHERE device = ? AND seq = ?"
        return self.db.query_one({"sqlite": sql, "postgres": sql + " FOR UPDATE"}, (device, seq))

    def accept_settlement(self, device: str, seq: int, *, codes: list[str], reason: str) -> None:
        """The reviewer accepts the journaled figures: the accepted columns become them."""
        self.db.execute("UPDATE recon_outcomes SET outcome = 'confirmed', codes = ?, reason = ?, a_medfee = j_medfee, "
                        "a_fund = j_fund, a_acct = j_acct, a_cash = j_cash, a_dedc = j_dedc WHERE device = ? AND seq = ?",
                        (json.dumps(codes), reason, device, seq))

    def reject_settlement(self, device: str, seq: int, *, codes: list[str], reason: str) -> None:
        self.db.execute("UPDATE recon_outcomes SET outcome = 'rejected', codes = ?, reason = ? "
                        "WHERE device = ? AND seq = ?", (json.dumps(codes), reason, device, seq))

    def close_review(self, review_id: int, *, decision: str, who: str, note: str, now: int) -> None:
        self.db.execute("UPDATE recon_reviews SET decision = ?, closed_ms = coalesce(closed_ms, ?), "
                        "closed_by = coalesce(closed_by, ?), note = ? WHERE id = ?",
                        (decision, now, who, note, review_id))
