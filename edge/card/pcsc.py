"""The pyscard adapter: blocking PC/SC calls, run only in worker threads (see edge/card/reader.py).

This is the one module that imports pyscard. Every PC/SC result code is mapped to a
:class:`CardError` here (:func:`error_for`), and any exception pyscard raises is re-raised as one
with ``from exc``, so nothing foreign reaches the daemon.

pyscard's low-level ``smartcard.scard`` API is used rather than its object layer: it returns the
PC/SC result codes as they are, which is what the mapping needs, and it has no observer threads of
its own.
"""

from __future__ import annotations

import time

from .errors import (
    CardError, CardMalformed, CardMute, CardRemoved, NoCard, NoReader, PcscUnavailable, ReaderProblem,
)
from .session import CardSession

try:
    from smartcard import scard as _scard
except ImportError:  # pragma: no cover - scripts/setup installs it; say so clearly if it did not
    _scard = None

# pcscd polls a reader without interrupt support every 400 ms; a removed card is seen within one
# poll. After a failed transmit we wait this long for the reader to say "empty" before deciding the
# card is still in (mute) rather than gone (removed).
REMOVAL_SETTLE_MS = 1500


def _sc():
    if _scard is None:
        raise PcscUnavailable("pyscard is not installed; run scripts/setup")
    return _scard


def _code_name(code: int) -> str:
    sc = _sc()
    for name in dir(sc):
        if name.startswith("SCARD_") and getattr(sc, name) == code and not name.startswith("SCARD_S_"):
            return name
    return f"0x{code & 0xFFFFFFFF:08X}"


def error_for(code: int, *, reader: str | None = None, during: str = "") -> CardError:
    """The CardError for a PC/SC result code (``during``: "connect", "transmit", "list", ...)."""
    sc = _sc()
    name = _code_name(code)
    if code in (sc.SCARD_E_NO_SERVICE, sc.SCARD_E_SERVICE_STOPPED):
        return PcscUnavailable(name)
    if during in ("list", "status") and code in (
            sc.SCARD_F_COMM_ERROR, sc.SCARD_E_INVALID_HANDLE, sc.SCARD_W_SECURITY_VIOLATION,
            sc.SCARD_F_INTERNAL_ERROR, sc.SCARD_F_UNKNOWN_ERROR):
        # Calls that only talk to pcscd (no card involved) fail like this when pcscd dies under
        # them (seen in tests/card/test_pcscd_restart.py): the service is gone, not a card.
        return PcscUnavailable(f"lost the connection to pcscd: {name}")
    if code == sc.SCARD_E_NO_READERS_AVAILABLE:
        return NoReader(None)
    if code in (sc.SCARD_E_UNKNOWN_READER, sc.SCARD_E_READER_UNAVAILABLE):
        return NoReader(reader)
    if code in (sc.SCARD_E_NO_SMARTCARD, sc.SCARD_W_REMOVED_CARD):
        return CardRemoved() if during == "transmit" else NoCard(reader)
    if code in (sc.SCARD_E_TIMEOUT, sc.SCARD_W_UNRESPONSIVE_CARD, sc.SCARD_E_NOT_TRANSACTED,
                sc.SCARD_F_COMM_ERROR, sc.SCARD_W_UNPOWERED_CARD, sc.SCARD_W_RESET_CARD):
        return CardMute(name)
    if code in (sc.SCARD_W_UNSUPPORTED_CARD, sc.SCARD_E_PROTO_MISMATCH, sc.SCARD_E_INVALID_ATR):
        return CardMalformed(f"the reader cannot talk to this card: {name}")
    if code == sc.SCARD_E_SHARING_VIOLATION:
        return ReaderProblem(f"The card reader is in use by another program ({name}); close it and try again",
                             zh="读卡器正被其他程序占用，请关闭该程序后重试", pcsc=name)
    return ReaderProblem(f"The card reader reported an error ({name}); try again, or run the diagnostics",
                         zh="读卡器报告错误，请重试或运行诊断", pcsc=name)


