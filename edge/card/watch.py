"""Card insert/remove events for the daemon: a trio task that watches every reader.

The task polls with SCardGetStatusChange bounded by ``poll_interval`` in a worker thread (not
abandoned on cancel: the thread returns within one interval, and its PC/SC context is then released
in order). The reader list is read again on every round, so readers plugged in later are watched
too. If pcscd stops or restarts, every card known present is reported "removed", one "error"
event says why, and the watcher keeps trying (every max(poll_interval, 0.5) s) until it recovers,
when the cards then in the readers are reported "inserted" again.

When a card arrives its identity is read at once (so the counter page shows the patient without a
click) and sent as ``CardEvent("inserted", reader, identity, None)``; a card that cannot be read
gives ``CardEvent("error", reader, None, error)``. A card pulled and put back between two polls is
caught by pcsc-lite's event counter (upper 16 bits of the event state) and reported as removed then
inserted. Readers are handled one after another: a mute card delays the others' events by at most
reader.CARD_ANSWER_SECONDS.
"""

from __future__ import annotations

from dataclasses import dataclass

import trio

from . import pcsc
from .errors import CardError
from .identity import Identity
from .reader import read_identity


@dataclass(frozen=True)
class CardEvent:
    kind: str                    # "inserted" | "removed" | "error"
    reader: str | None
    identity: Identity | None = None
    error: CardError | None = None


def _present(state: int) -> bool:
    return bool(state & pcsc._sc().SCARD_STATE_PRESENT)


async def watch_cards(send_channel: trio.MemorySendChannel, *, poll_interval: float = 0.2,
                      task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Run until cancelled, sending CardEvents. Closes ``send_channel`` when it ends."""
    wait_ms = max(1, int(poll_interval * 1000))
    async with send_channel:
        ctx: pcsc.Context | None = None
        known: dict[str, int] = {}      # reader -> last event state (counter bits included)
        started = False
        last_error: str | None = None   # report an outage once, not every round
        try:
            while True:
                try:
                    if ctx is None:
                        ctx = await trio.to_thread.run_sync(pcsc.Context)
                    names = await trio.to_thread.run_sync(ctx.readers)
                    current = {n: known.get(n, 0) for n in names}
                    if not started:
                        # First round: learn what is there now without waiting.
                        states = await trio.to_thread.run_sync(ctx.states, names, None, 0) if names else {}
                    elif names:
                        states = await trio.to_thread.run_sync(ctx.states, names, current, wait_ms)
                    else:
                        await trio.sleep(poll_interval)
                        states = {}
                    last_error = None
                except CardError as exc:
                    # pcscd stopped or restarted (its handles die with it), or a reader vanished
                    # mid-call: start again with a fresh context. While the card path is down no
                    # card counts as present, so the counter cannot settle on a stale identity.
                    if ctx is not None:
                        await trio.to_thread.run_sync(ctx.close)
                        ctx = None
                    if not started:
                        started = True
                        task_status.started()
                    for name, state in sorted(known.items()):
                        if _present(state):
                            await send_channel.send(CardEvent("removed", name))
                    known.clear()
                    if exc.code != last_error:
                        last_error = exc.code
                        await send_channel.send(CardEvent("error", None, None, exc))
                    await trio.sleep(max(poll_interval, 0.5))
                    continue
                if not started:
                    started = True
                    task_status.started()
                for gone in [r for r in known if r not in names]:
                    if _present(known.pop(gone)):
                        await send_channel.send(CardEvent("removed", gone))
                for name, (state, _atr) in (states or {}).items():
                    before = known.get(name, 0)
                    known[name] = state
                    was, now = _present(before), _present(state)
                    # The counter changes on every insert/remove, even two between our polls.
                    bounced = was and now and (before >> 16) != (state >> 16) and before != 0
                    if was and (not now or bounced):
                        await send_channel.send(CardEvent("removed", name))
                    if now and (not was or bounced):
                        await send_channel.send(await _inserted(name))
        finally:
            if ctx is not None:
                # Shielded and short: releasing a context is one IPC round trip to pcscd.
                with trio.CancelScope(shield=True), trio.move_on_after(2):
                    await trio.to_thread.run_sync(ctx.close)


async def _inserted(reader: str) -> CardEvent:
    try:
        identity = await read_identity(reader)
    except CardError as exc:
        return CardEvent("error", reader, None, exc)
    return CardEvent("inserted", reader, identity, None)
