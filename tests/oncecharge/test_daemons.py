"""Each finding of issue 13, through the real daemons (centre + counter on loopback): how many times the
account, the fund and the cash move for one req. Written before the fix; each failed on the code found."""

from __future__ import annotations

import pytest
import trio

from oncecharge.conftest import ITEMS, LISI, LISI_PSN, ZHANGSAN, ZHANGSAN_PSN, balance, insert, sent_and_reconciled

pytestmark = pytest.mark.slow

SETTLE = b"/v1/online/settle"
LOOKUP = b"/v1/online/lookup"
VISIT = {"med_type": "11", "acct_used_flag": True, "pin": "123456", "items": ITEMS}


def _codes(stack, seq):
    row = stack.store.recon.outcome(stack.daemon.counter.journal.device, seq)
    return row["codes"] if row else None


async def test_late_online_answer_is_found_by_lookup_and_charged_once(stack):
    """The centre commits, its answer is held past online_timeout_s: the counter asks whether the req
    settled, journals the centre's answer (online), and reconciliation moves the account once."""
    await insert(stack.api, ZHANGSAN)
    before = balance(stack, ZHANGSAN_PSN)
    stack.proxy.hold = {SETTLE}
    r = await stack.api.post("/api/settle", json={"req": "LATE-1", **VISIT})
    assert r.status_code == 200, r.text
    receipt = r.json()
    assert stack.proxy.held >= 1
    assert receipt["mode"] == "online", receipt
    acct = receipt["setlinfo"]["acct_pay"]
    assert receipt["setlinfo"]["medfee_sumamt"] == 3560 and acct > 0
    await sent_and_reconciled(stack)
    assert balance(stack, ZHANGSAN_PSN) == before - acct          # not twice (¥71.20 for ¥35.60)


async def test_late_online_answer_and_silent_lookup_offline_entry_is_not_applied_again(stack):
    """The lookup is held too: the counter settles offline with the same req (as before); reconciliation
    recognises the req the centre settled online (already_settled_online) and moves nothing again."""
    await insert(stack.api, ZHANGSAN)
    before = balance(stack, ZHANGSAN_PSN)
    stack.proxy.hold = {SETTLE, LOOKUP}
    r = await stack.api.post("/api/settle", json={"req": "LATE-2", **VISIT})
    assert r.status_code == 200, r.text
    receipt = r.json()
    assert receipt["mode"] == "offline", receipt
    await trio.sleep(stack.proxy.hold_s)          # the held answer lands; the centre committed long ago
    online = stack.store.recon.online(stack.daemon.counter.journal.device, "LATE-2")
    assert online is not None
    await sent_and_reconciled(stack)
    assert "already_settled_online" in _codes(stack, receipt["seq"])
    assert balance(stack, ZHANGSAN_PSN) == before - online["a_acct"]


async def test_a_settle_arriving_after_the_lookup_said_no_never_settles(stack):
    """The request itself is slow (it reaches the centre after online_timeout_s): the counter asks whether
    the req settled (no) and, for a keyed-in card that cannot settle offline, asks for a full payment. The
    late request must not settle at the centre afterwards (money moved that no entry of the counter
    records, while the patient pays in full): the lookup fences the req."""
    keyed = {**VISIT, "acct_used_flag": False,
             "keyed_in": {"card_no": "A12345678", "certno": ZHANGSAN["certno"]}}
    before = balance(stack, ZHANGSAN_PSN)
    stack.proxy.delay = {SETTLE}
    r = await stack.api.post("/api/settle", json={"req": "LATE-3", **keyed})
    assert r.status_code == 409 and r.json()["error"]["code"] == "full_payment_required", r.text
    await trio.sleep(stack.proxy.hold_s + 1)      # the slow request has reached the centre by now
    device = stack.daemon.counter.journal.device
    assert stack.store.recon.online(device, "LATE-3") is None
    assert balance(stack, ZHANGSAN_PSN) == before
    stack.proxy.delay = set()
    again = await stack.api.post("/api/settle", json={"req": "LATE-3", **keyed})   # retried on a fast link
    assert again.status_code == 409 and again.json()["error"]["code"] == "full_payment_required", again.text
    assert stack.store.recon.online(device, "LATE-3") is None
    c = await stack.api.post("/api/claim", json={"req": "LATE-3", **keyed})     # the clerk takes the full payment
    assert c.status_code == 200, c.text
    await sent_and_reconciled(stack)
    assert balance(stack, ZHANGSAN_PSN) == before
    assert stack.store.recon.online(device, "LATE-3") is None


