"""The centre's authoritative person ledger, on the portable database layer (SQLite / PostgreSQL).

Tables (created by :mod:`sync.centre.store.schema`; all money BIGINT fen):

    recon_persons        one row per person: balance, year-to-date deductible and fund, open reviews
    recon_arrears        insured status history: arrears periods and when they were cleared
    recon_reviews        reviews opened by reconciliation; closed by a reviewer or an operation
    recon_debts          account debts (balance gone negative offline) and when a contribution cleared them
    recon_contributions  monthly account contributions posted
    recon_actions        the centre's own journal: who did what, when (reviewers, operators, auto)

Operations that move the world forward (``contribute``, ``clear_arrears``, ``close_review``,
``suspend``) each run in one transaction and record an action. The pure state lives in
:class:`sync.centre.replay.Ledger`; :meth:`Ledgers.load` / :meth:`Ledgers.save` convert.
The centre reaches it as ``store.ledger``.
"""

from __future__ import annotations

import datetime as _dt
import json
import time
from typing import Any, Iterable, Mapping

from edge.settle import parse_person
from edge.settle.errors import SettlementError
from sync.centre import replay as rp
from sync.centre.errors import BadOperation, UnknownPerson

from .db import Database
from .recon import mark_recheck


def now_ms() -> int:
    return int(time.time() * 1000)


def _ledger(row: dict, arrears: list[dict]) -> rp.Ledger:
    return rp.Ledger(
        psn_no=row["psn_no"], insutype=row["insutype"], psn_type=row["psn_type"], balc=row["balc"],
        deductible_used=row["deductible_used"], fund_paid=row["fund_paid"],
        chronic=tuple(json.loads(row["chronic"])),
        arrears=tuple(rp.Arrears(_dt.date.fromisoformat(a["begin_date"]),
                                 _dt.date.fromisoformat(a["end_date"]) if a["end_date"] else None,
                                 a["cleared_ms"] is not None) for a in arrears),
        open_reviews=row["open_reviews"], year=row.get("ytd_year"),
        accs=tuple(tuple(a) for a in json.loads(row.get("accs") or "[]")))


def _accs(ledger: rp.Ledger) -> str:
    # Year-to-date totals of other (policy year, accumulator) pairs (edge.settle: policy years).
    return json.dumps([list(a) for a in ledger.accs], ensure_ascii=False)


def _for_update(sql: str) -> dict:
    # PostgreSQL: lock the person rows for the transaction, so several centre processes never apply
    # two changes to one balance from the same starting point. SQLite serialises writers already.
    return {"sqlite": sql, "postgres": sql + " FOR UPDATE"}


