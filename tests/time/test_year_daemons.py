"""Years, accumulators, the account-payable flag, bundles during offline use and one person's cards,
through the real daemons: the centre (`python -m sync.centre run`, a child process) and the counter
(`edge run`, a child process), both under libfaketime reading the same shift file, so the whole
world — not one wrong clock — stands at 31 December 23:57 and then passes midnight (the counter's
idea of the centre's time stays within the 5 minutes both sides accept). Bundles and the ledger are
prepared in this process on the centre's SQLite store before the centre starts; reconciliation runs
here too (``reconcile.run_pending``) so that it happens exactly when a scenario says.

Each test asserts money in integer fen (medfee = fund + account + cash) on the counter's answer, on the
journaled entry and, where the centre is involved, on its outcome and ledger.

Written against the daemons as they were: the counter already settled each visit right, but the centre
sent the 1 January offline visit and the offline chronic visit to review (``agent_miscomputed``: the
entry's person lacked its policy year and the filing's item scope, so the replay counted December's
totals and the chronic ratio on amoxicillin), and the online chronic visit was refused by the entry
contract after the centre had settled it (``person.chronic[0] must be text``). Class C, the December
upload, the persons bundle and the three cards passed as first written.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
import trio

pytestmark = pytest.mark.slow

CST = dt.timezone(dt.timedelta(hours=8))
AMOX = "XJ01CAA040E001010101445"          # 阿莫西林胶囊, class A, no price cap
METF = "XA10BAE054A001010100382"          # 盐酸二甲双胍片, class A
SUPP = "HEALTH-SUPP-0001"                 # 维生素C咀嚼片(保健品), class C
PIN = "123456"
BILL_394 = [{"med_list_codg": AMOX, "cnt": "10", "pric": 3940}]          # ¥394.00, the bill

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def certno(body17: str) -> str:
    """An 18-character ID number with its GB 11643 check character."""
    return body17 + "10X98765432"[sum(int(c) * w for c, w in zip(body17, _WEIGHTS)) % 11]


def person(n: int, name: str, **state) -> dict:
    """A working employee (310) of this region with one card; ``state`` overrides the totals."""
    return {"psn_no": f"33030000000001{n:02d}", "name": name, "certno": certno(f"3303021980010{n:04d}"),
            "card_ids": [f"330300D15600000500{n:014X}"], "insutype": "310", "psn_type": "working",
            "status": "active", "chronic": [], "balc": 50000, "deductible_used": 0, "fund_paid": 0,
            "pending_review": False, **state}


def card(p: dict, card_id: str | None = None) -> dict:
    return {"card_id": card_id or p["card_ids"][0], "certno": p["certno"], "psn_name": p["name"]}


def accumulating(policy: dict) -> dict:
    """The sample policy naming its accumulators (outpatient, emergency, chronic, pharmacy) and keeping
    the personal account away from class C goods."""
    by_type = {"11": "outpatient", "13": "emergency", "14": "chronic", "41": "pharmacy"}
    return {**policy, "accumulators": sorted(set(by_type.values())), "default_accumulator": "outpatient",
            "class_c_acct_payable": False,
            "rules": [{**r, "accumulator": by_type[r["med_type"]]} for r in policy["rules"]]}


def split(amounts: dict) -> tuple[int, int, int, int]:
    """(medfee, fund, account, cash), after checking that they add up."""
    medfee, fund, acct, cash = (amounts[k] for k in ("medfee_sumamt", "hifp_pay", "acct_pay", "psn_cash_pay"))
    assert medfee == fund + acct + cash, amounts
    return medfee, fund, acct, cash


async def ready(s, api) -> None:
    async def check():
        st = await s.status(api)
        return len(st["cache"]["bundles"]) == 4 and st["cache"]["age_s"] is not None and st["online"]
    await s.until(check, 60)


async def offline(s, api) -> None:
    async def check():
        return (await s.status(api))["online"] is False
    await s.until(check, 60)


async def visit(api, who: dict, req: str, items: list, *, med_type: str = "11", acct: bool = False, **extra):
    await api.delete("/api/card/simulate")
    (await api.post("/api/card/simulate", json=who)).raise_for_status()
    body = {"req": req, "med_type": med_type, "items": items, **extra}
    if acct:
        body.update(acct_used_flag=True, pin=PIN)
    return await api.post("/api/settle", json=body)


def settled(r, mode: str) -> dict:
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["mode"] == mode, out
    return out


async def reconciled(s, api) -> dict:
    from sync.centre import reconcile

    async def sent():
        return (await s.status(api))["backlog"]["count"] == 0
    await s.until(sent, 60)
    return await trio.to_thread.run_sync(reconcile.run_pending, s.store)


def outcome(s, psn_no: str, seq: int):
    from sync.centre import reconcile

    [o] = [o for o in reconcile.outcomes(s.store, psn_no=psn_no) if o.seq == seq]
    return o


# -- 1. 31 December / 1 January, online and offline --------------------------------------------------
EVE = dt.datetime(2026, 12, 31, 23, 57, 0, tzinfo=CST)
NEW_YEAR = dt.datetime(2027, 1, 1, 0, 0, 30, tzinfo=CST)
# December: the deductible used up and the annual cap (¥2,200.00) reached.
SPENT = {"year": 2026, "deductible_used": 20000, "fund_paid": 220000}
JIA = person(1, "元旦甲", **SPENT)
YI = person(2, "元旦乙", **SPENT)


async def pass_midnight(s) -> None:
    jump = s.set_time(NEW_YEAR)
    # Within the skew both sides accept: the counter's idea of the centre's time still agrees.
    assert 0 < jump < 280, jump


async def test_new_year_online_and_offline_starts_fresh_totals(year_stack):
    s = await year_stack(at=EVE, persons=[JIA, YI])
    await s.start_counter()
    async with s.client() as api:
        await ready(s, api)
        # 31 December online: the cap is spent, the fund pays nothing.
        dec_on = settled(await visit(api, card(JIA), "Y-ON-DEC", BILL_394), "online")
        assert split(dec_on["setlinfo"]) == (39400, 0, 0, 39400)
        s.stop_centre()
        await offline(s, api)
        dec_off = settled(await visit(api, card(YI), "Y-OFF-DEC", BILL_394), "offline")
        assert split(dec_off["setlinfo"]) == (39400, 0, 0, 39400)

        await pass_midnight(s)
        # 1 January offline: ¥394.00 − ¥200.00 deductible = ¥194.00 × 0.70 = ¥135.80.
        jan_off = settled(await visit(api, card(YI), "Y-OFF-JAN", BILL_394), "offline")
        assert split(jan_off["setlinfo"]) == (39400, 13580, 0, 25820), jan_off
        assert jan_off["setlinfo"]["act_pay_dedc"] == 20000
        await s.restart_centre()
        await ready(s, api)
        jan_on = settled(await visit(api, card(JIA), "Y-ON-JAN", BILL_394), "online")
        assert split(jan_on["setlinfo"]) == (39400, 13580, 0, 25820), jan_on
        assert jan_on["setlinfo"]["act_pay_dedc"] == 20000
        counts = await reconciled(s, api)
    await s.stop_counter()
    for out, day, fund in ((dec_on, "2026-12-31", 0), (dec_off, "2026-12-31", 0),
                           (jan_off, "2027-01-01", 13580), (jan_on, "2027-01-01", 13580)):
        e = s.entry(out["seq"])
        assert e.kind == "settlement" and e.body["visit"]["date"] == day, e.body
        assert split(e.body["amounts"])[1] == fund
        o = outcome(s, e.body["psn_no"], e.seq)
        # The centre agrees with every one of them, in the year of its visit.
        assert (o.outcome, o.credit) == ("confirmed", 0), (o.codes, o.reason, o.differs)
    assert counts["review"] == 0 and counts["rejected"] == 0, counts
    for who in (JIA, YI):
        led = s.store.ledger.load(who["psn_no"])
        assert led.totals(2026, "default") == (20000, 220000)
        assert led.totals(2027, "default") == (20000, 13580)


# -- 2. a 31 December offline visit uploaded in January -----------------------------------------------
BING = person(3, "元旦丙", year=2026, deductible_used=20000, fund_paid=100000)
BILL_200 = [{"med_list_codg": AMOX, "cnt": "5", "pric": 4000}]            # ¥200.00


async def test_a_december_offline_visit_uploaded_in_january_replays_in_december(year_stack):
    s = await year_stack(at=EVE, persons=[BING])
    await s.start_counter()
    async with s.client() as api:
        await ready(s, api)
        s.stop_centre()
        await offline(s, api)
        # 31 December, deductible met, ¥1,000.00 of the cap paid: the fund pays 70 %.
        dec = settled(await visit(api, card(BING), "Y-DEC", BILL_200), "offline")
        assert split(dec["setlinfo"]) == (20000, 14000, 0, 6000) and dec["setlinfo"]["act_pay_dedc"] == 0
        await pass_midnight(s)
        # The centre back in January, not reconciling yet: an online January visit moves the ledger into
        # 2027 before the December entry is replayed.
        await s.restart_centre()
        await ready(s, api)
        jan = settled(await visit(api, card(BING), "Y-JAN", BILL_394), "online")
        assert split(jan["setlinfo"]) == (39400, 13580, 0, 25820) and jan["setlinfo"]["act_pay_dedc"] == 20000
        counts = await reconciled(s, api)
    await s.stop_counter()
    assert counts["review"] == 0, counts
    e = s.entry(dec["seq"])
    assert e.body["mode"] == "offline" and e.body["visit"]["date"] == "2026-12-31"
    assert split(e.body["amounts"]) == (20000, 14000, 0, 6000)
    o = outcome(s, BING["psn_no"], dec["seq"])
    # No false credit: replayed against December's totals (deductible met), not January's.
    assert (o.outcome, o.credit) == ("confirmed", 0), o
    led = s.store.ledger.load(BING["psn_no"])
    assert led.totals(2026, "default") == (20000, 114000)
    # December's fund pay is not in January's totals.
    assert led.totals(2027, "default") == (20000, 13580)


# -- 3. accumulators per visit kind -------------------------------------------------------------------
OUTPATIENT_MET = {"year": 2026, "deductible_used": 20000, "fund_paid": 0}
DING = person(4, "急诊丁", **OUTPATIENT_MET)
WU = person(5, "急诊戊", **OUTPATIENT_MET)
JI = person(6, "慢病己", chronic=[{"code": "E11", "items": [METF]}])
CHRONIC_BILL = [{"med_list_codg": METF, "cnt": "1", "pric": 10000}, {"med_list_codg": AMOX, "cnt": "1", "pric": 2000}]


async def test_accumulators_per_visit_kind(year_stack):
    s = await year_stack(persons=[DING, WU, JI], policy=accumulating)
    await s.start_counter()
    async with s.client() as api:
        await ready(s, api)
        # Online: the emergency deductible (¥300.00) is drawn in full although outpatient's is met.
        er = settled(await visit(api, card(DING), "A-ON-13", BILL_394, med_type="13"), "online")
        assert split(er["setlinfo"]) == (39400, 6580, 0, 32820) and er["setlinfo"]["act_pay_dedc"] == 30000
        op = settled(await visit(api, card(DING), "A-ON-11", BILL_394), "online")
        assert split(op["setlinfo"]) == (39400, 27580, 0, 11820) and op["setlinfo"]["act_pay_dedc"] == 0
        # A chronic filing scoped to metformin: ¥100.00 × 0.85 from the fund, amoxicillin's ¥20.00 paid in full
        # by the patient (at the chronic ratio on both the fund would pay ¥102.00).
        ch = settled(await visit(api, card(JI), "A-ON-14", CHRONIC_BILL, med_type="14", chronic_code="E11"), "online")
        assert split(ch["setlinfo"]) == (12000, 8500, 0, 3500), ch
        s.stop_centre()
        await offline(s, api)
        er = settled(await visit(api, card(WU), "A-OFF-13", BILL_394, med_type="13"), "offline")
        assert split(er["setlinfo"]) == (39400, 6580, 0, 32820) and er["setlinfo"]["act_pay_dedc"] == 30000
        op = settled(await visit(api, card(WU), "A-OFF-11", BILL_200), "offline")
        assert split(op["setlinfo"]) == (20000, 14000, 0, 6000) and op["setlinfo"]["act_pay_dedc"] == 0
        ch_off = settled(await visit(api, card(JI), "A-OFF-14", CHRONIC_BILL, med_type="14", chronic_code="E11"),
                         "offline")
        assert split(ch_off["setlinfo"]) == (12000, 8500, 0, 3500), ch_off
        await s.restart_centre()
        await ready(s, api)
        await reconciled(s, api)
    await s.stop_counter()
    for out in (er, op, ch_off):
        e = s.entry(out["seq"])
        assert e.body["mode"] == "offline", e.body
        o = outcome(s, e.body["psn_no"], e.seq)
        # The centre, replaying the edge's own inputs and its ledger, agrees with each accumulator.
        assert (o.outcome, o.credit) == ("confirmed", 0), (o.codes, o.reason, o.differs)
    for who in (DING, WU):
        led = s.store.ledger.load(who["psn_no"])
        fund = 27580 if who is DING else 14000
        assert led.totals(2026, "emergency", "outpatient") == (30000, 6580)
        assert led.totals(2026, "outpatient", "outpatient") == (20000, fund)


# -- 4. class C refused from the account --------------------------------------------------------------
GENG = person(7, "保健庚", **OUTPATIENT_MET)
SUPP_BILL = [{"med_list_codg": SUPP, "cnt": "1", "pric": 3600}, {"med_list_codg": AMOX, "cnt": "1", "pric": 1000}]


async def test_class_c_is_not_paid_from_the_account(year_stack):
    s = await year_stack(persons=[GENG], policy=accumulating)
    await s.start_counter()
    async with s.client() as api:
        await ready(s, api)
        # ¥36.00 health supplement + ¥10.00 amoxicillin: the fund pays ¥7.00, the account only the
        # amoxicillin's ¥3.00, the supplement is cash.
        on = settled(await visit(api, card(GENG), "C-ON", SUPP_BILL, acct=True), "online")
        assert split(on["setlinfo"]) == (4600, 700, 300, 3600), on
        s.stop_centre()
        await offline(s, api)
        off = settled(await visit(api, card(GENG), "C-OFF", SUPP_BILL, acct=True), "offline")
        assert split(off["setlinfo"]) == (4600, 700, 300, 3600), off
    await s.stop_counter()
    for out, mode in ((on, "online"), (off, "offline")):
        e = s.entry(out["seq"])
        assert e.body["mode"] == mode and split(e.body["amounts"]) == (4600, 700, 300, 3600)


# -- 5. a persons bundle during unreconciled offline use --------------------------------------------
XIN = person(8, "离线辛")
BILL_300 = [{"med_list_codg": AMOX, "cnt": "10", "pric": 3000}]          # ¥300.00
BILL_100 = [{"med_list_codg": AMOX, "cnt": "10", "pric": 1000}]          # ¥100.00


async def test_a_persons_bundle_does_not_erase_unreconciled_offline_use(year_stack):
    from sync.centre.publish import publish_payload

    s = await year_stack(persons=[XIN])
    await s.start_counter()
    async with s.client() as api:
        await ready(s, api)
        s.stop_centre()
        await offline(s, api)
        # ¥300.00: ¥200.00 deductible, fund ¥70.00, the account pays the patient's ¥230.00.
        first = settled(await visit(api, card(XIN), "B-1", BILL_300, acct=True), "offline")
        assert split(first["setlinfo"]) == (30000, 7000, 23000, 0), first
        await s.restart_centre()           # the entry is uploaded, not reconciled
        await ready(s, api)

        async def sent():
            return (await s.status(api))["backlog"]["count"] == 0
        await s.until(sent, 60)
        version = (await s.status(api))["cache"]["bundles"]["persons"]["version"]
        # A delta about an unrelated field (the name), with the centre's unchanged figures.
        doc = json.loads((s.tmp / "sample" / "persons.json").read_text(encoding="utf-8"))
        for p in doc["persons"]:
            if p["psn_no"] == XIN["psn_no"]:
                p["name"] = "离线辛（更名）"
        await trio.to_thread.run_sync(lambda: publish_payload(s.store, s.key, "persons", doc))

        async def arrived():
            return (await s.status(api))["cache"]["bundles"]["persons"]["version"] > version
        await s.until(arrived, 60)
        await api.delete("/api/card/simulate")
        await api.post("/api/card/simulate", json=card(XIN))
        shown = (await api.get("/api/card")).json()
        assert shown["person"]["balc"] == 27000, shown
        s.stop_centre()
        await offline(s, api)
        # ¥100.00: the deductible is met, the fund pays 70 %, the account ¥30.00 of ¥270.00 left.
        second = settled(await visit(api, card(XIN), "B-2", BILL_100, acct=True), "offline")
        assert split(second["setlinfo"]) == (10000, 7000, 3000, 0), second
        assert second["setlinfo"]["act_pay_dedc"] == 0
    await s.stop_counter()
    e = s.entry(second["seq"])
    assert {k: e.body["person"][k] for k in ("balc", "deductible_used", "fund_paid")} == \
        {"balc": 27000, "deductible_used": 20000, "fund_paid": 7000}, e.body["person"]
    assert split(e.body["amounts"]) == (10000, 7000, 3000, 0)


# -- 6. three cards of one person ---------------------------------------------------------------------
REN = person(9, "三卡壬", balc=100000)
OLD_CARD, NEW_CARD = REN["card_ids"][0], "330300D156000005000000000000FF09"
REN["card_ids"] = [OLD_CARD, NEW_CARD]
OTHER_CARD = "440100D156000005000000000000EE09"       # another region's card, the same ID number
SUPP_120 = [{"med_list_codg": SUPP, "cnt": "1", "pric": 12000}]           # class C: the account pays it all


async def test_three_cards_of_one_person_share_the_offline_limits(year_stack):
    # The sample policy (the account may pay for class C there); no site region, so the other region's
    # card is this person's by the ID number alone.
    s = await year_stack(persons=[REN], region=None)
    await s.start_counter()
    async with s.client() as api:
        await ready(s, api)
        s.stop_centre()
        await offline(s, api)
        seqs = []
        for i, card_id in enumerate((OLD_CARD, NEW_CARD, OTHER_CARD, OLD_CARD)):
            out = settled(await visit(api, card(REN, card_id), f"K-{i}", SUPP_120, acct=True), "offline")
            assert split(out["setlinfo"]) == (12000, 0, 12000, 0), out
            seqs.append(out["seq"])
        # ¥480.00 of the ¥500.00 allowance used on three cards: ¥20.00 is left for the person.
        fifth = settled(await visit(api, card(REN, NEW_CARD), "K-4", SUPP_120, acct=True), "offline")
        assert split(fifth["setlinfo"]) == (12000, 0, 2000, 10000), fifth
        # Five offline visits of this person: the sixth, on any card, is a full payment.
        r = await visit(api, card(REN, OTHER_CARD), "K-5", SUPP_120, acct=True)
        assert r.status_code == 409 and r.json()["error"]["cause"] == "offline_limit", r.text
    await s.stop_counter()
    e = s.entry(fifth["seq"])
    assert e.body["mode"] == "offline" and e.body["card"]["card_id"] == NEW_CARD
    assert split(e.body["amounts"]) == (12000, 0, 2000, 10000)
    assert [s.entry(q).body["psn_no"] for q in seqs] == [REN["psn_no"]] * 4
