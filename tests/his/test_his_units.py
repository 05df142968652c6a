"""The drop-in's pure parts: exact yuan <-> fen, the envelopes, the msgid store (no daemons)."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest

from edge.his.envelope import CST, answer, dumps, parse
from edge.his.errors import EnvelopeError, MoneyError
from edge.his.money import fen, yuan
from edge.his.store import HisStore

NOW = dt.datetime(2026, 12, 1, 9, 30, 0, 123000, tzinfo=CST)
SERVED = frozenset({"1101", "2207"})


@pytest.mark.parametrize("value, expected", [
    (Decimal("12.8"), 1280), (Decimal("0.01"), 1), ("35.60", 3560), (7, 700), (Decimal("12.800000"), 1280),
    ("0", 0), (Decimal("99999999999999.99"), 9999999999999999)])
def test_yuan_to_fen_exactly(value, expected):
    assert fen(value, "x") == expected


@pytest.mark.parametrize("value", [Decimal("12.805"), "0.001", 12.8, True, None, "1e2", "abc", "-1.00", " ", "NaN",
                                   Decimal("100000000000000.00")])
def test_more_precision_or_not_a_plain_amount_is_refused(value):
    with pytest.raises(MoneyError) as exc:
        fen(value, "pric")
    assert exc.value.zh and any("\u4e00" <= c <= "\u9fff" for c in exc.value.zh)


def test_fen_to_yuan_has_two_places_and_never_a_float():
    assert yuan(452) == Decimal("4.52") and str(yuan(-2510)) == "-25.10" and str(yuan(0)) == "0.00"
    with pytest.raises(TypeError):
        yuan(4.52)    # type: ignore[arg-type]


def test_request_envelope_with_input_as_object_or_json_string():
    env = {"infno": "2207", "msgid": "H1", "mdtrtarea_admvs": "330300", "input": {"data": {"medfee_sumamt": 4.52}}}
    r = parse(json.dumps(env).encode(), path_infno=None, served=SERVED, now=NOW)
    assert r.infno == "2207" and r.input["data"]["medfee_sumamt"] == Decimal("4.52")
    env["input"] = json.dumps(env["input"])
    assert parse(json.dumps(env).encode(), path_infno=None, served=SERVED, now=NOW).input == r.input
    del env["infno"]
    assert parse(json.dumps(env).encode(), path_infno="2207", served=SERVED, now=NOW).infno == "2207"


@pytest.mark.parametrize("raw, path", [
    (b"{", None), (b'{"msgid": "a", "input": {}}', None), (b'{"infno": "9999", "msgid": "a", "input": {}}', None),
    (b'{"infno": "2207", "msgid": "a", "input": 3}', None), (b'{"infno": "2207", "input": {}}', None),
    (b'{"infno": "2207", "msgid": "a", "input": {}}', "1101"), (b'"\\ud800"', None),
    (b'{"infno": "2207", "msgid": "\\ud800", "input": {}}', None), (b"[" * 100000, None)])
def test_bad_envelopes_are_envelope_errors_in_chinese(raw, path):
    with pytest.raises(EnvelopeError) as exc:
        parse(raw, path_infno=path, served=SERVED, now=NOW)
    assert any("\u4e00" <= c <= "\u9fff" for c in exc.value.zh)


def test_response_envelope_formats():
    later = NOW + dt.timedelta(milliseconds=15)
    ok = json.loads(dumps(answer("330300", NOW, later, output={"a": Decimal("4.52")})), parse_float=Decimal)
    assert ok["infcode"] == 0 and isinstance(ok["infcode"], int) and ok["err_msg"] is None
    assert ok["refmsg_time"] == "20261201093000123" and ok["respond_time"] == "20261201093000138"
    assert len(ok["inf_refmsgid"]) == 30 and ok["inf_refmsgid"].startswith("33030020261201093000")
    assert ok["output"]["a"] == Decimal("4.52")
    assert b'"a":4.52' in dumps(answer("330300", NOW, later, output={"a": Decimal("4.52")}))
    bad = json.loads(dumps(answer("330300", NOW, later, err_msg="报文格式不正确")))
    assert bad["infcode"] == -1 and bad["err_msg"] == "报文格式不正确"


def test_an_echoed_text_cannot_pose_as_a_number():
    assert json.loads(dumps({"psn_name": "\x1fdec:1"}))["psn_name"] == "dec:1"
    with pytest.raises(TypeError):
        dumps({"a": 4.52})


def test_store_keeps_answers_and_reversals(tmp_path):
    s = HisStore(tmp_path / "his.db")
    try:
        s.remember("M1", "2207", b'{"infcode":0}', 7, "d1")
        s.remember("M1", "2207", b'{"infcode":-1}', 8, "d2")  # first answer wins
        assert s.message("M1") == {"infno": "2207", "answer": '{"infcode":0}', "seq": 7, "reversed_by": None,
                                   "digest": "d1"}
        s.mark_reversed("M2", "R1", "2207")                    # reversed before it arrived
        assert s.message("M2") == {"infno": "2207", "answer": "", "seq": None, "reversed_by": "R1", "digest": None}
        s.put("visit", "V1", {"a": 1})
        s.put("visit", "V1", {"a": 2})
        assert s.get("visit", "V1") == {"a": 2} and s.get("visit", "V2") is None
    finally:
        s.close()
    again = HisStore(tmp_path / "his.db")     # reopened: migrations once, data kept
    try:
        assert again.message("M1")["seq"] == 7
    finally:
        again.close()


# -- 医保电子凭证 offline: a claim that carries the token instead of a person -----------------------------
def _ec_claim(**over):
    from journal.journal_bodies import claim

    body = claim("CL-EC") | {"psn_no": None, "ec_token": "330300ecgmztaobqgaydambqgaydamjr4l5b3jrxnm"} | over
    body.pop("certno", None)
    return body


def test_a_claim_may_carry_an_ec_token_instead_of_a_person_and_round_trips():
    from sync.bodies import Claim

    body = _ec_claim()
    c = Claim.parse(body)
    assert c.psn_no is None and c.certno is None and c.ec_token == body["ec_token"]
    assert c.cause == "offline_limit"             # the outage is the cause; the token marks the identity
    assert Claim.parse(c.build()) == c and c.build()["ec_token"] == body["ec_token"]
    # A claim with a person writes no ec_token key (old parsers see exactly the old body).
    from journal.journal_bodies import claim
    assert "ec_token" not in Claim.parse(claim("CL-2")).build()


@pytest.mark.parametrize("token, why", [("x" * 51, "1 to 50"), ("", "1 to 50"), (7, "must be text"),
                                        ("330300ec\x00abc", "control"), ("330300ec\ud800", "Unicode")])
def test_an_ec_token_is_bounded_text(token, why):
    from sync.bodies import Claim
    from sync.errors import BodyError

    with pytest.raises(BodyError, match=why) as exc:
        Claim.parse(_ec_claim(ec_token=token))
    assert exc.value.detail.get("field") == "ec_token"


def test_a_claim_without_person_needs_a_certno_or_an_ec_token():
    from sync.bodies import Claim
    from sync.errors import BodyError

    body = _ec_claim()
    del body["ec_token"]
    with pytest.raises(BodyError, match="certno is missing"):
        Claim.parse(body)


def test_the_centre_identifies_an_ec_token_claim_or_sends_it_to_review_with_a_code():
    from sync.centre.ectoken import identify_claim, issue

    key = bytes(range(32))
    known = {"3303000000000002"}.__contains__
    token = issue(key, "3303000000000002")
    assert identify_claim(key, _ec_claim(ec_token=token), known) == ("3303000000000002", None, None)
    # A claim that names its person is left alone (the token is not the identity then).
    assert identify_claim(key, _ec_claim(ec_token=token, psn_no="3303000000000009"), known) == (None, None, None)
    forged = token[:-2] + ("aa" if token[-2:] != "aa" else "bb")
    psn, code, zh = identify_claim(key, _ec_claim(ec_token=forged), known)
    assert psn is None and code == "ec_token_unknown" and "电子凭证" in zh and "审核" in zh
    psn, code, zh = identify_claim(key, _ec_claim(ec_token=issue(key, "3303000000000001")), known)
    assert psn is None and code == "ec_person_unknown" and "参保人" in zh


def test_the_journal_accepts_a_claim_that_carries_an_ec_token_instead_of_a_person():
    from edge.journal.entry import EntryFormatError
    from edge.journal.schema import check_body

    check_body("claim", _ec_claim())
    body = _ec_claim()
    del body["ec_token"]
    with pytest.raises(EntryFormatError, match="certno"):
        check_body("claim", body)          # no person, no certno, no token: nobody could be found
    with pytest.raises(EntryFormatError, match="ec_token"):
        check_body("claim", _ec_claim(ec_token=7))
