"""The counter service: one visit from card to durable journal entry. No HTTP here (see api.py).

Flow of :meth:`Counter.settle` (``presettle`` runs the same steps without the card check, the centre
call and the journal)::

    request -> identity (card in the reader, or keyed in) -> cache: person, hotlist, bundles
            -> offline.decide(facts) ---- refused ------> journal a refusal, answer 409
                 | online                  | offline            | full payment
            ask the centre (bounded)    engine with acct_limit  -> 409 full_payment_required
            | no answer -> offline      check_fund               (the clerk confirms via claim())
            -> card still there (PIN on the card when the account pays)
            -> journal.append (durable) -> local effects (person state, offline counters) -> receipt

Visits are serialised by one lock (one counter, one journal): a double submit waits for the first and
then finds its ``req`` in the journal, so it answers with the same entry.

Nothing here reads a clock directly: :class:`Clock` is injected (tests use a fixed one).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import trio

from edge import offline
from edge.settle import (
    InvalidInput, Item, SettlementError, Visit, canonical_json, parse_items, round_fen, settle,
)
from edge.settle.money import mul

from .errors import (
    BadRequest, CardProblem, CounterError, FullPaymentRequired, JournalUnavailable, NotFullPayment, NotReady,
    Refused,
)
from .online import CentreRefusal, CentreUnreachable, Connectivity
from .requests import VisitRequest, parse_visit_request

log = logging.getLogger("edge.counter")

AMOUNT_KEYS = ("medfee_sumamt", "fulamt_ownpay_amt", "overlmt_selfpay", "preselfpay_amt", "inscp_scp_amt",
               "act_pay_dedc", "hifp_pay", "acct_pay", "psn_cash_pay")


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


@dataclass
class Settings:
    level: str = "village"               # institution level the policy rules are keyed by
    online_timeout: float = 2.0          # seconds to wait for the centre before settling offline
    retry_online_after: float = 30.0     # after a failure, skip the centre for this long


@dataclass
class Prepared:
    req: VisitRequest
    reader: str | None
    identity: Any
    person: Any
    items: list[Item]
    visit: Visit
    decision: offline.Decision
    basis: dict
    policy: Any


def _result_sha(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()[:16]


def _medfee(items: list[Item]) -> int:
    # Step 1 of the engine (DOMAIN.md 4.1), for a visit the engine cannot settle (full payment).
    return sum(round_fen(mul(it.cnt, it.pric)) for it in items)


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
        self.on_journaled = None          # the daemon sets uplink.wake: send new entries at once

    # -- facts ----------------------------------------------------------------------------------
    def cache_age_ms(self) -> int | None:
        r = self.cache.refreshed()
        if r is None:
            return None
        return offline.cache_age_ms(now_wall_ms=self.clock.wall_ms(), refreshed_wall_ms=r.wall_ms,
                                    now_mono_ns=self.clock.mono_ns(), refreshed_mono_ns=r.mono_ns,
                                    same_boot=r.boot_id == self.clock.boot_id)

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
                           "first download", "本机尚未下载医保目录和政策，请联网等待首次同步后再结算")
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
                raise BadRequest(exc.message, exc.zh, code="invalid_input",
                                 field=f"keyed_in.{getattr(exc, 'field', 'certno')}") from exc
        reader, identity = self.cards.present(r.reader)
        if r.card_id is not None and identity.card_id != r.card_id:
            raise CardProblem("a different card is now in the reader: start the visit again",
                              "读卡器中的卡已更换，请重新读卡", code="card_changed")
        return reader, identity

    def _items(self, r: VisitRequest) -> list[Item]:
        cat = self.cache.catalogue_for(it["code"] for it in r.items)
        out = []
        for i, it in enumerate(r.items):
            if it["code"] not in cat:
                raise BadRequest(f"item {it['code']} is not in the catalogue: search for it again or refresh the "
                                 "catalogue", f"目录中没有编码为 {it['code']} 的项目，请重新搜索", code="unknown_item",
                                 field=f"items[{i}].med_list_codg")
            pric = it["pric"]
            if pric is None:
                pric = (self.cache.item(it["code"]) or {}).get("pric")
                if pric is None:
                    raise BadRequest(f"items[{i}] has no price and the catalogue gives none: enter the price in fen",
                                     "请填写单价", code="invalid_input", field=f"items[{i}].pric")
            out.append({"code": it["code"], "cnt": it["cnt"], "pric": pric, "name": cat[it["code"]].name})
        try:
            return parse_items(out)
        except InvalidInput as exc:
            raise BadRequest(exc.message, "项目数据不正确", code="invalid_input", field=exc.field) from exc

    def prepare(self, data: Any, *, need_req: bool) -> Prepared:
        r = parse_visit_request(data, need_req=need_req)
        reader, identity = self._identity(r)
        person = self.cache.person_for_card(identity.card_id, identity.ssn)
        basis = self._basis(person is not None)
        policy = self.cache.policy()
        items = self._items(r)
        today = self.clock.today()
        if r.med_type not in policy.med_types:
            raise BadRequest(f"med_type {r.med_type} is unknown; use one of {', '.join(sorted(policy.med_types))}",
                             "就诊类型不正确", code="invalid_input", field="med_type")
        # Keyed-in cards have no PIN to verify, so the account cannot pay (documented in docs/counter.md).
        acct = r.acct_used_flag and not identity.keyed_in
        visit = Visit(r.med_type, self.settings.level, today, acct, r.chronic_code)
        counters = self.cache.offline_use(identity.card_id) if identity.card_id else None
        facts = offline.Facts(
            centre_reachable=self.centre is not None and self.link.should_try(
                self.clock.wall_ms(), int(self.settings.retry_online_after * 1000)),
            card_hotlisted=self.cache.hotlisted(identity.card_id) is not None,
            card_expired=identity.expires is not None and identity.expires < today,
            keyed_in=identity.keyed_in, observation=r.observation,
            person_known=person is not None,
            person_status=person.state.status if person else None,
            pending_review=bool(person and person.state.pending_review),
            limits=policy.offline, cache_age_ms=self.cache_age_ms(),
            offline_visits=counters[0] if counters else None,
            offline_acct_used=counters[1] if counters else None)
        return Prepared(r, reader, identity, person, items, visit, offline.decide(facts), basis, policy)

    def _engine(self, p: Prepared, decision: offline.Decision):
        if p.person is None:
            return None
        cat = self.cache.catalogue_for(it.code for it in p.items)
        try:
            return settle(p.policy, cat, p.person.state, p.visit, p.items,
                          acct_limit=decision.acct_limit if decision.mode == offline.OFFLINE else None)
        except SettlementError as exc:
            raise BadRequest(exc.message, _engine_zh(exc), code=exc.code, field=exc.field) from exc

    # -- API operations ---------------------------------------------------------------------------
    def card_status(self, reader: str | None = None) -> dict:
        out: dict[str, Any] = {"readers": self.cards.status(), "simulated": self.cards.simulated}
        try:
            reader, identity = self.cards.present(reader)
        except CardProblem as exc:
            out.update(present=False, error=exc.to_dict())
            return out
        person = self.cache.person_for_card(identity.card_id, identity.ssn)
        today = self.clock.today()
        out.update(present=True, reader=reader, card=_card_view(identity),
                   hotlisted=self.cache.hotlisted(identity.card_id),
                   expired=identity.expires is not None and identity.expires < today,
                   person=_person_view(person),
                   notices=self.cache.notices_for(person.psn_no) if person else [])
        return out

    def search(self, q: str, limit: int = 20) -> list[dict]:
        return [_item_view(it) for it in self.cache.search(q, limit)]

    async def presettle(self, data: Any) -> dict:
        p = self.prepare(data, need_req=False)
        d = p.decision
        quote = None
        if d.mode in (offline.ONLINE, offline.OFFLINE) and p.person is not None:
            result = self._engine(p, d)
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

    async def settle(self, data: Any) -> dict:
        async with self._lock:
            self._check_journal()
            done = await self._existing(data)
            if done is not None:
                return done
            p = self.prepare(data, need_req=True)
            d = p.decision
            if d.mode == offline.REFUSED:
                await self._refusal(p, d)
            if d.mode == offline.FULL_PAYMENT:
                raise self._full_payment(p, d)
            if d.mode == offline.ONLINE:
                # The PIN is checked before the centre commits anything.
                await self._confirm_card(p)
                online_answer = await self._try_online(p)
                if online_answer is not None:
                    if isinstance(online_answer, offline.Decision):
                        if online_answer.mode == offline.REFUSED:
                            await self._refusal(p, online_answer)
                        raise self._full_payment(p, online_answer)
                    return await self._journal_online(p, online_answer)
                d = self.prepare(data, need_req=True).decision   # centre silent: decide again, offline
                p.decision = d
                if d.mode == offline.FULL_PAYMENT:
                    raise self._full_payment(p, d)
                pin_done = True
            else:
                pin_done = False
            result = self._engine(p, d)
            d = offline.check_fund(d, result.hifp_pay, p.policy.offline)
            if d.mode == offline.FULL_PAYMENT:
                raise self._full_payment(p, d)
            if not pin_done:
                await self._confirm_card(p)
            body = self._settlement_body(p, "offline", result.to_dict(), _result_sha(result.to_json()), d)
            return await self._append("settlement", body)

    async def claim(self, data: Any) -> dict:
        """Journal a full-payment claim (the patient pays everything; the fund part is reviewed later).

        Allowed when settle answered full_payment_required for this ``req`` (the centre's reasons count,
        e.g. arrears known only there), or when the local decision is full payment (offline limits,
        emergency observation...). A visit that settles normally is refused (not_full_payment).
        """
        async with self._lock:
            self._check_journal()
            done = await self._existing(data)
            if done is not None:
                return done
            p = self.prepare(data, need_req=True)
            d = self._full_payments.get(p.req.req) or p.decision
            if d.mode == offline.REFUSED:
                await self._refusal(p, d)
            if d.mode == offline.OFFLINE:
                result = self._engine(p, d)
                d = offline.check_fund(d, result.hifp_pay, p.policy.offline)
            if d.mode != offline.FULL_PAYMENT:
                raise NotFullPayment(f"this visit settles normally ({d.mode}): use settle, not claim",
                                     "本次可以正常结算，无需全额垫付", mode=d.mode)
            if p.identity.card_id:
                await self._confirm_card(p, pin=False)
            medfee = _medfee(p.items)
            body = {"req": p.req.req, "cause": d.cause, "detail": d.detail,
                    "psn_no": p.person.psn_no if p.person else None,
                    "card": {"card_id": p.identity.card_id, "keyed_in": p.identity.keyed_in},
                    "visit": _visit_body(p.visit, p.req), "items": _items_body(p.items),
                    "paid": {"medfee_sumamt": medfee, "acct_pay": 0, "psn_cash_pay": medfee},
                    "basis": {**p.basis, "limits": d.limits or None}}
            if p.person is None:
                body["certno"] = p.identity.ssn
            out = await self._append("claim", body)
            self._full_payments.pop(p.req.req, None)
            return out

    async def cancel(self, seq: Any, data: Any) -> dict:
        """Reverse a settlement of this device (撤销) with a new entry; the old entry is never edited."""
        from edge.settle import CannotCancel, cancel as engine_cancel

        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
            raise BadRequest("seq must be the journal number of a settlement", "流水号不正确", field="seq")
        async with self._lock:
            self._check_journal()
            req = f"cancel:{seq}"
            prior = await self._read_journal(self.journal.find_by_req, req)
            if prior is not None:
                return self.receipt_summary(prior)
            entry = await self._read_journal(self.journal.get, seq)
            if entry is None or entry.kind != "settlement":
                raise BadRequest(f"there is no settlement with journal seq {seq}", f"没有流水号为 {seq} 的结算",
                                 code="unknown_settlement", status=404, field="seq")
            person = self.cache.person(entry.body["psn_no"])
            if person is None:
                raise BadRequest("the person is not in the cache: cancel at the centre", "本地无此参保人信息，请到医保中心撤销",
                                 code="cannot_cancel")
            try:
                c = engine_cancel(entry.body["amounts"], person.state)
            except CannotCancel as exc:
                raise BadRequest(exc.message, "无法撤销：请到医保中心办理", code=exc.code) from exc
            a = entry.body["amounts"]
            body = {"req": req, "cancels": seq, "psn_no": entry.body["psn_no"],
                    "amounts": {k: int(a[k]) for k in AMOUNT_KEYS}, "state_after": c.state_after,
                    "reason": _opt_reason(data)}
            return await self._append("cancel", body)

    # -- steps ----------------------------------------------------------------------------------
    async def _read_journal(self, fn, *args):
        """A journal read in a worker thread; a broken journal stops settling with its reason."""
        from edge.journal import JournalError

        try:
            return await trio.to_thread.run_sync(fn, *args)
        except JournalError as exc:
            self.journal_fault = exc.to_dict()
            raise JournalUnavailable(f"the journal cannot be read: {exc.message} ({exc.hint})",
                                     "日志无法读取，已停止结算：" + exc.hint, code=exc.code) from exc

    def _check_journal(self) -> None:
        if self.journal_fault is not None and not self.journal_fault.get("retryable"):
            f = self.journal_fault
            raise JournalUnavailable(f"settlement is stopped: {f['message']} ({f['hint']})",
                                     "日志无法写入，已停止结算：" + f["hint"], code=f["code"])

    async def _existing(self, data: Any) -> dict | None:
        req = data.get("req") if isinstance(data, Mapping) else None
        if not isinstance(req, str) or not req:
            return None
        entry = await self._read_journal(self.journal.find_by_req, req)
        if entry is None:
            return None
        if entry.kind == "refusal":
            raise Refused(f"request {req} was refused earlier: {entry.body.get('what', '')}",
                          offline.REFUSAL_ZH.get(entry.body.get("code"), "已拒绝"), code=entry.body.get("code", "refused"))
        return self.receipt_summary(entry)

    def _full_payment(self, p: Prepared, d: offline.Decision) -> FullPaymentRequired:
        # Remembered so that claim() for the same req journals this cause (even one only the centre knew).
        self._full_payments[p.req.req] = d
        while len(self._full_payments) > 1000:
            self._full_payments.pop(next(iter(self._full_payments)))
        return FullPaymentRequired(f"full payment required ({d.cause}): {d.detail}; the patient pays everything and a "
                                   "claim is journaled (use claim)", "需全额垫付：" + d.zh,
                                   cause=d.cause, decision=d.to_dict())

    async def _refusal(self, p: Prepared, d: offline.Decision) -> None:
        body = {"req": p.req.req, "code": d.cause, "what": d.detail,
                "card": {"region": p.identity.region, "keyed_in": p.identity.keyed_in}}
        try:
            await self._append("refusal", body)
        except CounterError:
            pass
        raise Refused(d.detail, d.zh, code=d.cause)

    async def _confirm_card(self, p: Prepared, *, pin: bool = True) -> None:
        if p.identity.keyed_in:
            return
        use_pin = p.req.pin if (pin and p.visit.acct_used_flag) else None
        if pin and p.visit.acct_used_flag and not p.req.pin:
            raise CardProblem("the account pays: the patient must enter the card PIN", "使用个人账户支付，请输入卡密码",
                              code="pin_required")
        try:
            await self.cards.confirm(p.reader, p.identity.card_id, use_pin)
        except CardProblem as exc:
            if exc.code == "pin_blocked":     # refused outright, and the refusal is journaled (DOMAIN.md 6)
                await self._refusal(p, offline.Decision(offline.REFUSED, "pin_blocked", "card PIN is blocked",
                                                        offline.REFUSAL_ZH["pin_blocked"]))
            raise

    async def _try_online(self, p: Prepared):
        """The centre's answer (dict), a Decision for its typed refusals, or None when it is silent."""
        if self.centre is None:
            return None
        request = {"req": p.req.req, "psn_no": p.person.psn_no if p.person else None,
                   "card_id": p.identity.card_id, "certno": p.identity.ssn,
                   "visit": _visit_body(p.visit, p.req), "items": _items_body(p.items),
                   "acct_used_flag": p.visit.acct_used_flag}
        answer = None
        try:
            with trio.move_on_after(self.settings.online_timeout):
                answer = await self.centre.settle(request)
        except CentreUnreachable as exc:
            self.link.failed(self.clock.wall_ms(), str(exc))
            log.info("centre unreachable, settling offline", extra={"event": "online_fallback", "why": str(exc)})
            return None
        except CentreRefusal as exc:
            self.link.ok(self.clock.wall_ms())
            mapped = offline.after_centre(exc.code, exc.message)
            if mapped is None and p.person is None and exc.code == "invalid_input":
                # The centre needs a psn_no and this device's snapshot does not know the person.
                mapped = offline.Decision(offline.REFUSED, "unknown_person",
                                          "person not in this device's snapshot and not identified by the centre",
                                          "本机和医保中心都未能识别此参保人，请核对卡片或社会保障号码")
            if mapped is None:
                raise BadRequest(exc.message or exc.code, "医保中心拒绝结算：" + (exc.message or exc.code),
                                 code=exc.code) from exc
            return mapped
        if answer is None:
            self.link.failed(self.clock.wall_ms(), "timeout")
            log.info("centre silent, settling offline", extra={"event": "online_fallback", "why": "timeout"})
            return None
        self.link.ok(self.clock.wall_ms())
        return answer

    async def _journal_online(self, p: Prepared, answer: dict) -> dict:
        result = answer["result"]
        person = answer.get("person") or {}
        psn_no = person.get("psn_no") or (result.get("basis") or {}).get("psn_no") or (p.person and p.person.psn_no)
        state = {"insutype": person.get("insutype") or result["basis"]["insutype"],
                 "psn_type": person.get("psn_type") or result["basis"]["psn_type"],
                 "status": person.get("status", "active"), "chronic": person.get("chronic", []),
                 **{k: int(result["state_before"][k]) for k in ("balc", "deductible_used", "fund_paid")}}
        d = offline.Decision(offline.ONLINE, detail="settled by the centre", zh="联网结算")
        body = self._settlement_body(p, "online", result, _result_sha(canonical_json(result)), d,
                                     psn_no=psn_no, person=state)
        body["basis"]["centre"] = answer.get("basis")
        return await self._append("settlement", body)

    def _settlement_body(self, p: Prepared, mode: str, result: dict, sha: bytes, d: offline.Decision, *,
                         psn_no: str | None = None, person: dict | None = None) -> dict:
        if person is None:
            s = p.person.state
            person = {"insutype": s.insutype, "psn_type": s.psn_type, "status": s.status,
                      "chronic": [f.code for f in s.chronic], "balc": s.balc, "deductible_used": s.deductible_used,
                      "fund_paid": s.fund_paid}
        return {"req": p.req.req, "mode": mode, "psn_no": psn_no or p.person.psn_no,
                "card": {"card_id": p.identity.card_id, "keyed_in": p.identity.keyed_in},
                "visit": _visit_body(p.visit, p.req), "items": _items_body(p.items), "person": person,
                "acct_limit": d.acct_limit if mode == "offline" else None,
                "amounts": {k: int(result[k]) for k in AMOUNT_KEYS}, "result_sha256": sha,
                "basis": {**p.basis, "limits": d.limits or None}}

    async def _append(self, kind: str, body: dict) -> dict:
        from edge.journal import DuplicateRequest, EntryFormatError, JournalError

        wall, mono = self.clock.wall_ms(), self.clock.mono_ns()

        def append_then_apply():
            # One worker-thread hop: the durable append, then its local effects (person state, counters).
            entry = self.journal.append(kind, body, time_ms=wall, mono_ns=mono)
            try:
                self.cache.apply_entry(entry)
            except Exception:
                # The entry is durable; the counters catch up from the journal. Until then offline fails closed.
                log.exception("local effects of an entry not applied",
                              extra={"event": "counters_dirty", "seq": entry.seq})
                try:
                    self.cache.mark_counters_dirty()
                except Exception:
                    pass
            return entry

        try:
            with trio.CancelScope(shield=True):   # once started, the durable append finishes
                entry = await trio.to_thread.run_sync(append_then_apply)
        except DuplicateRequest as exc:
            return self.receipt_summary(exc.entry)
        except JournalError as exc:
            self.journal_fault = exc.to_dict()
            log.error("journal append failed", extra={"event": "journal_error", "code": exc.code})
            raise JournalUnavailable(f"the journal cannot be written: {exc.message} ({exc.hint})",
                                     "日志无法写入，本次未结算：" + exc.hint, code=exc.code) from exc
        except EntryFormatError as exc:
            raise CounterError(f"internal error, nothing was recorded: {exc}", "内部错误，本次未记录",
                               code="internal_error", status=500) from exc
        self.journal_fault = None
        log.info("journaled", extra={"event": "journaled", "kind": kind, "seq": entry.seq,
                                     "mode": body.get("mode"), "cause": body.get("cause")})
        if self.on_journaled is not None:
            self.on_journaled()
        return self.receipt_summary(entry)

    # -- receipts and status ----------------------------------------------------------------------
    def receipt_summary(self, entry) -> dict:
        from .receipts import receipt_view
        return receipt_view(entry, self.cache)

    async def receipt(self, seq: int) -> dict:
        entry = await self._read_journal(self.journal.get, seq)
        if entry is None or entry.kind not in ("settlement", "claim", "cancel"):
            raise BadRequest(f"there is no receipt with journal seq {seq}", f"没有流水号为 {seq} 的票据",
                             code="unknown_receipt", status=404, field="seq")
        return self.receipt_summary(entry)

    async def status(self) -> dict:
        try:
            backlog = await self._read_journal(self.journal.backlog)
            head, _ = await self._read_journal(self.journal.head)
        except JournalUnavailable:
            backlog, head = None, None      # the status still answers, saying why settling stopped
        now = self.clock.wall_ms()
        versions = self.cache.versions()
        age = self.cache_age_ms()
        return {
            "device": self.journal.device,
            "online": self.link.online, "last_contact_ms": self.link.last_ok_ms, "last_error": self.link.last_error,
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


def _opt_reason(data: Any) -> str:
    r = data.get("reason") if isinstance(data, Mapping) else None
    return r[:200] if isinstance(r, str) else ""


def _visit_body(v: Visit, r: VisitRequest) -> dict:
    out = {"med_type": v.med_type, "level": v.level, "date": v.date.isoformat(), "acct_used_flag": v.acct_used_flag}
    if v.chronic_code:
        out["chronic_code"] = v.chronic_code
    if r.observation:
        out["observation"] = True
    return out


def _items_body(items: list[Item]) -> list[dict]:
    return [{"code": it.code, "cnt": str(it.cnt), "pric": it.pric} for it in items]


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


def _engine_zh(exc: SettlementError) -> str:
    return {"no_policy_rule": "政策中没有适用于此类就诊的规则，请检查就诊类型",
            "no_chronic_filing": "没有有效的门诊慢特病备案，请按普通门诊结算或先办理备案",
            "invalid_input": "数据不正确"}.get(exc.code, "无法结算")
