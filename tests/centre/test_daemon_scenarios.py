"""All seven seed scenarios through the REAL edge daemon: its local API, its offline decision,
its journal and uplink, the centre on loopback (the demo's stack, SQLite), reconciliation and
review, and the outcome or reimbursement shown on the counter the next time the card is read.

The daemon runs on the real clock, so scenario (a)'s "three-day outage" is three visits per site
within one outage; tests/centre/test_scenarios.py plays the three calendar days at the loopback level.
"""

from __future__ import annotations

import httpx
import pytest
import trio

from sync.centre import reconcile, review

# Each scenario boots the whole demo stack (centre + counter daemons): seconds per test.
pytestmark = pytest.mark.slow

demo = pytest.importorskip("harness.demo")

# Large enough to pass any remaining deductible, so the fund's share (the reimbursement) is not zero.
ITEMS = [{"med_list_codg": "XJ01CAA040E001010101445", "cnt": "20", "pric": 1280},
         {"med_list_codg": "001102000010000", "cnt": "1", "pric": 1000}]
WANGFANG = demo.WANGFANG                                         # suspended (employer arrears) in the sample
LIUWEI = {"card_id": "330300D15600000500000000000003E9", "certno": "330302195302021017", "psn_name": "刘伟"}
LISI = demo.LISI


async def until(check, what: str, within: float = 60.0):
    with trio.fail_after(within):
        while not await check():
            await trio.sleep(0.1)


@pytest.fixture
async def stack(nursery, tmp_path):
    s = await demo.start_stack(nursery, tmp_path, simulated=True, probe_s=0.5, idle_s=0.5)
    async with httpx.AsyncClient(base_url=s.daemon.url, trust_env=False, headers=s.daemon.headers) as api:
        s.api = api
        await until(lambda: _status(api, "online"), "the counter to reach the centre")
        await until(lambda: _bundles(api), "the sample bundles")
        yield s
    s.centre.stop()


async def _status(api, key):
    return (await api.get("/api/status")).json()[key]


async def _bundles(api):
    return {"policy", "catalogue", "persons", "hotlist"} <= set((await api.get("/api/status")).json()["cache"]["bundles"])


async def insert(api, who):
    (await api.post("/api/card/simulate", json=who)).raise_for_status()
    await until(lambda: _present(api), "the card")


async def _present(api):
    return (await api.get("/api/card")).json()["present"]


async def full_payment(api, body) -> dict:
    r = await api.post("/api/settle", json=body)
    assert r.status_code != 200 and r.json()["error"]["code"] == "full_payment_required", r.text
    r = await api.post("/api/claim", json=body)
    assert r.status_code == 200, r.text
    return r.json()


async def sent_and_reconciled(stack):
    await until(lambda: _backlog_empty(stack.api), "the backlog to be sent")
    await trio.to_thread.run_sync(reconcile.run_pending, stack.store)


async def _backlog_empty(api):
    return (await api.get("/api/status")).json()["backlog"]["count"] == 0


async def notice_on_card(stack, who, claim_no) -> str:
    """Read the card again; return the counter's notice for ``claim_no`` once it arrived."""
    found = {}

    async def arrived():
        await stack.api.delete("/api/card/simulate")
        await insert(stack.api, who)
        card = (await stack.api.get("/api/card")).json()
        for n in card.get("notices", []):
            if n["payload"].get("claim_no") == claim_no:
                found["zh"] = n["payload"]["zh"]
                return True
        return False
    await until(arrived, f"the reimbursement of {claim_no} on the counter")
    return found["zh"]


def yuan(fen: int) -> str:
    return f"¥{fen // 100}.{fen % 100:02d}"


async def test_c_arrears_full_payment_cleared_reimbursement_shown_at_the_counter(stack):
    await insert(stack.api, WANGFANG)
    receipt = await full_payment(stack.api, {"req": "C-1", "med_type": "11", "items": ITEMS})
    claim_no = receipt["claim_no"]
    await sent_and_reconciled(stack)
    [c] = review.claims(stack.store)
    assert c["claim_no"] == claim_no and c["cause"] == "arrears" and c["waiting"].startswith("wait")
    await trio.to_thread.run_sync(lambda: stack.store.ledger.clear_arrears(c["psn_no"], who="employer-paid"))
    counts = await trio.to_thread.run_sync(reconcile.run_pending, stack.store)
    assert counts["auto_approved"] == 1
    amount = review.claim(stack.store, claim_no)["amount"]
    assert amount > 0
    zh = await notice_on_card(stack, WANGFANG, claim_no)
    assert claim_no in zh and yuan(amount) in zh and "审核通过" in zh


