"""Online settlement at the centre (POST /v1/online/settle): settle, apply once, confirm the entry."""

from __future__ import annotations

import hashlib
import json

import trio

from sync.centre import reconcile
from recon_support import T0, PlayedEdge, built, person, visit

ITEMS = [{"code": "XJ01CAA040E001010101445", "cnt": "2", "pric": 1280}, {"code": "001102000010000", "cnt": "1",
                                                                          "pric": 1000}]


def request(req="ON-1", psn="P0001", **over):
    return {"req": req, "psn_no": psn, "card_id": person(psn)["card_ids"][0], "visit": visit(0), "items": ITEMS,
            "acct_used_flag": True, **over}


def entry_from_answer(answer: dict, data: dict) -> dict:
    """The counter's journal entry for an online settlement, built from the centre's answer."""
    r = answer["result"]
    amounts = {k: r[k] for k in ("medfee_sumamt", "fulamt_ownpay_amt", "overlmt_selfpay", "preselfpay_amt",
                                 "inscp_scp_amt", "act_pay_dedc", "hifp_pay", "acct_pay", "psn_cash_pay")}
    p = answer["person"]
    return {"req": data["req"], "mode": "online", "psn_no": data["psn_no"],
            "card": {"card_id": data["card_id"], "keyed_in": False},
            "visit": {**data["visit"], "acct_used_flag": data["acct_used_flag"]}, "items": data["items"],
            "person": {k: p[k] for k in ("insutype", "psn_type", "status", "chronic", "balc", "deductible_used",
                                         "fund_paid")},
            "acct_limit": None, "amounts": amounts,
            "result_sha256": hashlib.sha256(json.dumps(r, ensure_ascii=False, separators=(",", ":")).encode()).digest()[:16],
            "basis": {**answer["basis"], "persons": {"version": 40}, "hotlist": {"version": 9}, "limits": None}}


async def test_online_settle_applies_once_and_the_journal_entry_is_confirmed(centre, http, tmp_path):
    a = await PlayedEdge.enrol(centre, http, tmp_path, "S-A")
    before = centre.store.ledger.load("P0001")
    data = request()
    r = await a.online_settle(data)
    assert r.status_code == 200, r.text
    ans = r.json()
    res = ans["result"]
    assert res["medfee_sumamt"] == res["fund_pay_sumamt"] + res["acct_pay"] + res["psn_cash_pay"]
    assert ans["person"]["balc"] == before.balc and ans["basis"]["policy"]["policy_version"] == "2026.3"
    after = centre.store.ledger.load("P0001")
    assert after.balc == before.balc - res["acct_pay"] and after.fund_paid == before.fund_paid + res["hifp_pay"]
    again = await a.online_settle(data)                          # the counter retries after a lost answer
    assert again.json() == ans and centre.store.ledger.load("P0001") == after
    await a.journal_entry("settlement", entry_from_answer(ans, data), time=T0)
    await a.sync()
    await trio.to_thread.run_sync(reconcile.run_pending, centre.store)
    [o] = reconcile.outcomes(centre.store, psn_no="P0001")
    assert (o.outcome, o.codes) == ("confirmed", ("online_confirmed",))
    assert centre.store.ledger.load("P0001") == after            # not applied a second time


async def test_online_refusals_are_typed(centre, http, tmp_path):
    a = await PlayedEdge.enrol(centre, http, tmp_path, "S-A")
    await trio.to_thread.run_sync(lambda: centre.store.put_bundle(
        built("hotlist", 10, {"cards": [{"card_id": person("P0004")["card_ids"][0], "reason": "reissued"}]}),
        now=T0))
    cases = [
        (request(psn="NOBODY"), "unknown_person"),
        (request(req="h", psn="P0004"), "card_hotlisted"),
        (request(req="m", visit={**visit(0), "med_type": "14", "chronic_code": "M03900"}), "no_policy_rule"),
        (request(req="i", items=[{"code": "X", "cnt": "1", "pric": 12.5}]), "invalid_input"),
    ]
    before = centre.store.ledger.load("P0001")
    for data, code in cases:
        r = await a.online_settle(data)
        assert r.status_code == 409 and r.json()["error"]["code"] == code, (code, r.text)
        assert r.json()["error"]["message"]
    assert centre.store.ledger.load("P0001") == before
    unsigned = await http.post(centre.url + "/v1/online/settle", json=request(req="u"))
    assert unsigned.status_code == 401


async def test_keyed_in_person_is_found_by_certno(centre, http, tmp_path):
    # A damaged card keyed in at a device whose snapshot lacks the person: the SSN identifies them.
    a = await PlayedEdge.enrol(centre, http, tmp_path, "S-A")
    certno = person("P0001")["certno"]
    r = await a.online_settle(request(req="k1", psn_no=None, card_id=None, certno=certno))
    assert r.status_code == 200, r.text
    assert r.json()["person"]["psn_no"] == "P0001"
    missing = await a.online_settle(request(req="k2", psn_no=None, card_id=None, certno="11010519491231002X"))
    assert missing.status_code == 409 and missing.json()["error"]["code"] == "unknown_person"
    neither = await a.online_settle(request(req="k3", psn_no=None, card_id=None))
    assert neither.status_code == 409 and neither.json()["error"]["code"] == "invalid_input"
