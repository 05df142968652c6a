"""The counter service: the trio driver of one visit, from card to durable journal entry. No HTTP here
(see api.py); no decisions here either: they are :mod:`edge.counter.visit` (a sans-I/O core) and
:mod:`edge.offline` (the decision table).

:meth:`Counter.settle` gathers what the card and the cache say into a :class:`Prepared` in a worker
thread (SQLite is never queried on the event loop), hands it to a :class:`VisitCore` and does what the
core asks until it gives a final answer::

    Identified -> AskCentre (bounded by online_timeout) / RunEngine / ConfirmCard / Journal
               -> Done (receipt) | Refuse (journal the refusal, 409) | FullPayment (409, use claim())
                  | Reject (the centre's engine said no) | Abandon (card pulled, wrong PIN: nothing journaled)

``presettle`` runs identify, decide, engine and fund check without the card check, the centre call and
the journal. An entry's local effects (person state, offline counters: a cache write) are applied in
seq order after the durable append by a background drainer; the answer waits for them only briefly, so
a bundle apply holding the cache's writer holds no visit, and the same card's next visit (or its card
status) waits for them, so the offline limits always count it.

Visits are serialised by one lock (one counter, one journal): a double submit waits for the
first and then finds its ``req`` in the journal, so it answers with the same entry.

Nothing here reads a clock directly: :class:`Clock` is injected (tests use a fixed one).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

import trio

from edge import offline
from edge.settle import InvalidInput, Item, SettlementError, Visit, parse_items, round_fen, settle
from edge.settle.money import mul

from sync import bodies

from . import clock as timefloor
from . import visit as core
from .errors import (
    BadRequest, CardProblem, CounterError, FullPaymentRequired, JournalUnavailable, NotFullPayment, NotReady,
    Refused,
)
from .online import CentreRefusal, CentreUnreachable, Connectivity
from .operators import require as require_role
from .requests import VisitRequest, parse_visit_request
from .visit import AMOUNT_KEYS, ENGINE_ZH, ENGINE_ZH_DEFAULT, Prepared

log = logging.getLogger("edge.counter")
EFFECTS_RETRY_S = 120.0   # how long an entry's local effects wait for a busy cache before offline fails closed
T = TypeVar("T")

class Clock:
    """Wall and monotonic clocks and the boot id (a monotonic reading is only comparable within a boot)."""

    def __init__(self, tz: dt.tzinfo | None = None) -> None:
        self.tz = tz or dt.timezone(dt.timedelta(hours=8))  # China Standard Time, no DST
        try:
            self.boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        except OSError:
            self.boot_id = "unknown"

    def wall_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def mono_ns(self) -> int:
        return time.monotonic_ns()

    def today(self) -> dt.date:
        return dt.datetime.fromtimestamp(self.wall_ms() / 1000, self.tz).date()


@dataclass(frozen=True)
class Now:
    wall_ms: int
    mono_ns: int
    today: dt.date


@dataclass
class Settings:
    level: str = "village"               # institution level the policy rules are keyed by
    online_timeout: float = 2.0          # seconds to wait for the centre before settling offline
    retry_online_after: float = 30.0     # after a failure, skip the centre for this long
    effects_wait: float = 0.005          # how long an answer waits for its entry's local effects
    region: str | None = None            # the site's region code (6 chars); a card from another is 异地


def _medfee(items: list[Item]) -> int:
    return core.medfee(items)


def _journal_zh(fault: Any, what: str) -> str:
    """What the clerk reads when the journal refuses: ours, then the journal's own Chinese words."""
    zh = fault.get("zh") if isinstance(fault, Mapping) else getattr(fault, "zh", None)
    return f"日志无法{what}：" + (zh or "请联系技术人员")


async def _off_loop(fn: Callable[..., T], *args: Any) -> T:
    """Run a cache (SQLite) read in a worker thread: the event loop never waits on the database."""
    return await trio.to_thread.run_sync(fn, *args)


