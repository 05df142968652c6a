"""Shared by the scale-out tests: a centre seeded like tests/centre's, and a backlog of real signed
entries from several devices over 40 persons."""

from __future__ import annotations

from recon_support import CAT_RAW, DAY, HOT_RAW, POL_RAW, T0, Device, person, settlement_body, visit

from sync.centre.store import Store

PERSONS = [person(f"P{i:04d}") for i in range(1, 41)]


def open_centre(url) -> Store:
    store = Store.open(url)
    for raw in (CAT_RAW, POL_RAW, HOT_RAW):
        store.put_bundle(raw, now=T0 - DAY)
    store.ledger.seed_from_persons(PERSONS)
    return store


def backlog(store, devices: int, per_device: int) -> int:
    n = 0
    for k in range(devices):
        d = Device(f"D-S{k}-1")
        store.register_device(d.device, f"S{k}", bytes(d.key.verify_key), now=T0 - DAY)
        for i in range(per_device):
            p = PERSONS[(k * 7 + i) % len(PERSONS)]
            d.append("settlement", settlement_body(p, visit(0), req=f"{k}-{i}"), time=T0 + i * 60_000 + k)
        assert store.put_entries(d.device, d.items(), now=T0).ack == per_device
        n += per_device
    return n
