"""The pure ingest rules (sync.centre.ingest.plan) under arbitrary re-sends, reorders and damage."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.journal.entry import GENESIS
from sync.centre import ingest
from harness.simulate import SimDevice

N = 12
DEV = SimDevice("D-S330300001-1")
DEV.extend(N)
GOOD = {e.seq: ingest.check_entry(e.seq, e.raw, DEV.device, DEV.key.verify_key) for e in DEV.entries}


def damaged(seq: int) -> ingest.Checked:
    raw = bytearray(DEV.entries[seq - 1].raw)
    raw[raw.index(b"POS-") + 4] ^= 1
    return ingest.check_entry(seq, bytes(raw), DEV.device, DEV.key.verify_key)


BAD = {seq: damaged(seq) for seq in range(1, N + 1)}


class FakeStore:
    """What Store.put_checked keeps, in memory."""

    def __init__(self):
        self.entries: dict[int, bytes] = {}
        self.rejected: dict[int, str] = {}
        self.hw, self.last = 0, GENESIS

    def put(self, checked):
        stored = {s: ("entry", h) for s, h in self.entries.items()}
        stored.update({s: ("rejected", c) for s, c in self.rejected.items() if s not in stored})
        p = ingest.plan(checked, high_water=self.hw, last_hash=self.last, stored=stored)
        for e, _ in p.accept:
            assert e.seq not in self.entries, "stored twice"
            self.entries[e.seq] = e.hash
        for seq, code, _, slot, _ in p.reject:
            if slot:
                assert seq not in self.rejected and seq not in self.entries
                self.rejected[seq] = code
        self.hw, self.last = p.high_water, p.last_hash
        return p


sends = st.lists(st.lists(st.tuples(st.integers(1, N), st.booleans()), max_size=8), max_size=10)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sends)
def test_any_sequence_of_sends_keeps_the_invariants(batches):
    store = FakeStore()
    damaged_slots = set()
    for batch in batches:
        checked = [BAD[s] if bad else GOOD[s] for s, bad in batch]
        p = store.put(checked)
        assert [r.seq for r in p.results] == [c.seq for c in checked]  # every entry gets a result
        for r in p.results:
            assert r.status in (ingest.ACCEPTED, ingest.DUPLICATE, ingest.REJECTED, ingest.DEFERRED)
            assert (r.status in (ingest.ACCEPTED, ingest.DUPLICATE)) == (r.code is None)
        # high water is the contiguous prefix of settled slots
        settled = set(store.entries) | set(store.rejected)
        assert all(s in settled for s in range(1, store.hw + 1)) and not any(s > store.hw for s in settled)
        damaged_slots |= set(store.rejected)
        # only a good entry is ever stored, under its own seq
        assert all(store.entries[s] == DEV.entries[s - 1].hash for s in store.entries)
    # then the edge sends everything it has, in order: the centre ends complete
    store.put([GOOD[s] for s in range(1, N + 1)])
    assert store.hw == N
    assert set(store.entries) == set(range(1, N + 1)) - damaged_slots
    assert set(store.rejected) == damaged_slots
