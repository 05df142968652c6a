"""Concurrent ingest transactions that commit out of id order (PostgreSQL: BIGSERIAL ids are taken
at insert, not at commit). Before the work queue and the commit-ordered feed, the reconciler's
``id > last_id`` cursor skipped the late committer's entries for ever, and a device polling the feed
while a lower id was uncommitted never saw that message."""

from __future__ import annotations

from recon_support import CAT_RAW, DAY, HOT_RAW, PERSONS, POL_RAW, T0, Device, person, settlement_body, visit

from sync.centre import reconcile
from sync.centre.store import Store


def open_centre(url) -> Store:
    store = Store.open(url)
    for raw in (CAT_RAW, POL_RAW, HOT_RAW):
        store.put_bundle(raw, now=T0 - DAY)
    store.ledger.seed_from_persons(PERSONS)
    return store


def device_with_visits(store, name: str, psn: str, n: int) -> Device:
    d = Device(name)
    store.register_device(name, "S-" + name, bytes(d.key.verify_key), now=T0 - DAY)
    for i in range(n):
        d.append("settlement", settlement_body(person(psn), visit(0), req=f"{name}-{i}"), time=T0 + i * 60_000)
    return d


def test_reconciler_never_skips_an_entry_committed_after_a_higher_id(pg_url):
    s1, s2, s3 = open_centre(pg_url), Store.open(pg_url), Store.open(pg_url)
    try:
        d1 = device_with_visits(s1, "D-1", "P0001", 3)
        d2 = device_with_visits(s1, "D-2", "P0002", 3)
        with s1.transaction():                          # T1 takes the lower ids ...
            assert s1.put_entries("D-1", d1.items(), now=T0).ack == 3
            assert s2.put_entries("D-2", d2.items(), now=T0).ack == 3   # ... T2 commits first
            reconcile.run_pending(s3, now=T0 + DAY)    # a worker reconciles what it sees: T2's entries
        # T1 has committed now; every later pass must pick its entries up.
        reconcile.run_pending(s3, now=T0 + DAY)
        reconcile.run_pending(s3, now=T0 + DAY)
        decided = {(o.device, o.seq) for o in reconcile.outcomes(s3)}
        assert decided == {(d, s) for d in ("D-1", "D-2") for s in (1, 2, 3)}
    finally:
        for s in (s1, s2, s3):
            s.close()


def test_feed_delivers_a_message_committed_after_a_higher_one(pg_url):
    s1, s2, s3 = Store.open(pg_url), Store.open(pg_url), Store.open(pg_url)
    try:
        got: list[str] = []
        cursor = 0
        with s1.transaction():
            s1.post_downlink("D-1", "outcome", {"n": "first"})       # the lower position, uncommitted
            s2.post_downlink("D-1", "outcome", {"n": "second"})      # committed
            msgs, cursor = s3.downlink_page("D-1", cursor)           # the device polls meanwhile
            got += [m["payload"]["n"] for m in msgs]
        for _ in range(2):
            msgs, cursor = s3.downlink_page("D-1", cursor)
            got += [m["payload"]["n"] for m in msgs]
        assert sorted(got) == ["first", "second"]                    # each exactly once
    finally:
        for s in (s1, s2, s3):
            s.close()
