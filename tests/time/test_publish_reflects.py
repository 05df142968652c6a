"""A person snapshot published from the ledger says which of each device's entries it reflects.

Written against the ledger as it was (snapshots carried no reflects_seq, so a counter could not tell
its own unreconciled usage from usage the centre already counted); it failed there.
"""

from __future__ import annotations

import sys
from pathlib import Path

from sync.centre import reconcile
from sync.centre.store import Store

sys.path.insert(0, str(Path(__file__).parent.parent / "centre"))
from recon_support import (  # noqa: E402
    CAT_RAW, DAY, HOT_RAW, PERSONS, POL_RAW, T0, Device, person, settlement_body, visit,
)


def test_snapshot_reflects_the_reconciled_entries_of_each_device(tmp_path):
    store = Store.open(f"sqlite:///{tmp_path / 'centre.db'}")
    try:
        for raw in (CAT_RAW, POL_RAW, HOT_RAW):
            store.put_bundle(raw, now=T0 - DAY)
        store.ledger.seed_from_persons(PERSONS)
        d = Device("D-S1-1")
        store.register_device(d.device, "S1", bytes(d.key.verify_key), now=T0 - DAY)
        d.append("settlement", settlement_body(person("P0001"), visit(0), req="r1"), time=T0)
        d.append("settlement", settlement_body(person("P0002", deductible_used=0), visit(0), req="r2"), time=T0 + 1)
        store.put_entries(d.device, d.items(), now=T0)
        reconcile.run_pending(store, now=T0 + DAY)
        snap = store.ledger.snapshot("P0001")
        assert snap["reflects_seq"] == {"D-S1-1": 1}
        # An entry the centre has not reconciled yet is not reflected.
        d.append("settlement", settlement_body(person("P0001"), visit(1), req="r3"), time=T0 + 2)
        store.put_entries(d.device, d.items(3), now=T0 + DAY)
        assert store.ledger.snapshot("P0001")["reflects_seq"] == {"D-S1-1": 1}
        # Published from the ledger, the persons bundle carries it to the counters.
        from nacl.signing import SigningKey

        from sync import bundles
        from sync.centre.publish import publish_persons_from_ledger
        key = SigningKey.generate()
        rows = publish_persons_from_ledger(store, key, now=T0 + DAY)
        raw = store.latest_bundle("persons")["raw"]
        persons = {p["psn_no"]: p for p in bundles.open_bundle(raw, key.verify_key).payload["persons"]}
        assert rows and persons["P0001"]["reflects_seq"] == {"D-S1-1": 1}
    finally:
        store.close()
