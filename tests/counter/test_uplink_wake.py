"""When a journaled entry wakes the uplink (edge.daemon.wake_uplink): at once while the centre answers or
the last round went well; not while the last round failed and the centre is unreachable (a round then
could only fail, on the next visits' CPU), and the refresher wakes it when the centre answers again."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from edge.daemon import wake_uplink


class Uplink:
    def __init__(self, failures: int) -> None:
        self.status = SimpleNamespace(failures=failures)
        self.woken = 0

    def wake(self) -> None:
        self.woken += 1


@pytest.mark.parametrize("failures, online, woken", [
    (0, True, 1),      # all well: send at once
    (0, False, 1),     # the centre was just lost but no round has failed yet: try (the round finds out)
    (3, True, 1),      # rounds failed but the centre answers again: send at once
    (3, False, 0),     # rounds failing and the centre unreachable: the backoff and the refresher decide
])
def test_a_journaled_entry_wakes_the_uplink_unless_it_can_only_fail(failures, online, woken):
    up = Uplink(failures)
    wake_uplink(SimpleNamespace(link=SimpleNamespace(online=online)), up)
    assert up.woken == woken
