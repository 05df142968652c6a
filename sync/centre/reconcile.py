"""Reconciliation at the centre: the storage driver around the pure core :mod:`sync.centre.replay`.

``run_pending(store)`` takes every accepted entry not yet reconciled (the ``entries`` table, by id),
groups settlements, cancels and claims by person, replays each person's entries in time order
across all sites, and writes in one transaction per person: outcome rows, the ledger, claims,
reviews, debts, and the downlink messages for the devices. It then lets
:func:`sync.centre.review.auto_approve` approve the claims whose cause has cleared.

Idempotent: an entry with an outcome row is never replayed again (the core skips keys in ``done``),
and the cursor only moves forward after the rows are written; a crash in between replays nothing
twice. Re-uploads never reach here (ingest stores an entry once).

Late arrivals: entries are replayed in time order within what has arrived. An entry that arrives
after later visits of the same person were reconciled is replayed against the state as it is now
(the outcome says so); the centre never rewrites outcomes already sent down to a counter.

``background(store, *, task_status)`` is started by ``centre run`` (sync.centre.server) and runs
``run_pending`` in a worker thread every few seconds.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any, Mapping

import cbor2
import trio

from edge.settle import InvalidInput, parse_catalogue, parse_policy
from sync.centre import ledger as L
from sync.centre import replay as rp

log = logging.getLogger("sync.centre.reconcile")
KINDS = ("settlement", "cancel", "claim")
INTERVAL_S = 2.0
BACKGROUND_BATCH = 500

# ------------------------------------------------------------------------------------- world ---
def _payload(raw: bytes) -> tuple[dict, dict]:
    env = cbor2.loads(cbor2.loads(raw)["signed"])
    return env, cbor2.loads(env["payload"])


class StoreWorld:
    """:class:`sync.centre.replay.World` over the store: published bundles, hotlist, earlier outcomes.

    Bundles are looked up by the hash the entry recorded and must have the kind and version it names;
    parsed bundles are cached (a centre publishes a handful of versions).
    """

    def __init__(self, store) -> None:
        self.store = store
        self._policies: dict = {}
        self._catalogues: dict = {}
        self._hot: dict | None = None

    def _bundle(self, kind: str, version: int, digest: str):
        raw = self.store.bundle_by_hash(digest)
        if raw is None:
            return None
        env, payload = _payload(raw)
        if env["kind"] != kind or env["version"] != version:
            return None
        if env["base"] is not None:
            return None  # catalogues are replayed from full bundles only (a delta's hash names a delta)
        return payload

    def policy(self, version, hash):
        key = (version, hash)
        if key not in self._policies:
            p = self._bundle("policy", version, hash)
            try:
                self._policies[key] = parse_policy(p) if p is not None else None
            except InvalidInput:
                self._policies[key] = None
        return self._policies[key]

    def catalogue(self, version, hash):
        key = (version, hash)
        if key not in self._catalogues:
            c = self._bundle("catalogue", version, hash)
            try:
                self._catalogues[key] = parse_catalogue(c) if c is not None else None
            except InvalidInput:
                self._catalogues[key] = None
        return self._catalogues[key]

    def hot(self, card_id):
        # Read once per StoreWorld: a reconciliation pass (or an online request) sees one hotlist.
        if self._hot is None:
            self._hot = _hotlist(self.store.db)
        return self._hot.get(card_id)

    def outcome_of(self, device, seq):
        row = self.store.db.query_one("SELECT * FROM recon_outcomes WHERE device = ? AND seq = ?", (device, seq))
        return None if row is None else outcome_from_row(row)

    def online(self, device, req):
        row = self.store.db.query_one("SELECT * FROM recon_online WHERE device = ? AND req = ?", (device, req))
        if row is None:
            return None
        return {"accepted": {k: row["a_" + k] for k in ("medfee", "fund", "acct", "cash", "dedc")}}


def _hotlist(db) -> dict[str, rp.Hot]:
    """Every card on the current hotlist, with the first version (and its time) that listed it."""
    current: dict[str, rp.Hot] = {}
    for row in db.query("SELECT raw, created_ms FROM bundles WHERE kind = 'hotlist' ORDER BY version, id"):
        env, payload = _payload(bytes(row["raw"]))
        if env["base"] is None:
            cards = {c["card_id"]: c for c in payload.get("cards", [])}
            current = {cid: current.get(cid) or rp.Hot(env["version"], row["created_ms"], str(c.get("reason", "")))
                       for cid, c in cards.items()}
        else:
            for c in payload.get("upsert", []):
                current.setdefault(c["card_id"], rp.Hot(env["version"], row["created_ms"], str(c.get("reason", ""))))
            for cid in payload.get("delete", []):
                current.pop(cid, None)
    return current


# ------------------------------------------------------------------------------------- rows ---
def outcome_from_row(row: Mapping[str, Any]) -> rp.Outcome:
    return rp.Outcome(
        device=row["device"], seq=row["seq"], kind=row["kind"], psn_no=row["psn_no"], date=row["date"],
        time=row["time"], outcome=row["outcome"], codes=tuple(json.loads(row["codes"])), reason=row["reason"],
        differs=json.loads(row["differs"]),
        journaled={k: row["j_" + k] for k in ("medfee", "fund", "acct", "cash", "dedc")},
        accepted={k: row["a_" + k] for k in ("medfee", "fund", "acct", "cash", "dedc")},
        mode=row["mode"], credit=row["credit"], variance=row["variance"], debt=row["debt"])


def _write_claim(db, c: Mapping[str, Any], site: str) -> None:
    body = {k: c[k] for k in ("card", "visit", "items", "paid", "basis")}
    db.execute("INSERT INTO recon_claims (claim_no, device, seq, site, psn_no, certno, cause, detail, date, time, "
               "medfee, body, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending') ON CONFLICT DO NOTHING",
               (c["claim_no"], c["device"], c["seq"], site, c["psn_no"], c.get("certno"), c["cause"], c["detail"],
                c["date"], c["time"], c["paid"]["medfee_sumamt"], json.dumps(body, ensure_ascii=False, default=str)))


# ------------------------------------------------------------------------------------ driver ---
def _set_cursor(db, last_id: int) -> None:
    if db.execute("UPDATE recon_cursor SET last_id = ? WHERE name = 'entries' AND last_id < ?", (last_id, last_id)) == 0:
        db.execute("INSERT INTO recon_cursor (name, last_id) VALUES ('entries', ?) ON CONFLICT DO NOTHING", (last_id,))


def _sites(store) -> dict[str, str]:
    return {d.device: d.site for d in store.devices()}


def run_pending(store, *, now: int | None = None, batch: int = 2000, max_batches: int | None = None) -> dict:
    """Reconcile everything accepted and not yet reconciled; returns counts by outcome.

    Works in batches of ``batch`` entries (by arrival id), one transaction each: the batch's
    ledgers are loaded together, every person of the batch is replayed, and the outcome rows,
    ledgers and the cursor are written together. ``max_batches`` stops early (``counts["more"]``
    says whether entries are left); claims are auto-approved once nothing is left.
    """
    db = store.db
    now = L.now_ms() if now is None else now
    counts = {o: 0 for o in rp.OUTCOMES}
    world = StoreWorld(store)
    sites = _sites(store)
    done_batches = 0
    more = False
    while True:
        with db.transaction():
            # The cursor row is the reconciler's lock: a second centre process (PostgreSQL) waits here
            # instead of replaying the same batch; on SQLite BEGIN IMMEDIATE serialises already.
            cursor = db.scalar({"sqlite": "SELECT last_id FROM recon_cursor WHERE name = 'entries'",
                                "postgres": "SELECT last_id FROM recon_cursor WHERE name = 'entries' FOR UPDATE"})
            rows = store.accepted_entries(cursor or 0, batch)
            if rows:
                for o in _reconcile_batch(store, world, rows, sites, now):
                    counts[o.outcome] += 1
        done_batches += 1
        if len(rows) < batch:
            break
        if max_batches is not None and done_batches >= max_batches:
            more = True
            break
    from sync.centre import review
    counts["auto_approved"] = 0 if more else review.auto_approve(store, now=now)
    if max_batches is not None:
        counts["more"] = more
    return counts


def _chunks(seq: list, n: int = 500):
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


_OUTCOME_INSERT = (
    "INSERT INTO recon_outcomes (device, seq, entry_id, site, psn_no, kind, mode, date, time, outcome, codes, "
    "reason, differs, j_medfee, j_fund, j_acct, j_cash, j_dedc, a_medfee, a_fund, a_acct, a_cash, a_dedc, "
    "credit, variance, debt, decided_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
    "?, ?, ?, ?, ?) ON CONFLICT DO NOTHING")


def _outcome_row(o: rp.Outcome, entry_id: int, site: str, now: int) -> tuple:
    j, a = o.journaled, o.accepted
    return (o.device, o.seq, entry_id, site, o.psn_no, o.kind, o.mode, o.date, o.time, o.outcome,
            json.dumps(list(o.codes)), o.reason, json.dumps(o.differs, ensure_ascii=False, default=str),
            j["medfee"], j["fund"], j["acct"], j["cash"], j["dedc"], a["medfee"], a["fund"], a["acct"], a["cash"],
            a["dedc"], o.credit, o.variance, o.debt, now)


def _reconcile_batch(store, world, rows, sites, now) -> list[rp.Outcome]:
    db = store.db
    out: list[rp.Outcome] = []
    with db.transaction():
        done = {(r["device"], r["seq"]) for r in db.query(
            "SELECT device, seq FROM recon_outcomes WHERE entry_id BETWEEN ? AND ?", (rows[0]["id"], rows[-1]["id"]))}
        groups: dict[Any, list] = {}
        for r in rows:
            if r["kind"] not in KINDS or not isinstance(r["body"], dict) or (r["device"], r["seq"]) in done:
                continue
            psn = r["body"].get("psn_no") if isinstance(r["body"].get("psn_no"), str) else None
            if psn is None and r["kind"] == "claim":
                psn = L.psn_by_certno(db, r["body"].get("certno"))
            groups.setdefault(psn if psn is not None else ("unidentified", r["id"]), []).append(r)
        psns = [k for k in groups if isinstance(k, str)]
        ledgers = L.load_many(db, psns, lock=True)
        latest: dict[str, int] = {}
        for chunk in _chunks(psns):
            marks = ", ".join("?" * len(chunk))
            for r in db.query(f"SELECT psn_no, max(time) AS t FROM recon_outcomes WHERE psn_no IN ({marks}) "
                              "GROUP BY psn_no", chunk):
                latest[r["psn_no"]] = r["t"]
        outcome_rows, saves = [], []
        for key, members in groups.items():
            psn_no = key if isinstance(key, str) else None
            ids = {(r["device"], r["seq"]): r["id"] for r in members}
            events = [rp.Event(r["device"], r["seq"], r["kind"], r["time"], r["body"]) for r in members]
            before = ledgers.get(psn_no) if psn_no is not None else None
            after, outcomes = rp.replay_person(before, events, world, done=done)
            late = latest.get(psn_no) if psn_no is not None else None
            for o in outcomes:
                site = sites.get(o.device, o.device)
                if late is not None and o.time < late:
                    o = dataclasses.replace(o, reason=o.reason + " (arrived after later visits of this person were "
                                                                 "reconciled; replayed against the state as it is now)")
                outcome_rows.append(_outcome_row(o, ids[o.key], site, now))
                if o.opens_review and o.psn_no is not None:
                    L.record_review(db, o.psn_no, o.device, o.seq, o.codes[0], o.reason, now)
                if o.debt > 0 and o.psn_no is not None:
                    L.record_debt(db, o.psn_no, o.device, o.seq, o.debt, now)
                if o.claim is not None:
                    _write_claim(db, o.claim, site)
                if o.kind == "settlement" and o.outcome != "confirmed":
                    store.post_downlink(o.device, "outcome", o.downlink(), now=now)
                out.append(o)
            if after is not None and after != before:
                saves.append((after.balc, after.deductible_used, after.fund_paid, after.open_reviews, now, after.psn_no))
        db.executemany(_OUTCOME_INSERT, outcome_rows)
        db.executemany("UPDATE recon_persons SET balc = ?, deductible_used = ?, fund_paid = ?, open_reviews = ?, "
                       "updated_ms = ? WHERE psn_no = ?", saves)
        _set_cursor(db, rows[-1]["id"])
    return out


def outcomes(store, *, psn_no: str | None = None, device: str | None = None) -> list[rp.Outcome]:
    if psn_no is not None:
        rows = store.db.query("SELECT * FROM recon_outcomes WHERE psn_no = ? ORDER BY time, device, seq", (psn_no,))
    elif device is not None:
        rows = store.db.query("SELECT * FROM recon_outcomes WHERE device = ? ORDER BY seq", (device,))
    else:
        rows = store.db.query("SELECT * FROM recon_outcomes ORDER BY time, device, seq")
    return [outcome_from_row(r) for r in rows]


async def background(store, *, interval: float = INTERVAL_S, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Reconcile in the background of ``centre run``: every ``interval`` seconds, in a worker thread."""
    task_status.started()
    while True:
        more = False
        try:
            # One short batch per worker-thread call: between batches the database is free for the
            # upload and online-settlement handlers (a backlog of a million entries must not starve them).
            counts = await trio.to_thread.run_sync(lambda: run_pending(store, batch=BACKGROUND_BATCH, max_batches=1))
            more = counts.pop("more")
            if any(counts.values()):
                log.info("reconcile: %s", counts)
        except Exception as exc:  # a failing pass must not stop the centre; the next pass retries
            log.warning("reconcile: pass failed (%s: %s); retrying in %.0f s", type(exc).__name__, exc, interval)
        if more:
            await trio.sleep(0)
        else:
            await trio.sleep(interval)
