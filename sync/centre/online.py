"""Online settlement at the centre: ``POST /v1/online/settle`` (device-signed JSON).

Request  ``{"req", "psn_no", "card_id", "visit", "items", "acct_used_flag"}`` (``certno`` instead of
         ``psn_no`` when the device does not know the person)
Answer   200 ``{"person": <state settled on, engine input shape>, "result": Settlement.to_dict(),
         "basis": {"catalogue": {"version", "hash"}, "policy": {"version", "hash", "policy_version"}}}``
         409 ``{"error": {"code", "message", "zh"}}`` with code ``unknown_person``, ``other_region`` (a card
         from another region than the site's, person not held here; ``region`` names it), ``suspended``,
         ``pending_review``, ``card_hotlisted``, ``no_bundle`` or the engine's refusal codes
         (``invalid_input``, ``no_policy_rule``, ``no_chronic_filing``).

The centre settles with the same engine against its authoritative ledger and the newest published
catalogue and policy, and applies the result to the ledger at once, keyed by (device, req): a
retried request gets the stored answer and changes nothing. When the counter's journal entry
(``mode: "online"``, same ``req``) arrives, reconciliation confirms it against that record without
applying it twice (:mod:`sync.centre.replay`, rule ``online_confirmed``); an *offline* entry with a
req the centre already settled online (the answer came too late) is recognised the same way
(``already_settled_online``) and moves no money again. The other order — the request itself arrives
late, after the device uploaded its offline entry for that req — is refused (409
``already_journaled``).

The req is the settlement's identity, and the visit's content is bound to it: the stored answer keeps
a digest of the normalised request (person, card, visit, items), and the same req with other content
is refused (409 ``req_conflict`` with both totals) instead of answering with the first visit's figures.

``POST /v1/online/lookup`` (device-signed, same request body): did this req settle here, and with
what? 200 ``{"settled": true, <the stored answer>}`` or ``{"settled": false}``; 409 ``req_conflict``
as above. The counter asks it after an online attempt failed, before it falls back offline. A "no" fences
the req: the same request reaching the centre later (a slow link) is refused ``req_abandoned``, and
the counter then decides the visit offline as it did the first time.
"""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping

import cbor2
import trio
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from edge.settle import (
    SettlementError, parse_catalogue, parse_items, parse_policy, parse_visit, round_fen, settle, yuan,
)
from edge.settle.money import mul
from sync.centre.world import card_region, hotlist, site_region
from sync.centre.errors import OnlineRefused
from sync.errors import SyncError



def _bundle(store, kind: str):
    row = store.latest_bundle(kind)
    if row is None:
        raise OnlineRefused(f"the centre has published no {kind} yet: settle offline or as full payment, and tell "
                            "the centre to run `centre publish`", code="no_bundle")
    return row, store.parsed.get(row["hash"], lambda: _parse(kind, row["raw"]))


def _parse(kind: str, raw: bytes):
    env = cbor2.loads(cbor2.loads(raw)["signed"])
    payload = cbor2.loads(env["payload"])
    return parse_policy(payload) if kind == "policy" else parse_catalogue(payload)


def _hotlist(store) -> dict:
    """The current hotlist, rebuilt only when a newer hotlist bundle was published."""
    version = store.bundle_versions().get("hotlist")
    return store.parsed.get(("hotlist", version), lambda: hotlist(store))


def _refuse(code: str, message: str) -> OnlineRefused:
    return OnlineRefused(message, code=code)


