"""The seven seed scenarios end to end: real centre on loopback (both backends), real enrolment,
real journal store and uplink on the edge side, the real engine; outcomes and reimbursements
arrive through the uplink's downlink callback (where the daemon shows them on the counter page).

The counter's decisions are played by ``recon_support`` (bodies built with the real engine, per
docs/entries.md), not by the edge daemon.
"""

from __future__ import annotations

import trio

from sync.centre import reconcile, review
from recon_support import (
    DAY, T0, PlayedEdge, built, claim_body, counter_text, person, settlement_body, visit,
)


async def reconcile_now(centre) -> dict:
    """`centre reconcile`: run what is pending now."""
    return await trio.to_thread.run_sync(reconcile.run_pending, centre.store)


async def test_a_outage_at_two_sites_account_debt_cleared_by_contribution(centre, http, tmp_path):
    a = await PlayedEdge.enrol(centre, http, tmp_path, "S-A")
    b = await PlayedEdge.enrol(centre, http, tmp_path, "S-B")
    drugs = [{"code": "HEALTH-SUPP-0001", "cnt": "1", "pric": 10000}]   # own pay: the account pays it all
    seen = {"A": person("P0003", balc=30000), "B": person("P0003", balc=30000)}   # both cached ¥300
    for day in range(3):                               # a three-day outage; the patient visits both sites
        for edge, name, late in ((a, "A", 0), (b, "B", 3600_000)):
            snap = seen[name]
            body = settlement_body(snap, visit(day), drugs, req=f"{name}{day}", offline_visits=day + 1,
                                   acct_limit=50000 - day * 10000)
            await edge.journal_entry("settlement", body, time=T0 + day * DAY + late)
            # each counter knows only its own visits
            seen[name] = {**snap, "balc": snap["balc"] - body["amounts"]["acct_pay"]}
    await b.sync()                                     # the network comes back; B uploads first
    await a.sync()
    counts = await reconcile_now(centre)
    assert counts["review"] == 0 and counts["rejected"] == 0
    led = centre.store.ledger.load("P0003")
    debts = centre.store.ledger.debts("P0003")
    assert led.balc < 0 and sum(d["amount"] for d in debts) == -led.balc
    assert all(d["cleared_ms"] is None for d in debts)
    await a.sync()
    await b.sync()
    told = a.messages("outcome") + b.messages("outcome")
    assert any("debt" in m["reason"] for m in told)
    # The next monthly contribution clears the debt.
    res = await trio.to_thread.run_sync(lambda: centre.store.ledger.contribute("P0003", 40000, who="test"))
    assert res["debt"] == 0 and res["debt_cleared"] == -led.balc
    assert all(d["cleared_ms"] is not None for d in centre.store.ledger.debts("P0003"))


async def test_b_stale_deductible_offline_patient_credited(centre, http, tmp_path):
    a = await PlayedEdge.enrol(centre, http, tmp_path, "S-A")
    stale = person("P0002", deductible_used=0)
    # Online elsewhere the patient met the deductible; this site's snapshot predates it.
    await trio.to_thread.run_sync(lambda: centre.store.db.execute(
        "UPDATE recon_persons SET deductible_used = 20000 WHERE psn_no = 'P0002'"))
    body = settlement_body(stale, visit(0))
    await a.journal_entry("settlement", body, time=T0)
    await a.sync()
    await reconcile_now(centre)
    await a.sync()
    [msg] = a.messages("outcome")
    fund_now = round((body["amounts"]["inscp_scp_amt"]) * 0.7)
    assert msg["outcome"] == "adjusted" and msg["ref_seq"] == 1
    assert msg["credit"] == fund_now > 0
    assert "deductible_used" in msg["reason"]


