"""sync.bodies: one builder and one parser per journal body kind; the parser is where every bound holds."""

from __future__ import annotations

import copy
import datetime as dt

import pytest
from journal.journal_bodies import cancel, claim, note, settlement

from edge.journal.schema import check_body
from edge.settle import MAX_FEN as ENGINE_MAX_FEN
from sync import bodies
from sync.bodies import (
    AMOUNT_KEYS, CLAIM_CAUSES, MAX_FEN, MAX_LINES, Basis, BundleRef, Card, Claim, Item, Outcome, Person, Refusal,
    Settlement, Visit,
)
from sync.errors import BodyError, ProtocolError, SyncError


def _basis(persons: int | None = 40) -> Basis:
    return Basis(catalogue=BundleRef(12, "ab" * 32), policy=BundleRef(3, "cd" * 32, "2026.3"),
                 persons=None if persons is None else BundleRef(persons), hotlist=BundleRef(9),
                 limits={"visit_fund": (1792, 20000)})


def _settlement(**over) -> Settlement:
    amounts = dict.fromkeys(AMOUNT_KEYS, 0) | {"medfee_sumamt": 2560, "inscp_scp_amt": 2560, "hifp_pay": 1792,
                                               "acct_pay": 768}
    fields = dict(req="POS-1", mode="offline", psn_no="33030019800101001X", card=Card("330300D15600000500", False),
                  visit=Visit("11", "village", dt.date(2026, 11, 24), True), items=(Item("XA01AAA001", "2", 1280),),
                  person=Person("310", "working", "active", (), 50000, 20000, 0), acct_limit=3000, amounts=amounts,
                  result_sha256=bytes(16), basis=_basis())
    return Settlement(**(fields | over))


def test_built_settlement_parses_back_equal_and_passes_the_journal_schema():
    s = _settlement()
    body = s.build()
    assert Settlement.parse(body) == s
    assert bodies.parse("settlement", body) == s
    check_body("settlement", body)   # the journal's append check agrees with the builder


@pytest.mark.parametrize("make,kind", [(settlement, "settlement"), (lambda: cancel("C-1", 1), "cancel"),
                                       (lambda: claim("CL-1"), "claim")])
def test_the_documented_examples_parse_and_rebuild_to_the_same_body(make, kind):
    body = make()
    typed = bodies.parse(kind, body)
    assert typed.kind == kind
    rebuilt = typed.build()
    assert bodies.parse(kind, rebuilt) == typed
    for key in body:   # a rebuilt body keeps every documented field with its value
        if body[key] is not None or key in rebuilt:
            assert rebuilt[key] == body[key], key


def test_claim_without_person_needs_certno_and_causes_are_the_documented_six():
    assert CLAIM_CAUSES == ("offline_limit", "pending_review", "arrears", "card_unreadable", "emergency_observation",
                            "other_region")
    body = claim("CL-1")
    del body["certno"]
    with pytest.raises(BodyError, match="certno is missing"):
        Claim.parse(body)
    body = claim("CL-1", cause="bored")
    with pytest.raises(BodyError, match="cause must be one of"):
        Claim.parse(body)


def test_refusal_and_outcome_round_trip():
    r = Refusal(req="POS-9", code="pin_blocked", what="card PIN is blocked", region="330300", keyed_in=False)
    assert Refusal.parse(r.build()) == r
    o = Outcome(req="downlink:7", what="outcome", ref_seq=3, claim_no=None, outcome="adjusted", credit=120,
                reimbursement=0, reason="")
    assert bodies.parse("outcome", o.build()) == o
    assert bodies.parse("note", note("hi")).what == "hi"


def _broken(path: list, value) -> dict:
    body = copy.deepcopy(settlement())
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return body


@pytest.mark.parametrize("path,value,why", [
    (["amounts", "hifp_pay"], MAX_FEN + 1, "out of range"),
    (["amounts", "acct_pay"], -1, "out of range"),
    (["amounts", "psn_cash_pay"], 1.0, "whole number"),
    (["amounts", "acct_pay"], True, "whole number"),
    (["amounts", "hifp_pay"], 0, "do not add up"),
    (["items", 0, "pric"], MAX_FEN + 1, "out of range"),
    (["items"], [{"code": "X", "cnt": "1", "pric": 1}] * (MAX_LINES + 1), "more than 500"),
    (["req"], "R" * 65, "1 to 64"),
    (["req"], "", "1 to 64"),
    (["psn_no"], "A\x00B", "control characters"),
    (["psn_no"], "\ud800", "not valid Unicode"),
    (["visit", "date"], "24/11/2026", "YYYY-MM-DD"),
    (["mode"], "maybe", "'online' or 'offline'"),
    (["result_sha256"], b"short", "16 bytes"),
    (["basis", "persons"], None, "needs a person snapshot"),
    (["basis", "limits", "visit_fund"], [1, 2, 3], "pair"),
    (["person", "balc"], -MAX_FEN - 1, "out of range"),
    (["card"], "330300", "must be a map"),
])
def test_the_parser_refuses_anything_malformed_with_a_coded_error_naming_the_field(path, value, why):
    with pytest.raises(BodyError, match=why) as info:
        Settlement.parse(_broken(path, value))
    err = info.value
    assert err.code == "bad_body" and isinstance(err, ProtocolError) and isinstance(err, SyncError)
    assert err.to_dict()["code"] == "bad_body" and err.to_dict()["zh"]


