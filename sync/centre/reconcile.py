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
from typing import Any

import trio

from sync.centre import replay as rp
from sync.centre import review
from sync.centre.store import now_ms
from sync.centre.world import StoreWorld, outcome_from_row

log = logging.getLogger("sync.centre.reconcile")
KINDS = ("settlement", "cancel", "claim")
INTERVAL_S = 2.0
BACKGROUND_BATCH = 500

# ------------------------------------------------------------------------------------ driver ---

def _sites(store) -> dict[str, str]:
    return {d.device: d.site for d in store.devices()}


def run_pending(store, *, now: int | None = None, batch: int = 2000, max_batches: int | None = None) -> dict:
    """Reconcile everything accepted and not yet reconciled; returns counts by outcome.

    Works in batches of ``batch`` entries (by arrival id), one transaction each: the batch's
    ledgers are loaded together, every person of the batch is replayed, and the outcome rows,
    ledgers and the cursor are written together. ``max_batches`` stops early (``counts["more"]``
    says whether entries are left); claims are auto-approved once nothing is left.
    """
    now = now_ms() if now is None else now
    counts = {o: 0 for o in rp.OUTCOMES}
    world = StoreWorld(store)
    sites = _sites(store)
    done_batches = 0
    more = False
    while True:
        with store.transaction():
            # Locked: a second centre process waits here instead of replaying the same batch.
            rows = store.accepted_entries(store.recon.lock_cursor(), batch)
            if rows:
                for o in _reconcile_batch(store, world, rows, sites, now):
                    counts[o.outcome] += 1
        done_batches += 1
        if len(rows) < batch:
            break
        if max_batches is not None and done_batches >= max_batches:
            more = True
            break
    counts["auto_approved"] = 0 if more else review.auto_approve(store, now=now)
    if max_batches is not None:
        counts["more"] = more
    return counts




def _outcome_row(o: rp.Outcome, entry_id: int, site: str, now: int) -> tuple:
    j, a = o.journaled, o.accepted
    return (o.device, o.seq, entry_id, site, o.psn_no, o.kind, o.mode, o.date, o.time, o.outcome,
            json.dumps(list(o.codes)), o.reason, json.dumps(o.differs, ensure_ascii=False, default=str),
            j["medfee"], j["fund"], j["acct"], j["cash"], j["dedc"], a["medfee"], a["fund"], a["acct"], a["cash"],
            a["dedc"], o.credit, o.variance, o.debt, now)


def _reconcile_batch(store, world, rows, sites, now) -> list[rp.Outcome]:
    out: list[rp.Outcome] = []
    recon, ledger = store.recon, store.ledger
    with store.transaction():
        done = recon.decided_between(rows[0]["id"], rows[-1]["id"])
        groups: dict[Any, list] = {}
        for r in rows:
            if r["kind"] not in KINDS or not isinstance(r["body"], dict) or (r["device"], r["seq"]) in done:
                continue
            psn = r["body"].get("psn_no") if isinstance(r["body"].get("psn_no"), str) else None
            if psn is None and r["kind"] == "claim":
                psn = ledger.psn_by_certno(r["body"].get("certno"))
            groups.setdefault(psn if psn is not None else ("unidentified", r["id"]), []).append(r)
        psns = [k for k in groups if isinstance(k, str)]
        ledgers = ledger.load_many(psns, lock=True)
        latest = recon.latest_times(psns)
        outcome_rows: list[tuple] = []
        saves: list[rp.Ledger] = []
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
                    ledger.record_review(o.psn_no, o.device, o.seq, o.codes[0], o.reason, now)
                if o.debt > 0 and o.psn_no is not None:
                    ledger.record_debt(o.psn_no, o.device, o.seq, o.debt, now)
                if o.claim is not None:
                    recon.add_claim(o.claim, site)
                if o.kind == "settlement" and o.outcome != "confirmed":
                    store.post_downlink(o.device, "outcome", o.downlink(), now=now)
                out.append(o)
            if after is not None and after != before:
                saves.append(after)
        recon.add_outcomes(outcome_rows)
        ledger.save_many(saves, now=now)
        recon.set_cursor(rows[-1]["id"])
    return out


def outcomes(store, *, psn_no: str | None = None, device: str | None = None) -> list[rp.Outcome]:
    return [outcome_from_row(r) for r in store.recon.outcomes(psn_no=psn_no, device=device)]


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