async def test_c_arrears_full_payment_then_cleared_auto_reimbursed(centre, http, tmp_path):
    a = await PlayedEdge.enrol(centre, http, tmp_path, "S-A")
    await trio.to_thread.run_sync(lambda: centre.store.ledger.suspend("P0001", "2026-11-01", "2026-11-30"))
    snap = person("P0001", status="suspended")
    # Online: the centre refuses with `suspended`; the counter takes a full payment (cause arrears).
    resp = await a.online_settle({"req": "ON-1", "psn_no": "P0001", "card_id": snap["card_ids"][0],
                                  "visit": visit(0), "items": [{"code": "XJ01CAA040E001010101445", "cnt": "2",
                                                                "pric": 1280}], "acct_used_flag": False})
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "suspended"
    await a.journal_entry("claim", claim_body(snap, visit(0), "arrears"), time=T0)
    await a.sync()
    await reconcile_now(centre)
    [c] = await trio.to_thread.run_sync(lambda: review.claims(centre.store, status="pending"))
    assert c["waiting"].startswith("wait")
    # The employer pays: arrears cleared; the next reconciliation pass approves the claim by itself.
    await trio.to_thread.run_sync(lambda: centre.store.ledger.clear_arrears("P0001", who="test"))
    counts = await reconcile_now(centre)
    assert counts["auto_approved"] == 1
    await a.sync()
    [r] = a.messages("reimbursement")
    assert r["claim_no"] == f"{a.device}-1" and r["amount"] > 0
    assert counter_text(r) == (f"reimbursement of ¥{r['amount'] // 100}.{r['amount'] % 100:02d} approved for claim "
                               f"{a.device}-1")
    acts = centre.store.ledger.actions(f"{a.device}-1")
    assert [(x["who"], x["action"]) for x in acts] == [("auto", "approve_claim")]


async def test_d_pending_review_full_payment_review_closes_auto_reimbursed(centre, http, tmp_path):
    a = await PlayedEdge.enrol(centre, http, tmp_path, "S-A")
    snap = person("P0001")
    # An earlier offline bill the engine cannot reproduce puts the person under review.
    bad = settlement_body(snap, visit(0), req="X1", tamper={"hifp_pay": 1, "acct_pay": 0})
    bad["amounts"]["psn_cash_pay"] = bad["amounts"]["medfee_sumamt"] - 1
    await a.journal_entry("settlement", bad, time=T0)
    await a.sync()
    await reconcile_now(centre)
    assert centre.store.ledger.load("P0001").open_reviews == 1
    resp = await a.online_settle({"req": "ON-2", "psn_no": "P0001", "card_id": snap["card_ids"][0],
                                  "visit": visit(1), "items": [{"code": "XJ01CAA040E001010101445", "cnt": "1",
                                                                "pric": 1280}], "acct_used_flag": True})
    assert resp.json()["error"]["code"] == "pending_review"
    await a.journal_entry("claim", claim_body({**snap, "pending_review": True}, visit(1), "pending_review",
                                              req="C2"), time=T0 + DAY)
    await a.sync()
    await reconcile_now(centre)
    assert review.claims(centre.store, status="pending")[0]["claim_no"] == f"{a.device}-2"
    await trio.to_thread.run_sync(lambda: centre.store.ledger.close_review("P0001", who="test", note="explained"))
    assert (await reconcile_now(centre))["auto_approved"] == 1
    await a.sync()
    [r] = a.messages("reimbursement")
    assert r["claim_no"] == f"{a.device}-2" and r["amount"] > 0


async def test_e_damaged_card_keyed_in_offline_claim_reviewer_approves(centre, http, tmp_path):
    a = await PlayedEdge.enrol(centre, http, tmp_path, "S-A")
    snap = person("P0004")
    await a.journal_entry("claim", claim_body(snap, visit(0), "card_unreadable", keyed_in=True,
                                              detail="card demagnetised; keyed in card no. + ID"), time=T0)
    await a.sync()
    await reconcile_now(centre)
    [c] = review.claims(centre.store, status="pending")
    assert c["psn_no"] == "P0004" and c["waiting"].startswith("manual")   # identified by certno
    await trio.to_thread.run_sync(lambda: centre.store.accounts.add("wang", "s3cret-pass", "reviewer", now=T0))
    login = await http.post(centre.url + "/v1/review/login", json={"name": "wang", "password": "s3cret-pass"})
    token = login.json()["token"]
    auth = {"authorization": f"Bearer {token}"}
    detail = (await http.get(centre.url + f"/v1/review/claims/{c['claim_no']}", headers=auth)).json()
    expected = detail["preview"]["hifp_pay"]
    assert expected > 0 and detail["items"][0]["code"] == "XJ01CAA040E001010101445"
    ok = await http.post(centre.url + f"/v1/review/claims/{c['claim_no']}/approve", headers=auth,
                         json={"note": "identity checked against the ID card"})
    assert ok.status_code == 200 and ok.json()["amount"] == expected
    await a.sync()
    [r] = a.messages("reimbursement")
    assert r["amount"] == expected and "identity checked" in r["reason"]
    acts = centre.store.ledger.actions(c["claim_no"])
    assert acts[-1]["who"] == "wang" and acts[-1]["action"] == "approve_claim" and acts[-1]["at_ms"] > 0


