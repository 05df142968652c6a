"""Stateful property test of the outbox: any sequence of append / ack / rewind / quarantine / release
leaves the store agreeing with a tiny model (what is pending, backlog, unacknowledged, quarantined)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from nacl.signing import SigningKey

from journal_bodies import DEVICE
from edge.journal import AckBeyondHead, JournalStore, UnknownEntry

KEY = SigningKey(bytes(range(32)))


class OutboxMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self._tmp = tempfile.TemporaryDirectory()
        self.store = JournalStore.open(Path(self._tmp.name) / "journal.db", signing_key=KEY, device=DEVICE)
        self.head = 0
        self.acked = 0
        self.quarantined: dict[int, str] = {}
        self.times: dict[int, int] = {}

    def teardown(self):
        self.store.close()
        self._tmp.cleanup()

    @rule(t=st.integers(min_value=0, max_value=10**6))
    def append(self, t):
        entry = self.store.append("note", {"what": f"n{self.head}"}, time_ms=t, mono_ns=t)
        self.head += 1
        self.times[self.head] = t
        assert entry.seq == self.head

    @rule(data=st.data())
    def ack(self, data):
        upto = data.draw(st.integers(min_value=0, max_value=self.head + 2))
        if upto > self.head:
            try:
                self.store.mark_acked(upto)
            except AckBeyondHead:
                return
            raise AssertionError("ack beyond head accepted")
        self.store.mark_acked(upto)
        self.acked = max(self.acked, upto)

    @rule(data=st.data())
    def rewind(self, data):
        to = data.draw(st.integers(min_value=0, max_value=self.head))
        self.store.rewind_ack(to)
        self.acked = min(self.acked, to)

    @precondition(lambda self: self.head > 0)
    @rule(data=st.data(), code=st.sampled_from(["bad_basis", "unknown_item"]))
    def quarantine(self, data, code):
        seq = data.draw(st.integers(min_value=1, max_value=self.head + 1))
        if seq > self.head:
            try:
                self.store.quarantine(seq, code, "why")
            except UnknownEntry:
                return
            raise AssertionError("quarantine of a missing entry accepted")
        self.store.quarantine(seq, code, "why")
        self.quarantined[seq] = code

    @precondition(lambda self: self.quarantined)
    @rule(data=st.data())
    def release(self, data):
        seq = data.draw(st.sampled_from(sorted(self.quarantined)))
        self.store.release(seq)
        del self.quarantined[seq]

    def _pending(self):
        return [s for s in range(self.acked + 1, self.head + 1) if s not in self.quarantined]

    @invariant()
    def agrees_with_model(self):
        pending = self._pending()
        assert [e.seq for e in self.store.pending(limit=10_000, max_bytes=10**9)] == pending
        backlog = self.store.backlog()
        assert backlog.count == len(pending)
        assert backlog.oldest_time_ms == (min(self.times[s] for s in pending) if pending else None)
        assert self.store.acked_seq == self.acked
        assert self.store.unacknowledged() == self.head - self.acked
        assert self.store.quarantined() == [(s, c, "why") for s, c in sorted(self.quarantined.items())]
        assert self.store.head()[0] == self.head


OutboxMachine.TestCase.settings = settings(max_examples=25, stateful_step_count=20, deadline=None,
                                           suppress_health_check=[HealthCheck.too_slow])
TestOutbox = OutboxMachine.TestCase
