"""Reconciliation at the centre: the storage driver around the pure core :mod:`sync.centre.replay`.

``run_pending(store)`` works through the reconciliation queue. Ingest enqueues each accepted
settlement, cancel and claim in its own transaction, under a bucket of its person (crc32 of psn_no;
a claim with only a certno under its resolved person, else the certno). A worker claims a few
buckets (PostgreSQL: ``FOR UPDATE SKIP LOCKED``, so workers take disjoint buckets and one person is
never replayed on two workers at once), replays each person's entries in time order across all
sites, and writes in one transaction: outcome rows, the ledger, claims, reviews, debts, downlink
messages, and the removal of the entries from the queue. Nothing depends on commit order: an
entry is queued exactly when it is stored. The messages are published after the commit
(:meth:`Store.publish_feed`). Then :func:`recheck_claims` lets :func:`sync.centre.review.auto_approve`
approve the claims whose cause has cleared, in one elected worker at a time, for the persons marked
since the last re-check only: each batch marks its persons, and the operations that may clear a
cause mark theirs (arrears paid, a review closed; a published bundle marks every person).

Poison isolation: when a batch raises anything (an overflow, a value PostgreSQL refuses, a body the
contract refuses), it is redone person by person and then entry by entry, each in a savepoint; the
entry that still raises gets a quarantined outcome (``review``, code :data:`QUARANTINE_CODE`) and a
review item, and the rest of the batch proceeds.

Idempotent: an entry with an outcome row is never replayed again (the core skips keys in ``done``),
and its queue row goes in the same transaction as its outcome; a crash in between replays nothing
twice. Re-uploads never reach here (ingest stores an entry once).

Late arrivals: entries are replayed in time order within what has arrived. An entry that arrives
after later visits of the same person were reconciled is replayed against the state as it is now
(the outcome says so); the centre never rewrites outcomes already sent down to a counter.

``background(store, *, task_status)`` is started by ``centre run`` (sync.centre.server) and runs
``run_pending`` in a worker thread every few seconds, on its own connection.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
from typing import Any, Callable

import trio

from edge.settle import set_memo_size
from sync.centre import ectoken, payouts
from sync.centre import replay as rp
from sync.centre import review
from sync.centre.store import now_ms
from sync.centre.world import StoreWorld, outcome_from_row
from sync.errors import StoreError

log = logging.getLogger("sync.centre.reconcile")
KINDS = ("settlement", "cancel", "claim")
INTERVAL_S = 2.0
BACKGROUND_BATCH = 500

# ------------------------------------------------------------------------------------ driver ---
# Buckets a worker claims per batch: enough persons to fill a batch, few enough that several workers
# find free buckets in a backlog.
BUCKETS_PER_BATCH = 16
# The advisory-lock key of the one worker re-checking pending claims at a time.
ELECT_AUTO_APPROVE = 0x63656E7472650002
# Reviewers read the reason: Chinese. The code is what tests and reports match on.
QUARANTINE_CODE = "replay_failed"
# The engine's memo of split lines and rendered reasons, per memo: a city's backlog repeats the same
# prescriptions day after day (a counter keeps the engine's small default).
ENGINE_MEMO = 50_000
_CN = _dt.timezone(_dt.timedelta(hours=8))
# Called with ("enter" | "exit", psn_no or key) around each person's replay: tests watch overlap.
PROBE: Callable[[str, Any], None] | None = None


def run_pending(store, *, now: int | None = None, batch: int = 2000, max_batches: int | None = None,
                recheck: bool = True) -> dict:
    """Reconcile everything queued and not claimed by another worker; returns counts by outcome.

    Works in batches: one transaction claims up to :data:`BUCKETS_PER_BATCH` person buckets of the
    work queue (other workers skip them), replays up to ``batch`` of their entries, writes outcome
    rows, ledgers and downlink messages, and removes the entries from the queue; the messages are
    published after the commit. ``max_batches`` stops early (``counts["more"]`` says whether work was
    left); pending claims are re-checked (``recheck``) by one elected worker once nothing is left.
    """
    set_memo_size(ENGINE_MEMO)
    now = now_ms() if now is None else now
    counts = {o: 0 for o in rp.OUTCOMES}
    world = StoreWorld(store)
    sites: dict[str, str] = {}
    done_batches = 0
    more = False
    while True:
        with store.transaction():
            buckets = store.recon.claim_buckets(BUCKETS_PER_BATCH)
            rows = store.queued_entries(buckets, batch)
            if rows:
                missing = {r["device"] for r in rows} - sites.keys()
                if missing:  # only the batch's devices: a city has tens of thousands
                    sites.update(store.sites_of(missing))
                for o in _reconcile_rows(store, world, rows, sites, now):
                    counts[o.outcome] += 1
                payouts.paid_from(store, rows, now)   # payouts a counter paid: owed -> paid
                store.recon.dequeue([r["id"] for r in rows])
        store.publish_feed()
        done_batches += 1
        if len(rows) < batch and len(buckets) < BUCKETS_PER_BATCH:
            break  # every queued bucket fitted in this batch: nothing is left (but what others hold)
        if max_batches is not None and done_batches >= max_batches:
            more = True
            break
    counts["auto_approved"] = 0 if more or not recheck else recheck_claims(store, now=now)
    if max_batches is not None:
        counts["more"] = more
    return counts


def recheck_claims(store, *, now: int | None = None) -> int:
    """Re-check the pending claims of the persons marked since the last re-check (a reconciled batch,
    an operation that may clear a cause, a published bundle: every person), in one worker at a time
    (the others skip it); the marks taken go in the same transaction. Returns the claims approved."""
    now = now_ms() if now is None else now
    with store.transaction():
        if not store.recon.elect(ELECT_AUTO_APPROVE):
            return 0
        ids, persons = store.recon.rechecks()
        if not ids:
            return 0   # nothing touched: an idle centre re-checks nothing
        everyone = store.recon.EVERYONE in persons
        n = review.auto_approve(store, now=now, persons=None if everyone else persons)
        store.recon.drop_rechecks(ids)
    store.publish_feed()
    return n


# The codes column of the few code combinations outcomes carry, encoded once each (bounded: cleared when full).
_CODES_JSON: dict[tuple, str] = {}


def _codes_json(codes: tuple) -> str:
    if type(codes) is not tuple or not all(type(c) is str for c in codes):
        return json.dumps(list(codes))
    got = _CODES_JSON.get(codes)
    if got is None:
        if len(_CODES_JSON) >= 1000:
            _CODES_JSON.clear()
        got = _CODES_JSON[codes] = json.dumps(list(codes))
    return got


def _outcome_row(o: rp.Outcome, entry_id: int, site: str, now: int) -> tuple:
    j, a = o.journaled, o.accepted
    differs = o.differs
    return (o.device, o.seq, entry_id, site, o.psn_no, o.kind, o.mode, o.date, o.time, o.outcome,
            _codes_json(o.codes), o.reason,
            "{}" if type(differs) is dict and not differs else json.dumps(differs, ensure_ascii=False, default=str),
            j["medfee"], j["fund"], j["acct"], j["cash"], j["dedc"], a["medfee"], a["fund"], a["acct"], a["cash"],
            a["dedc"], o.credit, o.variance, o.debt, now)


def _group(store, rows, done) -> dict[Any, list]:
    groups: dict[Any, list] = {}
    for r in rows:
        if r["kind"] not in KINDS or not isinstance(r["body"], dict) or (r["device"], r["seq"]) in done:
            continue
        psn = r["body"].get("psn_no") if isinstance(r["body"].get("psn_no"), str) else None
        if psn is None and r["kind"] == "claim":
            psn = store.ledger.psn_by_certno(r["body"].get("certno"))
        if psn is None and r["kind"] == "claim":
            psn = ectoken.person_of(store, r["body"])   # an e-voucher read offline names its person (HIS 1101)
        groups.setdefault(psn if psn is not None else ("unidentified", r["id"]), []).append(r)
    return groups


def _reconcile_rows(store, world, rows, sites, now) -> list[rp.Outcome]:
    """The batch in one savepoint (the fast path); when anything in it raises, the batch again person
    by person, each in its own savepoint, and a person that still fails entry by entry: an entry whose
    replay or whose rows raise become a quarantined outcome (review, coded), and the rest proceed."""
    done = store.recon.decided_ids([r["id"] for r in rows])
    groups = _group(store, rows, done)
    world.prefetch(rows)
    try:
        with store.transaction():
            return _reconcile_groups(store, world, groups, sites, now, done)
    except Exception as exc:  # noqa: BLE001 - isolated below, entry by entry
        log.warning("reconcile: a batch of %d entries failed (%s: %s); isolating it person by person",
                    len(rows), type(exc).__name__, exc)
    out: list[rp.Outcome] = []
    for key, members in groups.items():
        try:
            with store.transaction():
                out += _reconcile_groups(store, world, {key: members}, sites, now, done)
            continue
        except Exception:  # noqa: BLE001 - the person's entries one at a time below
            pass
        for r in sorted(members, key=lambda r: (r["time"], r["device"], r["seq"])):
            try:
                with store.transaction():
                    out += _reconcile_groups(store, world, {key: [r]}, sites, now, done)
            except Exception as exc:  # noqa: BLE001 - this entry is the poison: quarantine it
                if not _is_poison(exc):
                    raise  # the database, not the entry (a lost connection, a missing column): retry later
                with store.transaction():
                    out.append(_quarantine(store, r, key if isinstance(key, str) else None, exc, sites, now))
    return out


def _is_poison(exc: BaseException) -> bool:
    """Does this failure belong to the entry (quarantine it) or to the centre (stop, retry the batch)?
    Any error of the replay itself is the entry's; of the store's errors, only a value the database
    refuses (PostgreSQL's data exceptions, class 22: a number out of range, bad text) is."""
    if not isinstance(exc, StoreError):
        return True
    cause = exc.__cause__
    sqlstate = getattr(cause, "sqlstate", None)
    return (isinstance(sqlstate, str) and sqlstate.startswith("22")) or isinstance(cause, OverflowError)


def _quarantine(store, r, psn_no: str | None, exc: BaseException, sites, now) -> rp.Outcome:
    log.warning("reconcile: %s seq %s quarantined: %s: %s", r["device"], r["seq"], type(exc).__name__, exc)
    zero = dict(rp.ZERO)
    day = _dt.datetime.fromtimestamp(r["time"] / 1000, tz=_CN).date().isoformat()
    reason = (f"对账无法重放此条目（{type(exc).__name__}），已隔离，等待审核人员处理；"
              "同一批次的其他条目照常对账")
    o = rp.Outcome(r["device"], r["seq"], r["kind"], psn_no, day, r["time"], "review", (QUARANTINE_CODE,),
                   reason, {}, zero, zero, opens_review=True)
    store.recon.add_outcomes([_outcome_row(o, r["id"], sites.get(o.device, o.device), now)])
    # Every quarantined entry reaches a reviewer, its person known or not (then the item is keyed by device and seq).
    store.ledger.record_review(psn_no, o.device, o.seq, QUARANTINE_CODE, reason, now)
    if o.kind == "settlement":
        store.post_downlink(o.device, "outcome", o.downlink(), now=now)
    return o


def _reconcile_groups(store, world, groups, sites, now, done) -> list[rp.Outcome]:
    out: list[rp.Outcome] = []
    recon, ledger = store.recon, store.ledger
    psns = [k for k in groups if isinstance(k, str)]
    ledgers = ledger.load_many(psns, lock=True)
    latest = recon.latest_times(psns)
    outcome_rows: list[tuple] = []
    saves: list[rp.Ledger] = []
    notices: list[tuple[str, str, Any]] = []   # downlink messages, posted in one statement, in order
    for key, members in groups.items():
        psn_no = key if isinstance(key, str) else None
        ids = {(r["device"], r["seq"]): r["id"] for r in members}
        entry_bodies = {(r["device"], r["seq"]): r["body"] for r in members}
        events = [rp.Event(r["device"], r["seq"], r["kind"], r["time"], r["body"]) for r in members]
        before = ledgers.get(psn_no) if psn_no is not None else None
        if PROBE is not None:
            PROBE("enter", key)
        try:
            after, outcomes = rp.replay_person(before, events, world, done=done)
        finally:
            if PROBE is not None:
                PROBE("exit", key)
        late = latest.get(psn_no) if psn_no is not None else None
        for o in outcomes:
            site = sites.get(o.device, o.device)
            if o.kind == "claim" and o.psn_no is None:
                o = ectoken.unresolved(store, o, entry_bodies.get(o.key))   # why the e-voucher placed nobody
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
            notice = payouts.after_outcome(store, o, entry_bodies.get(o.key), site, after, now)   # money owed
            if o.kind == "settlement" and o.outcome != "confirmed":
                notices.append((o.device, "outcome", notice))
            out.append(o)
        if after is not None and after != before:
            saves.append(after)
    recon.add_outcomes(outcome_rows)
    ledger.save_many(saves, now=now)
    recon.mark_recheck(psns, now)   # their pending claims (new ones included) are re-checked next
    store.post_downlinks(notices, now=now)
    return out


def outcomes(store, *, psn_no: str | None = None, device: str | None = None) -> list[rp.Outcome]:
    return [outcome_from_row(r) for r in store.recon.outcomes(psn_no=psn_no, device=device)]


async def background(store, *, interval: float = INTERVAL_S, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Reconcile in the background of ``centre run``: every ``interval`` seconds, in a worker thread,
    on a connection of its own (request handlers never wait on the one a batch holds)."""
    own = await trio.to_thread.run_sync(store.sibling)
    task_status.started()
    try:
        while True:
            more = False
            try:
                # One short batch per worker-thread call: between batches the handlers and other workers
                # get the database (a backlog of a million entries must not starve them).
                counts = await trio.to_thread.run_sync(lambda: run_pending(
                    own, batch=BACKGROUND_BATCH, max_batches=1, recheck=False))
                more = counts.pop("more")
                if not more:
                    # Only the persons marked since the last re-check (this worker's batches, other
                    # workers', operations): with nothing marked this is one read of an empty table.
                    counts["auto_approved"] = await trio.to_thread.run_sync(lambda: recheck_claims(own))
                if any(counts.values()):
                    log.info("reconcile: %s", counts)
            except Exception as exc:  # a failing pass must not stop the centre; the next pass retries
                log.warning("reconcile: pass failed (%s: %s); retrying in %.0f s", type(exc).__name__, exc, interval)
            if more:
                await trio.sleep(0)
            else:
                await trio.sleep(interval)
    finally:
        if own is not store:
            own.close()
