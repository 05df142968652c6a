"""1101 with mdtrt_cert_type 01 (医保电子凭证): online the centre resolves the ecToken; offline the visit
goes on unidentified and becomes a full-payment claim that carries the token.

The counter never decodes a token (it is opaque, as the national decoder's are): it asks the centre
(``POST /v1/ectoken/resolve``, device-signed like the online settlement, bounded by the same
``online_timeout``) for the person it stands for. A token the centre does not know is refused.

With the centre unreachable the person cannot be identified. 1101 then answers infcode 0 with a
person that is *not identified yet* (:func:`unidentified`): a pseudo ``psn_no`` (``EC`` + a digest of
the token, so reading the same voucher twice gives the same number, and never a real person's
number), no name, no certificate number, and a ``warn_msg`` saying the visit will be paid in full.
The HIS registers and uploads as usual; 2206/2101 answer the full-payment estimate (:func:`quote`)
and 2207/2102 journal one full-payment claim with ``psn_no`` null and the token (:func:`claim`),
answered as every full payment (infcode -1, the claim number). The centre resolves the token when
the claim arrives (sync.centre.ectoken) and the claim is then the person's like any outage claim.

A claim journaled here goes through the counter's own append (its lock, time floor, local effects
and uplink trigger), not around it: the counter's visit request has no field for a person it cannot
name, so the body is built here from the same contract classes (sync.bodies) and checked by them.
"""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from typing import Any

import httpx
import trio

from edge.counter.operators import require
from edge.counter.visit import INTERNAL, caller_req_ok
from sync import bodies
from sync.errors import BodyError

from .errors import FieldError, StateError

PATH = "/v1/ectoken/resolve"
# ``ctx`` below is an edge.his.context.Ctx, which dispatches a voucher's visit here: typed Any so this
# module does not import context back (one direction only).
UNIDENTIFIED_WARN = ("脱机：医保中心暂时无法连接，无法识别该医保电子凭证对应的参保人：本次就诊须全额垫付，"
                     "结算时生成垫付单号；联网后由医保中心识别参保人并审核报销")
CLAIM_ZH = "医保中心暂时无法连接，电子凭证无法识别参保人"
PSEUDO = "EC"    # real psn_no are digits: a pseudo number can never be someone's


async def resolve(ctx: Any, token: str) -> str | None:
    """The psn_no the centre gives for ``token``; None when the centre cannot be asked (offline);
    :class:`StateError` when the centre says the token is not valid."""
    centre = ctx.counter.centre
    # The counter's centre client signs with the device key; its signer and HTTP client are reused so
    # that this call is authenticated exactly like the online settlement.
    sign, client = getattr(centre, "_sign", None), getattr(centre, "_client", None)
    if centre is None or sign is None or client is None:
        return None
    body = json.dumps({"ec_token": token}, ensure_ascii=False).encode("utf-8")
    headers = {"content-type": "application/json", **sign("POST", PATH, body)}
    resp = None
    try:
        with trio.move_on_after(ctx.counter.settings.online_timeout):
            resp = await client.post(centre.base_url + PATH, content=body, headers=headers)
    except httpx.HTTPError:
        resp = None
    if resp is not None and resp.status_code == 404 and _code(resp) == "unknown_token":
        raise StateError("the centre does not know this e-voucher token",
                         zh="医保电子凭证无效或已过期，请患者刷新电子凭证后重试", field="mdtrt_cert_no")
    psn_no = _psn_no(resp) if resp is not None and resp.status_code == 200 else None
    return psn_no


def _psn_no(resp: httpx.Response) -> str | None:
    try:
        psn_no = resp.json().get("psn_no")
    except (ValueError, AttributeError):
        return None
    return psn_no if isinstance(psn_no, str) and psn_no else None


def _code(resp: httpx.Response) -> str | None:
    try:
        err = resp.json().get("error") or {}
    except (ValueError, AttributeError):
        return None
    return err.get("code") if isinstance(err, dict) else None


def check_token(token: str) -> str:
    """A token a claim can carry (the claim's ``ec_token``: at most 50 characters, printable ASCII with no
    space, as the national tokens are), refused at 1101 rather than after the whole visit."""
    if not (0 < len(token) <= bodies.MAX_EC_TOKEN and token.isascii() and token.isprintable() and " " not in token):
        raise FieldError("mdtrt_cert_no is not an e-voucher token", field="mdtrt_cert_no",
                         zh=f"医保电子凭证格式不正确（应为不超过{bodies.MAX_EC_TOKEN}位的字母和数字），请患者刷新电子凭证后重试")
    return token


