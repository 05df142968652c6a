"""Attacks on "one visit, one charge" from outside (ADVERSARY.md sections 3 and 5): the counter's HTTP API,
`centre cancel`, a proxy that holds the centre's replies, an uplink cut at the wrong moment. Each test counts
how many times the account, the fund and the cash move for one req: exactly once."""

from __future__ import annotations

import pytest
import trio

from oncecharge.conftest import ITEMS, LISI, LISI_PSN, ZHANGSAN, ZHANGSAN_PSN, balance, insert, sent_and_reconciled

pytestmark = pytest.mark.slow

SETTLE = b"/v1/online/settle"
LOOKUP = b"/v1/online/lookup"
VISIT = {"med_type": "11", "acct_used_flag": True, "pin": "123456", "items": ITEMS}
CASH_VISIT = {"med_type": "11", "acct_used_flag": False, "items": ITEMS}      # the patient pays ¥35.60 in cash


def _device(stack) -> str:
    return stack.daemon.counter.journal.device


async def _head(stack):
    return (await stack.api.get("/api/status")).json()["journal"]["head"]


def _centre_cancel(stack, device: str, seq: int, reason: str = "退费") -> list[str]:
    return ["cancel", "--db", str(stack.tmp / "centre" / "centre.db"), "--data-dir", str(stack.tmp / "centre"),
            "--device", device, "--seq", str(seq), "--reason", reason, "--who", "王审核"]


async def test_same_cart_in_another_order_is_the_same_visit(stack):
    """The HIS retries with the cart's lines in another order: the same visit, the first receipt, one entry."""
    await insert(stack.api, ZHANGSAN)
    before = balance(stack, ZHANGSAN_PSN)
    r = await stack.api.post("/api/settle", json={"req": "ORD-1", **VISIT})
    assert r.status_code == 200, r.text
    head = await _head(stack)
    again = await stack.api.post("/api/settle", json={"req": "ORD-1", **VISIT, "items": list(reversed(ITEMS))})
    assert again.status_code == 200, again.text
    assert again.json()["seq"] == r.json()["seq"] and await _head(stack) == head
    await sent_and_reconciled(stack)
    assert balance(stack, ZHANGSAN_PSN) == before - r.json()["setlinfo"]["acct_pay"]


async def test_double_click_is_one_settlement(stack):
    """Two /api/settle with one req at the same moment: one entry, the account moves once."""
    await insert(stack.api, ZHANGSAN)
    before = balance(stack, ZHANGSAN_PSN)
    answers = []

    async def click():
        answers.append(await stack.api.post("/api/settle", json={"req": "DBL-1", **VISIT}))

    async with trio.open_nursery() as n:
        n.start_soon(click)
        n.start_soon(click)
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    assert answers[0].json()["seq"] == answers[1].json()["seq"]
    await sent_and_reconciled(stack)
    assert balance(stack, ZHANGSAN_PSN) == before - answers[0].json()["setlinfo"]["acct_pay"]


@pytest.mark.parametrize("req", ["@cancel:1", "@downlink:1", "@x"])
async def test_a_caller_req_in_the_counters_key_space_is_refused(stack, req):
    await insert(stack.api, ZHANGSAN)
    head = await _head(stack)
    r = await stack.api.post("/api/settle", json={"req": req, **VISIT})
    assert r.status_code == 422 and r.json()["error"]["field"] == "req", r.text
    r = await stack.api.post("/api/claim", json={"req": req, **VISIT})
    assert r.status_code == 422, r.text
    assert await _head(stack) == head


