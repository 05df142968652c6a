"""Entries follow firmware-interfaces/journal.cddl (validated with pycddl), and the runtime mirror in
edge.journal.schema gives the same verdict as the CDDL on every single-field mutation of the examples."""

from __future__ import annotations

import copy
from pathlib import Path

import pycddl
import pytest

import journal_bodies as bodies
from edge.journal import GENESIS, EntryFormatError, check_body, make_entry

CDDL = Path(__file__).resolve().parents[2] / "firmware-interfaces" / "journal.cddl"
SCHEMA = pycddl.Schema(CDDL.read_text(encoding="utf-8"))

EXAMPLES = [
    ("settlement", bodies.settlement("R-1")),
    ("settlement", bodies.settlement("R-2", mode="online")),
    ("cancel", bodies.cancel("R-3", 1)),
    ("claim", bodies.claim("R-4")),
    ("claim", {**bodies.claim("R-5", cause="arrears"), "psn_no": "P-1"}),
    # An e-voucher read offline: nobody identified yet, the token names the person for the centre.
    ("claim", {**{k: v for k, v in bodies.claim("R-6").items() if k != "certno"}, "psn_no": None,
               "ec_token": "330300ecgmztaobqgaydambqgaydamjr4l5b3jrxnm"}),
    ("settlement", {**bodies.settlement("R-7"), "operator": {"id": "0001", "name": "王芳"}}),
    ("claim", {**bodies.claim("R-8"), "operator": {"id": "HIS", "name": "HIS"}}),
    ("refusal", {"code": "card_hotlisted", "what": "card on the hotlist"}),
    ("note", bodies.note()),
    ("enrol", {"what": "enrolled", "site": "S330300001"}),
    ("outcome", {"ref_seq": 4, "outcome": "confirmed", "credit": 0, "reimbursement": 0, "reason": ""}),
]


def cddl_ok(kind, body) -> bool:
    raw = make_entry(_KEY, seq=1, prev=GENESIS, device="D-S330300001-1", time=1, mono=1, kind=kind, body=body).raw
    try:
        SCHEMA.validate_cbor(raw)
        return True
    except pycddl.ValidationError:
        return False


def mirror_ok(kind, body) -> bool:
    try:
        check_body(kind, body)
        return True
    except EntryFormatError:
        return False


from nacl.signing import SigningKey  # noqa: E402

_KEY = SigningKey(bytes(32))


@pytest.mark.parametrize(("kind", "body"), EXAMPLES, ids=[f"{k}-{i}" for i, (k, _) in enumerate(EXAMPLES)])
def test_examples_follow_the_cddl(kind, body):
    assert cddl_ok(kind, body)
    assert mirror_ok(kind, body)


def test_stored_entries_follow_the_cddl(store):
    for kind, body in EXAMPLES:
        store.append(kind, body, time_ms=1_764_000_000_000, mono_ns=1)
    for raw in store.raw_entries():
        SCHEMA.validate_cbor(raw)
    assert store.count() == len(EXAMPLES)


def _paths(value, path=()):
    if isinstance(value, dict):
        for k, v in value.items():
            yield path + (k,)
            yield from _paths(v, path + (k,))
    elif isinstance(value, list) and value:
        yield path + (0,)
        yield from _paths(value[0], path + (0,))


def _mutations(body):
    for path in _paths(body):
        parent_path, last = path[:-1], path[-1]
        for what in ("delete", "retype"):
            if what == "delete" and not isinstance(last, str):
                continue
            mutated = copy.deepcopy(body)
            parent = mutated
            for p in parent_path:
                parent = parent[p]
            if what == "delete":
                del parent[last]
            else:
                parent[last] = 7 if isinstance(parent[last], str) else "x"
            yield f"{what} {'.'.join(map(str, path))}", mutated


CONTRACT = [(k, b) for k, b in EXAMPLES if k in ("settlement", "cancel", "claim", "refusal")]