# -- offline: the person not identified yet ---------------------------------------------------------
def pseudo_psn_no(token: str) -> str:
    return PSEUDO + hashlib.blake2b(token.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest().upper()


def unidentified(token: str) -> dict:
    """The 1101 person of a voucher read offline (what later messages find under its pseudo psn_no)."""
    return {"psn_no": pseudo_psn_no(token), "cert_type": "01", "card_id": None, "certno": "", "psn_name": "",
            "gend": "", "insutype": "", "psn_type": "", "status": "", "balc": 0, "ec_token": token}


def _lines(data: dict) -> list[dict]:
    from edge.settle import round_fen
    from edge.settle.money import mul

    return [{"code": it["med_list_codg"], "cnt": str(it["cnt"]), "pric": it["pric"],
             "det_item_fee_sumamt": round_fen(mul(Decimal(str(it["cnt"])), it["pric"]))} for it in data["items"]]


async def quote(ctx: Any, data: dict) -> dict:
    """The counter's pre-settlement answer for an unidentified voucher: full payment, no split."""
    lines = _lines(data)
    medfee = sum(ln["det_item_fee_sumamt"] for ln in lines)
    return {"mode": "full_payment", "decision": {"mode": "full_payment", "cause": "offline_limit", "zh": CLAIM_ZH},
            "estimate": False, "person": None, "needs_pin": False, "reasons": [], "lines": lines,
            "setlinfo": {"medfee_sumamt": medfee, "fund_pay_sumamt": 0, "hifp_pay": 0, "acct_pay": 0,
                         "psn_cash_pay": medfee}}


def _claim_body(counter: Any, data: dict, today: Any, operator: Any) -> dict:
    """The claim entry's body (cache reads for the basis: call it in a worker thread)."""
    b = counter._basis(False)    # the bundles in the cache; refuses (NotReady) before the first download

    def ref(kind: str, hashed: bool) -> bodies.BundleRef | None:
        r = b.get(kind)
        return None if r is None else bodies.BundleRef(r["version"], r["hash"] if hashed else None,
                                                         r.get("policy_version"))

    catalogue, policy = ref("catalogue", True), ref("policy", True)
    assert catalogue is not None and policy is not None
    known = counter.cache.policy().med_types
    if data["med_type"] not in known:     # as the counter's own visits: a claim the centre could not compute
        raise FieldError(f"med_type {data['med_type']} is unknown; use one of {', '.join(sorted(known))}",
                         zh="就诊类型(med_type)不正确", field="med_type")
    lines = _lines(data)
    medfee = sum(ln["det_item_fee_sumamt"] for ln in lines)
    body = bodies.Claim(
        req=data["req"], cause="offline_limit",
        detail="e-voucher read while the centre was unreachable: the centre identifies the person from ec_token",
        psn_no=None, certno=None, card=bodies.Card(None, False),
        visit=bodies.Visit(med_type=data["med_type"], level=counter.settings.level, date=today, acct_used_flag=False,
                           chronic_code=data.get("chronic_code") or None),
        items=tuple(bodies.Item(ln["code"], ln["cnt"], ln["pric"]) for ln in lines),
        paid={"medfee_sumamt": medfee, "acct_pay": 0, "psn_cash_pay": medfee},
        basis=bodies.Basis(catalogue=catalogue, policy=policy, persons=None, hotlist=ref("hotlist", False)),
        ec_token=data["ec_token"]).build()
    if operator is not None:    # who took the cash, as on the counter's own claims
        body["operator"] = {"id": str(operator.id), "name": str(operator.name)}
    try:
        bodies.parse("claim", body)     # the contract's own check, before anything is journaled
    except BodyError as exc:
        raise StateError(f"the claim cannot be journaled: {exc.message}", zh="费用明细超出记账范围，未结算",
                         field=exc.detail.get("field")) from exc
    return body


async def claim(ctx: Any, data: dict) -> dict:
    """Journal the full-payment claim of an unidentified voucher once (``req`` = the HIS's msgid); the
    claim's receipt, as :meth:`edge.counter.Counter.claim` gives it."""
    counter = ctx.counter
    req, token = data.get("req"), data["ec_token"]
    if not isinstance(req, str) or not req:
        raise StateError("a claim needs the msgid as its request id", zh="缺少报文ID，未结算", field="msgid")
    if not caller_req_ok(req):
        # The counter's own ids ("@cancel:N") are never a caller's: a claim under one would later be
        # found as that cancel. Counter.settle/claim refuse them; this path appends directly, so here.
        raise StateError(f"msgid may not start with {INTERNAL!r}", zh=f"报文ID不能以“{INTERNAL}”开头，请使用新的报文ID",
                         field="msgid")
    require(ctx.operator, "settle")    # as Counter.claim: the HIS token holds it, a clerk may not
    now = counter.now()     # the clocks are read on the loop (a test clock may be trio's own)
    async with counter._lock:
        counter._check_journal()
        body = await ctx.thread(_claim_body, counter, data, now.today, ctx.operator)
        # A msgid journaled before (an answer lost before his.db kept it) gives the entry it made.
        entry = await counter._append_entry("claim", body, receipt=True)
    if entry.kind != "claim" or entry.body.get("ec_token") != token:
        raise StateError(f"msgid {req} journaled another visit", zh=f"报文ID {req} 已用于其他业务，请使用新的报文ID",
                         field="msgid")
    return {**await counter._receipt_of(entry), "cause_zh": CLAIM_ZH}