async def test_busy_journal_then_retry_with_another_cart_is_a_conflict(stack):
    """The centre applied cart A, the journal was busy (503); the same req with cart B is refused (409
    req_conflict, both totals shown, nothing journaled); the same req with cart A settles as A."""
    from edge.journal import JournalBusy

    await insert(stack.api, ZHANGSAN)
    counter = stack.daemon.counter
    real = counter.journal.append
    calls = {"n": 0}

    def busy_once(*a, **k):
        calls["n"] += 1
        if calls["n"] == 1:
            raise JournalBusy("the journal is locked by another program")
        return real(*a, **k)

    counter.journal.append = busy_once
    cart_a = {**VISIT, "items": [{"med_list_codg": "XJ01CAA040E001010101445", "cnt": "5", "pric": 1280},
                                 {"med_list_codg": "001102000010000", "cnt": "1", "pric": 1000}]}   # ¥74.00
    cart_b = {**VISIT, "items": [{"med_list_codg": "001102000010000", "cnt": "1", "pric": 1000}]}  # ¥10.00
    r = await stack.api.post("/api/settle", json={"req": "BUSY-1", **cart_a})
    assert r.status_code == 503 and r.json()["error"]["code"] == "journal_busy", r.text
    head_before = (await stack.api.get("/api/status")).json()["journal"]["head"]
    r = await stack.api.post("/api/settle", json={"req": "BUSY-1", **cart_b})
    assert r.status_code == 409, r.text
    err = r.json()["error"]
    assert err["code"] == "req_conflict"
    assert err["settled"]["medfee_sumamt"] == 7400 and err["asked"]["medfee_sumamt"] == 1000
    assert (await stack.api.get("/api/status")).json()["journal"]["head"] == head_before
    r = await stack.api.post("/api/settle", json={"req": "BUSY-1", **cart_a})
    assert r.status_code == 200, r.text
    assert r.json()["setlinfo"]["medfee_sumamt"] == 7400
    assert [ln["cnt"] for ln in r.json()["lines"]] == ["5", "1"]


async def test_same_req_other_cart_after_journaling_is_a_conflict(stack):
    await insert(stack.api, ZHANGSAN)
    r = await stack.api.post("/api/settle", json={"req": "SAME-1", **VISIT})
    assert r.status_code == 200, r.text
    again = await stack.api.post("/api/settle", json={"req": "SAME-1", **VISIT})
    assert again.status_code == 200 and again.json()["seq"] == r.json()["seq"]
    other = {**VISIT, "items": [{"med_list_codg": "001102000010000", "cnt": "1", "pric": 1000}]}
    r2 = await stack.api.post("/api/settle", json={"req": "SAME-1", **other})
    assert r2.status_code == 409 and r2.json()["error"]["code"] == "req_conflict", r2.text


async def test_his_req_cancel_n_does_not_block_cancelling_settlement_n(stack):
    await insert(stack.api, ZHANGSAN)
    first = (await stack.api.post("/api/settle", json={"req": "V-1", **VISIT})).json()
    seq = first["seq"]
    r = await stack.api.post("/api/settle", json={"req": f"cancel:{seq}", **VISIT})
    assert r.status_code == 200, r.text
    r = await stack.api.post(f"/api/settlements/{seq}/cancel", json={"reason": "开错药"})
    assert r.status_code == 200, r.text
    assert r.json()["kind"] == "cancel" and r.json()["cancels"] == seq


async def test_cancel_needs_the_same_person_and_a_reason(stack):
    await insert(stack.api, LISI)
    lisi = (await stack.api.post("/api/settle", json={"req": "L-1", **VISIT})).json()
    await insert(stack.api, ZHANGSAN)                # 张三's card in the reader, 李四's receipt number
    r = await stack.api.post(f"/api/settlements/{lisi['seq']}/cancel", json={"reason": "退费"})
    assert r.status_code in (403, 409), r.text
    assert r.json()["error"]["code"] == "cancel_other_person"
    await insert(stack.api, LISI)
    r = await stack.api.post(f"/api/settlements/{lisi['seq']}/cancel", json={})
    assert r.status_code == 422 and r.json()["error"]["code"] == "reason_required", r.text
    r = await stack.api.post(f"/api/settlements/{lisi['seq']}/cancel", json={"reason": "退费"})
    assert r.status_code == 200, r.text
    await sent_and_reconciled(stack)
    assert balance(stack, LISI_PSN) == 52500


async def test_cancel_names_the_site(stack):
    """A receipt from another site (its device named in the request) is refused here."""
    await insert(stack.api, ZHANGSAN)
    mine = (await stack.api.post("/api/settle", json={"req": "S-1", **VISIT})).json()
    r = await stack.api.post(f"/api/settlements/{mine['seq']}/cancel",
                             json={"reason": "退费", "device": "D-S330300999-1"})
    assert r.status_code in (403, 409) and r.json()["error"]["code"] == "cancel_other_site", r.text