async def test_d_pending_review_full_payment_review_closed_reimbursement_shown(stack):
    await insert(stack.api, LIUWEI)                     # 刘伟 has earlier bills under review
    receipt = await full_payment(stack.api, {"req": "D-1", "med_type": "11", "items": ITEMS})
    await sent_and_reconciled(stack)
    c = review.claim(stack.store, receipt["claim_no"])
    assert c["cause"] == "pending_review" and c["status"] == "pending"
    await trio.to_thread.run_sync(lambda: stack.store.ledger.close_review(c["psn_no"], who="reviewer"))
    assert (await trio.to_thread.run_sync(reconcile.run_pending, stack.store))["auto_approved"] == 1
    zh = await notice_on_card(stack, LIUWEI, receipt["claim_no"])
    assert yuan(review.claim(stack.store, receipt["claim_no"])["amount"]) in zh


async def test_e_keyed_in_while_offline_reviewer_approves_reimbursement_shown(stack, nursery):
    await demo.stop_centre(stack)
    await until(lambda: _offline(stack.api), "the counter to notice the outage")
    r = await stack.api.post("/api/claim", json={"req": "E-1", "med_type": "11", "items": ITEMS,
                                                 "keyed_in": {"card_no": "A12345678", "certno": LISI["certno"]}})
    assert r.status_code == 200, r.text
    claim_no = r.json()["claim_no"]
    await demo.restart_centre(nursery, stack)
    await until(lambda: _status(stack.api, "online"), "the counter to reach the centre again")
    await sent_and_reconciled(stack)
    c = review.claim(stack.store, claim_no)
    assert c["cause"] == "card_unreadable" and c["psn_no"] == "3303000000000002"
    await trio.to_thread.run_sync(lambda: stack.store.accounts.add("wang", "reviewer-pass", now=0))
    async with httpx.AsyncClient(base_url=stack.centre.url, trust_env=False) as centre:
        token = (await centre.post("/v1/review/login", json={"name": "wang", "password": "reviewer-pass"})).json()["token"]
        ok = await centre.post(f"/v1/review/claims/{claim_no}/approve", headers={"authorization": f"Bearer {token}"},
                               json={"note": "ID card checked"})
    assert ok.status_code == 200 and ok.json()["amount"] > 0
    zh = await notice_on_card(stack, LISI, claim_no)
    assert yuan(ok.json()["amount"]) in zh


async def _offline(api):
    return not (await api.get("/api/status")).json()["online"]


ZHANGSAN = demo.ZHANGSAN


async def offline_visit(stack, nursery, body, *, while_offline=None) -> dict:
    """Centre down; the counter settles offline; ``while_offline`` changes the centre's world; centre back."""
    await demo.stop_centre(stack)
    await until(lambda: _offline(stack.api), "the counter to notice the outage")
    if while_offline is not None:
        await trio.to_thread.run_sync(while_offline)
    await insert(stack.api, ZHANGSAN)
    r = await stack.api.post("/api/settle", json=body)
    assert r.status_code == 200 and r.json()["mode"] == "offline", r.text
    await stack.api.delete("/api/card/simulate")
    await demo.restart_centre(nursery, stack)
    await until(lambda: _status(stack.api, "online"), "the counter to reach the centre again")
    await sent_and_reconciled(stack)
    return r.json()


async def outcome_notice(stack, seq) -> dict:
    found = {}

    async def arrived():
        await stack.api.delete("/api/card/simulate")
        await insert(stack.api, ZHANGSAN)
        for n in (await stack.api.get("/api/card")).json().get("notices", []):
            if n["payload"].get("ref_seq") == seq:
                found.update(n["payload"])
                return True
        return False
    await until(arrived, f"the outcome of seq {seq} on the counter")
    return found


async def test_b_stale_deductible_offline_credit_shown_at_the_counter(stack, nursery):
    def met_elsewhere():   # meanwhile, online at another site, 张三 met this year's deductible
        stack.store.db.execute("UPDATE recon_persons SET deductible_used = 100000 WHERE psn_no = '3303000000000001'")
    receipt = await offline_visit(stack, nursery, {"req": "B-1", "med_type": "11", "acct_used_flag": True,
                                                   "pin": "123456", "items": ITEMS}, while_offline=met_elsewhere)
    [o] = [o for o in reconcile.outcomes(stack.store, psn_no="3303000000000001") if o.seq == receipt["seq"]]
    assert o.outcome == "adjusted" and "patient_credit" in o.codes and o.credit > 0
    note = await outcome_notice(stack, receipt["seq"])
    assert note["credit"] == o.credit and yuan(o.credit) in note["zh"]


async def test_f_card_hotlisted_after_the_snapshot_used_offline_goes_to_review(stack, nursery):
    from sync import bundles
    from sync.centre.store import now_ms

    def hotlist_the_card():   # reported lost at the centre while the counter cannot hear about it
        version = stack.store.bundle_versions()["hotlist"] + 1
        raw = bundles.build(stack.key, kind="hotlist", version=version, created=now_ms() - 1000,
                            payload={"cards": [{"card_id": ZHANGSAN["card_id"], "reason": "lost"}]})
        stack.store.put_bundle(raw, now=now_ms() - 1000)
    receipt = await offline_visit(stack, nursery, {"req": "F-1", "med_type": "11", "acct_used_flag": True,
                                                   "pin": "123456", "items": ITEMS}, while_offline=hotlist_the_card)
    [o] = [o for o in reconcile.outcomes(stack.store, psn_no="3303000000000001") if o.seq == receipt["seq"]]
    assert (o.outcome, o.codes) == ("review", ("card_hotlisted",))
    assert stack.store.ledger.load("3303000000000001").open_reviews >= 1
    note = await outcome_notice(stack, receipt["seq"])
    assert note["outcome"] == "review"