class Counter:
    def __init__(self, *, cache, journal, cards, clock: Clock | None = None, settings: Settings | None = None,
                 centre=None) -> None:
        self.cache = cache
        self.journal = journal
        self.cards = cards
        self.clock = clock or Clock()
        self.settings = settings or Settings()
        self.centre = centre
        self.link = Connectivity()
        self.journal_fault: dict | None = None
        self._lock = trio.Lock()
        self._full_payments: dict[str, offline.Decision] = {}
        self._effects: list[tuple[Any, set, trio.Event]] = []   # journaled, local effects not yet applied
        self._draining = False
        self._effects_stuck = False     # the drainer's last try found the cache busy (another writer holds it)
        self._receipts: dict[int, dict] = {}   # receipts built in the append's hop, by seq (a few)
        self._effects_failed = False    # an entry's effects could not be applied: offline counters unknown
        self._floor: timefloor.Floor | None = None   # trusted time floor (edge.counter.clock), loaded at first use
        self._chain: timefloor.Floor | None = None   # the last entry's time: entries are never timed below it
        self._centre: timefloor.CentreSeen | None = None   # the centre's clock, last seen (loaded with the floor)
        self._centre_saved: timefloor.CentreSeen | None = None
        self._centre_saving = False
        self.on_journaled: Callable[[], None] | None = None   # the daemon sets uplink.wake: send at once

    # -- facts ----------------------------------------------------------------------------------
    def cache_age_ms(self, now: Now | None = None) -> int | None:
        """Age of the cache (a cache read: call it in a worker thread, with ``now`` read on the loop)."""
        return self._age(self.cache.refreshed(), now or self.now())

    def _age(self, r, now: Now) -> int | None:
        if r is None:
            return None
        return offline.cache_age_ms(now_wall_ms=now.wall_ms, refreshed_wall_ms=r.wall_ms,
                                    now_mono_ns=now.mono_ns, refreshed_mono_ns=r.mono_ns,
                                    same_boot=r.boot_id == self.clock.boot_id)

    def time_floor(self) -> timefloor.Floor | None:
        """The trusted time floor (edge.counter.clock): the last journal entry's time, the last centre time
        seen and the newest bundle's issue time (a journal and cache read at first use; then raised by each
        append and each centre answer within the boot). The last entry counts only if it was journaled after
        a saved centre time the wall clock agreed with (the centre's time wins over a clock that was ahead)."""
        if self._floor is None:
            from edge.journal import JournalError
            try:
                seq, _ = self.journal.head()
                last = self.journal.get(seq) if seq else None
            except JournalError:
                return None       # settling stops on the journal's own error; nothing to measure against
            created = [v.get("created") for v in self.cache.versions().values()]
            saved = self._saved_centre()
            boot = self.clock.boot_id
            self._chain = timefloor.floor_of(last.time if last else None)
            outranked = saved is not None and saved.agreed and last is not None and last.seq <= saved.head_seq
            floor = timefloor.floor_of(None if outranked or last is None else last.time,
                                       *[c for c in created if isinstance(c, int) and not isinstance(c, bool)])
            refreshed = self.cache.refreshed()
            if refreshed is not None:     # the floor without the saved centre time (deleted, or never saved)
                mine = timefloor.refresh_floor(refreshed.wall_ms, refreshed.mono_ns, refreshed.boot_id, boot)
                floor = timefloor.raise_floor(floor, mine.wall_ms, mine.mono_ns)
            if saved is not None:
                mine = saved.floor(boot)
                floor = timefloor.raise_floor(floor, mine.wall_ms, mine.mono_ns)
                if self._centre is None:
                    self._centre = saved
            if self._centre is not None and self._centre is not saved:   # seen before the floor was loaded
                floor = timefloor.after_centre_seen(floor, self._centre, self.clock.wall_ms(), self.clock.mono_ns(),
                                                    boot)
            self._floor = floor
        return self._floor

    def _saved_centre(self) -> timefloor.CentreSeen | None:
        try:
            raw = self.cache.centre_seen()
            return timefloor.CentreSeen.from_dict(raw) if raw is not None else None
        except (KeyError, TypeError, ValueError):
            return None

    def clock_fault(self, now: Now) -> timefloor.ClockFault | None:
        floor = self.time_floor()
        fault = timefloor.fault(now.wall_ms, floor, now.mono_ns, centre=self._centre, boot_id=self.clock.boot_id)
        refused = getattr(self.centre, "skew_refused", None)
        if fault is None and isinstance(refused, tuple):
            # The centre's own check outranks a Date header that agreed, until the wall clock is moved (set
            # right: it jumped against the monotonic clock) or the centre accepts a signed request again.
            moved = (now.wall_ms - refused[0]) - (now.mono_ns - refused[1]) // 1_000_000
            if abs(moved) <= 60_000:
                return timefloor.refused_by_centre()
        return fault

    async def entry_clock(self) -> tuple[int, int, int]:
        """(the time to journal an entry at, the wall clock now, the monotonic clock now). Entry times never
        decrease within the chain: a clock set back journals at the floor, or at the last entry's time
        (above the floor after a clock that was ahead was corrected). Call it and append under ``_lock``."""
        if self._floor is None:
            await _off_loop(self.time_floor)      # once per boot: the chain's last time, before the first append
        now_wall, mono = self.clock.wall_ms(), self.clock.mono_ns()
        now_wall = self.trusted_wall(now_wall, mono)
        # The floor lifts an entry's time at most as far ahead of the wall clock as the centre itself accepts: a
        # floor far ahead may come from a Date header a proxy forged (or a centre clock that was wrong), and an
        # entry timed there would hold every later entry of the chain at that time (past 2100: bad_time).
        lifted = min(timefloor.entry_time(now_wall, self._floor, mono), now_wall + timefloor.MAX_CENTRE_SKEW_MS)
        when = max(lifted, timefloor.entry_time(now_wall, self._chain, mono))
        return when, now_wall, mono

    def trusted_wall(self, now_wall: int, mono: int | None) -> int:
        """The wall clock, or the earlier of it and the centre's clock now when they disagree (the centre was seen
        in this boot: the monotonic clock carries its time). An entry's time and a visit's date come from it.
        Neither clock is trusted alone (the PC's can be set, a proxy can forge the centre's Date header), so
        the earlier one is taken: a PC clock a year ahead neither dates a full payment next year (next year's
        totals) nor times the entry there (every later entry of the chain would keep that time), and a forged
        Date far ahead does neither either. Entry times still never go below the chain."""
        seen = self._centre
        centre = seen.centre_now(mono, self.clock.boot_id) if seen is not None else None
        if centre is not None and abs(centre - now_wall) > timefloor.MAX_CENTRE_SKEW_MS:
            return min(centre, now_wall)
        return now_wall

    def journaled_at(self, entry_time: int, now_wall: int, mono: int) -> None:
        """An entry was journaled at ``entry_time``: the chain moves to it (and stays: it only keeps times from
        going back); the floor moves with the wall clock (an entry timed at the chain proves no time)."""
        self._chain = timefloor.raise_floor(self._chain, entry_time, None)
        self._floor = timefloor.raise_floor(self._floor, now_wall, mono)

    def saw_centre_time(self, centre_ms: int) -> None:
        """A centre answer carried the centre's clock (its Date header): the last centre time seen. Raises
        the floor (or lowers a floor from a clock that was ahead, when the wall clock agrees with the
        centre's); saved in the cache at most once a minute (or when the agreement changes), off the loop."""
        wall, mono = self.clock.wall_ms(), self.clock.mono_ns()
        seen = timefloor.CentreSeen(centre_ms, wall, mono, self.clock.boot_id)
        self._centre = seen
        if self._floor is not None:
            self._floor = timefloor.after_centre_seen(self._floor, seen, wall, mono, self.clock.boot_id)
        last = self._centre_saved
        due = last is None or last.agreed != seen.agreed or mono - last.mono_ns >= 60 * 1_000_000_000
        if due and not self._centre_saving:
            self._centre_saving = True
            trio.lowlevel.spawn_system_task(self._save_centre, seen, name="counter centre time")

    async def _save_centre(self, seen: timefloor.CentreSeen) -> None:
        """Save ``seen`` with the journal head it outranks (best effort: the next answer tries again)."""
        def save() -> None:
            head, _ = self.journal.head()
            self.cache.save_centre_seen(dataclasses.replace(seen, head_seq=head).to_dict())
        try:
            await trio.to_thread.run_sync(save)
            self._centre_saved = seen
        except Exception:
            log.warning("the centre's time could not be saved; kept in memory", exc_info=True,
                        extra={"event": "centre_time_unsaved"})
        finally:
            self._centre_saving = False

    def now(self) -> Now:
        """The clocks, read once (on the event loop: a test clock may be trio's own)."""
        return Now(self.clock.wall_ms(), self.clock.mono_ns(), self.clock.today())

    def mark_refreshed(self) -> None:
        self.cache.mark_refreshed(wall_ms=self.clock.wall_ms(), mono_ns=self.clock.mono_ns(),
                                  boot_id=self.clock.boot_id)

    async def mark_refreshed_at(self, wall_ms: int) -> None:
        """The cache was current with the centre at ``wall_ms`` (a sync round ended then)."""
        now_wall, now_mono = self.clock.wall_ms(), self.clock.mono_ns()
        mono = now_mono - max(0, now_wall - wall_ms) * 1_000_000
        await trio.to_thread.run_sync(lambda: self.cache.mark_refreshed(wall_ms=wall_ms, mono_ns=mono,
                                                                        boot_id=self.clock.boot_id))

    def _basis(self, person_known: bool) -> dict:
        v = self.cache.versions()
        if "policy" not in v or "catalogue" not in v:
            raise NotReady("no policy or catalogue in the cache yet: connect to the centre once and wait for the "
                           "first download", zh="本机尚未下载医保目录和政策，请联网等待首次同步后再结算")
        pol = self.cache.policy()
        basis = {"catalogue": {"version": v["catalogue"]["version"], "hash": v["catalogue"]["hash"]},
                 "policy": {"version": v["policy"]["version"], "hash": v["policy"]["hash"],
                            "policy_version": pol.version},
                 "persons": {"version": v["persons"]["version"]} if person_known and "persons" in v else None,
                 "hotlist": {"version": v["hotlist"]["version"]} if "hotlist" in v else None}
        return basis

    def _identity(self, r: VisitRequest):
        if r.keyed_in is not None:
            from edge.card import CardError, keyed_in_identity
            try:
                return None, keyed_in_identity(*r.keyed_in)
            except CardError as exc:
                raise BadRequest(exc.message, zh=exc.zh, code="invalid_input",
                                 field=f"keyed_in.{getattr(exc, 'field', 'certno')}") from exc
        reader, identity = self.cards.present(r.reader)
        if r.card_id is not None and identity.card_id != r.card_id:
            raise CardProblem("a different card is now in the reader: start the visit again",
                              zh="读卡器中的卡已更换，请重新读卡", code="card_changed")
        return reader, identity

    def _items(self, r: VisitRequest) -> tuple[list[Item], dict]:
        """The visit's items, and the catalogue entries of their codes (the engine's, read once per visit)."""
        cat = self.cache.catalogue_for(it["code"] for it in r.items)
        out = []
        for i, it in enumerate(r.items):
            if it["code"] not in cat:
                raise BadRequest(f"item {it['code']} is not in the catalogue: search for it again or refresh the "
                                 "catalogue", zh=f"目录中没有编码为 {it['code']} 的项目，请重新搜索", code="unknown_item",
                                 field=f"items[{i}].med_list_codg")
            pric = it["pric"]
            if pric is None:
                pric = (self.cache.item(it["code"]) or {}).get("pric")
                if pric is None:
                    raise BadRequest(f"items[{i}] has no price and the catalogue gives none: enter the price in fen",
                                     zh="请填写单价", code="invalid_input", field=f"items[{i}].pric")
            out.append({"code": it["code"], "cnt": it["cnt"], "pric": pric, "name": cat[it["code"]].name})
        try:
            return parse_items(out), cat
        except InvalidInput as exc:
            raise BadRequest(exc.message, zh="项目数据不正确", code="invalid_input", field=exc.field) from exc

    def prepare(self, data: Any, *, need_req: bool, now: Now | None = None, pending: tuple = ()) -> Prepared:
        """Identify and gather the facts of a visit (cache reads: call it in a worker thread, with ``now``
        and ``pending`` (:meth:`pending_entries`) read on the loop)."""
        now = now or self.now()
        r = parse_visit_request(data, need_req=need_req)
        reader, identity = self._identity(r)
        person = self.cache.person_for_card(identity.card_id, identity.ssn, pending)
        basis = self._basis(person is not None)
        policy = self.cache.policy()
        items, catalogue = self._items(r)
        today = now.today
        trusted = self.trusted_wall(now.wall_ms, now.mono_ns)
        if trusted != now.wall_ms:      # the PC clock is off from the centre's: the visit is dated by the centre's
            today = dt.datetime.fromtimestamp(trusted / 1000, getattr(self.clock, "tz", None) or Clock().tz).date()
        if r.med_type not in policy.med_types:
            raise BadRequest(f"med_type {r.med_type} is unknown; use one of {', '.join(sorted(policy.med_types))}",
                             zh="就诊类型不正确", code="invalid_input", field="med_type")
        # Keyed-in cards have no PIN to verify, so the account cannot pay (documented in docs/counter.md).
        acct = r.acct_used_flag and not identity.keyed_in
        visit = Visit(r.med_type, self.settings.level, today, acct, r.chronic_code)
        # Per person across cards (the ID number finds another region's card of the same person).
        counters = (self.cache.offline_use(identity.card_id, identity.ssn, pending)
                    if identity.card_id and not self._effects_failed else None)
        facts = offline.Facts(
            centre_reachable=self.centre is not None and self.link.should_try(
                now.wall_ms, int(self.settings.retry_online_after * 1000)),
            card_hotlisted=self.cache.hotlisted(identity.card_id) is not None,
            card_expired=identity.expires is not None and identity.expires < today,
            keyed_in=identity.keyed_in, observation=r.observation,
            person_known=person is not None,
            person_status=person.state.status if person else None,
            pending_review=bool(person and person.state.pending_review),
            limits=policy.offline, cache_age_ms=self.cache_age_ms(now),
            offline_visits=counters[0] if counters else None,
            offline_acct_used=counters[1] if counters else None)
        site = self.settings.region
        if site and identity.region and identity.region != site:
            facts = dataclasses.replace(facts, other_region=True, card_region=identity.region, region_filed=bool(
                person and offline.region_filed(person.snapshot, site, today)))
        fault = self.clock_fault(now)
        if fault is not None:
            facts = dataclasses.replace(facts, clock_fault=fault.code, clock_zh=fault.zh)
        return Prepared(r, reader, identity, person, items, visit, facts, offline.decide(facts), basis, policy,
                        catalogue)

    async def _prepare(self, data: Any, *, need_req: bool) -> Prepared:
        return (await self._prepare_quote(data, need_req=need_req, quote=False))[0]

    def _prepared(self, data: Any, need_req: bool, quote: bool, now: Now, pending: tuple) -> tuple[Prepared, Any]:
        """:meth:`prepare` (in a worker thread); with ``quote``, an offline visit's engine result from the same
        hop (the core asks for it next, with the same allowance: one thread hop fewer per visit)."""
        p = self.prepare(data, need_req=need_req, now=now, pending=pending)
        d = p.decision
        ahead = quote and d.mode == offline.OFFLINE and p.person is not None
        return p, (self._engine(p, d.acct_limit) if ahead else None)

    async def _prepare_quote(self, data: Any, *, need_req: bool, quote: bool) -> tuple[Prepared, Any]:
        """:meth:`_prepared` in a worker thread, with ``now`` and the pending entries read on the loop."""
        # An earlier visit of this card or person may be journaled but not yet in the cache (a bundle apply
        # holds the writer): the reads fold it in from the pending list, so the visit neither waits for
        # the apply nor lets offline limits miss that visit.
        return await _off_loop(self._prepared, data, need_req, quote, self.now(), self.pending_entries())

    async def _existing_or_prepare(self, data: Any, *, quote: bool) -> tuple[dict | None, Prepared | None, Any]:
        """(the answer for the entry journaled before with this ``req``, None, None) or (None, prepared, quote):
        the journal lookup of ``req`` and :meth:`_prepare_quote` in one worker-thread hop. The journal is asked
        first: a repeated submit answers with its entry whatever the card and cache say now."""
        req = _caller_req(data)
        from edge.journal import JournalError

        def work(now: Now, pending: tuple):
            if req is not None:
                try:
                    entry = self.journal.find_by_req(req)
                except JournalError as exc:
                    return exc, None, None
                if entry is not None:
                    return entry, None, None
            return (None, *self._prepared(data, True, quote, now, pending))

        found, p, q = await _off_loop(work, self.now(), self.pending_entries())
        if isinstance(found, JournalError):
            raise self._unreadable(found) from found
        if found is not None:
            assert req is not None
            return await self._existing_entry(data, req, found), None, None
        return None, p, q

    def _engine(self, p: Prepared, acct_limit: int | None):
        """Run the engine on the cached catalogue (reads the cache: call it in a worker thread)."""
        if p.person is None:
            return None
        cat = p.catalogue if p.catalogue is not None else self.cache.catalogue_for(it.code for it in p.items)
        try:
            return settle(p.policy, cat, p.person.state, p.visit, p.items, acct_limit=acct_limit)
        except SettlementError as exc:
            raise BadRequest(exc.message, zh=ENGINE_ZH.get(exc.code, ENGINE_ZH_DEFAULT), code=exc.code,
                             field=exc.field) from exc

    def _offline_acct_limit(self, d: offline.Decision) -> int | None:
        return d.acct_limit if d.mode == offline.OFFLINE else None

    # -- API operations ---------------------------------------------------------------------------
    def card_status(self, reader: str | None = None, today: dt.date | None = None, pending: tuple = ()) -> dict:
        """The card in the reader and what the cache says of it (cache reads: prefer read_card_status)."""
        out: dict[str, Any] = {"readers": self.cards.status(), "simulated": self.cards.simulated}
        try:
            reader, identity = self.cards.present(reader)
        except CardProblem as exc:
            out.update(present=False, error=exc.to_dict())
            return out
        person = self.cache.person_for_card(identity.card_id, identity.ssn, pending)
        today = today or self.clock.today()
        out.update(present=True, reader=reader, card=_card_view(identity),
                   hotlisted=self.cache.hotlisted(identity.card_id),
                   expired=identity.expires is not None and identity.expires < today,
                   person=_person_view(person),
                   notices=self.cache.notices_for(person.psn_no) if person else [])
        return out

    async def read_card_status(self, reader: str | None = None) -> dict:
        """:meth:`card_status` in a worker thread, with the local effects of this card's visits that are
        journaled but not yet in the cache folded in (never waiting for a bundle apply)."""
        return await _off_loop(self.card_status, reader, self.clock.today(), self.pending_entries())

    def search(self, q: str, limit: int = 20) -> list[dict]:
        """Catalogue search (a cache read: the API calls it in a worker thread)."""
        return [_item_view(it) for it in self.cache.search(q, limit)]

    async def presettle(self, data: Any, *, operator: Any = None) -> dict:
        require_role(operator, "settle")
        p = await self._prepare(data, need_req=False)
        d = p.decision
        quote = None
        if d.mode in (offline.ONLINE, offline.OFFLINE) and p.person is not None:
            result = await _off_loop(self._engine, p, self._offline_acct_limit(d))
            d = offline.check_fund(d, result.hifp_pay, p.policy.offline)
            if d.mode != offline.FULL_PAYMENT:
                quote = result
        return self._answer(p, d, quote, estimate=d.mode == offline.ONLINE)

    def _answer(self, p: Prepared, d: offline.Decision, result, *, estimate: bool = False) -> dict:
        out: dict[str, Any] = {"mode": d.mode, "decision": d.to_dict(), "estimate": estimate,
                               "card": _card_view(p.identity), "person": _person_view(p.person),
                               "needs_pin": p.visit.acct_used_flag and d.mode in (offline.ONLINE, offline.OFFLINE)}
        if result is not None:
            r = result if isinstance(result, dict) else result.to_dict()
            out["setlinfo"] = {k: r[k] for k in (*AMOUNT_KEYS, "fund_pay_sumamt", "psn_part_amt", "balc")}
            out["lines"] = r["lines"]
            out["reasons"] = r["reasons"]
        else:
            medfee = _medfee(p.items)
            out["setlinfo"] = {"medfee_sumamt": medfee, "fund_pay_sumamt": 0, "hifp_pay": 0, "acct_pay": 0,
                               "psn_cash_pay": medfee}
            out["lines"] = [{"code": it.code, "name": it.name, "cnt": str(it.cnt), "pric": it.pric,
                             "det_item_fee_sumamt": round_fen(mul(it.cnt, it.pric))} for it in p.items]
            out["reasons"] = []
        return out

    async def settle(self, data: Any, *, operator: Any = None) -> dict:
        """Drive one :class:`~edge.counter.visit.VisitCore` to its final action. ``operator`` (None: the
        system itself) needs the ``settle`` role and is written on the entry."""
        require_role(operator, "settle")
        async with self._lock:
            self._check_journal()
            done, p, quote = await self._existing_or_prepare(data, quote=True)
            if done is not None:
                return done
            assert p is not None
            visit = core.VisitCore()
            action = visit.handle(core.Identified(p))
            card_error: CardProblem | None = None
            while not action.final:
                if isinstance(action, core.ConfirmCard):
                    event, card_error = await self._confirm(action)
                elif isinstance(action, core.AskCentre):
                    event = await self._ask_centre(action.request)
                elif isinstance(action, core.LookUp):
                    event = await self._look_up(action.request)
                elif isinstance(action, core.RunEngine):
                    if quote is None or action.acct_limit != p.decision.acct_limit:
                        quote = await _off_loop(self._engine, p, action.acct_limit)
                    event, quote = core.Settled(quote), None
                elif isinstance(action, core.Journal):
                    event = core.Journaled(await self._append_entry(action.kind, _by(action.kind, action.body, operator),
                                                                    receipt=True))
                else:
                    raise AssertionError(f"the visit asked for an unknown action {action!r}")
                action = visit.handle(event)
            return await self._finish(p, action, card_error)

    async def _finish(self, p: Prepared, action: core.Action, card_error: CardProblem | None) -> dict:
        """Turn the core's final action into the API's answer (a receipt, or an error to raise)."""
        if isinstance(action, core.Done):
            return await self._receipt_of(action.entry)
        if isinstance(action, core.Refuse):
            await self._journal_refusal(action.body)
            if card_error is not None:       # PIN blocked: the card's own error, after the refusal is journaled
                raise card_error
            raise Refused(action.decision.detail, zh=action.decision.zh, code=action.decision.cause)
        if isinstance(action, core.FullPayment):
            raise self._full_payment(p, action.decision)
        if isinstance(action, core.Reject):
            if action.code == "req_conflict":
                raise _req_conflict(p.req.req, action.detail or {})
            raise BadRequest(action.message, zh=action.zh, code=action.code)
        if isinstance(action, core.Abandon):
            if card_error is not None:
                raise card_error
            raise CardProblem("the account pays: the patient must enter the card PIN", zh="使用个人账户支付，请输入卡密码",
                              code=action.code)
        raise AssertionError(f"the visit ended with an unknown action {action!r}")

    async def _confirm(self, a: core.ConfirmCard) -> tuple[core.Event, CardProblem | None]:
        """The card is still there (and the PIN right): the core's event, and the card's error if any."""
        try:
            await self.cards.confirm(a.reader, a.card_id, a.pin)
        except CardProblem as exc:
            if exc.code == "wrong_pin":
                return core.PinWrong(exc.detail.get("tries_left")), exc
            if exc.code == "pin_blocked":
                return core.PinBlocked(), exc
            return core.CardPulled(exc.code), exc
        return core.CardConfirmed(), None

    async def _ask_centre(self, request: dict) -> core.Event:
        """Ask the centre, bounded by ``online_timeout``; keep the link state for the banner."""
        if self.centre is None:
            return core.CentreFailed("no centre configured", sent=False)
        answer = None
        try:
            with trio.move_on_after(self.settings.online_timeout):
                answer = await self.centre.settle(request)
        except CentreUnreachable as exc:
            self.link.failed(self.clock.wall_ms(), str(exc))
            log.info("centre unreachable, settling offline", extra={"event": "online_fallback", "why": str(exc)})
            return core.CentreFailed(str(exc))
        except CentreRefusal as exc:
            self.link.ok(self.clock.wall_ms())
            if exc.code == "req_abandoned":
                # An earlier lookup of this req was told "not settled" (sync.centre.online): it can never
                # settle online now, so the visit goes the offline way, as it did then.
                return core.CentreFailed("req given up online earlier", sent=False)
            return core.CentreRefused(exc.code, exc.message, exc.detail)
        if answer is None:
            self.link.failed(self.clock.wall_ms(), "timeout")
            log.info("centre silent, asking whether the req settled", extra={"event": "online_timeout"})
            return core.CentreFailed("timeout")
        self.link.ok(self.clock.wall_ms())
        return core.CentreAnswered(answer)

    async def _look_up(self, request: dict) -> core.Event:
        """After a failed online attempt: did the centre settle this req anyway (answer late or lost)?
        Bounded by ``online_timeout`` too; if the lookup fails, the visit falls back offline and
        reconciliation recognises the req if the centre had settled it after all."""
        lookup = getattr(self.centre, "lookup", None)
        if lookup is None:
            return core.CentreFailed("the centre client cannot look a req up", sent=False)
        found = None
        try:
            with trio.move_on_after(self.settings.online_timeout):
                found = await lookup(request)
        except CentreUnreachable as exc:
            log.info("req lookup failed, settling offline", extra={"event": "online_fallback", "why": str(exc)})
            return core.CentreFailed(str(exc))
        except CentreRefusal as exc:
            return core.CentreRefused(exc.code, exc.message, exc.detail)
        if found is None:
            log.info("the centre did not settle this req, settling offline", extra={"event": "online_fallback"})
            return core.CentreFailed("not settled at the centre")
        self.link.ok(self.clock.wall_ms())
        log.info("the centre had settled this req: journaling its answer", extra={"event": "online_late_answer"})
        return core.CentreAnswered(found)

    async def claim(self, data: Any, *, operator: Any = None) -> dict:
        """Journal a full-payment claim (the patient pays everything; the fund part is reviewed later).

        Allowed when settle answered full_payment_required for this ``req`` (the centre's reasons count,
        e.g. arrears known only there), or when the local decision is full payment (offline limits,
        emergency observation...). A visit that settles normally is refused (not_full_payment).
        ``operator`` needs the ``settle`` role and is written on the entry.
        """
        require_role(operator, "settle")
        async with self._lock:
            self._check_journal()
            done, p, _ = await self._existing_or_prepare(data, quote=False)
            if done is not None:
                return done
            assert p is not None
            d = self._full_payments.get(p.req.req or "") or p.decision
            if d.mode == offline.REFUSED:
                await self._journal_refusal(core.refusal_body(p, d))
                raise Refused(d.detail, zh=d.zh, code=d.cause)
            if d.mode == offline.OFFLINE:
                result = await _off_loop(self._engine, p, d.acct_limit)
                d = offline.check_fund(d, result.hifp_pay, p.policy.offline)
            if d.mode != offline.FULL_PAYMENT:
                raise NotFullPayment(f"this visit settles normally ({d.mode}): use settle, not claim", mode=d.mode)
            if p.identity.card_id and not p.identity.keyed_in:
                await self.cards.confirm(p.reader, p.identity.card_id, None)   # still there; no PIN for cash
            out = await self._receipt_of(await self._append_entry("claim", _by("claim", core.claim_body(p, d), operator)))
            self._full_payments.pop(p.req.req or "", None)
            return out

    async def cancel(self, seq: Any, data: Any, *, operator: Any = None) -> dict:
        """Reverse a settlement of this device (撤销) with a new entry; the old entry is never edited.

        Integrity (DOMAIN.md 8, "One visit, one charge"): the cancel names the settlement (its seq here,
        and the device if the receipt is from elsewhere: another site's receipt is refused here), the
        same person is present (the card in the reader now, or the certno typed in for a keyed-in
        visit), the operator holds the ``cancel`` role (None: the system operator, every role), and a
        reason is given. Its req lives in the counter's own key space (``@cancel:N``), so no caller
        req can block it. A settlement the centre already reconciled is reversed there by the cancel's
        own outcome (a reversing adjustment); what the counter cannot reverse (no local person state)
        is cancelled at the centre (``centre cancel``)."""
        from edge.settle import CannotCancel, cancel as engine_cancel

        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
            raise BadRequest("seq must be the journal number of a settlement", zh="流水号不正确", field="seq")
        require_role(operator, "cancel")
        data = data if isinstance(data, Mapping) else {}
        device = data.get("device")
        if device is not None and device != self.journal.device:
            raise CounterError(f"receipt {device}/{seq} is from another site: cancel it where it was settled",
                               zh="这张票据不是本机开具的，请到原结算机构撤销", code="cancel_other_site", status=409,
                               device=device)
        async with self._lock:
            self._check_journal()
            req = core.internal_req("cancel", seq)
            prior = await self._read_journal(self.journal.find_by_req, req)
            if prior is None:     # journals written before the key space: cancel:N, if it is this cancel
                legacy = await self._read_journal(self.journal.find_by_req, f"cancel:{seq}")
                if legacy is not None and legacy.kind == "cancel" and legacy.body.get("cancels") == seq:
                    prior = legacy
            if prior is not None:
                return await self._receipt_of(prior)
            entry = await self._read_journal(self.journal.get, seq)
            if entry is None or entry.kind != "settlement":
                raise BadRequest(f"there is no settlement with journal seq {seq}", zh=f"没有流水号为 {seq} 的结算",
                                 code="unknown_settlement", status=404, field="seq")
            reason = data.get("reason")
            if not isinstance(reason, str) or not reason.strip():
                raise BadRequest("a cancel needs a reason", zh="请填写撤销原因", code="reason_required",
                                 field="reason")
            await self._same_person(entry, data)
            paid = await self._credit_paid_out(seq)
            if paid is not None:
                # The receipt's cash would go back in full on top of the credit already paid: the centre's
                # cancel owes back only the cash not yet returned.
                raise CounterError(f"the credit of settlement {seq} was paid out ({paid.body['payout_no']}, journal "
                                   f"seq {paid.seq}): cancel it at the centre", code="cancel_at_centre", status=409,
                                   zh=f"此笔结算的多付款已于流水号 {paid.seq} 退还（退款号 {paid.body['payout_no']}），"
                                      "本机撤销会重复退款，请到医保中心撤销", seq=paid.seq)
            notices = await _off_loop(self.cache.notices_for, entry.body["psn_no"])
            if any(n["payload"].get("ref_seq") == seq and n["payload"].get("outcome") == "cancelled_at_centre"
                   for n in notices if n["kind"] == "outcome"):
                raise CounterError(f"settlement {seq} was cancelled at the centre already",
                                   zh="此笔结算已由医保中心撤销，不能再次撤销", code="already_cancelled", status=409)
            person = await _off_loop(self.cache.person, entry.body["psn_no"])
            if person is None:
                raise BadRequest("the person is not in the cache: cancel at the centre",
                                 zh="本地无此参保人信息，请到医保中心撤销", code="cannot_cancel")
            try:
                c = engine_cancel(entry.body["amounts"], person.state)
            except CannotCancel as exc:
                raise BadRequest(exc.message, zh="无法撤销：请到医保中心办理", code=exc.code) from exc
            a = entry.body["amounts"]
            body = bodies.Cancel(req=req, cancels=seq, psn_no=entry.body["psn_no"],
                                 amounts={k: int(a[k]) for k in AMOUNT_KEYS}, state_after=c.state_after).build()
            # The clerk's reason and who cancelled are kept beside the contract's fields (the contract
            # ignores unknown keys).
            body["reason"] = reason.strip()[:200]
            if operator is not None:
                body["operator"] = {"id": str(operator.id), "name": str(operator.name)}
            return await self._receipt_of(await self._append_entry("cancel", body))

    async def pay_out(self, payout_no: Any, data: Any, *, operator: Any = None) -> dict:
        """Pay in cash what the centre owes a patient (退款支付) and journal it as a signed ``payout`` entry;
        its receipt carries a line the patient signs (领款人签字).

        Only a payout the centre told this counter of (a downlink notice naming ``payout_no``: a credit's
        cash share ``P-``, an approved claim ``C-``, a centre cancel's cash ``X-``, each named after an
        entry of this device), for the amount the notice gives, and once: a second pay of the same number
        is refused (``payout_already_paid``). The centre marks the payout paid when it reconciles the
        entry. The operator needs the ``payout`` role (None: the system operator, every role)."""
        require_role(operator, "payout")
        data = data if isinstance(data, Mapping) else {}
        payout_no = payout_no if isinstance(payout_no, str) else ""
        async with self._lock:
            self._check_journal()
            req = core.internal_req("payout", payout_no)
            prior = await self._read_journal(self.journal.find_by_req, req)
            if prior is not None:
                raise CounterError(f"payout {payout_no} was paid already (journal seq {prior.seq})",
                                   zh=f"退款号 {payout_no} 已于流水号 {prior.seq} 支付，不能重复支付",
                                   code="payout_already_paid", status=409, seq=prior.seq)
            notice = await self._payout_notice(payout_no, data)
            # Cash leaves once per visit: a settlement this counter cancelled had all its cash handed back
            # with the cancel, so neither its credit (P-) nor the centre's cancel cash (X-) is paid again; a
            # credit of a settlement the centre cancelled is in that cancel's X- payout, not paid on its own.
            source = notice["source"]
            if payout_no.startswith(("P-", "X-")) and await self._read_journal(
                    self.journal.find_by_req, core.internal_req("cancel", source.seq)) is not None:
                raise CounterError(f"settlement {source.seq} was cancelled at this counter: its cash was handed back",
                                   zh=f"结算 {source.seq} 已在本机撤销，现金已全部退还，退款号 {payout_no} 不能再支付",
                                   code="payout_cancelled", status=409, seq=source.seq)
            if payout_no.startswith("P-") and notice["cancelled_at_centre"]:
                raise CounterError(f"settlement {source.seq} was cancelled at the centre: pay its X- payout instead",
                                   zh=f"结算 {source.seq} 已由医保中心撤销，此款已并入撤销退款（退款号 "
                                      f"X-{self.journal.device}-{source.seq}），退款号 {payout_no} 不能再支付",
                                   code="payout_cancelled", status=409, seq=source.seq)
            # The money goes to the patient it is owed to: their card in the reader (or their certno for a
            # keyed-in visit), as for a cancel.
            try:
                if source.body.get("psn_no") is not None:    # (an e-voucher claim's: checked with its notice)
                    await self._same_person(source, data)
            except CounterError as exc:
                if exc.code != "cancel_other_person":
                    raise
                raise CounterError(f"payout {payout_no} is another person's: it needs that person's card",
                                   zh="读卡器中的卡与退款的参保人不符，不能支付", code="payout_other_person",
                                   status=409) from exc
            reason = data.get("reason")
            reason = reason.strip()[:200] if isinstance(reason, str) and reason.strip() else "医保中心应退款项"
            who = None if operator is None else {"id": str(operator.id), "name": str(operator.name)}
            body = bodies.Payout(req=req, payout_no=payout_no, psn_no=notice["psn_no"], amount=notice["amount"],
                                 method="cash", reason=reason, operator=who).build()
            return await self._receipt_of(await self._append_entry("payout", body))

    async def _credit_paid_out(self, seq: int):
        """The payout entry that paid settlement ``seq``'s credit in cash at this counter (a credit's
        payout is named after its entry, so only this counter can pay it), or None."""
        return await self._read_journal(self.journal.find_by_req,
                                        core.internal_req("payout", f"P-{self.journal.device}-{seq}"))

    async def _payout_notice(self, payout_no: str, data: Mapping | None = None) -> dict:
        """The centre's notice of ``payout_no`` (its person and amount); 404 when this counter has none."""
        unknown = BadRequest(f"no notice of payout {payout_no!r} from the centre at this counter",
                             zh=f"本机没有收到医保中心关于退款号 {payout_no} 的通知，不能支付", code="unknown_payout",
                             status=404, field="payout_no")
        prefix, _, rest = payout_no.partition("-")
        device, _, seq = rest.rpartition("-")
        if prefix not in ("P", "C", "X") or device != self.journal.device or not seq.isdigit():
            raise unknown
        source = await self._read_journal(self.journal.get, int(seq))
        psn_no = source.body.get("psn_no") if source is not None else None
        if psn_no is None and source is not None and source.kind == "claim" and prefix == "C" \
                and isinstance(source.body.get("ec_token"), str):
            # An e-voucher claim journaled offline names nobody: the centre identified the person and sent
            # the notice to them. Only the person present (card in the reader, or certno) can hold it.
            psn_no = await self._present_psn(data or {})
            if psn_no is None or not any(n["payload"].get("payout_no") == payout_no
                                         for n in await _off_loop(self.cache.notices_for, psn_no)):
                raise CounterError(f"payout {payout_no} of an e-voucher claim: the person the centre named is not "
                                   "the one present", code="payout_other_person", status=409,
                                   zh="电子凭证垫付单的报销须由医保中心核定的参保人本人办理：请插入其社保卡（或填写其身份证号）；"
                                      "读卡器中的卡与该参保人不符，不能支付")
        if not isinstance(psn_no, str):
            raise unknown
        notices = await _off_loop(self.cache.notices_for, psn_no)
        for n in notices:
            p = n["payload"]
            if p.get("payout_no") != payout_no:
                continue
            # A credit's notice gives the cash share as ``payout``; a claim's as ``amount``; a cancel's as ``payout``.
            amount = p.get("payout") if n["kind"] == "outcome" else p.get("amount")
            if isinstance(amount, int) and not isinstance(amount, bool) and amount > 0:
                cancelled = any(c["kind"] == "outcome" and c["payload"].get("ref_seq") == source.seq
                                and c["payload"].get("outcome") == "cancelled_at_centre" for c in notices)
                return {"psn_no": psn_no, "amount": amount, "source": source, "cancelled_at_centre": cancelled}
        raise unknown

    async def _present_psn(self, data: Mapping) -> str | None:
        """The person at the counter: by the certno given, else by the card in the reader; None if unknown."""
        certno = data.get("certno")
        if isinstance(certno, str) and certno:
            who = await _off_loop(self.cache.person_for_card, None, certno)
        else:
            reader = data.get("reader") if isinstance(data.get("reader"), str) else None
            _, identity = self.cards.present(reader)
            who = await _off_loop(self.cache.person_for_card, identity.card_id, identity.ssn)
        return None if who is None else who.psn_no

    async def _same_person(self, entry, data: Mapping) -> None:
        """The settlement's person is here: their card in the reader, or (keyed-in visit) their certno."""
        card = entry.body.get("card") or {}
        psn_no = entry.body.get("psn_no")
        if card.get("keyed_in"):
            certno = data.get("certno")
            if not isinstance(certno, str) or not certno:
                raise BadRequest("this visit was keyed in: give the patient's certno to cancel it",
                                 zh="此笔结算为手工录入卡号，撤销时请填写参保人身份证号", code="certno_required",
                                 field="certno")
            who = await _off_loop(self.cache.person_for_card, None, certno)
            same = who is not None and who.psn_no == psn_no
        else:
            reader = data.get("reader") if isinstance(data.get("reader"), str) else None
            _, identity = self.cards.present(reader)
            who = await _off_loop(self.cache.person_for_card, identity.card_id, identity.ssn)
            # A settlement without a card id never matches by card (None == None is not the same person).
            same = (card.get("card_id") is not None and identity.card_id == card.get("card_id")) \
                or (who is not None and who.psn_no == psn_no)
        if not same:
            raise CounterError(f"settlement {entry.seq} is another person's: cancel needs that person's card",
                               zh="读卡器中的卡与被撤销结算的参保人不符，不能撤销", code="cancel_other_person",
                               status=409, seq=entry.seq)

    # -- steps ----------------------------------------------------------------------------------
    async def _read_journal(self, fn, *args):
        """A journal read in a worker thread; a broken journal stops settling with its reason."""
        from edge.journal import JournalError

        try:
            return await trio.to_thread.run_sync(fn, *args)
        except JournalError as exc:
            raise self._unreadable(exc) from exc

    def _unreadable(self, exc) -> JournalUnavailable:
        """A journal read failed (``exc``, a JournalError): settling stops with its reason."""
        self.journal_fault = exc.to_dict()
        return JournalUnavailable(f"the journal cannot be read: {exc.message} ({exc.hint})",
                                  zh=_journal_zh(exc, "读取，已停止结算"), code=exc.code)

    def _check_journal(self) -> None:
        if self.journal_fault is not None and not self.journal_fault.get("retryable"):
            f = self.journal_fault
            raise JournalUnavailable(f"settlement is stopped: {f['message']} ({f['hint']})",
                                     zh=_journal_zh(f, "写入，已停止结算"), code=f["code"])

    async def _existing_entry(self, data: Any, req: str, entry) -> dict:
        """The answer to a request whose ``req`` was journaled before as ``entry``: its receipt, or the
        conflict or refusal it was."""
        conflict = core.content_conflict(dict(data), entry.kind, entry.body)
        if conflict is not None:
            raise _req_conflict(req, conflict)
        if entry.kind == "refusal":
            raise Refused(f"request {req} was refused earlier: {entry.body.get('what', '')}",
                          zh=offline.REFUSAL_ZH.get(entry.body.get("code"), "已拒绝结算"),
                          code=entry.body.get("code", "refused"))
        return await self._receipt_of(entry)

    def _full_payment(self, p: Prepared, d: offline.Decision) -> FullPaymentRequired:
        # Remembered so that claim() for the same req journals this cause (even one only the centre knew).
        self._full_payments[p.req.req or ""] = d
        while len(self._full_payments) > 1000:
            self._full_payments.pop(next(iter(self._full_payments)))
        return FullPaymentRequired(f"full payment required ({d.cause}): {d.detail}; the patient pays everything and a "
                                   "claim is journaled (use claim)", zh="需全额垫付：" + d.zh,
                                   cause=d.cause, decision=d.to_dict())

    async def _journal_refusal(self, body: dict) -> None:
        # Best effort: the refusal stands whether or not it could be journaled.
        try:
            await self._append_entry("refusal", body)
        except CounterError:
            pass

    async def _append_entry(self, kind: str, body: dict, *, receipt: bool = False):
        """Append durably; the journal entry (a duplicate ``req`` gives the entry journaled before).

        The entry's local effects (person state, offline counters) go to the cache in order by one
        background drainer (:meth:`_drain_effects`): the answer waits for them at most
        ``Settings.effects_wait`` seconds, and not at all while the drainer is held up by another writer, so a
        bundle apply holding the cache's writer never holds up a visit. A later visit of the same card or person
        folds them in from the pending entries (:meth:`pending_entries`)."""
        from edge.journal import DuplicateRequest, EntryFormatError, JournalError

        wall, now_wall, mono = await self.entry_clock()

        def append():
            # The receipt (item names from the cache's reader) in the same hop: the entry is durable already.
            entry = self.journal.append(kind, body, time_ms=wall, mono_ns=mono)
            return entry, (self.receipt_summary(entry) if receipt else None)

        try:
            with trio.CancelScope(shield=True):   # once started, the durable append finishes
                entry, view = await trio.to_thread.run_sync(append)
                self.journaled_at(entry.time, now_wall, mono)
        except DuplicateRequest as exc:
            return exc.entry
        except JournalError as exc:
            self.journal_fault = exc.to_dict()
            log.error("journal append failed", extra={"event": "journal_error", "code": exc.code})
            raise JournalUnavailable(f"the journal cannot be written: {exc.message} ({exc.hint})",
                                     zh=_journal_zh(exc, "写入，本次未结算"), code=exc.code) from exc
        except EntryFormatError as exc:
            raise CounterError(f"internal error, nothing was recorded: {exc}", zh="内部错误，本次未记录",
                               code="internal_error", status=500) from exc
        self.journal_fault = None
        log.info("journaled", extra={"event": "journaled", "kind": kind, "seq": entry.seq,
                                     "mode": body.get("mode"), "cause": body.get("cause")})
        if view is not None:
            self._receipts[entry.seq] = view
            while len(self._receipts) > 8:
                self._receipts.pop(next(iter(self._receipts)))
        done = trio.Event()
        self._effects.append((entry, _effect_keys(body), done))
        if not self._draining:
            self._draining = True
            trio.lowlevel.spawn_system_task(self._drain_effects, name="counter local effects")
        if not self._effects_stuck and self._effects[0][2] is done:
            # Only when the drainer is free for them: one waiting for a cache another writer holds (its last
            # try failed, or an earlier entry is still not applied after a whole visit) cannot apply them within
            # the wait.
            with trio.move_on_after(self.settings.effects_wait):
                await done.wait()
        if self.on_journaled is not None:
            self.on_journaled()
        return entry

    async def _drain_effects(self) -> None:
        """Apply queued entries' local effects in seq order (``apply_entry`` skips a seq at or below the
        last applied one, so order matters), one worker-thread hop each. A cache busy with another
        writer (a bundle applied by another process) is retried for ``EFFECTS_RETRY_S``; after that the
        offline counters are distrusted (offline fails closed) until the daemon catches up from the
        journal at its next start. Never raises."""
        try:
            while self._effects:
                entry, _, done = self._effects[0]
                deadline = trio.current_time() + EFFECTS_RETRY_S
                while not await trio.to_thread.run_sync(self._apply_effects, entry):
                    self._effects_stuck = True
                    if trio.current_time() >= deadline:
                        self._effects_failed = True
                        log.error("local effects of an entry not applied; offline counters distrusted",
                                  extra={"event": "counters_dirty", "seq": entry.seq})
                        await trio.to_thread.run_sync(self._mark_dirty)
                        break
                    await trio.sleep(0.2)
                self._effects_stuck = False
                self._effects.pop(0)
                done.set()
        except BaseException:
            self._effects_failed = True
            raise
        finally:
            self._draining = False
            self._effects_stuck = False

    def _apply_effects(self, entry) -> bool:
        try:
            self.cache.apply_entry(entry)
            return True
        except Exception:
            log.warning("local effects of an entry waiting for the cache", exc_info=True,
                        extra={"event": "effects_retry", "seq": entry.seq})
            return False

    def _mark_dirty(self) -> None:
        try:
            self.cache.mark_counters_dirty()
        except Exception:
            pass    # distrusted in memory already (_effects_failed)

    def pending_entries(self) -> tuple:
        """Journaled entries whose local effects are not in the cache yet (read on the loop, in seq order)."""
        return tuple(entry for entry, _, _ in self._effects)

    async def effects_applied(self, keys: set | None = None) -> None:
        """Wait until the local effects of every queued entry (or of those touching ``keys``) are in the cache."""
        for _, entry_keys, done in list(self._effects):
            if keys is None or entry_keys & keys:
                await done.wait()

    # -- receipts and status ----------------------------------------------------------------------
    def receipt_summary(self, entry) -> dict:
        """The receipt of a journal entry (item names from the cache: prefer the async paths)."""
        from .receipts import receipt_view
        return receipt_view(entry, self.cache)

    async def _receipt_of(self, entry) -> dict:
        view = self._receipts.pop(entry.seq, None)
        return view if view is not None else await _off_loop(self.receipt_summary, entry)

    async def receipt(self, seq: int) -> dict:
        entry = await self._read_journal(self.journal.get, seq)
        if entry is None or entry.kind not in ("settlement", "claim", "cancel", "payout"):
            raise BadRequest(f"there is no receipt with journal seq {seq}", zh=f"没有流水号为 {seq} 的票据",
                             code="unknown_receipt", status=404, field="seq")
        return await self._receipt_of(entry)

    async def status(self) -> dict:
        try:
            backlog = await self._read_journal(self.journal.backlog)
            head, _ = await self._read_journal(self.journal.head)
        except JournalUnavailable:
            backlog, head = None, None      # the status still answers, saying why settling stopped
        clocks = self.now()
        now = clocks.wall_ms
        versions, refreshed = await _off_loop(lambda: (self.cache.versions(), self.cache.refreshed()))
        age = self._age(refreshed, clocks)
        fault = await _off_loop(self.clock_fault, clocks)
        return {
            "clock": None if fault is None else fault.to_dict(),
            "device": self.journal.device,
            # A clock fault is not online: the centre refuses requests signed with a wrong time, and the
            # page must not say 联网 while every visit becomes a full payment.
            "online": self.link.online and fault is None,
            "last_contact_ms": self.link.last_ok_ms, "last_error": self.link.last_error,
            "backlog": None if backlog is None else {
                "count": backlog.count, "bytes": backlog.bytes,
                "oldest_age_s": None if backlog.oldest_time_ms is None else max(0, now - backlog.oldest_time_ms) // 1000},
            "cache": {"age_s": None if age is None else age // 1000,
                      "bundles": {k: {"version": v["version"], "age_s": max(0, now - v["applied_ms"]) // 1000}
                                  for k, v in versions.items()}},
            "journal": {"ok": self.journal_fault is None, "error": self.journal_fault, "head": head},
            "simulated_card": self.cards.simulated,
            "level": self.settings.level,
        }


def _caller_req(data: Any) -> str | None:
    """The caller's ``req`` (stripped), None when there is none; one in the counter's own key space is refused."""
    req = data.get("req") if isinstance(data, Mapping) else None
    if not core.caller_req_ok(req):
        raise BadRequest(f"req may not start with {core.INTERNAL!r}: that key space is the counter's own",
                         zh=f"业务流水号不能以“{core.INTERNAL}”开头", code="invalid_input", field="req")
    if not isinstance(req, str) or not req.strip():
        return None
    return req.strip()


def _req_conflict(req: Any, detail: Mapping) -> CounterError:
    """The same req with another visit: nothing journaled; both totals shown."""
    settled = (detail.get("settled") or {}).get("medfee_sumamt")
    asked = (detail.get("asked") or {}).get("medfee_sumamt")

    def y(v: Any) -> str:
        return "?" if not isinstance(v, int) else f"¥{v // 100}.{v % 100:02d}"

    return CounterError(f"req {req} was settled earlier for another visit (total {y(settled)}); this request totals "
                        f"{y(asked)}: give the new visit a new req",
                        zh=f"业务流水号 {req} 已用于另一笔结算（总额 {y(settled)}），本次请求总额 {y(asked)}，本次未结算；"
                           "请为本次就诊使用新的流水号",
                        code="req_conflict", status=409, req=req, settled={"medfee_sumamt": settled},
                        asked={"medfee_sumamt": asked})


def _by(kind: str, body: dict, operator: Any) -> dict:
    """A settlement or claim body with who did it (``operator`` in docs/entries.md), checked by the contract
    again; other kinds (a refusal names nobody) and the system itself (None) add nothing."""
    if operator is None or kind not in ("settlement", "claim"):
        return body
    out = {**body, "operator": {"id": str(operator.id), "name": str(operator.name)}}
    bodies.parse(kind, out)
    return out


def _effect_keys(body: Mapping) -> set:
    """Whom an entry's local effects touch: the card and the person."""
    card = body.get("card") or {}
    return {k for k in (card.get("card_id"), body.get("psn_no"), body.get("certno")) if k}


def _opt_reason(data: Any) -> str:
    r = data.get("reason") if isinstance(data, Mapping) else None
    return r[:200] if isinstance(r, str) else ""


def _card_view(identity) -> dict:
    return {"card_id": identity.card_id, "card_no": identity.card_no, "certno": identity.ssn, "psn_name": identity.name,
            "gend": identity.sex, "expires": identity.expires.isoformat() if identity.expires else None,
            "keyed_in": identity.keyed_in, "reader": identity.reader or None}


def _person_view(person) -> dict | None:
    if person is None:
        return None
    s = person.state
    return {"psn_no": person.psn_no, "insutype": s.insutype, "psn_type": s.psn_type, "status": s.status,
            "balc": s.balc, "pending_review": s.pending_review}


def _item_view(it: dict) -> dict:
    return {"med_list_codg": it["code"], "name": it.get("name"), "py": it.get("py"), "chrgitm_lv": it.get("class"),
            "selfpay_prop": it.get("selfpay_prop"), "pric_uplmt_amt": it.get("pric_uplmt_amt"), "pric": it.get("pric")}
