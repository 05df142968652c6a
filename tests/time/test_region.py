"""异地 cards: a card issued in another region settles offline only with a 异地就医 filing for this site.

Written against the code as it was (the issuing region was never compared with the site's: a card
from 440100 settled offline as local); the tests failed there. The scenarios through the daemons (a real
centre, `edge run` with ``counter.region = "330300"``) failed there too: the daemon had no region setting
(the config refused the key), and online the centre answered a 异地 card it does not hold with
"查无此参保人" and an English hint to check a number that was read, not typed.
"""

from __future__ import annotations

import dataclasses

import trio

from counter.test_visit import prepared
from edge import offline
from sync import bodies


def test_another_regions_card_without_a_filing_is_a_full_payment_claim_offline():
    facts = dataclasses.replace(prepared().facts, other_region=True)
    d = offline.decide(facts)
    assert (d.mode, d.cause) == (offline.FULL_PAYMENT, "other_region")
    assert "异地" in d.zh and "other_region" in bodies.CLAIM_CAUSES


def test_with_a_filing_for_this_region_it_settles_offline():
    facts = dataclasses.replace(prepared().facts, other_region=True, region_filed=True)
    assert offline.decide(facts).mode == offline.OFFLINE


def test_online_the_centre_decides():
    facts = dataclasses.replace(prepared(centre=True).facts, other_region=True)
    assert offline.decide(facts).mode == offline.ONLINE


def test_a_filing_is_valid_for_the_site_region_and_date():
    import datetime as dt
    snap = {"offsite_filings": [{"region": "330300", "begndate": "2026-01-01", "enddate": "2026-12-31"}]}
    assert offline.region_filed(snap, "330300", dt.date(2026, 11, 24))
    assert not offline.region_filed(snap, "330300", dt.date(2027, 1, 2))
    assert not offline.region_filed(snap, "440100", dt.date(2026, 11, 24))
    assert not offline.region_filed({}, "330300", dt.date(2026, 11, 24))


# -- through the daemons -------------------------------------------------------------------------------
HOME = "440100"                                       # another region than the site's (330300)
FILED = {"psn_no": "4401000000000001", "name": "赵六", "certno": "440106198512124560",
         "card_ids": [f"{HOME}D15600000500000000000000A1"], "insutype": "310", "psn_type": "working",
         "status": "active", "chronic": [], "balc": 50000, "deductible_used": 0, "fund_paid": 0,
         "pending_review": False, "offsite_filings": [{"region": "330300", "begndate": "2026-01-01"}]}
FILED_CARD = {"card_id": FILED["card_ids"][0], "certno": FILED["certno"], "psn_name": "赵六"}
STRANGER = {"card_id": f"{HOME}D15600000500000000000000B2", "certno": "440106199001011235", "psn_name": "钱七"}
ZHANGSAN_THERE = {"card_id": f"{HOME}D15600000500000000000000C3", "certno": "330302199001011235", "psn_name": "张三"}
ITEMS = [{"med_list_codg": "XJ01CAA040E001010101445", "cnt": "2", "pric": 1280},
         {"med_list_codg": "001102000010000", "cnt": "1", "pric": 1000}]


async def _visit(api, card: dict, req: str):
    await api.post("/api/card/simulate", json=card)
    return await api.post("/api/settle", json={"req": req, "med_type": "11", "items": ITEMS})


async def test_another_regions_card_online_and_offline_with_and_without_a_filing(daemon_stack):
    s = await daemon_stack(region="330300", persons=[FILED])
    await s.start_counter()
    async with s.client() as api:
        async def ready():
            st = await s.status(api)
            return len(st["cache"]["bundles"]) == 4 and st["cache"]["age_s"] is not None and st["online"]
        await s.until(ready)

        # Online. A person the centre does not hold: a full payment naming the card's region, in Chinese.
        r = await _visit(api, STRANGER, "R-ON-1")
        assert r.status_code == 409, r.text + s.log_tail()
        err = r.json()["error"]
        assert err["cause"] == "other_region" and HOME in err["zh"] and "查无此参保人" not in err["zh"], err
        claim = await api.post("/api/claim", json={"req": "R-ON-1", "med_type": "11", "items": ITEMS})
        assert claim.status_code == 200 and claim.json()["cause"] == "other_region", claim.text
        # The centre holds the filed person, and the local person whose card another region issued.
        for card, req in ((FILED_CARD, "R-ON-2"), (ZHANGSAN_THERE, "R-ON-3")):
            r = await _visit(api, card, req)
            assert r.status_code == 200 and r.json()["mode"] == "online", r.text

        # Offline: only the filing for this site's region settles; the others are other_region claims.
        s.stop_centre()

        async def offline():
            return (await s.status(api))["online"] is False
        await s.until(offline)
        for card, req in ((STRANGER, "R-OFF-1"), (ZHANGSAN_THERE, "R-OFF-3")):
            r = await _visit(api, card, req)
            assert r.status_code == 409, r.text
            err = r.json()["error"]
            assert err["cause"] == "other_region" and HOME in err["zh"], err
        r = await _visit(api, FILED_CARD, "R-OFF-2")
        assert r.status_code == 200 and r.json()["mode"] == "offline", r.text
    await s.stop_counter()
    with trio.fail_after(5):
        from edge.journal import JournalStore
        with JournalStore.open(s.state_dir / "journal.db", signing_key=None, device=None) as j:
            claims = [e for e in j.entries() if e.kind == "claim"]
    # The claim of a person nobody here knows carries the ID number: the centre can identify them later.
    assert claims and claims[0].body["certno"] == STRANGER["certno"] and claims[0].body["cause"] == "other_region"