async def test_retry_after_a_lost_answer_and_a_silent_lookup_is_the_offline_visit(stack):
    """Settle and lookup both held: the visit falls back offline. The HIS retries the same req (same cart:
    the offline receipt; another cart: req_conflict); reconciliation moves the account once."""
    await insert(stack.api, ZHANGSAN)
    before = balance(stack, ZHANGSAN_PSN)
    stack.proxy.hold = {SETTLE, LOOKUP}
    r = await stack.api.post("/api/settle", json={"req": "LOST-1", **VISIT})
    assert r.status_code == 200 and r.json()["mode"] == "offline", r.text
    stack.proxy.hold = set()
    await trio.sleep(stack.proxy.hold_s)
    again = await stack.api.post("/api/settle", json={"req": "LOST-1", **VISIT})
    assert again.status_code == 200 and again.json()["seq"] == r.json()["seq"], again.text
    other = {**VISIT, "items": [{"med_list_codg": "001102000010000", "cnt": "1", "pric": 1000}]}
    clash = await stack.api.post("/api/settle", json={"req": "LOST-1", **other})
    assert clash.status_code == 409 and clash.json()["error"]["code"] == "req_conflict", clash.text
    online = stack.store.recon.online(_device(stack), "LOST-1")
    assert online is not None                                   # the centre committed it once
    await sent_and_reconciled(stack)
    assert balance(stack, ZHANGSAN_PSN) == before - online["a_acct"]


async def test_two_concurrent_cancels_reverse_once(stack):
    await insert(stack.api, LISI)
    s = (await stack.api.post("/api/settle", json={"req": "CC2-1", **VISIT})).json()
    answers = []

    async def cancel():
        answers.append(await stack.api.post(f"/api/settlements/{s['seq']}/cancel", json={"reason": "退费"}))

    async with trio.open_nursery() as n:
        n.start_soon(cancel)
        n.start_soon(cancel)
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    assert answers[0].json()["seq"] == answers[1].json()["seq"]
    await sent_and_reconciled(stack)
    assert balance(stack, LISI_PSN) == 52500


async def test_centre_cancel_refuses_what_is_not_a_reconciled_settlement(stack, capsys):
    """`centre cancel` of a cancel entry, of an unknown device, of a seq never uploaded, with a blank
    reason: refused (exit 1), nothing moves."""
    from sync.centre import cli

    await insert(stack.api, LISI)
    s = (await stack.api.post("/api/settle", json={"req": "NS-1", **VISIT})).json()
    c = (await stack.api.post(f"/api/settlements/{s['seq']}/cancel", json={"reason": "退费"})).json()
    await sent_and_reconciled(stack)
    assert balance(stack, LISI_PSN) == 52500
    device = _device(stack)
    for args in (_centre_cancel(stack, device, c["seq"]), _centre_cancel(stack, "D-S000000000-9", s["seq"]),
                 _centre_cancel(stack, device, 999), _centre_cancel(stack, device, s["seq"], reason="  "),
                 _centre_cancel(stack, device, s["seq"])):        # cancelled at the counter already
        rc = await trio.to_thread.run_sync(cli.main, args)
        assert rc != 0, args
    capsys.readouterr()
    assert balance(stack, LISI_PSN) == 52500
    assert stack.store.payouts.cancel_of(device, s["seq"]) is None
    assert stack.store.payouts.payouts_of(device, s["seq"]) == []


async def test_counter_cancel_not_yet_uploaded_then_centre_cancel_refunds_the_cash_once(stack, capsys):
    """The clerk cancels a cash visit (and hands the ¥35.60 back) while the uplink is down; the centre,
    not knowing, cancels the same settlement and queues the cash as owed. When the counter's cancel
    arrives, the cash must be owed no more: the patient got it back once, at the counter."""
    from sync.centre import cli

    await insert(stack.api, LISI)
    s = (await stack.api.post("/api/settle", json={"req": "XC-1", **CASH_VISIT})).json()
    assert s["setlinfo"]["psn_cash_pay"] > 0, s
    await sent_and_reconciled(stack)
    uplink = stack.daemon.uplink
    real_url = uplink.client.base_url
    uplink.client.base_url = "http://127.0.0.1:9"                 # the counter's uplink is cut
    try:
        c = await stack.api.post(f"/api/settlements/{s['seq']}/cancel", json={"reason": "退费"})
        assert c.status_code == 200, c.text                          # the clerk hands the cash back
        rc = await trio.to_thread.run_sync(cli.main, _centre_cancel(stack, _device(stack), s["seq"]))
        assert rc == 0, capsys.readouterr().err
    finally:
        uplink.client.base_url = real_url
    uplink.wake()
    await sent_and_reconciled(stack)
    assert balance(stack, LISI_PSN) == 52500
    owed = [p for p in stack.store.payouts.payouts_of(_device(stack), s["seq"]) if p["status"] == "owed"]
    assert owed == [], owed                                          # cash back once, not twice