async def test_g_emergency_observation_claim_resolved_after_admission(stack):
    await insert(stack.api, ZHANGSAN)
    drip = [{"med_list_codg": "XJ01CAA040E001010101445", "cnt": "300", "pric": 1280}]   # above the ER deductible
    r = await stack.api.post("/api/claim", json={"req": "G-1", "med_type": "13", "observation": True, "items": drip})
    assert r.status_code == 200, r.text
    claim_no = r.json()["claim_no"]
    await stack.api.delete("/api/card/simulate")
    await sent_and_reconciled(stack)
    c = review.claim(stack.store, claim_no)
    assert c["cause"] == "emergency_observation" and c["waiting"].startswith("manual")
    await trio.to_thread.run_sync(lambda: stack.store.accounts.add("li", "reviewer-pass", now=0))
    async with httpx.AsyncClient(base_url=stack.centre.url, trust_env=False) as centre:
        token = (await centre.post("/v1/review/login", json={"name": "li", "password": "reviewer-pass"})).json()["token"]
        ok = await centre.post(f"/v1/review/claims/{claim_no}/admission", json={"admitted": False},
                               headers={"authorization": f"Bearer {token}"})
    assert ok.status_code == 200 and ok.json()["status"] == "approved" and ok.json()["amount"] > 0, ok.text
    zh = await notice_on_card(stack, ZHANGSAN, claim_no)
    assert yuan(ok.json()["amount"]) in zh


async def second_counter(nursery, stack, tmp_path, site="S330300002"):
    """Another site's counter daemon enrolled with the same centre (the demo starts the first)."""
    from edge import config as cfgmod
    from edge import daemon
    from edge.enrol import enroll

    state = tmp_path / "edge-b"
    token = await trio.to_thread.run_sync(lambda: stack.store.create_enrol_token(site, ttl_ms=3_600_000))
    async with httpx.AsyncClient(trust_env=False) as client:
        await enroll(stack.centre.url, token, state, client=client)
    cfg = cfgmod.from_dict({"state_dir": str(state), "counter": {"port": 0, "online_timeout_s": 2.0,
                                                                 "retry_online_after_s": 5.0},
                            "card": {"simulated": True, "enabled": True},
                            "sync": {"idle_s": 0.5, "probe_interval_s": 0.5}})
    return await nursery.start(daemon.run, cfg)


async def test_a_outage_at_two_sites_account_used_at_both_debt_cleared_by_contribution(stack, nursery, tmp_path):
    running_b = await second_counter(nursery, stack, tmp_path)
    async with httpx.AsyncClient(base_url=running_b.url, trust_env=False, headers=running_b.headers) as api_b:
        await until(lambda: _status(api_b, "online"), "the second counter to reach the centre")
        await until(lambda: _bundles(api_b), "the second counter's bundles")
        await demo.stop_centre(stack)
        for api in (stack.api, api_b):
            await until(lambda: _offline(api), "the counters to notice the outage")
        supplements = [{"med_list_codg": "HEALTH-SUPP-0001", "cnt": "1", "pric": 10000}]   # own pay: account
        for visit in range(3):                   # the same patient at both sites; each knows only its own
            for name, api in (("A", stack.api), ("B", api_b)):
                await insert(api, ZHANGSAN)
                r = await api.post("/api/settle", json={"req": f"{name}-{visit}", "med_type": "11",
                                                        "acct_used_flag": True, "pin": "123456",
                                                        "items": supplements})
                assert r.status_code == 200 and r.json()["mode"] == "offline", r.text
                assert r.json()["setlinfo"]["acct_pay"] == 10000
                await api.delete("/api/card/simulate")
        await demo.restart_centre(nursery, stack)
        for api in (stack.api, api_b):
            await until(lambda: _status(api, "online"), "the counters to reach the centre again")
            await until(lambda: _backlog_empty(api), "the backlogs to be sent")
    counts = await trio.to_thread.run_sync(reconcile.run_pending, stack.store)
    assert counts["review"] == 0 and counts["rejected"] == 0
    led = stack.store.ledger.load("3303000000000001")
    assert led.balc == 50000 - 60000
    debts = stack.store.ledger.debts("3303000000000001")
    assert sum(d["amount"] for d in debts) == 10000 and all(d["cleared_ms"] is None for d in debts)
    res = await trio.to_thread.run_sync(lambda: stack.store.ledger.contribute("3303000000000001", 25000, who="payroll"))
    assert res["debt_cleared"] == 10000 and res["balc"] == 15000
    assert all(d["cleared_ms"] is not None for d in stack.store.ledger.debts("3303000000000001"))
