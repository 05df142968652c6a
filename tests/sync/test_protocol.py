"""The sans-I/O protocol: messages, the uplink state machine, backoff; two cores over an in-memory link."""

from __future__ import annotations

import random

import pytest
import trio

from edge.journal.store import JournalStore
from edge.uplink import Uplink
from sync import protocol, wire
from sync.centre.store import open_store
from sync.errors import CentreRefused, MessageError, TransportError, WireError
from harness.simulate import SimDevice, pharmacy_sale

# Entry times must be plausible wall-clock times (the body contract refuses 1970).
T0 = 1_780_000_000_000



def test_wire_round_trip_and_damage():
    msg = {"t": "upload", "device": "D-S1-1", "entries": [[1, b"\x00" * 300]]}
    for compress in (True, False):
        assert wire.decode(wire.encode(msg, compress=compress)) == msg
    frame = wire.encode(msg)
    assert len(frame) < 100  # 300 zero bytes compress
    for bad in (b"", b"XYZ\x01\x00", frame[:3] + b"\x09" + frame[4:], frame[:-5], b"SSY\x01\x07abc", b"SSY\x01\x00\xff"):
        with pytest.raises(WireError):
            wire.decode(bad)


def test_messages_validate():
    with pytest.raises(MessageError):
        protocol.Upload.from_msg({"t": "upload", "device": "D", "entries": [[0, b"x"]]})
    with pytest.raises(MessageError):
        protocol.Upload.from_msg({"t": "upload", "device": "D", "entries": [[True, b"x"]]})
    with pytest.raises(MessageError):
        protocol.FeedRequest.from_msg({"t": "feed", "cursor": -1, "limit": 10})
    with pytest.raises(CentreRefused) as exc:
        protocol.UploadResult.from_msg({"t": "error", "code": "unknown_device", "message": "m", "retryable": False})
    assert exc.value.code == "unknown_device"


class E:  # what the outbox hands the core: seq + raw
    def __init__(self, seq, raw=b"x"):
        self.seq, self.raw = seq, raw


def test_state_machine_transitions_and_illegal_events():
    core = protocol.UplinkCore("D-S1-1", acked=3)
    assert core.state is protocol.State.IDLE
    with pytest.raises(protocol.IllegalEvent):
        core.upload_result({"t": "upload_result", "ack": 1, "results": []})
    assert core.state is protocol.State.IDLE
    with pytest.raises(protocol.IllegalEvent):
        core.failed()
    msg = core.start_upload([E(4), E(5), E(6)])
    assert msg["entries"] == [[4, b"x"], [5, b"x"], [6, b"x"]] and core.state is protocol.State.UPLOADING
    with pytest.raises(protocol.IllegalEvent):
        core.start_feed()
    with pytest.raises(MessageError):  # a bad answer changes nothing
        core.upload_result({"t": "upload_result"})
    assert core.state is protocol.State.UPLOADING
    a = core.upload_result({"t": "upload_result", "ack": 5, "results": [
        [4, "accepted", None, None], [5, "rejected", "bad_signature", "m"], [6, "deferred", "gap", "m"],
        [99, "rejected", "fork", "not ours"]]})
    assert a == protocol.UploadActions(None, [(5, "bad_signature", "m")], 5, 1, 1, 0)
    assert core.state is protocol.State.IDLE and core.acked == 5
    core.start_feed()
    a = core.feed_page({"t": "feed_page", "messages": [], "cursor": 0, "more": False, "high_water": 2})
    assert a.rewind_to == 2 and core.acked == 2  # centre restored from an older backup
    core.start_upload([E(3)])
    core.failed()
    assert core.state is protocol.State.IDLE


def test_batches_are_bounded():
    entries = [E(i, b"x" * 100) for i in range(1, 1001)]
    assert len(protocol.make_batch(entries)) == protocol.BATCH_MAX_ENTRIES
    assert len(protocol.make_batch(entries, max_bytes=1000)) == 10
    assert len(protocol.make_batch([E(1, b"x" * 10**6)], max_bytes=1000)) == 1  # a big entry still goes


