"""The daily per-site report: totals equal the accepted entries, every difference is explained."""

from __future__ import annotations

import csv
import io
import json

from nacl.signing import SigningKey

from sync.bodies import AMOUNT_KEYS, STATE_KEYS
from sync.centre import reconcile, report
from sync.centre.store import Store
from recon_support import (
    CAT_RAW, DAY, HOT_RAW, PERSONS, POL_RAW, T0, Device, built, claim_body, person, settlement_body, visit,
)

COLS = ("medfee", "fund", "acct", "cash")
DATE = "2026-11-19"


def busy_day(url) -> Store:
    """One site, one day, every kind of outcome; plus an entry not reconciled yet and one refused at ingest."""
    store = Store.open(url)
    for raw in (CAT_RAW, POL_RAW, HOT_RAW):
        store.put_bundle(raw, now=T0 - DAY)
    store.put_bundle(built("hotlist", 10, {"cards": [{"card_id": person("P0004")["card_ids"][0], "reason": "lost"}]},
                           created=T0 - 60_000), now=T0 - 60_000)
    store.ledger.seed_from_persons(PERSONS)
    store.db.execute("UPDATE recon_persons SET deductible_used = 20000 WHERE psn_no = 'P0002'")
    store.ledger.suspend("P0005", "2026-11-01")
    d = Device("D-S1-1")
    store.register_device(d.device, "S1", bytes(d.key.verify_key), now=T0 - DAY)
    other = Device("D-S2-1")                        # another site's entry must not count
    store.register_device(other.device, "S2", bytes(other.key.verify_key), now=T0 - DAY)
    v = visit(0)
    t = T0
    d.append("settlement", settlement_body(person("P0001"), v, req="r1"), time=t)                 # confirmed
    d.append("settlement", settlement_body(person("P0002", deductible_used=0), v, req="r2"), time=t + 1)  # credit
    d.append("settlement", settlement_body(person("P0004"), v, req="r3"), time=t + 2)             # hotlisted: review
    bad = settlement_body(person("P0001"), v, req="r4")
    bad["visit"] = {**v, "med_type": "99"}
    d.append("settlement", bad, time=t + 3)                                                       # rejected
    d.append("claim", claim_body(person("P0003"), v, "offline_limit", req="r5"), time=t + 4)     # claim
    # A cancel journaled with zero amounts (the body contract wants every amount key and the state after).
    zero = dict.fromkeys(AMOUNT_KEYS, 0)
    d.append("cancel", {"req": "r6", "cancels": 1, "psn_no": "P0001", "amounts": zero,
                        "state_after": dict.fromkeys(STATE_KEYS, 0)}, time=t + 5)                                                                          # cancel
    other.append("settlement", settlement_body(person("P0001"), v, req="o1"), time=t + 6)
    store.put_entries(d.device, d.items(), now=T0)
    store.put_entries(other.device, other.items(), now=T0)
    reconcile.run_pending(store, now=T0 + DAY)
    d.append("settlement", settlement_body(person("P0003"), v, req="r7"), time=t + 7)             # not reconciled yet
    store.put_entries(d.device, d.items(7), now=T0 + DAY)
    forged = Device("D-S1-2")
    store.register_device(forged.device, "S1", bytes(SigningKey.generate().verify_key), now=T0 - DAY)
    forged.append("settlement", settlement_body(person("P0001"), v, req="f1"), time=t + 8)
    store.put_entries(forged.device, forged.items(), now=T0 + DAY)                                # bad signature
    return store


def test_totals_equal_accepted_entries_and_every_difference_is_explained(db_url):
    store = busy_day(db_url)
    try:
        rep = report.daily(store, "S1", DATE)
        site_devices = {"D-S1-1", "D-S1-2"}
        outs = [o for o in reconcile.outcomes(store) if o.device in site_devices and o.date == DATE]
        assert {o.outcome for o in outs} == {"confirmed", "adjusted", "review", "rejected"}
        # Accepted totals are the sums of the accepted entries, computed here independently.
        for k in COLS:
            assert rep["accepted"][k] == sum(o.accepted[k] for o in outs)
        # Journaled totals are the sums over the entries as the counters signed them.
        bodies = [(e["kind"], e["body"]) for e in store.accepted_entries(0, 100) if e["device"] in site_devices]
        for k in COLS:
            assert rep["journaled"][k] == sum(report._journaled_of(kind, b)[k] for kind, b in bodies)
        assert rep["journaled"]["count"] == len(bodies) == 7
        # Every entry whose figures differ is listed with its outcome and a reason; nothing else differs.
        differing = {(o.device, o.seq) for o in outs if o.journaled != o.accepted
                     and {k: o.journaled[k] for k in COLS} != {k: o.accepted[k] for k in COLS}}
        assert {(x["device"], x["seq"]) for x in rep["differences"]} == differing
        assert all(x["reason"] and x["outcome"] and x["codes"] for x in rep["differences"])
        assert [(p["device"], p["seq"]) for p in rep["pending"]] == [("D-S1-1", 7)]
        for k in COLS:
            assert rep["journaled"][k] - rep["accepted"][k] == (sum(x["delta"][k] for x in rep["differences"])
                                                                 + sum(p["journaled"][k] for p in rep["pending"]))
        assert rep["explained"] is True
        assert [r["code"] for r in rep["rejected_at_ingest"]] == ["bad_signature"]
        credit = [x for x in rep["differences"] if "patient_credit" in x["codes"]]
        assert credit and credit[0]["credit"] == rep["credit"] > 0
        # The renderers carry the same figures.
        assert json.loads(report.to_json(rep))["accepted"] == rep["accepted"]
        rows = list(csv.DictReader(io.StringIO(report.to_csv(rep))))
        assert rows[-1]["row"] == "total" and int(rows[-1]["a_fund"]) == rep["accepted"]["fund"]
        assert len([r for r in rows if r["row"] == "difference"]) == len(rep["differences"])
        page = report.to_html(rep)
        assert "Every difference is explained." in page and "D-S1-1" in page
        text = report.to_text(rep)
        assert "every difference explained" in text and "pending" in text
        # Another site's day does not mix in.
        assert report.daily(store, "S2", DATE)["journaled"]["count"] == 1
    finally:
        store.close()


def test_bad_date_is_a_clear_error(tmp_path):
    store = Store.open(tmp_path / "c.db")
    try:
        import pytest
        with pytest.raises(report.ReportError, match="YYYY-MM-DD"):
            report.daily(store, "S1", "19/11/2026")
    finally:
        store.close()
