"""Body shapes of the contract kinds (docs/entries.md), checked on append and by the verifier.

The normative schema is ``firmware-interfaces/journal.cddl``; this module is its runtime mirror for
the parts the centre relies on (tests run both over the same examples with pycddl, so they cannot
drift apart silently). Bodies may carry extra keys: the contract grows by adding fields, and an old
verifier must not reject a newer agent's entries for that. Pure.
"""

from __future__ import annotations

from typing import Any, Mapping

from .entry import EntryFormatError

AMOUNT_KEYS = ("medfee_sumamt", "fulamt_ownpay_amt", "overlmt_selfpay", "preselfpay_amt", "inscp_scp_amt",
               "act_pay_dedc", "hifp_pay", "acct_pay", "psn_cash_pay")
CLAIM_CAUSES = frozenset({"offline_limit", "pending_review", "arrears", "card_unreadable", "emergency_observation",
                          "other_region"})

_TEXT, _INT, _MAP, _LIST, _BYTES, _BOOL, _NULL = str, int, dict, list, bytes, bool, type(None)


def _fail(kind: str, path: str, why: str) -> None:
    raise EntryFormatError(f"{kind} body: {path} {why} (see docs/entries.md)")


def _is(value: Any, *types: type) -> bool:
    t = type(value)  # exact types first (decoded CBOR is only these); bool is never an int here
    if t is bool:
        return _BOOL in types
    if t in (int, dict, list, str, bytes, _NULL):
        return t in types
    if isinstance(value, Mapping):  # bodies handed in by callers before encoding
        return _MAP in types
    if isinstance(value, (list, tuple)):
        return _LIST in types
    return isinstance(value, tuple(t for t in types if t not in (_MAP, _LIST, _BOOL)))


def _need(kind: str, body: Mapping, key: str, *types: type, prefix: str = "") -> Any:
    if key not in body:
        _fail(kind, prefix + key, "is missing")
    value = body[key]
    if not _is(value, *types):
        _fail(kind, prefix + key, f"has the wrong type ({type(value).__name__})")
    return value


def _fen(kind: str, amounts: Mapping, prefix: str, keys=AMOUNT_KEYS) -> None:
    for key in keys:
        value = _need(kind, amounts, key, _INT, prefix=prefix)
        if value < 0:
            _fail(kind, prefix + key, "is negative (amounts are fen ≥ 0)")


def _items(kind: str, items: list) -> None:
    for i, item in enumerate(items):
        if not _is(item, _MAP):
            _fail(kind, f"items[{i}]", "is not a map")
        _need(kind, item, "code", _TEXT, prefix=f"items[{i}].")
        _need(kind, item, "cnt", _TEXT, prefix=f"items[{i}].")
        if _need(kind, item, "pric", _INT, prefix=f"items[{i}].") < 0:
            _fail(kind, f"items[{i}].pric", "is negative (prices are fen ≥ 0)")


def _card(kind: str, body: Mapping) -> None:
    card = _need(kind, body, "card", _MAP)
    _need(kind, card, "card_id", _TEXT, _NULL, prefix="card.")
    _need(kind, card, "keyed_in", _BOOL, prefix="card.")


def _visit(kind: str, body: Mapping) -> None:
    visit = _need(kind, body, "visit", _MAP)
    _need(kind, visit, "med_type", _TEXT, prefix="visit.")
    _need(kind, visit, "date", _TEXT, prefix="visit.")
    if "chronic_code" in visit:
        _need(kind, visit, "chronic_code", _TEXT, prefix="visit.")


def _basis(kind: str, basis: Mapping) -> None:
    for part in ("catalogue", "policy"):
        ref = _need(kind, basis, part, _MAP, prefix="basis.")
        _version(kind, ref, f"basis.{part}.")
        _need(kind, ref, "hash", _TEXT, prefix=f"basis.{part}.")
    persons = _need(kind, basis, "persons", _MAP, _NULL, prefix="basis.")
    if persons is not None:
        _version(kind, persons, "basis.persons.")
    if "hotlist" in basis:
        _version(kind, _need(kind, basis, "hotlist", _MAP, prefix="basis."), "basis.hotlist.")
    limits = basis.get("limits")
    if not _is(limits, _MAP, _NULL):
        _fail(kind, "basis.limits", "must be a map of [value, limit] pairs or null")
    for name, pair in (limits or {}).items():
        if not (_is(pair, _LIST) and len(pair) == 2 and all(_is(v, _INT) for v in pair)):
            _fail(kind, f"basis.limits.{name}", "must be a pair [value, limit] of whole numbers")