def request_digest(psn_no: str, data: Mapping[str, Any]) -> str:
    """The visit's content, normalised (counts as exact decimals, items in code order): what one req
    stands for. Two requests with the same req and another digest are two different visits."""
    raw = data.get("visit")
    visit: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    items = []
    for it in data.get("items") or []:
        if not isinstance(it, Mapping):
            continue
        try:
            cnt = str(Decimal(str(it.get("cnt"))).normalize())
        except (InvalidOperation, ValueError):
            cnt = str(it.get("cnt"))
        items.append([str(it.get("code", it.get("med_list_codg"))), cnt, it.get("pric")])
    norm = {"psn_no": psn_no, "card_id": data.get("card_id"),
            "visit": {k: visit.get(k) for k in ("med_type", "date", "chronic_code", "observation")},
            "acct_used_flag": bool(data.get("acct_used_flag", visit.get("acct_used_flag", False))),
            "items": sorted(items, key=lambda x: (x[0], x[1], str(x[2])))}
    return hashlib.sha256(json.dumps(norm, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()


def _asked_total(data: Mapping[str, Any]) -> int | None:
    try:
        return sum(round_fen(mul(Decimal(str(it["cnt"])), int(it["pric"]))) for it in data["items"])
    except (KeyError, TypeError, ValueError, InvalidOperation, ArithmeticError):
        return None


def _settled(store, device: str, req: str, psn_no: str, data: Mapping[str, Any]) -> dict | None:
    """The stored answer for (device, req), or None; the same req with other content is a conflict."""
    done = store.recon.online(device, req)
    if done is None:
        return None
    response = json.loads(done["response"])
    digest = response.pop("request_digest", None)
    if digest is not None and digest != request_digest(psn_no, data):
        settled = int(done["a_medfee"])
        raise OnlineRefused(f"req {req} was settled earlier for another visit (total ¥{yuan(settled)}); this request "
                            f"lists other items or another person: give the new visit a new req",
                            code="req_conflict", zh="此业务流水号已用于另一笔结算，请为本次就诊使用新的流水号",
                            req=req, settled={"medfee_sumamt": settled}, asked={"medfee_sumamt": _asked_total(data)})
    return response


def _psn_no(store, data: Mapping[str, Any]) -> str | None:
    psn_no = data.get("psn_no")
    if isinstance(psn_no, str) and psn_no:
        return psn_no
    certno = data.get("certno")
    return store.ledger.psn_by_certno(certno) if isinstance(certno, str) else None


def lookup_online(store, device: str, data: Mapping[str, Any], *, now: int) -> dict:
    """Did (device, req) settle online here, and with what? Blocking (worker thread).

    A "no" is final: the req is fenced, so the same request reaching the centre later (a slow link: the
    counter gave up on it, then settled offline or took a full payment) is refused ``req_abandoned``
    instead of moving money no entry of the counter records. The person's row lock orders the lookup
    with a settle of the same req running at once on another worker (it takes that lock too)."""
    req = data.get("req")
    if not isinstance(req, str) or not req:
        raise _refuse("invalid_input", "req is a required text field")
    psn_no = _psn_no(store, data)
    with store.transaction():
        if psn_no:
            store.ledger.load(psn_no, lock=True)
        found = _settled(store, device, req, psn_no or "", data)
        if found is None:
            store.recon.fence_online(device, req, now)
    return {"settled": False} if found is None else {"settled": True, **found}


def _not_held(device: str, data: Mapping[str, Any]) -> OnlineRefused:
    """The centre does not hold this person. A card read at the counter (not typed in) from another region
    (异地) names that region: the person is insured there, and this centre holds neither their account nor
    their home region's rules; the visit is a full payment the patient claims back (``other_region``)."""
    card = card_region(data.get("card_id"))
    site = site_region(device)
    if card is not None and site is not None and card != site:
        return OnlineRefused(f"card issued in region {card} (another region than this site's {site}, 异地): the "
                             "centre does not hold this person or their home region's rules; take a full payment",
                             code="other_region",
                             zh=f"此卡由 {card} 地区签发（异地参保），医保中心没有此参保人及其参保地的结算政策，"
                                "不能联网结算：请患者全额垫付，凭票据回参保地报销；已办理本地异地就医备案的，请联系医保中心",
                             region=card)
    if card is not None:
        return _refuse("unknown_person", "the centre has no insured person with this card's ID number (read from "
                                         "the card): take a full payment and tell the centre")
    return _refuse("unknown_person", "the centre has no insured person with this ID number: check the number typed "
                                     "in, or take a full payment")


def settle_online(store, device: str, data: Mapping[str, Any], *, now: int) -> dict:
    """Settle one visit online for ``device``; idempotent by (device, req). Blocking (worker thread).

    Region (异地): a card from another region than the device's site settles here when the centre holds the
    person (they are insured here: it holds their account and their rules, which are this centre's);
    otherwise it is refused ``other_region`` in Chinese naming the card's region (:func:`_not_held`)."""
    req, psn_no = data.get("req"), data.get("psn_no")
    if not isinstance(psn_no, str) or not psn_no:
        # A keyed-in card, or a person this device's snapshot does not hold: the SSN identifies them.
        certno = data.get("certno")
        psn_no = store.ledger.psn_by_certno(certno) if isinstance(certno, str) else None
        if psn_no is None and isinstance(certno, str) and certno:
            raise _not_held(device, data)
    if not isinstance(req, str) or not req or not isinstance(psn_no, str) or not psn_no:
        raise _refuse("invalid_input", "req and psn_no (or certno) are required text fields")
    if not isinstance(data.get("visit"), Mapping) or not isinstance(data.get("items"), list):
        raise _refuse("invalid_input", "visit (an object) and items (a list) are required")
    with store.transaction():
        done = _settled(store, device, req, psn_no, data)
        if done is not None:
            return done
        if store.payouts.journaled_req(device, req):
            # A request that arrives after the counter gave up on it and journaled the visit offline (or as a
            # claim): that entry is the visit; settling it here too would move the money twice.
            raise OnlineRefused(f"req {req} is already journaled by this device (settled offline or claimed): "
                                "it is not settled again online", code="already_journaled",
                                zh="此业务流水号已在本机记账（脱机结算或全额垫付），不再联网结算")
        led = store.ledger.load(psn_no, lock=True)
        if led is None:
            if card_region(data.get("card_id")) not in (None, site_region(device)):
                raise _not_held(device, data)
            raise _refuse("unknown_person", f"the centre has no insured person {psn_no}: check the card, or take a "
                                            "full payment")
        # Asked again under the person's row lock: a retry of this req at another worker (PostgreSQL, read
        # committed) that settled while we waited is seen now, and answered, instead of a key violation.
        done = _settled(store, device, req, psn_no, data)
        if done is not None:
            return done
        if store.recon.online_fenced(device, req):
            raise OnlineRefused(f"req {req} was given up by this device (its lookup answered: not settled): it is "
                                "not settled online now; the visit was settled offline or paid in full",
                                code="req_abandoned",
                                zh="此业务流水号的联网结算已由本机放弃（已脱机结算或全额垫付），不再联网结算")
        card_id = data.get("card_id")
        hot = _hotlist(store).get(card_id) if isinstance(card_id, str) else None
        if hot is not None:
            raise _refuse("card_hotlisted", f"card {card_id} is on the hotlist ({hot.reason}): it cannot be used")
        pol_row, policy = _bundle(store, "policy")
        cat_row, catalogue = _bundle(store, "catalogue")
        try:
            visit = parse_visit({**data["visit"], "acct_used_flag": data.get("acct_used_flag",
                                                                             data["visit"].get("acct_used_flag", False))},
                                policy)
            items = parse_items(list(data["items"]))
        except SettlementError as exc:
            raise _refuse(exc.code, exc.message) from None
        if led.suspended_on(visit.date):
            raise _refuse("suspended", f"insured status suspended on {visit.date.isoformat()} (employer arrears): "
                                       "take a full payment; it is reimbursed once the arrears are paid")
        if led.open_reviews > 0:
            raise _refuse("pending_review", "the person has earlier bills under review: take a full payment; it is "
                                            "reimbursed once the review closes")
        person = led.person(visit.date)
        try:
            s = settle(policy, catalogue, person, visit, items)
        except SettlementError as exc:
            raise _refuse(exc.code, exc.message) from None
        # The visit's own year and accumulator move (edge.settle: policy years), not one flat total.
        store.ledger.save(led.apply(s, policy), now=now)
        person_out = {"psn_no": psn_no, "insutype": person.insutype, "psn_type": person.psn_type,
                      "status": person.status, "chronic": list(led.chronic), "balc": person.balc,
                      "deductible_used": person.deductible_used, "fund_paid": person.fund_paid,
                      "pending_review": False, "year": person.year, "accumulators": person.accumulators_json()}
        response = {"person": person_out, "result": json.loads(s.to_json()),
                    "basis": {"catalogue": {"version": cat_row["version"], "hash": cat_row["hash"]},
                              "policy": {"version": pol_row["version"], "hash": pol_row["hash"],
                                         "policy_version": policy.version}}}
        stored = {**response, "request_digest": request_digest(psn_no, data)}
        store.recon.add_online(device, req, psn_no, json.dumps(stored, ensure_ascii=False),
                               {"medfee": s.medfee_sumamt, "fund": s.hifp_pay, "acct": s.acct_pay,
                                "cash": s.psn_cash_pay, "dedc": s.act_pay_dedc}, now)
    return response


async def online_settle(request: Request) -> JSONResponse:
    return await _signed_call(request, lambda store, device, data, now: settle_online(store, device, data, now=now))


async def online_lookup(request: Request) -> JSONResponse:
    return await _signed_call(request, lambda store, device, data, now: lookup_online(store, device, data, now=now))


async def _signed_call(request: Request, fn) -> JSONResponse:
    from sync.centre.auth import authenticate_device

    try:
        body = await request.body()
        info = await authenticate_device(request, body)
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            raise _refuse("invalid_input", "the body must be a JSON object") from None
        if not isinstance(data, dict):
            raise _refuse("invalid_input", "the body must be a JSON object")
        store, now = request.app.state.store, request.app.state.clock()
        out = await trio.to_thread.run_sync(lambda: fn(store, info.device, data, now))
        return JSONResponse(out)
    except SyncError as exc:
        # The detail (a conflict's two totals) rides along for the counter to show.
        return JSONResponse({"error": {**exc.detail, "code": exc.code, "message": exc.message, "zh": exc.zh}},
                            status_code=exc.status)


routes = [Route("/v1/online/settle", online_settle, methods=["POST"]),
          Route("/v1/online/lookup", online_lookup, methods=["POST"])]

