"""Money owed to patients moves, through the real daemons (centre + counter on loopback): a credit paid
to the account (policy ``credit_to_account``), a credit paid in cash at the counter, and an approved
claim paid out the same way. Each checks the centre's ledger, the payout queue, what the counter's
notice says, the signed payout entry and the daily report (``centre report``)."""

from __future__ import annotations

import json
import socket

import pytest
import trio

from oncecharge.conftest import ITEMS, LISI, LISI_PSN, ZHANGSAN, ZHANGSAN_PSN, balance, insert, sent_and_reconciled, until

pytestmark = pytest.mark.slow

demo = pytest.importorskip("harness.demo")
CASH_VISIT = {"med_type": "11", "acct_used_flag": False, "items": ITEMS}


def _dead_port() -> int:
    """A loopback port nothing listens on (bound, then closed): the centre "down" for the counter."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _offline_settle(stack, who: dict, req: str, visit: dict) -> dict:
    """Settle with the centre unreachable for the counter's online calls (the uplink stays up)."""
    from edge.counter import CentreClient

    counter = stack.counter
    reachable = counter.centre
    counter.centre = CentreClient(f"http://127.0.0.1:{_dead_port()}", reachable._sign)
    try:
        await insert(stack.api, who)
        r = await stack.api.post("/api/settle", json={"req": req, **visit})
    finally:
        await counter.centre.aclose()
        counter.centre = reachable
    assert r.status_code == 200, r.text
    assert r.json()["mode"] == "offline", r.json()
    return r.json()


def _deductible_met_at_centre(stack, psn_no: str) -> None:
    """The centre knows what the counter's snapshot does not: the year's deductible is met, so the fund
    should have paid part of the visit the counter charged to the patient (a patient credit)."""
    stack.store.db.execute("UPDATE recon_persons SET deductible_used = 20000 WHERE psn_no = ?", (psn_no,))


async def _publish_policy(stack, **flags) -> str:
    from sync.centre.publish import publish_payload

    policy = json.loads((demo.SAMPLE / "policy.json").read_text(encoding="utf-8"))
    policy.update(flags, version=policy["version"] + "-credits")
    before = (await stack.api.get("/api/status")).json()["cache"]["bundles"]["policy"]["version"]
    await trio.to_thread.run_sync(lambda: publish_payload(stack.store, stack.key, "policy", policy))

    async def applied():
        return (await stack.api.get("/api/status")).json()["cache"]["bundles"]["policy"]["version"] != before
    await until(applied, "the new policy at the counter")
    return policy["version"]


async def _notices(stack, who: dict) -> list[dict]:
    await insert(stack.api, who)
    return (await stack.api.get("/api/card")).json().get("notices", [])


async def _notice_of(stack, who: dict, match) -> dict:
    found: dict = {}

    async def seen():
        for n in await _notices(stack, who):
            if match(n):
                found.update(n)
                return True
        return False
    await until(seen, "the centre's notice on the counter")
    return found


def _outcome_payload(stack, seq: int) -> dict:
    device = stack.counter.journal.device
    [msg] = [m["payload"] for m in stack.store.downlink_since(device, 0)
             if m["kind"] == "outcome" and m["payload"].get("ref_seq") == seq]
    return msg


async def _report(stack, capsys, site: str, date: str) -> dict:
    from sync.centre import cli

    capsys.readouterr()
    args = ["report", "--db", str(stack.tmp / "centre" / "centre.db"), "--data-dir", str(stack.tmp / "centre"),
            "--site", site, "--date", date, "--format", "json"]
    assert await trio.to_thread.run_sync(cli.main, args) == 0
    return json.loads(capsys.readouterr().out)


