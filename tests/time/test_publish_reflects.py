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


async def test_persons_published_from_the_ledger_in_the_background_after_reconciliation(tmp_path):
    """``centre run``'s background publisher (sync.centre.publish.persons_background), driven directly."""
    import trio
    from nacl.signing import SigningKey

    from sync import bundles
    from sync.centre.publish import persons_background

    store = Store.open(f"sqlite:///{tmp_path / 'centre.db'}")
    key = SigningKey.generate()
    try:
        for raw in (CAT_RAW, POL_RAW, HOT_RAW):
            store.put_bundle(raw, now=T0 - DAY)
        store.ledger.seed_from_persons(PERSONS)
        d = Device("D-S1-1")
        store.register_device(d.device, "S1", bytes(d.key.verify_key), now=T0 - DAY)
        d.append("settlement", settlement_body(person("P0001"), visit(0), req="r1"), time=T0)
        store.put_entries(d.device, d.items(), now=T0)
        reconcile.run_pending(store, now=T0 + DAY)
        async with trio.open_nursery() as nursery:
            await nursery.start(lambda task_status: persons_background(store, key, interval=0.05,
                                                                        task_status=task_status))
            with trio.fail_after(10):
                while store.latest_bundle("persons") is None:
                    await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
        raw = store.latest_bundle("persons")["raw"]
        persons = {p["psn_no"]: p for p in bundles.open_bundle(raw, key.verify_key).payload["persons"]}
        assert persons["P0001"]["reflects_seq"] == {"D-S1-1": 1}
    finally:
        store.close()


async def test_after_reconciliation_a_ledger_snapshot_replaces_the_counters_own_entries(daemon_stack, nursery):
    """Through the daemons: an offline visit paid from the account, reconciled at the centre, then
    `centre publish --from-ledger`: the counter's persons bundle carries its reflects_seq, and the counter
    drops that visit from its overlay (the account is not spent twice in the local balance).

    Written against the centre as it was: `centre publish` had no --from-ledger (nothing published
    persons from the ledger, so no snapshot ever carried reflects_seq for a device)."""
    import json
    import subprocess
    import sys

    import trio

    from harness.demo import ITEMS, ZHANGSAN

    s = await daemon_stack()
    await s.start_counter()
    psn = "3303000000000001"
    async with s.client() as api:
        async def ready():
            st = await s.status(api)
            return len(st["cache"]["bundles"]) == 4 and st["cache"]["age_s"] is not None and st["online"]
        await s.until(ready)
        s.stop_centre()

        async def offline():
            return (await s.status(api))["online"] is False
        await s.until(offline)
        await api.post("/api/card/simulate", json=ZHANGSAN)
        r = await api.post("/api/settle", json={"req": "P-OFF-1", "med_type": "11", "acct_used_flag": True,
                                               "pin": "123456", "items": ITEMS})
        assert r.status_code == 200 and r.json()["mode"] == "offline", r.text
        seq, acct = r.json()["seq"], r.json()["setlinfo"]["acct_pay"]
        assert acct > 0
        before = (await api.get("/api/card")).json()["person"]["balc"]
        assert before == 50000 - acct
        await s.restart_centre(nursery)
        device = (await s.status(api))["device"]

        async def reconciled():
            return await trio.to_thread.run_sync(lambda: (s.store.ledger.snapshot(psn)["reflects_seq"] or {})
                                                 .get(device) == seq)
        await s.until(reconciled, 60)
        versions = (await s.status(api))["cache"]["bundles"]["persons"]["version"]
        done = await trio.to_thread.run_sync(lambda: subprocess.run(
            [sys.executable, "-m", "sync.centre", "publish", "--data-dir", str(s.tmp / "centre"), "--from-ledger"],
            capture_output=True, text=True, timeout=120))
        assert done.returncode == 0, done.stdout + done.stderr

        async def applied():
            return (await s.status(api))["cache"]["bundles"]["persons"]["version"] > versions
        await s.until(applied)
        after = (await api.get("/api/card")).json()["person"]["balc"]
    await s.stop_counter()
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert rows and rows[-1]["kind"] == "persons"
    published = s.store.ledger.snapshot(psn)
    assert published["balc"] == 50000 - acct
    # The snapshot reflects the visit: the counter no longer adds it on top (it would read 50000 - 2 x acct).
    assert after == published["balc"]
