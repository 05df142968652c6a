"""医保电子凭证 test tokens: the centre stands in for the national decoder (demo and tests only).

A token is ``<area 6><"ec"><base32(psn_no + tag)>`` in lower case, at most 50 characters (the
interface's ``mdtrt_cert_no`` is C(50)), where ``tag`` is the first 6 bytes of an HMAC of the area and
psn_no under the centre's decoder key: the centre can tell its own tokens from forged ones without
storing any token, and a counter treats the token as opaque (it never decodes one).

The decoder key is 32 random bytes kept in the centre's database (setting :data:`SETTING`, created
on first use, first writer wins): every worker, the ``ec-token`` command and the reconciler read the
same key from the one database, with no key file to hand around, and a backup carries it.

Two uses:

* online, ``POST /v1/ectoken/resolve`` (device-signed like every edge call, ``sync.auth``) with
  ``{"ec_token": "..."}`` -> ``{"psn_no": "..."}``, or 404 ``unknown_token``: the counter's 1101;
* offline, a counter journals a full-payment claim carrying the token instead of a person
  (``psn_no`` null, ``ec_token``); reconciliation calls :func:`person_of` to put the claim under the
  token's person, and :func:`unresolved` to give a claim it cannot place its code and Chinese reason
  (``ec_token_unknown``, ``ec_person_unknown``): it then waits for a reviewer, never lost.

Command: ``centre ec-token --psn-no X`` (sync/centre/commands/ectoken.py) prints a token.
"""

from __future__ import annotations

import base64
import dataclasses
import hmac
import json
import secrets
from typing import Any, Callable

import trio
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from sync.errors import SyncError

TAG = 6
MAX_TOKEN = 50
MAX_PSN = 20      # longer psn_no would not fit C(50)
SETTING = "ec_token_key"


class TokenError(ValueError):
    pass


def decoder_key(store) -> bytes:
    """The centre's decoder key (created on first use; every worker gets the one recorded first)."""
    recorded = store.setting(SETTING)
    if recorded is None:
        recorded = store.settle_setting(SETTING, secrets.token_hex(32))
    return bytes.fromhex(recorded)


def _tag(key: bytes, area: str, psn_no: str) -> bytes:
    return hmac.new(bytes(key), f"{area}|{psn_no}".encode(), "sha256").digest()[:TAG]


def issue(key: bytes, psn_no: str, area: str = "330300") -> str:
    if not (len(area) == 6 and area.isdigit()):
        raise TokenError("area must be 6 digits")
    if not psn_no or len(psn_no) > MAX_PSN or not psn_no.isascii():
        raise TokenError(f"psn_no must be 1 to {MAX_PSN} ASCII characters")
    raw = psn_no.encode() + _tag(key, area, psn_no)
    return area + "ec" + base64.b32encode(raw).decode().rstrip("=").lower()


def resolve(key: bytes, token: str) -> str | None:
    """The psn_no of one of this centre's tokens; None for anything else."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN or token[6:8] != "ec" or not token[:6].isdigit():
        return None
    body = token[8:].upper()
    try:
        raw = base64.b32decode(body + "=" * (-len(body) % 8))
    except ValueError:
        return None
    if len(raw) <= TAG:
        return None
    try:
        psn_no = raw[:-TAG].decode("ascii")
    except UnicodeDecodeError:
        return None
    return psn_no if hmac.compare_digest(raw[-TAG:], _tag(key, token[:6], psn_no)) else None


# Why a claim carrying an e-voucher is sent to a reviewer instead of being credited to a person.
UNIDENTIFIED = {
    "ec_token_unknown": "医保电子凭证无效或已过期，无法识别参保人：转人工审核，请核对患者身份后指定参保人",
    "ec_person_unknown": "医保电子凭证对应的参保人不在本中心参保人名单中：转人工审核",
}


def identify_claim(key: bytes, body, known: Callable[[str], bool]) -> tuple[str | None, str | None, str | None]:
    """The person of a full-payment claim journaled offline with only an e-voucher (``psn_no`` null,
    ``ec_token`` set): ``(psn_no, None, None)``, or ``(None, code, zh)`` when the token is not one of this
    centre's or names a person ``known(psn_no)`` denies (the claim then goes to review, never stuck).
    Claims that name their person, or carry no token, give ``(None, None, None)``."""
    token = body.get("ec_token") if hasattr(body, "get") else None
    if not isinstance(token, str) or body.get("psn_no") is not None:
        return None, None, None
    psn_no = resolve(key, token)
    if psn_no is None:
        return None, "ec_token_unknown", UNIDENTIFIED["ec_token_unknown"]
    if not known(psn_no):
        return None, "ec_person_unknown", UNIDENTIFIED["ec_person_unknown"]
    return psn_no, None, None


# -- reconciliation (sync.centre.reconcile calls these two; they read, never write, the ledger) ------
def _identify(store, body) -> tuple[str | None, str | None, str | None]:
    if not (hasattr(body, "get") and isinstance(body.get("ec_token"), str) and body.get("psn_no") is None):
        return None, None, None     # not an e-voucher claim: no key read, nothing created
    return identify_claim(decoder_key(store), body, lambda p: store.ledger.load(p) is not None)


def person_of(store, body) -> str | None:
    """The psn_no an e-voucher claim belongs to, or None (not such a claim, or not resolvable)."""
    return _identify(store, body)[0]


def unresolved(store, outcome: Any, body) -> Any:
    """A claim outcome without a person: when the claim carries an e-voucher the centre cannot place,
    the outcome and the pending claim say why, with the code and the Chinese reason (the token is shown
    to the reviewer, who finds the patient and approves the claim for them)."""
    psn_no, code, zh = _identify(store, body)
    if code is None or outcome.claim is None:
        return outcome
    claim = {**outcome.claim, "detail": f"{code}：{zh}（电子凭证 {body['ec_token']}）；{outcome.claim.get('detail') or ''}"}
    return dataclasses.replace(outcome, codes=(code,), reason=f"{zh}（{outcome.reason}）", claim=claim)


async def resolve_route(request: Request) -> JSONResponse:
    from sync.centre.auth import authenticate_device

    try:
        body = await request.body()
        await authenticate_device(request, body)
    except SyncError as exc:
        return JSONResponse({"error": {"code": exc.code, "message": exc.message}}, status_code=exc.status)
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        data = None
    token = data.get("ec_token") if isinstance(data, dict) else None
    psn_no = resolve(await _key_of(request), token) if isinstance(token, str) else None
    if psn_no is None:
        return JSONResponse({"error": {"code": "unknown_token", "message": "not an e-voucher token of this centre",
                                       "zh": "医保电子凭证无效或已过期"}}, status_code=404)
    return JSONResponse({"psn_no": psn_no})


async def _key_of(request: Request) -> bytes:
    state = request.app.state
    key = getattr(state, "ec_token_key", None)
    if key is None:
        key = state.ec_token_key = await trio.to_thread.run_sync(decoder_key, state.store)
    return key


routes = [Route("/v1/ectoken/resolve", resolve_route, methods=["POST"])]
