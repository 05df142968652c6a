"""The centre's ledger is year-stamped: each entry replays in the year of its visit, whenever it arrives.

Written against the replay as it was (one flat deductible/fund total, offline limits re-checked only
when the fund differed); each test failed there.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

from hypothesis import given, settings, strategies as st

from edge.settle import parse_catalogue, parse_items, parse_person, parse_policy, parse_visit, settle
from sync.centre import replay as rp

sys.path.insert(0, str(Path(__file__).parent.parent / "centre"))
import recon_support  # noqa: E402
from recon_support import CAT_RAW, CATALOGUE, POL_RAW, POLICY, bundle_hash, person  # noqa: E402

STATE = ("psn_no", "insutype", "psn_type", "status", "chronic", "balc", "deductible_used", "fund_paid", "year")


def settlement_body(snapshot: dict, v: dict, items: list, **kw) -> dict:
    """recon_support's offline entry, settled (and journaled) on the whole snapshot, its year included."""
    def edge_settle(snap, visit, its, *, acct_limit=None):
        policy = parse_policy(POLICY)
        p = parse_person({k: snap[k] for k in STATE if k in snap})
        return settle(policy, parse_catalogue(CATALOGUE), p, parse_visit(visit, policy), parse_items(its),
                      acct_limit=acct_limit)

    real = recon_support.edge_settle
    recon_support.edge_settle = edge_settle
    try:
        body = recon_support.settlement_body(snapshot, v, items, **kw)
    finally:
        recon_support.edge_settle = real
    if "year" in snapshot:
        body["person"]["year"] = snapshot["year"]
    return body

DAY_MS = 86_400_000
DEC31 = 1_798_675_200_000 - DAY_MS          # 2026-12-31 00:00 UTC
JAN2 = DEC31 + 2 * DAY_MS


def world() -> rp.StaticWorld:
    return rp.StaticWorld(policies={(3, bundle_hash(POL_RAW)): parse_policy(POLICY)},
                          catalogues={(12, bundle_hash(CAT_RAW)): parse_catalogue(CATALOGUE)})


def on(day: str, acct: bool = True) -> dict:
    return {"med_type": "11", "level": "village", "date": day, "acct_used_flag": acct}


ITEMS = [{"code": "XJ01CAA040E001010101445", "cnt": "10", "pric": 3940}]     # ¥394.00


def december_ledger() -> rp.Ledger:
    # December: the deductible (¥200) is met; the ledger's totals are 2026's.
    return rp.Ledger(psn_no="P0001", insutype="310", psn_type="working", balc=50000, deductible_used=20000,
                     fund_paid=0, year=2026)


def test_a_december_entry_uploaded_in_january_uses_decembers_totals():
    dec_snap = person("P0001", deductible_used=20000, fund_paid=0, year=2026)
    jan = settlement_body(dec_snap, on("2027-01-02"), ITEMS, req="J")
    dec = settlement_body(dec_snap, on("2026-12-31"), [{**ITEMS[0], "cnt": "5"}], req="D")
    assert jan["amounts"]["act_pay_dedc"] == 20000 and dec["amounts"]["act_pay_dedc"] == 0

    led, outs = rp.replay_person(december_ledger(), [rp.Event("D-B", 1, "settlement", JAN2, jan)], world())
    assert [(o.outcome, o.codes, o.credit) for o in outs] == [("confirmed", ("same",), 0)]
    led, outs = rp.replay_person(led, [rp.Event("D-A", 1, "settlement", DEC31, dec)], world())
    # No false credit: December's visit is replayed against December's totals.
    assert [(o.outcome, o.codes, o.credit) for o in outs] == [("confirmed", ("same",), 0)]
    assert led is not None
    assert led.totals(2026, "default") == (20000, dec["amounts"]["hifp_pay"])
    # December's fund pay is not added to January's totals.
    assert led.totals(2027, "default") == (20000, jan["amounts"]["hifp_pay"])


def test_the_centre_settles_january_with_fresh_totals():
    led = december_ledger()
    person_jan = led.person(dt.date(2027, 1, 2))
    assert (person_jan.deductible_used, person_jan.fund_paid) in ((0, 0), (20000, 0))
    assert person_jan.totals(2027, "default") == (0, 0)
    assert person_jan.totals(2026, "default") == (20000, 0)