def test_a_builder_cannot_write_what_the_parser_refuses():
    amounts = dict(_settlement().amounts) | {"hifp_pay": 0}
    with pytest.raises(BodyError, match="do not add up"):
        _settlement(amounts=amounts).build()
    with pytest.raises(BodyError, match="out of range"):
        Outcome(req="d:1", what="outcome", ref_seq=1, claim_no=None, outcome="confirmed", credit=-5,
                reimbursement=0, reason="").build()


def test_unknown_keys_are_ignored_and_unknown_kinds_refused():
    body = settlement() | {"later_field": {"x": 1}}
    assert Settlement.parse(body).req == "POS-20261124-0001"
    with pytest.raises(BodyError, match="unknown entry kind"):
        bodies.parse("gossip", {})


def test_the_engine_and_the_contract_share_one_money_bound():
    assert ENGINE_MAX_FEN == MAX_FEN


def test_stored_bundles_read_with_the_one_envelope_parser():
    from nacl.signing import SigningKey

    from sync import bundles

    raw = bundles.build(SigningKey.generate(), kind="hotlist", version=3, payload={"cards": []}, created=1)
    b = bundles.read_stored(raw)
    assert (b.kind, b.version, b.base, b.payload) == ("hotlist", 3, None, {"cards": []})
    assert bundles.envelope(raw)["kind"] == "hotlist"
    with pytest.raises(bundles.BundleMalformed):
        bundles.read_stored(b"\xa0")


# -- the fast paths (ingest parses every entry's body) refuse exactly what the full checks refuse ---
@pytest.mark.parametrize("path,value,why", [
    (["psn_no"], "A\x85B", "control characters"),              # C1: not ASCII, so the slow path sees it
    (["psn_no"], "A\x7fB", "control characters"),              # DEL: ASCII but not printable
    (["items", 0, "cnt"], "0", "count > 0"),
    (["items", 0, "cnt"], "00", "count > 0"),
    (["items", 0, "cnt"], "1.0000001", "decimal places"),
    (["items", 0, "cnt"], "²", "decimal count"),
    (["items"], [{"code": "X", "cnt": "1000000", "pric": 10**6}], "costs more than the bound"),
    (["items"], [{"code": "X", "cnt": "10", "pric": 6 * 10**9}, {"code": "Y", "cnt": "10", "pric": 6 * 10**9}],
     "add up to more than the bound"),
    (["basis", "limits", "visit_fund"], [1, MAX_FEN + 1], r"visit_fund\[1\] is out of range"),
    (["basis", "limits", "visit_fund"], [True, 2], r"visit_fund\[0\] must be a whole number"),
    (["basis", "limits"], {"a\x00": [1, 2]}, "control characters"),
])
def test_the_fast_paths_refuse_what_the_full_checks_refuse_naming_the_field(path, value, why):
    with pytest.raises(BodyError, match=why):
        Settlement.parse(_broken(path, value))


def test_fast_paths_keep_what_is_valid_the_same():
    body = _broken(["items"], [{"code": "X", "cnt": "0.5", "pric": 1280}, {"code": "Y", "cnt": "3", "pric": 10}])
    body["psn_no"] = "张三-01"          # valid non-ASCII identifier: the full check, and it passes
    s = Settlement.parse(body)
    assert s.psn_no == "张三-01" and [(it.cnt, it.pric) for it in s.items] == [("0.5", 1280), ("3", 10)]
    assert bodies.check_lines([{"cnt": "0.5", "pric": 3}, {"cnt": "2", "pric": None}]) == 2   # 1.5 rounded up


@pytest.mark.parametrize("tree,where", [
    ({"a": [{"b": {"\ud800": 1}}]}, "body.a[0].b.<key>"),
    ({"a": ("x", ["\udfff"])}, "body.a[1][0]"),
    ({"later_field": {"deep": "ok", "bad": "x\ud800"}}, "body.later_field.bad"),
])
def test_check_tree_finds_a_lone_surrogate_anywhere_and_names_where(tree, where):
    with pytest.raises(BodyError, match="not valid Unicode") as info:
        bodies.check_tree(tree)
    assert info.value.message.startswith(where + " ")


def test_check_tree_bounds_nesting_at_exactly_the_depth_on_every_path():
    def nested(n: int, leaf):
        v = leaf
        for _ in range(n):
            v = {"k": v}
        return v
    bodies.check_tree(nested(16, 1))                      # a leaf at depth 16: allowed
    bodies.check_tree(nested(15, [1]))                    # a list at 15 holding a leaf at 16
    for too_deep in (nested(17, 1), nested(16, [1]), nested(16, {"x": None})):
        with pytest.raises(BodyError, match="nested more than 16"):
            bodies.check_tree(too_deep)


def test_check_tree_reads_any_mapping_not_only_dicts():
    from types import MappingProxyType

    bodies.check_tree(MappingProxyType({"a": "ok"}))
    with pytest.raises(BodyError, match="not valid Unicode"):
        bodies.check_tree({"a": MappingProxyType({"b": "\ud800"})})