def test_backoff_grows_jitters_caps():
    b = protocol.Backoff(base=1, cap=60, rng=random.Random(7))
    delays = [b.next_delay() for _ in range(12)]
    for n, d in enumerate(delays):
        assert 0.5 <= d <= min(60, 2 ** n)
    assert max(delays[8:]) <= 60 and len(set(delays)) == len(delays)
    b.reset()
    assert b.next_delay() <= 1


class MemoryLink:
    """The centre's core (store + protocol functions) reached without HTTP; fails on demand."""

    def __init__(self, store, device, key, fail_first=0):
        self.store, self.device, self.key = store, device, key
        self.fail_first = fail_first
        self.calls: list[float] = []
        self.done = trio.Event()  # set at the first feed request once the centre holds `expect` entries
        self.expect = None

    async def call(self, path, message):
        self.calls.append(trio.current_time())
        if len(self.calls) <= self.fail_first:
            raise TransportError("link down")
        msg = wire.decode(wire.encode(message))
        if path == "/v1/upload":
            up = protocol.Upload.from_msg(msg)
            return protocol.upload_result(self.store.put_entries(self.device, up.entries))
        if self.expect is not None and self.store.entry_count() >= self.expect:
            self.done.set()  # a new round began after everything arrived: the previous one finished
        req = protocol.FeedRequest.from_msg(msg)
        msgs, cursor = self.store.downlink_page(self.device, req.cursor, req.limit)
        return protocol.FeedPage(msgs, cursor, False, self.store.high_water(self.device)).to_msg()


@pytest.fixture
def link_setup(tmp_path):
    store = open_store(tmp_path / "centre.db")
    dev = SimDevice("D-S330300001-1")
    store.register_device(dev.device, "S330300001", dev.pubkey)
    journal = JournalStore.open(tmp_path / "journal.db", signing_key=dev.key, device=dev.device)
    yield store, dev, journal
    journal.close()
    store.close()


async def test_uplink_retries_with_backoff_forever_then_drains(link_setup, autojump_clock):
    store, dev, journal = link_setup
    for i in range(1, 31):
        journal.append("settlement", pharmacy_sale(i, device=dev.device), time_ms=T0 + i, mono_ns=i)
    link = MemoryLink(store, dev.device, dev.key, fail_first=12)
    link.expect = 30
    up = Uplink(journal, link, batch_entries=7, idle_s=3600,
                backoff=protocol.Backoff(base=1, cap=120, rng=random.Random(1)))
    async with trio.open_nursery() as nursery:
        await nursery.start(up.run)
        # No sleeping poll here: the only deadlines are the uplink's own, so the virtual clock
        # measures exactly its backoff (worker-thread time does not leak into it).
        await link.done.wait()
        nursery.cancel_scope.cancel()
    gaps = [b - a for a, b in zip(link.calls, link.calls[1:13])]
    for n, gap in enumerate(gaps):
        assert min(0.5, 2 ** n) <= gap <= min(120, 2 ** n)  # exponential, jittered, capped
    assert sum(gaps) > 300  # more than five minutes of outage went by on the virtual clock
    assert up.status.failures == 0 and store.entry_count() == 30 and journal.acked_seq == 30
    assert up.status.last_error is None


async def test_rejected_entry_is_quarantined_and_the_rest_flows(link_setup):
    store, dev, journal = link_setup
    for i in range(1, 6):
        journal.append("settlement", pharmacy_sale(i, device=dev.device), time_ms=T0 + i, mono_ns=i)
    # damage entry 3 in the edge's own journal file (as a disk fault would)
    raw = bytearray(journal.get(3).raw)
    raw[raw.index(b"POS-") + 4] ^= 1
    journal._conn.execute("UPDATE entries SET raw = ? WHERE seq = 3", (bytes(raw),))
    up = Uplink(journal, MemoryLink(store, dev.device, dev.key))
    await up.sync_once()
    assert [q[:2] for q in journal.quarantined()] == [(3, "bad_signature")]
    assert [q[:2] for q in up.status.quarantined] == [(3, "bad_signature")]
    assert journal.backlog().count == 0 and journal.acked_seq == 5
    assert store.entry_count() == 4
    journal.append("settlement", pharmacy_sale(6, device=dev.device), time_ms=T0 + 6, mono_ns=6)
    await up.sync_once()
    assert store.high_water(dev.device) == 6