def test_offline_limits_are_rechecked_even_when_the_amounts_agree():
    snap = person("P0001")
    body = settlement_body(snap, on("2026-11-20"), ITEMS[:1] and [{**ITEMS[0], "cnt": "1"}])
    body["basis"]["limits"] = None
    led = rp.Ledger(psn_no="P0001", insutype="310", psn_type="working", balc=50000, deductible_used=20000)
    _, outs = rp.replay_person(led, [rp.Event("D-A", 1, "settlement", DEC31 - 30 * DAY_MS, body)], world())
    assert outs[0].outcome == "review" and outs[0].codes == ("offline_limits",)

    over = settlement_body(snap, on("2026-11-20"), [{**ITEMS[0], "cnt": "1"}], offline_visits=8)
    _, outs = rp.replay_person(led, [rp.Event("D-A", 1, "settlement", DEC31 - 30 * DAY_MS, over)], world())
    assert outs[0].outcome == "review" and outs[0].codes == ("offline_limits",)


def test_an_entry_timed_before_its_predecessor_goes_to_review():
    snap = person("P0001")
    a = settlement_body(snap, on("2026-11-20"), [{**ITEMS[0], "cnt": "1"}], req="A")
    b = settlement_body(snap, on("2026-11-19"), [{**ITEMS[0], "cnt": "1"}], req="B")
    led = rp.Ledger(psn_no="P0001", insutype="310", psn_type="working", balc=50000, deductible_used=20000)
    t = DEC31 - 30 * DAY_MS
    events = [rp.Event("D-A", 1, "settlement", t, a), rp.Event("D-A", 2, "settlement", t - DAY_MS, b)]
    _, outs = rp.replay_person(led, events, world())
    by_seq = {o.seq: o for o in outs}
    assert by_seq[2].outcome == "review" and by_seq[2].codes == ("time_went_back",)


@st.composite
def uploads(draw):
    """Device A's December visits and device B's January visits, uploaded in batches, interleaved."""
    snap = person("P0001", deductible_used=0, fund_paid=0, year=2026)
    chains = {}
    for dev, day, t in (("D-A", "2026-12-{:02d}", DEC31 - 20 * DAY_MS), ("D-B", "2027-01-{:02d}", JAN2)):
        n = draw(st.integers(min_value=1, max_value=3))
        state = dict(snap)
        evs = []
        for i in range(n):
            cnt = draw(st.integers(min_value=1, max_value=12))
            body = settlement_body(state, on(day.format(i + 10 if dev == "D-A" else i + 2)),
                                   [{**ITEMS[0], "cnt": str(cnt), "pric": 1990}], req=f"{dev}-{i}")
            am = body["amounts"]
            state = {**state, "balc": state["balc"] - am["acct_pay"],
                     "deductible_used": state["deductible_used"] + am["act_pay_dedc"],
                     "fund_paid": state["fund_paid"] + am["hifp_pay"]}
            evs.append(rp.Event(dev, i + 1, "settlement", t + i * 3_600_000, body))
        # Each device's chain arrives in seq order, split into batches.
        cuts = sorted(draw(st.sets(st.integers(min_value=1, max_value=max(1, n - 1)), max_size=n - 1))) if n > 1 else []
        bounds = [0, *cuts, n]
        chains[dev] = [evs[bounds[k]:bounds[k + 1]] for k in range(len(bounds) - 1)]
    order = draw(st.permutations(["D-A"] * len(chains["D-A"]) + ["D-B"] * len(chains["D-B"])))
    pos = {"D-A": 0, "D-B": 0}
    batches = []
    for dev in order:
        batches.append(chains[dev][pos[dev]])
        pos[dev] += 1
    return batches


def _run(batches):
    led: rp.Ledger | None = rp.Ledger(psn_no="P0001", insutype="310", psn_type="working", balc=50000, year=2026)
    for batch in batches:
        led, _ = rp.replay_person(led, batch, world())
    assert led is not None
    return led.balc, led.totals(2026, "default"), led.totals(2027, "default")


@settings(max_examples=60, deadline=None)
@given(uploads())
def test_any_upload_order_gives_the_same_ledger(batches):
    in_time_order = sorted((e for b in batches for e in b), key=rp.sort_key)
    assert _run(batches) == _run([in_time_order])