async def test_f_card_hotlisted_after_snapshot_used_offline_goes_to_review(centre, http, tmp_path):
    a = await PlayedEdge.enrol(centre, http, tmp_path, "S-A")
    snap = person("P0004")
    await trio.to_thread.run_sync(lambda: centre.store.put_bundle(
        built("hotlist", 10, {"cards": [{"card_id": snap["card_ids"][0], "reason": "reported lost"}]},
              created=T0 - 3600_000), now=T0 - 3600_000))
    await a.journal_entry("settlement", settlement_body(snap, visit(0)), time=T0)   # edge still holds hotlist 9
    await a.sync()
    await reconcile_now(centre)
    [o] = reconcile.outcomes(centre.store, psn_no="P0004")
    assert (o.outcome, o.codes) == ("review", ("card_hotlisted",)) and "reported lost" in o.reason
    await a.sync()
    [msg] = a.messages("outcome")
    assert msg["outcome"] == "review" and msg["credit"] == 0


async def test_g_emergency_observation_resolved_after_admission(centre, http, tmp_path):
    a = await PlayedEdge.enrol(centre, http, tmp_path, "S-T")
    snap = person("P0001")
    er = [{"code": "120400001", "cnt": "2", "pric": 600}, {"code": "XJ01CAA040E001010101445", "cnt": "20",
                                                            "pric": 1280}]
    await a.journal_entry("claim", claim_body(snap, visit(0, "13", "township"), "emergency_observation", er,
                                              req="E1"), time=T0)
    await a.journal_entry("claim", claim_body(snap, visit(1, "13", "township"), "emergency_observation", er,
                                              req="E2"), time=T0 + DAY)
    await a.sync()
    await reconcile_now(centre)
    assert all(c["waiting"].startswith("manual") for c in review.claims(centre.store))
    await trio.to_thread.run_sync(lambda: centre.store.accounts.add("li", "another-pass", "reviewer", now=T0))
    login = await http.post(centre.url + "/v1/review/login", json={"name": "li", "password": "another-pass"})
    token = login.json()["token"]
    auth = {"authorization": f"Bearer {token}"}
    not_admitted = await http.post(centre.url + f"/v1/review/claims/{a.device}-1/admission", headers=auth,
                                   json={"admitted": False})
    admitted = await http.post(centre.url + f"/v1/review/claims/{a.device}-2/admission", headers=auth,
                               json={"admitted": True})
    assert not_admitted.json()["status"] == "approved" and not_admitted.json()["amount"] > 0
    assert admitted.json()["status"] == "denied"
    await a.sync()
    got = {r["claim_no"]: r for r in a.messages("reimbursement")}
    assert got[f"{a.device}-1"]["amount"] == not_admitted.json()["amount"]
    assert got[f"{a.device}-2"]["amount"] == 0 and "inpatient" in got[f"{a.device}-2"]["reason"]
    assert (got[f"{a.device}-1"]["status"], got[f"{a.device}-2"]["status"]) == ("approved", "denied")


async def test_background_task_reconciles_what_arrives(centre, http, tmp_path, nursery):
    """`centre run` starts reconcile.background; uploads get outcomes without anyone asking."""
    a = await PlayedEdge.enrol(centre, http, tmp_path, "S-A")
    await nursery.start(lambda task_status: reconcile.background(centre.store, interval=0.05, task_status=task_status))
    await a.journal_entry("settlement", settlement_body(person("P0002", deductible_used=0), visit(0)), time=T0)
    await trio.to_thread.run_sync(lambda: centre.store.db.execute(
        "UPDATE recon_persons SET deductible_used = 20000 WHERE psn_no = 'P0002'"))
    await a.sync()
    with trio.fail_after(30):
        while not a.messages("outcome"):
            await trio.sleep(0.05)
            await a.sync()
    assert a.messages("outcome")[0]["outcome"] == "adjusted"
