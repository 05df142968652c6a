"""Online settlement at the centre: ``POST /v1/online/settle`` (device-signed JSON).

Request  ``{"req", "psn_no", "card_id", "visit", "items", "acct_used_flag"}`` (``certno`` instead of
         ``psn_no`` when the device does not know the person)
Answer   200 ``{"person": <state settled on, engine input shape>, "result": Settlement.to_dict(),
         "basis": {"catalogue": {"version", "hash"}, "policy": {"version", "hash", "policy_version"}}}``
         409 ``{"error": {"code", "message"}}`` with code ``unknown_person``, ``suspended``,
         ``pending_review``, ``card_hotlisted``, ``no_bundle`` or the engine's refusal codes
         (``invalid_input``, ``no_policy_rule``, ``no_chronic_filing``).

The centre settles with the same engine against its authoritative ledger and the newest published
catalogue and policy, and applies the result to the ledger at once, keyed by (device, req): a
retried request gets the stored answer and changes nothing. When the counter's journal entry
(``mode: "online"``, same ``req``) arrives, reconciliation confirms it against that record without
applying it twice (:mod:`sync.centre.replay`, rule ``online_confirmed``).
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any, Mapping

import cbor2
import trio
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from edge.settle import SettlementError, parse_catalogue, parse_items, parse_policy, parse_visit, settle
from sync.centre.world import hotlist
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


def settle_online(store, device: str, data: Mapping[str, Any], *, now: int) -> dict:
    """Settle one visit online for ``device``; idempotent by (device, req). Blocking (worker thread)."""
    req, psn_no = data.get("req"), data.get("psn_no")
    if not isinstance(psn_no, str) or not psn_no:
        # A keyed-in card, or a person this device's snapshot does not hold: the SSN identifies them.
        certno = data.get("certno")
        psn_no = store.ledger.psn_by_certno(certno) if isinstance(certno, str) else None
        if psn_no is None and isinstance(certno, str) and certno:
            raise _refuse("unknown_person", "the centre has no insured person with this ID number: check the "
                                            "number typed in, or take a full payment")
    if not isinstance(req, str) or not req or not isinstance(psn_no, str) or not psn_no:
        raise _refuse("invalid_input", "req and psn_no (or certno) are required text fields")
    if not isinstance(data.get("visit"), Mapping) or not isinstance(data.get("items"), list):
        raise _refuse("invalid_input", "visit (an object) and items (a list) are required")
    with store.transaction():
        done = store.recon.online(device, req)
        if done is not None:
            return json.loads(done["response"])
        led = store.ledger.load(psn_no, lock=True)
        if led is None:
            raise _refuse("unknown_person", f"the centre has no insured person {psn_no}: check the card, or take a "
                                            "full payment")
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
        store.ledger.save(replace(led, balc=led.balc - s.acct_pay, deductible_used=led.deductible_used + s.act_pay_dedc,
                           fund_paid=led.fund_paid + s.hifp_pay), now=now)
        person_out = {"psn_no": psn_no, "insutype": person.insutype, "psn_type": person.psn_type,
                      "status": person.status, "chronic": list(led.chronic), "balc": person.balc,
                      "deductible_used": person.deductible_used, "fund_paid": person.fund_paid,
                      "pending_review": False}
        response = {"person": person_out, "result": json.loads(s.to_json()),
                    "basis": {"catalogue": {"version": cat_row["version"], "hash": cat_row["hash"]},
                              "policy": {"version": pol_row["version"], "hash": pol_row["hash"],
                                         "policy_version": policy.version}}}
        store.recon.add_online(device, req, psn_no, json.dumps(response, ensure_ascii=False),
                               {"medfee": s.medfee_sumamt, "fund": s.hifp_pay, "acct": s.acct_pay,
                                "cash": s.psn_cash_pay, "dedc": s.act_pay_dedc}, now)
    return response


async def online_settle(request: Request) -> JSONResponse:
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
        out = await trio.to_thread.run_sync(lambda: settle_online(store, info.device, data, now=now))
        return JSONResponse(out)
    except SyncError as exc:
        return JSONResponse({"error": {"code": exc.code, "message": exc.message}}, status_code=exc.status)


routes = [Route("/v1/online/settle", online_settle, methods=["POST"])]

