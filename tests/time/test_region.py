"""异地 cards: a card issued in another region settles offline only with a 异地就医 filing for this site.

Written against the code as it was (the issuing region was never compared with the site's: a card
from 440100 settled offline as local); the tests failed there.
"""

from __future__ import annotations

import dataclasses

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