class Ledgers:
    """The person ledger's repository: every statement on the ``recon_*`` ledger tables.

    Methods that change several rows run in one transaction of their own (nested in the caller's,
    as a savepoint, when the caller holds one)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def record_action(self, who: str, action: str, target: str, detail: Mapping[str, Any] | None = None, *,
                      now: int | None = None) -> None:
        db = self.db
        db.execute("INSERT INTO recon_actions (at_ms, who, action, target, detail) VALUES (?, ?, ?, ?, ?)",
                   (now_ms() if now is None else now, who, action, target,
                    json.dumps(dict(detail or {}), ensure_ascii=False, sort_keys=True)))

    def actions(self, target: str | None = None) -> list[dict]:
        db = self.db
        if target is None:
            rows = db.query("SELECT * FROM recon_actions ORDER BY id")
        else:
            rows = db.query("SELECT * FROM recon_actions WHERE target = ? ORDER BY id", (target,))
        for r in rows:
            r["detail"] = json.loads(r["detail"])
        return rows

    # ------------------------------------------------------------------------------------ seeding ---
    def seed_from_persons(self, persons: Iterable[Mapping[str, Any]], *, now: int | None = None) -> dict:
        """Load person source data (the persons bundle's shape) into the ledger.

        New persons get their balance and year-to-date totals from the data; persons already in the
        ledger keep those (reconciliation has moved them since) and only get their identity fields
        (certno, cards, insutype, psn_type, chronic filings) refreshed. A ``suspended`` status with no
        open arrears period opens one from ``arrears_from`` (or 1970-01-01: "period unknown").
        Returns {"added": n, "updated": m}.
        """
        db = self.db
        now = now_ms() if now is None else now
        added = updated = 0
        seen: list[str] = []
        with db.transaction():
            for i, p in enumerate(persons):
                try:
                    state = parse_person(p)
                except SettlementError as exc:
                    raise BadOperation(f"person #{i + 1} ({p.get('psn_no') if isinstance(p, Mapping) else '?'}) is "
                                       f"invalid: {exc.message}; fix the person source data") from None
                if state.psn_no is None:
                    raise BadOperation(f"person #{i + 1} has no psn_no; every person needs one")
                chronic = json.dumps(list(p.get("chronic") or []), ensure_ascii=False)
                cards = json.dumps(list(p.get("card_ids") or []))
                certno = p.get("certno")
                if db.query_one("SELECT psn_no FROM recon_persons WHERE psn_no = ?", (state.psn_no,)):
                    db.execute("UPDATE recon_persons SET certno = ?, card_ids = ?, insutype = ?, psn_type = ?, chronic = ?, "
                               "updated_ms = ? WHERE psn_no = ?",
                               (certno, cards, state.insutype, state.psn_type, chronic, now, state.psn_no))
                    updated += 1
                else:
                    db.execute("INSERT INTO recon_persons (psn_no, certno, card_ids, insutype, psn_type, chronic, "
                               "balc, deductible_used, fund_paid, open_reviews, updated_ms, ytd_year) "
                               "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                               (state.psn_no, certno, cards, state.insutype, state.psn_type, chronic, state.balc,
                                state.deductible_used, state.fund_paid, 0, now, state.year))
                    added += 1
                    if state.pending_review:
                        self._open_review(state.psn_no, None, None, "source_pending_review",
                                     "marked pending review in the person source data", now)
                if state.status == "suspended" and not db.query_one(
                        "SELECT id FROM recon_arrears WHERE psn_no = ? AND cleared_ms IS NULL", (state.psn_no,)):
                    db.execute("INSERT INTO recon_arrears (psn_no, begin_date, end_date) VALUES (?, ?, ?)",
                               (state.psn_no, p.get("arrears_from") or "1970-01-01", p.get("arrears_to")))
                seen.append(state.psn_no)
            mark_recheck(db, seen, now)   # new identity data or an arrears period: their claims' verdicts
        return {"added": added, "updated": updated}

    # ------------------------------------------------------------------------------ load and save ---
    def load(self, psn_no: str | None, *, lock: bool = False) -> rp.Ledger | None:
        db = self.db
        if psn_no is None:
            return None
        sql = "SELECT * FROM recon_persons WHERE psn_no = ?"
        row = db.query_one(_for_update(sql) if lock else sql, (psn_no,))
        if row is None:
            return None
        arrears = db.query("SELECT * FROM recon_arrears WHERE psn_no = ? ORDER BY id", (psn_no,))
        return _ledger(row, arrears)

    def load_many(self, psn_nos: list[str], *, lock: bool = False) -> dict[str, rp.Ledger]:
        """Ledgers of many persons in two queries per 500 (the reconciler's batch path)."""
        db = self.db
        out: dict[str, rp.Ledger] = {}
        for i in range(0, len(psn_nos), 500):
            chunk = psn_nos[i:i + 500]
            marks = ", ".join("?" * len(chunk))
            sql = f"SELECT * FROM recon_persons WHERE psn_no IN ({marks}) ORDER BY psn_no"
            rows = db.query(_for_update(sql) if lock else sql, chunk)
            arrears: dict[str, list] = {}
            for a in db.query(f"SELECT * FROM recon_arrears WHERE psn_no IN ({marks}) ORDER BY id", chunk):
                arrears.setdefault(a["psn_no"], []).append(a)
            for r in rows:
                out[r["psn_no"]] = _ledger(r, arrears.get(r["psn_no"], []))
        return out

    def require(self, psn_no: str) -> rp.Ledger:
        got = self.load(psn_no, lock=self.db.in_transaction)
        if got is None:
            raise UnknownPerson(f"person {psn_no} is not in the centre's ledger: load the person source data with "
                                "`centre ledger load FILE` (or publish the persons bundle)")
        return got

    def save(self, ledger: rp.Ledger, *, now: int | None = None) -> None:
        """Write the money and review count back (arrears are changed only by their own operations)."""
        db = self.db
        db.execute("UPDATE recon_persons SET balc = ?, deductible_used = ?, fund_paid = ?, open_reviews = ?, "
                   "updated_ms = ?, ytd_year = ?, accs = ? WHERE psn_no = ?",
                   (ledger.balc, ledger.deductible_used, ledger.fund_paid, ledger.open_reviews,
                    now_ms() if now is None else now, ledger.year, _accs(ledger), ledger.psn_no))

    def psn_by_certno(self, certno: str | None) -> str | None:
        db = self.db
        if not certno:
            return None
        row = db.query_one("SELECT psn_no FROM recon_persons WHERE certno = ?", (certno,))
        return row["psn_no"] if row else None

    def snapshot(self, psn_no: str, *, day: _dt.date | None = None) -> dict:
        """The person as the persons bundle and the online answer show it (engine input shape)."""
        db = self.db
        led = self.require(psn_no)
        row = db.query_one("SELECT certno, card_ids FROM recon_persons WHERE psn_no = ?", (psn_no,))
        assert row is not None  # require() found the person in this same table
        day = day or _dt.date.today()
        return {"psn_no": led.psn_no, "certno": row["certno"], "card_ids": json.loads(row["card_ids"]),
                "insutype": led.insutype, "psn_type": led.psn_type, "status": led.status_on(day),
                "chronic": list(led.chronic), "balc": led.balc, "deductible_used": led.deductible_used,
                "fund_paid": led.fund_paid, "pending_review": led.open_reviews > 0,
                "year": led.year, "accumulators": led.accumulators_json(), "reflects_seq": self.reflects(psn_no)}

    def reflects(self, psn_no: str) -> dict[str, int]:
        """Per device, the highest seq up to which every settlement and cancel of this person from that
        device has moved the ledger (confirmed or adjusted): the counter re-applies its own later
        entries on top of the snapshot (docs/entries.md, "Local state")."""
        rows = self.db.query("SELECT e.device, e.seq, o.outcome FROM entries e LEFT JOIN recon_outcomes o "
                             "ON o.device = e.device AND o.seq = e.seq WHERE e.psn_no = ? "
                             "AND e.kind IN ('settlement', 'cancel') ORDER BY e.device, e.seq", (psn_no,))
        out: dict[str, int] = {}
        stopped: set[str] = set()
        for r in rows:
            if r["device"] in stopped:
                continue
            if r["outcome"] in ("confirmed", "adjusted"):
                out[r["device"]] = r["seq"]
            else:       # not reconciled yet, or under review: the ledger has not moved for it
                stopped.add(r["device"])
        return out

    def snapshots(self, *, day: _dt.date | None = None) -> list[dict]:
        """Every person, for the persons bundle: publishing from the ledger keeps edges' snapshots fresh."""
        db = self.db
        return [self.snapshot(r["psn_no"], day=day) for r in db.query("SELECT psn_no FROM recon_persons ORDER BY psn_no")]

    # -------------------------------------------------------------------------------- operations ---
    def _open_review(self, psn_no, device, seq, code, reason, now) -> None:
        db = self.db
        db.execute("INSERT INTO recon_reviews (psn_no, device, seq, code, reason, opened_ms) VALUES (?, ?, ?, ?, ?, ?)",
                   (psn_no, device, seq, code, reason, now))
        db.execute("UPDATE recon_persons SET open_reviews = open_reviews + 1 WHERE psn_no = ?", (psn_no,))

    def contribute(self, psn_no: str, amount: int, *, who: str = "operator", now: int | None = None) -> dict:
        """Post a monthly account contribution; it clears account debts first (oldest first)."""
        db = self.db
        now = now_ms() if now is None else now
        with db.transaction():
            led = self.require(psn_no)
            try:
                after, cleared = rp.contribute(led, amount)
            except ValueError as exc:
                raise BadOperation(str(exc)) from None
            self.save(after, now=now)
            left = cleared
            for d in db.query("SELECT id, amount FROM recon_debts WHERE psn_no = ? AND cleared_ms IS NULL ORDER BY id",
                              (psn_no,)):
                if left < d["amount"]:
                    break  # a debt is cleared only in full; a partial payment shows in the balance
                left -= d["amount"]
                db.execute("UPDATE recon_debts SET cleared_ms = ? WHERE id = ?", (now, d["id"]))
            if after.debt == 0:
                db.execute("UPDATE recon_debts SET cleared_ms = ? WHERE psn_no = ? AND cleared_ms IS NULL", (now, psn_no))
            db.execute("INSERT INTO recon_contributions (psn_no, amount, debt_cleared, at_ms, who) VALUES (?, ?, ?, ?, ?)",
                       (psn_no, amount, cleared, now, who))
            mark_recheck(db, [psn_no], now)
            self.record_action(who, "contribute", psn_no, {"amount": amount, "debt_cleared": cleared,
                                                         "balc": after.balc}, now=now)
        return {"psn_no": psn_no, "amount": amount, "debt_cleared": cleared, "balc": after.balc, "debt": after.debt}

    def suspend(self, psn_no: str, begin: str, end: str | None = None, *, who: str = "operator",
                now: int | None = None) -> dict:
        """Record an arrears period (the employer did not pay): the person is suspended for it."""
        db = self.db
        now = now_ms() if now is None else now
        for name, v in (("begin", begin), ("end", end)):
            if v is not None:
                try:
                    _dt.date.fromisoformat(v)
                except ValueError:
                    raise BadOperation(f"{name} must be a date YYYY-MM-DD, got {v!r}") from None
        with db.transaction():
            self.require(psn_no)
            db.execute("INSERT INTO recon_arrears (psn_no, begin_date, end_date) VALUES (?, ?, ?)", (psn_no, begin, end))
            mark_recheck(db, [psn_no], now)
            self.record_action(who, "suspend", psn_no, {"begin": begin, "end": end}, now=now)
        return {"psn_no": psn_no, "begin": begin, "end": end}

    def clear_arrears(self, psn_no: str, *, who: str = "operator", now: int | None = None) -> dict:
        """The employer paid: every open arrears period of the person is cleared (status active again)."""
        db = self.db
        now = now_ms() if now is None else now
        with db.transaction():
            self.require(psn_no)
            n = db.execute("UPDATE recon_arrears SET cleared_ms = ?, cleared_by = ? WHERE psn_no = ? AND cleared_ms IS NULL",
                           (now, who, psn_no))
            if n == 0:
                raise BadOperation(f"person {psn_no} has no open arrears period: nothing to clear")
            mark_recheck(db, [psn_no], now)   # claims waiting for the arrears may approve now
            self.record_action(who, "clear_arrears", psn_no, {"periods": n}, now=now)
        return {"psn_no": psn_no, "cleared_periods": n}

    def close_review(self, psn_no: str, *, who: str = "operator", note: str = "", now: int | None = None) -> dict:
        """Close the person's open reviews (the earlier bills were settled by a reviewer)."""
        db = self.db
        now = now_ms() if now is None else now
        with db.transaction():
            self.require(psn_no)
            n = db.execute("UPDATE recon_reviews SET closed_ms = ?, closed_by = ?, note = ? WHERE psn_no = ? AND "
                           "closed_ms IS NULL", (now, who, note, psn_no))
            if n == 0:
                raise BadOperation(f"person {psn_no} has no open review: nothing to close")
            db.execute("UPDATE recon_persons SET open_reviews = 0, updated_ms = ? WHERE psn_no = ?", (now, psn_no))
            mark_recheck(db, [psn_no], now)   # claims waiting for the review may approve now
            self.record_action(who, "close_review", psn_no, {"reviews": n, "note": note}, now=now)
        return {"psn_no": psn_no, "closed_reviews": n}

    def debts(self, psn_no: str) -> list[dict]:
        db = self.db
        return db.query("SELECT * FROM recon_debts WHERE psn_no = ? ORDER BY id", (psn_no,))

    def reviews(self, psn_no: str) -> list[dict]:
        db = self.db
        return db.query("SELECT * FROM recon_reviews WHERE psn_no = ? ORDER BY id", (psn_no,))

    def record_review(self, psn_no: str | None, device: str | None, seq: int | None, code: str, reason: str,
                      now: int) -> None:
        """The review row only: the reconciler saves the count with the ledger (it moved in the pure core).
        No person (an entry quarantined before one was found): the row is keyed by device and seq, psn_no ''."""
        db = self.db
        db.execute("INSERT INTO recon_reviews (psn_no, device, seq, code, reason, opened_ms) VALUES (?, ?, ?, ?, ?, ?)",
                   (psn_no if psn_no is not None else "", device, seq, code, reason, now))

    def record_debt(self, psn_no: str, device: str, seq: int, amount: int, now: int) -> None:
        db = self.db
        db.execute("INSERT INTO recon_debts (psn_no, device, seq, amount, opened_ms) VALUES (?, ?, ?, ?, ?)",
                   (psn_no, device, seq, amount, now))

    def arrears(self, psn_no: str) -> list[dict]:
        return self.db.query("SELECT begin_date, end_date, cleared_ms FROM recon_arrears WHERE psn_no = ? ORDER BY id",
                             (psn_no,))

    def save_many(self, ledgers: Iterable[rp.Ledger], *, now: int) -> None:
        """Write many persons' money and review counts in one statement (the reconciler's batch)."""
        rows = [(led.balc, led.deductible_used, led.fund_paid, led.open_reviews, now, led.year, _accs(led), led.psn_no)
                for led in ledgers]
        if self.db.backend == "postgres" and rows:
            # One statement for the batch: the rows as one array per column.
            cols = [list(c) for c in zip(*rows)]
            self.db.execute(
                "UPDATE recon_persons p SET balc = u.balc, deductible_used = u.dedc, fund_paid = u.fund, "
                "open_reviews = u.rev, updated_ms = u.at, ytd_year = u.yr, accs = u.accs FROM unnest(?::bigint[], "
                "?::bigint[], ?::bigint[], ?::bigint[], ?::bigint[], ?::integer[], ?::text[], ?::text[]) "
                "AS u(balc, dedc, fund, rev, at, yr, accs, psn) WHERE p.psn_no = u.psn", cols)
            return
        self.db.executemany("UPDATE recon_persons SET balc = ?, deductible_used = ?, fund_paid = ?, open_reviews = ?, "
                            "updated_ms = ?, ytd_year = ?, accs = ? WHERE psn_no = ?", rows)