async def test_cancel_after_reconciliation_is_a_reversing_adjustment(stack):
    """A cancel at the counter of a settlement the centre already reconciled reverses it at the centre
    (its own outcome, cancel_applied); the settlement's outcome row stays as it was."""
    await insert(stack.api, LISI)
    s = (await stack.api.post("/api/settle", json={"req": "RC-1", **VISIT})).json()
    await sent_and_reconciled(stack)
    device = stack.daemon.counter.journal.device
    settled = dict(stack.store.recon.outcome(device, s["seq"]))
    assert balance(stack, LISI_PSN) == 52500 - s["setlinfo"]["acct_pay"]
    c = await stack.api.post(f"/api/settlements/{s['seq']}/cancel", json={"reason": "退费"})
    assert c.status_code == 200, c.text
    await sent_and_reconciled(stack)
    assert balance(stack, LISI_PSN) == 52500
    assert "cancel_applied" in _codes(stack, c.json()["seq"])
    assert dict(stack.store.recon.outcome(device, s["seq"])) == settled          # never an edit


async def test_cancel_after_a_persons_bundle_reflecting_the_visit(stack):
    """Finding 4's last case: after a persons bundle, the counter's cancel refused with "请到医保中心办理"
    (its person state was the bundle's alone). Reconciled, then persons published from the ledger (the
    snapshot reflects the visit): the counter cancels it, once, and the centre's balance comes back."""
    import subprocess
    import sys

    from oncecharge.conftest import until

    await insert(stack.api, LISI)
    s = (await stack.api.post("/api/settle", json={"req": "RB-1", **VISIT})).json()
    assert s["setlinfo"]["acct_pay"] > 0
    await sent_and_reconciled(stack)
    version = (await stack.api.get("/api/status")).json()["cache"]["bundles"]["persons"]["version"]
    done = await trio.to_thread.run_sync(lambda: subprocess.run(
        [sys.executable, "-m", "sync.centre", "publish", "--db", str(stack.tmp / "centre" / "centre.db"),
         "--data-dir", str(stack.tmp / "centre"), "--from-ledger"], capture_output=True, text=True, timeout=120))
    assert done.returncode == 0, done.stdout + done.stderr

    async def applied():
        return (await stack.api.get("/api/status")).json()["cache"]["bundles"]["persons"]["version"] > version
    await until(applied, "the persons bundle from the ledger")
    await insert(stack.api, LISI)
    c = await stack.api.post(f"/api/settlements/{s['seq']}/cancel", json={"reason": "退费"})
    assert c.status_code == 200, c.text
    await sent_and_reconciled(stack)
    assert balance(stack, LISI_PSN) == 52500
    assert "cancel_applied" in _codes(stack, c.json()["seq"])


async def test_centre_cancel_reverses_once_and_tells_the_counter(stack, capsys):
    """What the counter cannot cancel has a centre path: `centre cancel` reverses the reconciled
    settlement, the counter shows it when the card is read, and refuses its own cancel afterwards."""
    from sync.centre import cli

    await insert(stack.api, LISI)
    s = (await stack.api.post("/api/settle", json={"req": "CC-1", **VISIT})).json()
    await sent_and_reconciled(stack)
    device = stack.daemon.counter.journal.device
    db = str(stack.tmp / "centre" / "centre.db")
    args = ["cancel", "--db", db, "--data-dir", str(stack.tmp / "centre"), "--device", device, "--seq",
            str(s["seq"]), "--reason", "参保人异地就医退费", "--who", "王审核"]
    rc = await trio.to_thread.run_sync(cli.main, args)
    assert rc == 0, capsys.readouterr().err
    assert balance(stack, LISI_PSN) == 52500
    again = await trio.to_thread.run_sync(cli.main, args)                        # idempotent: once
    assert again == 0 and balance(stack, LISI_PSN) == 52500

    async def noticed():
        await insert(stack.api, LISI)
        card = (await stack.api.get("/api/card")).json()
        return any(n["payload"].get("outcome") == "cancelled_at_centre" and n["payload"].get("ref_seq") == s["seq"]
                   for n in card.get("notices", []))
    from oncecharge.conftest import until
    await until(noticed, "the centre's cancel notice on the counter")
    r = await stack.api.post(f"/api/settlements/{s['seq']}/cancel", json={"reason": "退费"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "already_cancelled", r.text
    await sent_and_reconciled(stack)
    assert balance(stack, LISI_PSN) == 52500