def _operator(kind: str, body: Mapping) -> None:
    """Who did it (absent on entries written before operators): a map with a text id and name."""
    if "operator" in body:
        who = _need(kind, body, "operator", _MAP)
        _need(kind, who, "id", _TEXT, prefix="operator.")
        _need(kind, who, "name", _TEXT, prefix="operator.")


def _version(kind: str, ref: Mapping, prefix: str) -> None:
    if _need(kind, ref, "version", _INT, prefix=prefix) < 0:
        _fail(kind, prefix + "version", "is negative")


def _settlement(body: Mapping) -> None:
    k = "settlement"
    _need(k, body, "req", _TEXT)
    if _need(k, body, "mode", _TEXT) not in ("online", "offline"):
        _fail(k, "mode", "must be 'online' or 'offline'")
    _need(k, body, "psn_no", _TEXT)
    _card(k, body)
    _visit(k, body)
    _items(k, _need(k, body, "items", _LIST))
    _need(k, body, "person", _MAP)
    limit = _need(k, body, "acct_limit", _INT, _NULL)
    if limit is not None and limit < 0:
        _fail(k, "acct_limit", "is negative")
    amounts = _need(k, body, "amounts", _MAP)
    _fen(k, amounts, "amounts.")
    if amounts["hifp_pay"] + amounts["acct_pay"] + amounts["psn_cash_pay"] != amounts["medfee_sumamt"]:
        _fail(k, "amounts", "do not add up (medfee_sumamt must equal hifp_pay + acct_pay + psn_cash_pay)")
    if "result_sha256" in body and not (_is(body["result_sha256"], _BYTES) and len(body["result_sha256"]) == 16):
        _fail(k, "result_sha256", "must be 16 bytes")
    basis = _need(k, body, "basis", _MAP)
    _basis(k, basis)
    if body["mode"] == "offline" and basis["persons"] is None:
        _fail(k, "basis.persons", "is null (unknown person) but offline settlement needs a person snapshot")
    _operator(k, body)


def _cancel(body: Mapping) -> None:
    k = "cancel"
    _need(k, body, "req", _TEXT)
    if _need(k, body, "cancels", _INT) < 1:
        _fail(k, "cancels", "must be the seq of a settlement (≥ 1)")
    _need(k, body, "psn_no", _TEXT)
    _fen(k, _need(k, body, "amounts", _MAP), "amounts.")
    after = _need(k, body, "state_after", _MAP)
    for key in ("balc", "deductible_used", "fund_paid"):
        _need(k, after, key, _INT, prefix="state_after.")
    _operator(k, body)


def _claim(body: Mapping) -> None:
    k = "claim"
    _need(k, body, "req", _TEXT)
    if _need(k, body, "cause", _TEXT) not in CLAIM_CAUSES:
        _fail(k, "cause", f"must be one of {sorted(CLAIM_CAUSES)}")
    _need(k, body, "detail", _TEXT)
    psn_no = _need(k, body, "psn_no", _TEXT, _NULL)
    # An e-voucher read while the centre was unreachable (HIS 1101, mdtrt_cert_type 01) names nobody the
    # counter could know: the claim carries the token instead, and the centre resolves it on arrival.
    token = _need(k, body, "ec_token", _TEXT) if "ec_token" in body else None
    if psn_no is None and token is None:
        _need(k, body, "certno", _TEXT)
    _card(k, body)
    _visit(k, body)
    _items(k, _need(k, body, "items", _LIST))
    _fen(k, _need(k, body, "paid", _MAP), "paid.", ("medfee_sumamt", "acct_pay", "psn_cash_pay"))
    paid = body["paid"]
    if paid["acct_pay"] + paid["psn_cash_pay"] != paid["medfee_sumamt"]:
        _fail(k, "paid", "does not add up (medfee_sumamt must equal acct_pay + psn_cash_pay)")
    _basis(k, _need(k, body, "basis", _MAP))
    _operator(k, body)


def _refusal(body: Mapping) -> None:
    _need("refusal", body, "code", _TEXT)


_CHECKS = {"settlement": _settlement, "cancel": _cancel, "claim": _claim, "refusal": _refusal}


def check_body(kind: str, body: Mapping[str, Any]) -> None:
    """Raise EntryFormatError naming the field when a contract kind's body lacks what the centre needs."""
    if not isinstance(body, Mapping):
        raise EntryFormatError("body must be a map")
    check = _CHECKS.get(kind)
    if check is not None:
        check(body)