async def test_a_credit_goes_to_the_account_where_policy_says_so(stack):
    """credit_to_account: the whole credit (here all of it paid in cash at the counter) moves the centre's
    account balance, nothing is queued, the notice gives the new balance, the next persons snapshot
    carries it to the counter."""
    from edge.settle import yuan
    from sync.centre.publish import publish_persons_from_ledger

    await _publish_policy(stack, credit_to_account=True)
    _deductible_met_at_centre(stack, ZHANGSAN_PSN)
    before = balance(stack, ZHANGSAN_PSN)
    s = await _offline_settle(stack, ZHANGSAN, "CR-ACCT-1", CASH_VISIT)
    assert s["setlinfo"]["acct_pay"] == 0 and s["setlinfo"]["hifp_pay"] == 0     # all cash: the deductible
    await sent_and_reconciled(stack)
    note = _outcome_payload(stack, s["seq"])
    credit = note["credit"]
    assert credit > 0 and note["outcome"] == "adjusted"
    assert balance(stack, ZHANGSAN_PSN) == before + credit                         # the money moved, once
    assert note["credited_to"] == "account" and note["to_account"] == credit and note["balc"] == before + credit
    assert "payout_no" not in note
    assert stack.store.payouts.payouts_of(stack.counter.journal.device, s["seq"]) == []
    shown = await _notice_of(stack, ZHANGSAN, lambda n: n["payload"].get("ref_seq") == s["seq"])
    zh = shown["payload"]["zh"]
    assert "已退回个人账户" in zh and f"¥{yuan(before + credit)}" in zh and "待柜台" not in zh
    await trio.to_thread.run_sync(lambda: publish_persons_from_ledger(stack.store, stack.key))

    async def fresh():
        await insert(stack.api, ZHANGSAN)
        return (await stack.api.get("/api/card")).json()["person"]["balc"] == before + credit
    await until(fresh, "the next persons snapshot with the credited balance")
    await sent_and_reconciled(stack)                                             # nothing moves again
    assert balance(stack, ZHANGSAN_PSN) == before + credit


async def test_a_credit_paid_in_cash_is_queued_paid_once_and_reported(stack, capsys):
    """Default policy (cash): the credit joins the payout queue; the counter pays it with a signed payout
    entry (receipt signed by the patient), the centre marks it paid, the report moves owed to paid."""
    _deductible_met_at_centre(stack, ZHANGSAN_PSN)
    before = balance(stack, ZHANGSAN_PSN)
    s = await _offline_settle(stack, ZHANGSAN, "CR-CASH-1", CASH_VISIT)
    await sent_and_reconciled(stack)
    device = stack.counter.journal.device
    note = _outcome_payload(stack, s["seq"])
    payout_no = f"P-{device}-{s['seq']}"
    assert note["credited_to"] == "payout" and note["payout_no"] == payout_no and note["payout"] == note["credit"] > 0
    assert balance(stack, ZHANGSAN_PSN) == before                                  # no account movement
    owed = stack.store.payouts.payout(payout_no)
    assert owed["status"] == "owed" and owed["amount"] == note["credit"] and owed["psn_no"] == ZHANGSAN_PSN
    shown = await _notice_of(stack, ZHANGSAN, lambda n: n["payload"].get("payout_no") == payout_no)
    assert "待柜台退还" in shown["payload"]["zh"] and "已退还" not in shown["payload"]["zh"]
    rep = await _report(stack, capsys, owed["site"], owed["date"])
    assert rep["payouts"]["site"] == {"owed": owed["amount"], "paid": 0, "outstanding": owed["amount"]}

    paid = await stack.api.post(f"/api/payouts/{payout_no}/pay", json={"reason": "多付现金退还"})
    assert paid.status_code == 200, paid.text
    r = paid.json()
    assert r["kind"] == "payout" and r["amount"] == owed["amount"] and r["psn_no"] == ZHANGSAN_PSN
    entry = stack.counter.journal.get(r["seq"])
    assert entry.kind == "payout" and entry.body["payout_no"] == payout_no and entry.body["method"] == "cash"
    again = await stack.api.post(f"/api/payouts/{payout_no}/pay", json={})
    assert again.status_code == 409 and again.json()["error"]["code"] == "payout_already_paid", again.text
    page = await stack.api.get(f"/receipt/{r['seq']}")
    assert page.status_code == 200 and "领款人签字" in page.text
    await sent_and_reconciled(stack)
    assert stack.store.payouts.payout(payout_no)["status"] == "paid"
    assert stack.store.high_water(device) >= r["seq"]                           # the entry was uploaded
    rep = await _report(stack, capsys, owed["site"], owed["date"])
    assert rep["payouts"]["site"] == {"owed": owed["amount"], "paid": owed["amount"], "outstanding": 0}
    assert rep["payouts"]["patients"] == [{"psn_no": ZHANGSAN_PSN, "owed": owed["amount"], "paid": owed["amount"],
                                           "outstanding": 0}]
    assert balance(stack, ZHANGSAN_PSN) == before