async def test_callback_failure_is_retried_and_journal_errors_do_not_kill_the_uplink(link_setup, autojump_clock):
    from edge.journal.errors import JournalBusy
    from edge.uplink import DownlinkFailed

    store, dev, journal = link_setup
    store.post_downlink(dev.device, "outcome", {"ref_seq": 1, "outcome": "confirmed"})
    seen = []

    async def flaky(m):
        seen.append(m["id"])
        if len(seen) == 1:
            raise RuntimeError("cache locked")

    up = Uplink(journal, MemoryLink(store, dev.device, dev.key), on_downlink=flaky)
    with pytest.raises(DownlinkFailed) as exc:
        await up.sync_once()
    assert exc.value.retryable and "cache locked" in exc.value.message and up.status.cursor == 0
    await up.sync_once()
    assert seen == [1, 1] and up.status.cursor == 1

    class BusyOnce:
        """The real journal, except that the first pending() finds it locked."""

        def __init__(self, j):
            self.j, self.calls = j, 0

        def pending(self, *a):
            self.calls += 1
            if self.calls == 1:
                raise JournalBusy("locked by a backup program")
            return self.j.pending(*a)

        def __getattr__(self, name):
            return getattr(self.j, name)

    journal.append("settlement", pharmacy_sale(1, device=dev.device), time_ms=T0 + 1, mono_ns=1)
    link = MemoryLink(store, dev.device, dev.key)
    link.expect = 1
    up = Uplink(BusyOnce(journal), link, idle_s=3600, backoff=protocol.Backoff(base=1, rng=random.Random(2)))
    async with trio.open_nursery() as nursery:
        await nursery.start(up.run)
        await link.done.wait()
        nursery.cancel_scope.cancel()
    assert store.entry_count() == 1 and journal.acked_seq == 1


async def test_rejected_entry_resent_after_the_centre_forgot_it(link_setup):
    store, dev, journal = link_setup
    for i in range(1, 6):
        journal.append("settlement", pharmacy_sale(i, device=dev.device), time_ms=T0 + i, mono_ns=i)
    raw = bytearray(journal.get(3).raw)
    raw[raw.index(b"POS-") + 4] ^= 1
    journal._conn.execute("UPDATE entries SET raw = ? WHERE seq = 3", (bytes(raw),))
    up = Uplink(journal, MemoryLink(store, dev.device, dev.key))
    await up.sync_once()
    assert [q[0] for q in journal.quarantined()] == [3] and journal.acked_seq == 5
    # the centre comes back from a backup taken when it held entries 1-2 only
    store.db.execute("DELETE FROM entries WHERE seq > 2")
    store.db.execute("DELETE FROM rejections")
    store.db.execute("UPDATE devices SET high_water = 2, last_hash = ?",
                     (journal.get(2).hash,))
    await up.sync_once()
    assert store.high_water(dev.device) == 5 and store.entry_count() == 4
    assert [(r["seq"], r["code"]) for r in store.rejections()] == [(3, "bad_signature")]
    assert [q[0] for q in journal.quarantined()] == [3] and journal.backlog().count == 0


async def test_a_gap_held_in_our_own_quarantine_is_sent_again(link_setup):
    store, dev, journal = link_setup
    for i in range(1, 6):
        journal.append("settlement", pharmacy_sale(i, device=dev.device), time_ms=T0 + i, mono_ns=i)
    store.put_entries(dev.device, [(e.seq, e.raw) for e in journal.entries(1, 2)])
    journal.mark_acked(2)
    journal.quarantine(3, "bad_signature", "recorded by a centre that was later restored")
    up = Uplink(journal, MemoryLink(store, dev.device, dev.key))
    await up.sync_once()  # 4 and 5 are deferred (gap at 3): 3 comes out of quarantine and goes too
    assert store.high_water(dev.device) == 5 and store.entry_count() == 5 and not journal.quarantined()
