"""The counter's side of a restore, sans-I/O and over loopback: a new epoch or a feed head below the
cursor makes the uplink read its downlink again from 0 instead of waiting for ids it already passed."""

from __future__ import annotations

import json

import pytest
import trio

from sync import protocol


def page(**kw):
    base = {"messages": [], "cursor": 9, "more": False, "high_water": 0}
    return protocol.FeedPage(**{**base, **kw}).to_msg()


def fetch(core, msg):
    core.start_feed()
    return core.feed_page(msg)


def test_first_epoch_is_adopted_without_a_resync():
    core = protocol.UplinkCore("D-S-1", cursor=9)
    a = fetch(core, page(epoch="e1", head=9))
    assert a.resync is None and core.epoch == "e1" and core.cursor == 9


def test_a_new_epoch_restarts_the_feed_from_zero():
    core = protocol.UplinkCore("D-S-1", cursor=9, epoch="e1")
    a = fetch(core, page(epoch="e2", head=30, messages=[{"kind": "bundle", "id": 10, "payload": b""}], cursor=10))
    assert a.resync and "restored" in a.resync and a.messages == [] and core.cursor == 0 and a.epoch == "e2"
    b = fetch(core, page(epoch="e2", head=30, cursor=30))
    assert b.resync is None and b.cursor == 30


def test_a_feed_ending_below_the_cursor_restarts_it():
    core = protocol.UplinkCore("D-S-1", cursor=5, epoch="e1")
    a = fetch(core, page(epoch="e1", head=4, cursor=5))
    assert a.resync and "below our cursor 5" in a.resync and core.cursor == 0


def test_older_centres_without_epoch_or_head_still_parse():
    msg = page()
    assert "epoch" not in msg and "head" not in msg
    core = protocol.UplinkCore("D-S-1", cursor=3)
    assert fetch(core, msg).resync is None


@pytest.mark.parametrize("bad", [{"epoch": 5}, {"head": "x"}])
def test_bad_epoch_or_head_is_refused(bad):
    msg = {**page(), **bad}
    core = protocol.UplinkCore("D-S-1")
    core.start_feed()
    with pytest.raises(protocol.MessageError):
        core.feed_page(msg)


class FakeClient:
    device = "D-S330300001-1"

    def __init__(self, pages):
        self.pages = list(pages)
        self.asked = []

    async def call(self, path, message):
        self.asked.append(message["cursor"])
        return self.pages.pop(0)


class NoJournal:
    acked_seq = 0

    def pending(self, *a):
        return []


async def test_uplink_saves_the_epoch_and_reads_again_after_a_restore(tmp_path):
    from edge.uplink import CURSOR_FILE, Uplink

    (tmp_path / CURSOR_FILE).write_text(json.dumps({"cursor": 7, "epoch": "old"}))
    got = []

    async def on_downlink(m):
        got.append(m["id"])

    client = FakeClient([page(epoch="new", head=4, cursor=7),
                         page(epoch="new", head=4, cursor=4, messages=[{"kind": "outcome", "id": 4, "payload": {}}])])
    up = Uplink(NoJournal(), client, state_dir=tmp_path, on_downlink=on_downlink)   # type: ignore[arg-type]
    await up.sync_once()
    assert client.asked == [7, 0] and got == [4]
    assert json.loads((tmp_path / CURSOR_FILE).read_text()) == {"cursor": 4, "epoch": "new"}
    assert up.status.resyncs and up.status.epoch == "new"
    await trio.sleep(0)