class Context:
    """One PC/SC context (a connection to pcscd). Not thread-safe: one thread at a time."""

    def __init__(self) -> None:
        sc = _sc()
        try:
            rc, self.handle = sc.SCardEstablishContext(sc.SCARD_SCOPE_USER)
        except Exception as exc:  # pyscard raises its own error types on odd failures
            raise PcscUnavailable(str(exc)) from exc
        if rc != sc.SCARD_S_SUCCESS:
            raise error_for(rc, during="establish")

    def close(self) -> None:
        if self.handle is not None:
            try:
                _sc().SCardReleaseContext(self.handle)
            except Exception:  # releasing is best effort: pcscd may already be gone
                pass
            self.handle = None

    def __enter__(self) -> "Context":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def readers(self) -> list[str]:
        sc = _sc()
        try:
            rc, names = sc.SCardListReaders(self.handle, [])
        except Exception as exc:
            raise ReaderProblem(f"Listing card readers failed ({exc})", zh="获取读卡器列表失败") from exc
        if rc == sc.SCARD_E_NO_READERS_AVAILABLE:
            return []
        if rc != sc.SCARD_S_SUCCESS:
            raise error_for(rc, during="list")
        return list(names)

    def states(self, readers: list[str], current: dict[str, int] | None = None,
               wait_ms: int = 0) -> dict[str, tuple[int, bytes]] | None:
        """Reader -> (event state, ATR) after at most ``wait_ms``; None if nothing changed in time."""
        sc = _sc()
        current = current or {}
        query = [(r, current.get(r, sc.SCARD_STATE_UNAWARE)) for r in readers]
        try:
            rc, result = sc.SCardGetStatusChange(self.handle, wait_ms, query)
        except Exception as exc:
            raise ReaderProblem(f"Reading the card reader state failed ({exc})", zh="获取读卡器状态失败") from exc
        if rc == sc.SCARD_E_TIMEOUT:
            return None
        if rc != sc.SCARD_S_SUCCESS:
            raise error_for(rc, during="status")
        return {name: (state & ~sc.SCARD_STATE_CHANGED, bytes(atr)) for name, state, atr in result}

    def choose(self, wanted: str | None) -> str:
        """The reader to use: ``wanted`` (exact name, or a part of exactly one name), else the first
        reader holding a card."""
        names = self.readers()
        if not names:
            raise NoReader(wanted)
        if wanted is not None:
            if wanted in names:
                return wanted
            matches = [n for n in names if wanted in n]
            if len(matches) == 1:
                return matches[0]
            raise NoReader(wanted)
        present = _sc().SCARD_STATE_PRESENT
        states = self.states(names) or {}
        for name in names:
            if states.get(name, (0, b""))[0] & present:
                return name
        raise NoCard(None)


def card_present(ctx: Context, reader: str) -> bool:
    states = ctx.states([reader]) or {}
    return bool(states.get(reader, (0, b""))[0] & _sc().SCARD_STATE_PRESENT)


def _wait_removed(ctx: Context, reader: str) -> bool:
    """After a failed transmit: does the reader report the card gone within REMOVAL_SETTLE_MS?"""
    sc = _sc()
    deadline = time.monotonic() + REMOVAL_SETTLE_MS / 1000
    try:
        states = ctx.states([reader]) or {}
        state = states.get(reader, (0, b""))[0]
        while state & sc.SCARD_STATE_PRESENT:
            left = int((deadline - time.monotonic()) * 1000)
            if left <= 0:
                return False
            changed = ctx.states([reader], {reader: state}, wait_ms=left)
            if changed is not None:
                state = changed.get(reader, (0, b""))[0]
        return True
    except PcscUnavailable:
        raise   # pcscd itself went away mid-read: say that, not "card mute"
    except CardError:
        return False


def run_session(wanted: str | None, *, pin: str | None = None,
                exchanges: list | None = None) -> CardSession:
    """Connect, drive a fresh CardSession to its end, disconnect. Blocking: call from a worker thread.

    Without ``pin`` the session reads the identity; with it, it selects the application and verifies
    the PIN (then resets the card, so no verified state is left behind for other programs).
    ``exchanges`` (a list), if given, receives the raw (command, response) pairs, for the benchmark.
    """
    sc = _sc()
    with Context() as ctx:
        reader = ctx.choose(wanted)
        try:
            rc, hcard, proto = sc.SCardConnect(ctx.handle, reader, sc.SCARD_SHARE_SHARED,
                                               sc.SCARD_PROTOCOL_T0 | sc.SCARD_PROTOCOL_T1)
        except Exception as exc:
            raise ReaderProblem(f"Connecting to the card failed ({exc})", zh="连接卡片失败") from exc
        if rc != sc.SCARD_S_SUCCESS:
            raise error_for(rc, reader=reader, during="connect")
        disposition = sc.SCARD_LEAVE_CARD if pin is None else sc.SCARD_RESET_CARD
        try:
            # A transaction keeps other programs (diagnostics, another counter app) from interleaving
            # their APDUs with ours on the shared card.
            rc = sc.SCardBeginTransaction(hcard)
            if rc != sc.SCARD_S_SUCCESS:
                raise error_for(rc, reader=reader, during="transmit")
            rc, _name, _state, _proto, atr = sc.SCardStatus(hcard)
            if rc != sc.SCARD_S_SUCCESS:
                raise error_for(rc, reader=reader, during="transmit")
            session = CardSession(reader)
            session.inserted(bytes(atr))
            if pin is not None:
                session.request_pin(pin)
            while (apdu := session.next_command()) is not None:
                try:
                    rc, response = sc.SCardTransmit(hcard, proto, list(apdu))
                except Exception as exc:
                    raise CardMute(f"transmit failed: {exc}") from exc
                if rc != sc.SCARD_S_SUCCESS:
                    err = error_for(rc, reader=reader, during="transmit")
                    if isinstance(err, CardMute) and _wait_removed(ctx, reader):
                        err = CardRemoved()
                    raise err
                response = bytes(response)
                if not response and _wait_removed(ctx, reader):
                    # vpcd reports a card that left mid-command as success with no bytes at all;
                    # a real reader says SCARD_W_REMOVED_CARD. Either way: removed, not malformed.
                    raise CardRemoved()
                if exchanges is not None:
                    exchanges.append((apdu, response))
                session.receive(response)
            return session
        finally:
            try:
                sc.SCardEndTransaction(hcard, sc.SCARD_LEAVE_CARD)
                sc.SCardDisconnect(hcard, disposition)
            except Exception:  # the card or pcscd may be gone; the handle dies with the context
                pass

