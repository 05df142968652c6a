"""The cards at this counter: what the card watcher reported, and the last check before journaling.

:class:`CardDesk` keeps, per reader, the identity read when the card was inserted (or the error).
Before a visit is journaled the card must still be there: :meth:`CardDesk.confirm` verifies the PIN
on the card when the account pays (which proves presence), otherwise re-reads the identity and checks
it is the same card. A card pulled out between "pre-settle" and "confirm" therefore journals nothing.

:class:`SimulatedCards` is the demo and benchmark stand-in when pcscd/vpcd are missing: the identity is
put in through the API and every answer says it is simulated (模拟读卡). The daemon uses it only when
the config asks for it (``[card] simulated = true``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import trio

from .errors import CardProblem


@dataclass
class Slot:
    identity: Any = None                 # edge.card.Identity or None
    error: Any = None                    # edge.card.CardError or None
    events: int = 0


def _card_problem(exc) -> CardProblem:
    """Map an edge.card.CardError to the counter's error shape."""
    detail = {}
    if getattr(exc, "tries_left", None) is not None:
        detail["tries_left"] = exc.tries_left
    return CardProblem(getattr(exc, "message", str(exc)), zh=getattr(exc, "zh", "读卡出错"),
                       code=getattr(exc, "code", "card_error"), **detail)


class CardDesk:
    simulated = False

    def __init__(self) -> None:
        self.slots: dict[str, Slot] = {}
        self.changed = trio.Event()

    # -- fed by the watcher ---------------------------------------------------------------------
    def on_event(self, event) -> None:
        slot = self.slots.setdefault(event.reader, Slot())
        slot.events += 1
        if event.kind == "inserted":
            slot.identity, slot.error = event.identity, None
        elif event.kind == "removed":
            slot.identity, slot.error = None, None
        else:
            slot.identity, slot.error = None, event.error
        self.changed.set()
        self.changed = trio.Event()

    # -- asked by the counter -------------------------------------------------------------------
    def present(self, reader: str | None = None):
        """(reader, identity) of the card to settle with; CardProblem when none (or several)."""
        if reader is not None:
            slot = self.slots.get(reader)
            if slot is None or slot.identity is None:
                if slot is not None and slot.error is not None:
                    raise _card_problem(slot.error)
                raise CardProblem(f"no card in reader {reader}", zh="请插入社保卡", code="no_card")
            return reader, slot.identity
        with_card = [(r, s.identity) for r, s in sorted(self.slots.items()) if s.identity is not None]
        if len(with_card) > 1:
            raise CardProblem("cards in several readers: say which reader to use", zh="多个读卡器中有卡，请指定读卡器",
                              code="several_cards", readers=[r for r, _ in with_card])
        if not with_card:
            errors = [s.error for s in self.slots.values() if s.error is not None]
            if errors:
                raise _card_problem(errors[0])
            raise CardProblem("no card in any reader: insert the social security card", zh="请插入社保卡",
                              code="no_card")
        return with_card[0]

    def status(self) -> list[dict]:
        out = []
        for r, s in sorted(self.slots.items()):
            d = {"reader": r, "present": s.identity is not None}
            if s.error is not None:
                d["error"] = {"code": getattr(s.error, "code", "card_error"), "zh": getattr(s.error, "zh", "")}
            out.append(d)
        return out

    async def confirm(self, reader: str, card_id: str | None, pin: str | None) -> None:
        """The same card is still in the reader (and the PIN is right when one is given)."""
        from edge.card import CardError, read_identity, verify_pin

        try:
            if pin is not None:
                await verify_pin(reader, pin)
            identity = await read_identity(reader)
        except CardError as exc:
            raise _card_problem(exc) from exc
        if identity.card_id != card_id:
            raise CardProblem("a different card is now in the reader: start the visit again",
                              zh="读卡器中的卡已更换，请重新读卡", code="card_changed")


class SimulatedCards(CardDesk):
    """Demo/benchmark stand-in for pcscd + vpcd. Clearly labelled everywhere it shows."""

    simulated = True
    READER = "模拟读卡器 (simulated)"

    def __init__(self, pin: str = "123456") -> None:
        super().__init__()
        self.pin = pin
        self.tries = 3

    def insert(self, identity) -> None:
        self.on_event(_Event("inserted", self.READER, identity))

    def remove(self) -> None:
        self.on_event(_Event("removed", self.READER, None))

    async def confirm(self, reader: str, card_id: str | None, pin: str | None) -> None:
        slot = self.slots.get(reader)
        if slot is None or slot.identity is None:
            raise CardProblem("the card was removed before the visit was confirmed: nothing was recorded",
                              zh="卡已拔出，本次未结算，请重新插卡", code="card_removed")
        if slot.identity.card_id != card_id:
            raise CardProblem("a different card is now in the reader: start the visit again",
                              zh="读卡器中的卡已更换，请重新读卡", code="card_changed")
        if pin is not None:
            if self.tries <= 0:
                raise CardProblem("PIN blocked", zh="密码已锁定", code="pin_blocked")
            if pin != self.pin:
                self.tries -= 1
                raise CardProblem(f"wrong PIN, {self.tries} tries left", zh=f"密码错误，还可尝试 {self.tries} 次",
                                  code="wrong_pin", tries_left=self.tries)
            self.tries = 3


@dataclass
class _Event:
    kind: str
    reader: str
    identity: object | None
    error: object | None = None


def simulated_identity(*, card_id: str, ssn: str, name: str, card_no: str = "A00000001",
                       expires: dt.date | None = None):
    """An Identity as if read from a card (demo/benchmark only)."""
    from edge.card import Identity

    return Identity(card_id=card_id, region=card_id[:6], card_no=card_no, ssn=ssn, name=name, sex="1",
                    spec_version="3.00", issued=dt.date(2020, 1, 1), expires=expires or dt.date(2035, 1, 1),
                    atr="", reader=SimulatedCards.READER, keyed_in=False)


__all__ = ["CardDesk", "SimulatedCards", "Slot", "simulated_identity"]
