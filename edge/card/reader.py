"""The async card API the daemon calls: every blocking PC/SC call runs in a trio worker thread.

Bounds: a card must finish the whole identity read (or the PIN check) within
:data:`CARD_ANSWER_SECONDS`, else :class:`CardMute`. That bound is a property of cards, not a
caller's preference, so it is a module constant rather than a ``timeout=`` argument; callers that
want a tighter overall limit wrap the call in ``trio.fail_after`` as usual.

pcsc-lite cannot interrupt a blocked SCardTransmit (SCardCancel only cancels SCardGetStatusChange),
so on the bound the worker thread is abandoned: it finishes, disconnects and releases its context on
its own when pcscd gives up or the card is pulled. The caller is never kept waiting for it. (Such a
thread keeps one of trio's default 40 worker-thread tokens until then; a counter sees one mute card
at a time, so that budget is not at risk.)
"""

from __future__ import annotations

import trio

from . import pcsc
from .errors import CardMute
from .identity import Identity

CARD_ANSWER_SECONDS = 3.0


async def list_readers() -> list[str]:
    """Names of the attached readers (an empty list when there are none). PcscUnavailable if pcscd
    is not running."""
    def _list() -> list[str]:
        with pcsc.Context() as ctx:
            return ctx.readers()
    return await trio.to_thread.run_sync(_list)


async def reader_status() -> dict[str, bool]:
    """Reader name -> whether a card is in it (for `edge card readers` and diagnostics)."""
    def _status() -> dict[str, bool]:
        with pcsc.Context() as ctx:
            names = ctx.readers()
            return {name: pcsc.card_present(ctx, name) for name in names}
    return await trio.to_thread.run_sync(_status)


async def _bounded(fn):
    with trio.move_on_after(CARD_ANSWER_SECONDS):
        return await trio.to_thread.run_sync(fn, abandon_on_cancel=True)
    # Only our own deadline ends the block without a return: an outer cancel raises Cancelled.
    raise CardMute(f"no answer within {CARD_ANSWER_SECONDS:g} s")


async def read_identity(reader: str | None = None) -> Identity:
    """Read the holder's identity (no PIN). ``reader``: a name (or a unique part of one); default
    the first reader with a card in it. Raises CardError subclasses only."""
    session = await _bounded(lambda: pcsc.run_session(reader))
    return session.identity


async def verify_pin(reader: str | None, pin: str) -> None:
    """Check the patient's PIN on the card in ``reader``. WrongPin(tries_left), PinBlocked,
    CardInputError (not 4-12 digits), or the reader/card errors."""
    from .profile import verify_pin as _check_format
    _check_format(pin)  # a typing error must not cost the patient a try
    await _bounded(lambda: pcsc.run_session(reader, pin=pin))
