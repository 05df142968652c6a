"""Reconciliation's repository: outcomes, the reconciler's cursor, online settlements, claim rows as
reconciliation writes them, and the per-site daily figures the report reads.

Sets of keys go to PostgreSQL as one array parameter (``= ANY(?)``, ``unnest``): the statement text is
then the same whatever the count, so the driver converts it once instead of re-parsing a statement
with hundreds of placeholders for every batch. SQLite, which has no arrays, gets chunked ``IN`` lists.

The centre reaches it as ``store.recon``. Statements only; the rules live in
:mod:`sync.centre.replay` (pure) and the driver in :mod:`sync.centre.reconcile`.
"""

from __future__ import annotations

import json
import zlib
from typing import Any, Iterable, Mapping, Sequence

from .db import Database
from .schema import BUCKETS

# The entry kinds reconciliation decides; only these are queued at ingest.
QUEUED_KINDS = ("settlement", "cancel", "claim", "payout")   # payout: closes what the queue owed


def bucket_of(key: str) -> int:
    """The work-queue bucket of a person (or of a certno / device standing in for one): stable across
    processes and machines (crc32, not Python's salted hash)."""
    return zlib.crc32(key.encode("utf-8")) % BUCKETS

# A recheck mark for every person (a published bundle may change any claim's verdict).
EVERYONE = "*"


def mark_recheck(db: Database, psn_nos: Iterable[str | None], now: int) -> None:
    """Mark the given persons that have pending claims for the next auto-approval re-check (in the
    caller's transaction: the mark commits with the change that may clear a claim's cause)."""
    psns = sorted({p for p in psn_nos if p})
    if db.backend == "postgres" and psns:   # one array parameter: the same statement text for any count
        db.execute("INSERT INTO recon_recheck (psn_no, marked_ms) SELECT DISTINCT psn_no, ? FROM recon_claims "
                   "WHERE status = 'pending' AND psn_no = ANY(?::text[])", (now, psns))
        return
    for chunk in _chunks(psns):
        marks = ", ".join("?" * len(chunk))
        db.execute("INSERT INTO recon_recheck (psn_no, marked_ms) SELECT DISTINCT psn_no, ? FROM recon_claims "
                   f"WHERE status = 'pending' AND psn_no IN ({marks})", (now, *chunk))


_OUTCOME_INSERT = (
    "INSERT INTO recon_outcomes (device, seq, entry_id, site, psn_no, kind, mode, date, time, outcome, codes, "
    "reason, differs, j_medfee, j_fund, j_acct, j_cash, j_dedc, a_medfee, a_fund, a_acct, a_cash, a_dedc, "
    "credit, variance, debt, decided_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
    "?, ?, ?, ?, ?) ON CONFLICT DO NOTHING")


def _chunks(seq: Sequence, n: int = 500):
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