@pytest.mark.parametrize(("kind", "body"), CONTRACT, ids=[f"{k}-{i}" for i, (k, _) in enumerate(CONTRACT)])
def test_runtime_schema_agrees_with_the_cddl(kind, body):
    disagreements = []
    mutations = 0
    for label, mutated in _mutations(body):
        mutations += 1
        if cddl_ok(kind, mutated) != mirror_ok(kind, mutated):
            disagreements.append((label, cddl_ok(kind, mutated), mirror_ok(kind, mutated)))
    assert mutations >= 4
    assert disagreements == []


def test_rules_beyond_cddl_are_enforced_by_the_mirror():
    unbalanced = bodies.settlement("R-9")
    unbalanced["amounts"]["psn_cash_pay"] += 1
    assert cddl_ok("settlement", unbalanced) and not mirror_ok("settlement", unbalanced)
    offline_unknown = bodies.settlement("R-10")
    offline_unknown["basis"]["persons"] = None
    assert cddl_ok("settlement", offline_unknown) and not mirror_ok("settlement", offline_unknown)
    claim = bodies.claim("R-11")
    claim["paid"]["acct_pay"] = 1
    assert cddl_ok("claim", claim) and not mirror_ok("claim", claim)


def _schema_for(rule: str) -> pycddl.Schema:
    # pycddl validates against the first rule: put the wanted one first.
    return pycddl.Schema(f"root = {rule}\n" + CDDL.read_text(encoding="utf-8"))


def test_export_file_follows_the_cddl(store, tmp_path):
    import cbor2

    from edge.journal import write_export

    for kind, body in EXAMPLES[:4]:
        store.append(kind, body, time_ms=1_764_000_000_000, mono_ns=1)
    path = tmp_path / "x.ssj"
    write_export(store, path)
    with open(path, "rb") as f:
        dec = cbor2.CBORDecoder(f)
        items = []
        while f.peek(1):
            items.append(dec.decode())
    header, entries, trailer = items[0], items[1:-1], items[-1]
    _schema_for("export-header").validate_cbor(cbor2.dumps(header, canonical=True))
    _schema_for("export-manifest").validate_cbor(header["manifest"])
    _schema_for("export-trailer").validate_cbor(cbor2.dumps(trailer, canonical=True))
    for raw in entries:
        SCHEMA.validate_cbor(raw)
    forged = dict(header, manifest=cbor2.dumps({"device": "D-1"}))
    with pytest.raises(pycddl.ValidationError):
        _schema_for("export-header").validate_cbor(cbor2.dumps(forged, canonical=True))


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

fen = st.integers(min_value=0, max_value=10**11)
texts = st.text(min_size=1, max_size=12)
items = st.lists(st.fixed_dictionaries({"code": texts, "cnt": st.sampled_from(["1", "2", "0.5", "1.25"]),
                                        "pric": fen}), max_size=4)


@st.composite
def settlements(draw):
    medfee = draw(fen)
    fund = draw(st.integers(min_value=0, max_value=medfee))
    acct = draw(st.integers(min_value=0, max_value=medfee - fund))
    mode = draw(st.sampled_from(["online", "offline"]))
    body = bodies.settlement(draw(texts), mode=mode)
    body["items"] = draw(items)
    body["amounts"].update(medfee_sumamt=medfee, hifp_pay=fund, acct_pay=acct, psn_cash_pay=medfee - fund - acct,
                           inscp_scp_amt=draw(fen))
    body["acct_limit"] = draw(st.none() | fen)
    if draw(st.booleans()):
        body["extra_field_from_a_newer_agent"] = draw(texts)
    if mode == "online" and draw(st.booleans()):
        body["basis"]["persons"] = None
    return body


@settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(settlements())
def test_any_balanced_settlement_passes_both_schemas(body):
    assert mirror_ok("settlement", body)
    assert cddl_ok("settlement", body)


@settings(deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(settlements(), st.integers(min_value=1, max_value=1000))
def test_an_unbalanced_settlement_is_refused(body, extra):
    body["amounts"]["psn_cash_pay"] += extra
    assert not mirror_ok("settlement", body)