def _two_workers(url):
    """Two centre processes' stores on one PostgreSQL database, bundles and ledger as test_online's."""
    from centre import recon_support as rs
    from sync.centre.store import open_store

    a, b = open_store(url), open_store(url)
    for raw in (rs.CAT_RAW, rs.POL_RAW, rs.PERSONS_RAW, rs.HOT_RAW):
        a.put_bundle(raw, now=rs.T0 - rs.DAY)
    a.ledger.seed_from_persons(rs.PERSONS)
    return rs, a, b


def _race(fn_a, fn_b):
    """Both calls released at once from two threads; each one's answer or error."""
    import threading

    gate, out = threading.Barrier(2), [None, None]

    def run(i, fn):
        gate.wait()
        try:
            out[i] = ("ok", fn())
        except Exception as exc:   # noqa: BLE001 - the race's loser is what this test looks at
            out[i] = ("error", exc)

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate((fn_a, fn_b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return out


def test_one_req_at_two_centre_workers_at_once_is_applied_once_and_both_get_the_answer(pg_url):
    """A retry that reaches a second worker while the first is still settling the same req (the
    counter's timeout, N workers behind one PostgreSQL): the account moves once, and the loser gets the
    stored answer, not a database error (which the counter would take for an outage)."""
    from sync.centre.online import settle_online

    rs, a, b = _two_workers(pg_url)
    items = [{"code": "XJ01CAA040E001010101445", "cnt": "2", "pric": 1280},
             {"code": "001102000010000", "cnt": "1", "pric": 1000}]

    def request(req):
        return {"req": req, "psn_no": "P0001", "card_id": rs.person("P0001")["card_ids"][0], "visit": rs.visit(0),
                "items": items, "acct_used_flag": True}

    try:
        before = a.ledger.load("P0001").balc
        moved = 0
        for i in range(8):
            data = request(req=f"RACE-{i}")
            out = _race(lambda: settle_online(a, "D-S1-1", data, now=rs.T0),
                        lambda: settle_online(b, "D-S1-1", data, now=rs.T0))
            assert [o[0] for o in out] == ["ok", "ok"], out
            assert out[0][1]["result"] == out[1][1]["result"]
            moved += out[0][1]["result"]["acct_pay"]
        assert a.ledger.load("P0001").balc == before - moved
    finally:
        a.close()
        b.close()


def test_centre_cancel_at_two_workers_at_once_reverses_once_and_both_answer(pg_url):
    """`centre cancel` run twice at once (two operators, two processes on one PostgreSQL): the ledger is
    reversed once, one cash payout is owed, and the second run answers the first cancel (idempotent), not
    a database error."""
    from sync.centre import reconcile
    from sync.centre.cancel import cancel_settlement

    from centre.recon_support import Device

    rs, a, b = _two_workers(pg_url)
    try:
        for i in range(4):
            d = Device(f"D-S1-{i}")
            a.register_device(d.device, "S1", bytes(d.key.verify_key), now=rs.T0 - rs.DAY)
            snap = rs.person("P0001", balc=a.ledger.load("P0001").balc)
            d.append("settlement", rs.settlement_body(snap, rs.visit(0), req=f"X-{i}"), time=rs.T0)
            a.put_entries(d.device, d.items(), now=rs.T0)
            reconcile.run_pending(a)
            before = a.ledger.load("P0001").balc
            row = a.recon.outcome(d.device, 1)
            assert row["outcome"] in ("confirmed", "adjusted"), dict(row)
            out = _race(lambda: cancel_settlement(a, d.device, 1, reason="退费", who="甲", now=rs.T0),
                        lambda: cancel_settlement(b, d.device, 1, reason="退费", who="乙", now=rs.T0))
            assert [o[0] for o in out] == ["ok", "ok"], out
            assert out[0][1]["reversed"] == out[1][1]["reversed"]
            assert a.ledger.load("P0001").balc - before == row["a_acct"]
            assert len(a.payouts.payouts_of(d.device, 1)) <= 1
    finally:
        a.close()
        b.close()