async def test_a_claim_approved_at_the_review_desk_is_paid_out_at_the_counter(stack, capsys):
    """Emergency observation (a reviewer decides): the desk's JSON API approves it (not admitted); the
    reimbursement is queued under C-<claim no>, the counter is told, pays it once, the centre marks it
    paid and the report shows it."""
    import httpx

    from sync.centre import review

    await insert(stack.api, LISI)
    r = await stack.api.post("/api/claim", json={"req": "EO-PAY-1", "med_type": "13", "acct_used_flag": False,
                                                 "observation": True, "card_id": LISI["card_id"],
                                                 "items": demo.ITEMS_FUND})
    assert r.status_code == 200, r.text
    assert r.json()["cause"] == "emergency_observation"
    await sent_and_reconciled(stack)
    [c] = await trio.to_thread.run_sync(lambda: review.claims(stack.store, status="pending"))
    await trio.to_thread.run_sync(lambda: stack.store.accounts.add("rev", "reviewer-pass", "reviewer", now=0))
    async with httpx.AsyncClient(base_url=stack.centre.url, trust_env=False) as desk:
        login = await desk.post("/v1/review/login", json={"name": "rev", "password": "reviewer-pass"})
        assert login.status_code == 200, login.text
        auth = {"authorization": f"Bearer {login.json()['token']}"}
        d = await desk.post(f"/v1/review/claims/{c['claim_no']}/admission", headers=auth,
                            json={"admitted": False, "note": "留观后回家，按急诊报销"})
        assert d.status_code == 200, d.text
    payout_no = f"C-{c['claim_no']}"
    owed = stack.store.payouts.payout(payout_no)
    assert owed is not None and owed["status"] == "owed" and owed["psn_no"] == LISI_PSN and owed["amount"] > 0
    shown = await _notice_of(stack, LISI, lambda n: n["payload"].get("payout_no") == payout_no)
    assert "审核通过" in shown["payload"]["zh"] and "待柜台支付" in shown["payload"]["zh"]

    paid = await stack.api.post(f"/api/payouts/{payout_no}/pay", json={"reason": "全额垫付报销"})
    assert paid.status_code == 200, paid.text
    assert paid.json()["amount"] == owed["amount"] and paid.json()["psn_no"] == LISI_PSN
    again = await stack.api.post(f"/api/payouts/{payout_no}/pay", json={})
    assert again.status_code == 409 and again.json()["error"]["code"] == "payout_already_paid", again.text
    await sent_and_reconciled(stack)
    assert stack.store.payouts.payout(payout_no)["status"] == "paid"
    rep = await _report(stack, capsys, owed["site"], owed["date"])
    assert rep["payouts"]["site"] == {"owed": owed["amount"], "paid": owed["amount"], "outstanding": 0}


async def test_a_centre_cancel_takes_the_account_credit_back_and_owes_all_the_cash(stack, capsys):
    """After a credit went to the account, `centre cancel` of that settlement leaves the account as it
    was before the visit and owes the patient every fen they paid in cash (never the credit twice)."""
    from sync.centre import cli

    await _publish_policy(stack, credit_to_account=True)
    _deductible_met_at_centre(stack, ZHANGSAN_PSN)
    before = balance(stack, ZHANGSAN_PSN)
    s = await _offline_settle(stack, ZHANGSAN, "CR-CC-1", CASH_VISIT)
    await sent_and_reconciled(stack)
    assert balance(stack, ZHANGSAN_PSN) > before
    device = stack.counter.journal.device
    args = ["cancel", "--db", str(stack.tmp / "centre" / "centre.db"), "--data-dir", str(stack.tmp / "centre"),
            "--device", device, "--seq", str(s["seq"]), "--reason", "重复收费", "--who", "王审核"]
    capsys.readouterr()
    assert await trio.to_thread.run_sync(cli.main, args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["cash_owed"] == 3560 and "cash ¥35.60 owed back" in printed["text"]
    assert balance(stack, ZHANGSAN_PSN) == before
    back = stack.store.payouts.payout(f"X-{device}-{s['seq']}")
    assert back["status"] == "owed" and back["amount"] == s["setlinfo"]["psn_cash_pay"] == 3560
    assert await trio.to_thread.run_sync(cli.main, args) == 0                     # once
    assert balance(stack, ZHANGSAN_PSN) == before


async def test_a_counter_cancel_takes_the_account_credit_back(stack):
    """The clerk's cancel hands back all the cash the patient paid; the credit the centre put into the
    account for that visit is taken back when the cancel is reconciled."""
    await _publish_policy(stack, credit_to_account=True)
    _deductible_met_at_centre(stack, ZHANGSAN_PSN)
    before = balance(stack, ZHANGSAN_PSN)
    s = await _offline_settle(stack, ZHANGSAN, "CR-KC-1", CASH_VISIT)
    await sent_and_reconciled(stack)
    assert balance(stack, ZHANGSAN_PSN) > before
    await insert(stack.api, ZHANGSAN)
    c = await stack.api.post(f"/api/settlements/{s['seq']}/cancel", json={"reason": "开错药"})
    assert c.status_code == 200, c.text
    await sent_and_reconciled(stack)
    assert balance(stack, ZHANGSAN_PSN) == before