class Recon:
    EVERYONE = EVERYONE

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- cursor ------------------------------------------------------------------------------------
    def lock_cursor(self) -> int:
        """The reconciler's cursor, locked for the caller's transaction.

        The cursor row is the reconciler's lock: a second centre process (PostgreSQL) waits here
        instead of replaying the same batch; on SQLite BEGIN IMMEDIATE serialises already."""
        v = self.db.scalar({"sqlite": "SELECT last_id FROM recon_cursor WHERE name = 'entries'",
                            "postgres": "SELECT last_id FROM recon_cursor WHERE name = 'entries' FOR UPDATE"})
        return v or 0

    def set_cursor(self, last_id: int) -> None:
        if self.db.execute("UPDATE recon_cursor SET last_id = ? WHERE name = 'entries' AND last_id < ?",
                           (last_id, last_id)) == 0:
            self.db.execute("INSERT INTO recon_cursor (name, last_id) VALUES ('entries', ?) ON CONFLICT DO NOTHING",
                            (last_id,))

    # -- the work queue ------------------------------------------------------------------------------
    def enqueue(self, rows: Iterable[tuple[int, int]]) -> None:
        """(entry_id, bucket) rows, written in the ingest transaction."""
        self.db.executemany("INSERT INTO recon_queue (entry_id, bucket) VALUES (?, ?) ON CONFLICT DO NOTHING", rows)

    def enqueue_seqs(self, device: str, rows: Sequence[tuple[int, int]]) -> None:
        """(seq, bucket) rows of ``device``'s entries just stored, written in the ingest transaction: on
        PostgreSQL one statement finds the entries' ids and queues them (no read of the ids first)."""
        if not rows:
            return
        if self.db.backend == "postgres":
            self.db.execute(
                "INSERT INTO recon_queue (entry_id, bucket) SELECT e.id, u.bucket FROM "
                "unnest(?::bigint[], ?::int[]) AS u(seq, bucket) JOIN entries e ON e.device = ? AND e.seq = u.seq "
                "ON CONFLICT DO NOTHING", ([seq for seq, _ in rows], [b for _, b in rows], device))
            return
        seqs = [seq for seq, _ in rows]
        ids = {r["seq"]: r["id"] for r in self.db.query(
            "SELECT id, seq FROM entries WHERE device = ? AND seq BETWEEN ? AND ?", (device, min(seqs), max(seqs)))}
        self.enqueue([(ids[seq], bucket) for seq, bucket in rows])

    def claim_buckets(self, limit: int) -> list[int]:
        """Claim up to ``limit`` buckets with queued entries for the caller's transaction.

        PostgreSQL: the bucket rows are locked FOR UPDATE SKIP LOCKED, so concurrent workers take
        disjoint buckets and never wait for each other; a person (one bucket) is on one worker at a
        time. SQLite: BEGIN IMMEDIATE already makes the caller the only writer."""
        return [r["bucket"] for r in self.db.query({
            "sqlite": "SELECT DISTINCT bucket FROM recon_queue ORDER BY bucket LIMIT ?",
            "postgres": "SELECT b.bucket FROM recon_buckets b WHERE EXISTS (SELECT 1 FROM recon_queue q "
                        "WHERE q.bucket = b.bucket) ORDER BY b.bucket LIMIT ? FOR UPDATE OF b SKIP LOCKED",
        }, (limit,))]

    def queued(self, buckets: list[int], limit: int) -> list[dict]:
        """Up to ``limit`` queued entries of the claimed ``buckets``, by entry id."""
        if not buckets:
            return []
        marks = ", ".join("?" * len(buckets))
        # prev_time: the time of the entry before each on its device (the replay checks a chain's times
        # never go back), read here with the batch rather than once per entry.
        return self.db.query(
            "SELECT e.id, e.device, e.seq, e.kind, e.time, e.psn_no, e.req, e.raw, e.chain_checked, q.bucket, "
            "p.time AS prev_time "
            "FROM recon_queue q JOIN entries e ON e.id = q.entry_id LEFT JOIN entries p ON p.device = e.device "
            f"AND p.seq = e.seq - 1 WHERE q.bucket IN ({marks}) ORDER BY q.entry_id LIMIT ?", (*buckets, limit))

    def dequeue(self, entry_ids: Sequence[int]) -> None:
        if self.db.backend == "postgres":
            if entry_ids:
                self.db.execute("DELETE FROM recon_queue WHERE entry_id = ANY(?::bigint[])", (list(entry_ids),))
            return
        for chunk in _chunks(list(entry_ids)):
            marks = ", ".join("?" * len(chunk))
            self.db.execute(f"DELETE FROM recon_queue WHERE entry_id IN ({marks})", chunk)

    def queue_length(self) -> int:
        return self.db.scalar("SELECT count(*) FROM recon_queue")

    # -- auto-approval re-checks ---------------------------------------------------------------------
    def mark_recheck(self, psn_nos: Iterable[str | None], now: int) -> None:
        mark_recheck(self.db, psn_nos, now)

    def mark_recheck_everyone(self, now: int) -> None:
        self.db.execute("INSERT INTO recon_recheck (psn_no, marked_ms) VALUES (?, ?)", (EVERYONE, now))

    def rechecks(self, limit: int = 10_000) -> tuple[list[int], list[str]]:
        """The oldest marks: (their ids, the distinct persons they name; EVERYONE among them = all)."""
        rows = self.db.query("SELECT id, psn_no FROM recon_recheck ORDER BY id LIMIT ?", (limit,))
        return [r["id"] for r in rows], sorted({r["psn_no"] for r in rows})

    def drop_rechecks(self, ids: Sequence[int]) -> None:
        """Remove the marks taken (by id: a mark committed meanwhile stays for the next re-check)."""
        for chunk in _chunks(list(ids)):
            marks = ", ".join("?" * len(chunk))
            self.db.execute(f"DELETE FROM recon_recheck WHERE id IN ({marks})", chunk)

    def elect(self, role: int) -> bool:
        """True if the caller's transaction is the one worker doing ``role`` now (never waits)."""
        return self.db.try_lock(role)

    # -- outcomes ----------------------------------------------------------------------------------
    def decided_ids(self, entry_ids: Sequence[int]) -> set[tuple[str, int]]:
        """(device, seq) of the given entries that already have an outcome."""
        out: set[tuple[str, int]] = set()
        if self.db.backend == "postgres":
            if entry_ids:
                out = {(r["device"], r["seq"]) for r in self.db.query(
                    "SELECT device, seq FROM recon_outcomes WHERE entry_id = ANY(?::bigint[])", (list(entry_ids),))}
            return out
        for chunk in _chunks(list(entry_ids)):
            marks = ", ".join("?" * len(chunk))
            out |= {(r["device"], r["seq"]) for r in self.db.query(
                f"SELECT device, seq FROM recon_outcomes WHERE entry_id IN ({marks})", chunk)}
        return out

    def decided_between(self, first_id: int, last_id: int) -> set[tuple[str, int]]:
        """(device, seq) of the entries with ids in [first_id, last_id] that already have an outcome."""
        return {(r["device"], r["seq"]) for r in self.db.query(
            "SELECT device, seq FROM recon_outcomes WHERE entry_id BETWEEN ? AND ?", (first_id, last_id))}

    def latest_times(self, psn_nos: list[str]) -> dict[str, int]:
        """Per person, the time of the latest visit already reconciled."""
        latest: dict[str, int] = {}
        if self.db.backend == "postgres":
            if psn_nos:
                for r in self.db.query("SELECT psn_no, max(time) AS t FROM recon_outcomes WHERE psn_no = ANY(?::text[]) "
                                       "GROUP BY psn_no", (list(psn_nos),)):
                    latest[r["psn_no"]] = r["t"]
            return latest
        for chunk in _chunks(psn_nos):
            marks = ", ".join("?" * len(chunk))
            for r in self.db.query(f"SELECT psn_no, max(time) AS t FROM recon_outcomes WHERE psn_no IN ({marks}) "
                                   "GROUP BY psn_no", chunk):
                latest[r["psn_no"]] = r["t"]
        return latest

    def add_outcomes(self, rows: Iterable[Sequence[Any]]) -> None:
        self.db.executemany(_OUTCOME_INSERT, rows)   # pipelined: as fast as one INSERT from arrays (measured)

    def outcome(self, device: str, seq: int) -> dict | None:
        return self.db.query_one("SELECT * FROM recon_outcomes WHERE device = ? AND seq = ?", (device, seq))

    def outcomes(self, *, psn_no: str | None = None, device: str | None = None) -> list[dict]:
        if psn_no is not None:
            return self.db.query("SELECT * FROM recon_outcomes WHERE psn_no = ? ORDER BY time, device, seq", (psn_no,))
        if device is not None:
            return self.db.query("SELECT * FROM recon_outcomes WHERE device = ? ORDER BY seq", (device,))
        return self.db.query("SELECT * FROM recon_outcomes ORDER BY time, device, seq")

    def add_claim(self, c: Mapping[str, Any], site: str) -> None:
        body = {k: c[k] for k in ("card", "visit", "items", "paid", "basis")}
        self.db.execute(
            "INSERT INTO recon_claims (claim_no, device, seq, site, psn_no, certno, cause, detail, date, time, "
            "medfee, body, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending') ON CONFLICT DO NOTHING",
            (c["claim_no"], c["device"], c["seq"], site, c["psn_no"], c.get("certno"), c["cause"], c["detail"],
             c["date"], c["time"], c["paid"]["medfee_sumamt"], json.dumps(body, ensure_ascii=False, default=str)))

    # -- online settlement -------------------------------------------------------------------------
    def online(self, device: str, req: str) -> dict | None:
        return self.db.query_one("SELECT * FROM recon_online WHERE device = ? AND req = ?", (device, req))

    def online_many(self, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], dict]:
        """The online settlements answered for these (device, req) pairs, keyed by the pair (one query
        per device and 500 reqs: the reconciler asks for a whole batch at once)."""
        out: dict[tuple[str, str], dict] = {}
        wanted = sorted(set(pairs))
        if self.db.backend == "postgres":
            if wanted:
                for r in self.db.query("SELECT * FROM recon_online WHERE (device, req) IN "
                                       "(SELECT u.device, u.req FROM unnest(?::text[], ?::text[]) AS u(device, req))",
                                       ([d for d, _ in wanted], [q for _, q in wanted])):
                    out[(r["device"], r["req"])] = r
            return out
        # Row values, one query per 500 pairs whatever the devices (a batch spans dozens of devices).
        for chunk in _chunks(wanted):
            marks = ", ".join(["(?, ?)"] * len(chunk))
            for r in self.db.query(f"SELECT * FROM recon_online WHERE (device, req) IN ({marks})",
                                   [v for pair in chunk for v in pair]):
                out[(r["device"], r["req"])] = r
        return out

    def add_online(self, device: str, req: str, psn_no: str, response: str, accepted: Mapping[str, int],
                   now: int) -> None:
        self.db.execute("INSERT INTO recon_online (device, req, psn_no, response, a_medfee, a_fund, a_acct, a_cash, "
                        "a_dedc, at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (device, req, psn_no, response, accepted["medfee"], accepted["fund"], accepted["acct"],
                         accepted["cash"], accepted["dedc"], now))

    def fence_online(self, device: str, req: str, now: int) -> None:
        """(device, req) may no longer settle online: the counter was told it had not settled."""
        self.db.execute("INSERT INTO recon_online_fence (device, req, at_ms) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                        (device, req, now))

    def online_fenced(self, device: str, req: str) -> bool:
        return self.db.query_one("SELECT 1 AS x FROM recon_online_fence WHERE device = ? AND req = ?",
                                 (device, req)) is not None

    # -- the daily report --------------------------------------------------------------------------
    def site_devices(self, site: str) -> list[str]:
        return [r["device"] for r in self.db.query("SELECT device FROM devices WHERE site = ? ORDER BY device",
                                                   (site,))]

    def outcomes_of_day(self, site: str, date: str) -> list[dict]:
        return self.db.query("SELECT * FROM recon_outcomes WHERE site = ? AND date = ? ORDER BY device, seq",
                             (site, date))

    def entries_of(self, devices: list[str]) -> list[dict]:
        """(device, seq, kind, raw) of every stored entry of ``devices``."""
        marks = ", ".join("?" * len(devices))
        rows = self.db.query(f"SELECT device, seq, kind, raw FROM entries WHERE device IN ({marks}) "
                             "ORDER BY device, seq", devices)
        for r in rows:
            r["raw"] = bytes(r["raw"])
        return rows

    def rejections_of(self, devices: list[str]) -> list[dict]:
        marks = ", ".join("?" * len(devices))
        return self.db.query(f"SELECT device, seq, code, message FROM rejections WHERE device IN ({marks}) "
                             "ORDER BY device, seq", devices)

    def claims_of_day(self, site: str, date: str) -> list[dict]:
        return self.db.query("SELECT status, count(*) AS n, coalesce(sum(amount), 0) AS amount FROM recon_claims "
                             "WHERE site = ? AND date = ? GROUP BY status", (site, date))
