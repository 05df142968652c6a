"""The card session: a sans-I/O state machine that says which APDU to send next and digests answers.

Rules
-----
States, in the order a visit walks through them::

    absent --inserted--> present --selected--> selected --identified--> identified
                                                  │                        │
                                                  └------pin_verified------┴--> pin_verified

``removed`` goes from any state but ``absent`` back to ``absent``; ``reset`` (the adapter reset or
reconnected the card) from any state but ``absent`` back to ``present``. Every transition is in
:data:`TRANSITIONS`; an event missing there raises :class:`SessionOrderError` and changes nothing
(like h11's ``_state.py``). ``selected --pin_verified-->`` lets a PIN check run without re-reading
the identity (two APDUs instead of ten).

Theory of operation
-------------------
The driver (edge/card/pcsc.py in a worker thread, or a test pairing the session with the virtual
card's model in memory) loops::

    while (apdu := session.next_command()) is not None:
        session.receive(transmit(apdu))

In ``present`` the next command is SELECT; in ``selected`` it is READ RECORD for each identity
record in turn, or VERIFY if a PIN was handed over with :meth:`CardSession.request_pin`; in
``identified`` it is VERIFY if a PIN is waiting, else nothing. 61xx answers are followed by GET
RESPONSE and 6Cxx by the same command with the length the card asked for, at most
:data:`MAX_CHAINED` times a command (a card that keeps asking is malformed, not a reason to loop).
A failure raises a :class:`CardError` and forgets every record read so far: there is never a
partial identity.
"""

from __future__ import annotations

from .errors import CardError, CardMalformed, SessionOrderError
from .identity import Identity
from .profile import (
    IDENTITY_RECORDS, SW_OK, RecordSpec, decode_field, error_for_sw, get_response, read_record,
    select_aid, split_response, validate_fields, verify_pin,
)

ABSENT, PRESENT, SELECTED, IDENTIFIED, PIN_VERIFIED = "absent", "present", "selected", "identified", "pin_verified"
STATES = (ABSENT, PRESENT, SELECTED, IDENTIFIED, PIN_VERIFIED)

TRANSITIONS: dict[str, dict[str, str]] = {
    ABSENT: {"inserted": PRESENT},
    PRESENT: {"selected": SELECTED, "removed": ABSENT, "reset": PRESENT},
    SELECTED: {"identified": IDENTIFIED, "pin_verified": PIN_VERIFIED, "removed": ABSENT, "reset": PRESENT},
    IDENTIFIED: {"pin_verified": PIN_VERIFIED, "removed": ABSENT, "reset": PRESENT},
    PIN_VERIFIED: {"removed": ABSENT, "reset": PRESENT},
}

MAX_CHAINED = 8


class CardSession:
    def __init__(self, reader: str = "") -> None:
        self.reader = reader
        self.state = ABSENT
        self.atr = b""
        self.identity: Identity | None = None
        self._clear()

    def _clear(self) -> None:
        self._fields: dict = {}
        self._plan: list[RecordSpec] = list(IDENTITY_RECORDS)
        self._pin: str | None = None
        self._op: tuple[str, bytes] | None = None   # (kind, the command as first sent)
        self._next: bytes | None = None             # GET RESPONSE / resend waiting to go out
        self._acc = b""
        self._chained = 0

    def _transition(self, event: str) -> None:
        try:
            new = TRANSITIONS[self.state][event]
        except KeyError:
            raise SessionOrderError(self.state, event) from None
        self.state = new

    # -- events from the reader side --------------------------------------------------------

    def inserted(self, atr: bytes) -> None:
        self._transition("inserted")
        self.atr = bytes(atr)

    def removed(self) -> None:
        self._transition("removed")
        self.atr = b""
        self.identity = None
        self._clear()

    def reset(self) -> None:
        self._transition("reset")
        self.identity = None
        self._clear()

    def request_pin(self, pin: str) -> None:
        """Queue a VERIFY; the PIN format is checked now (CardInputError), the card checks the rest."""
        if self.state not in (PRESENT, SELECTED, IDENTIFIED, PIN_VERIFIED):
            raise SessionOrderError(self.state, "request_pin")
        verify_pin(pin)
        self._pin = pin

    # -- the exchange --------------------------------------------------------------------------

    def next_command(self) -> bytes | None:
        """The next command APDU to send, or None when the session has nothing more to do."""
        if self._next is not None:
            return self._next
        if self.state == PRESENT:
            self._op = ("select", select_aid())
        elif self.state in (SELECTED, IDENTIFIED, PIN_VERIFIED) and self._pin is not None:
            self._op = ("verify", verify_pin(self._pin))
        elif self.state == SELECTED:
            spec = self._plan[0]
            self._op = ("record", read_record(spec.sfi, spec.record))
        else:
            return None
        self._next = self._op[1]
        return self._next

    def receive(self, rapdu: bytes) -> None:
        """Digest the answer to the command :meth:`next_command` gave. Raises only CardError."""
        if self._op is None or self._next is None:
            raise SessionOrderError(self.state, "response")
        kind, command = self._op
        try:
            data, sw = split_response(rapdu)
            if sw >> 8 in (0x61, 0x6C) and kind != "verify":
                self._chained += 1
                if self._chained > MAX_CHAINED:
                    raise CardMalformed(f"card asked for more than {MAX_CHAINED} GET RESPONSE/resends")
                if sw >> 8 == 0x61:
                    self._acc += data
                    self._next = get_response(sw & 0xFF)
                else:
                    self._acc = b""
                    self._next = command[:-1] + bytes([sw & 0xFF]) if kind == "record" else None
                    if self._next is None:
                        raise CardMalformed(f"card answered {sw:04X} to a command without Le")
                return
            data, self._acc = self._acc + data, b""
            self._next, self._op, self._chained = None, None, 0
            if sw != SW_OK:
                raise error_for_sw(sw, command=kind)
            if kind == "select":
                self._transition("selected")
            elif kind == "verify":
                self._pin = None
                self._transition("pin_verified")
            else:
                self._record(data)
        except CardError:
            self._fail(kind)
            raise

    def _record(self, data: bytes) -> None:
        spec = self._plan.pop(0)
        self._fields[spec.field] = decode_field(spec, data)
        if self._plan:
            return
        fields = self._fields
        validate_fields(fields)
        self.identity = Identity(
            card_id=fields["card_id"], region=fields["card_id"][:6], card_no=fields["card_no"],
            ssn=fields["ssn"], name=fields["name"], sex=fields["sex"], spec_version=fields["spec_version"],
            issued=fields["issued"], expires=fields["expires"], atr=self.atr.hex().upper(),
            reader=self.reader, keyed_in=False)
        self._transition("identified")

    def _fail(self, kind: str) -> None:
        # A failed read leaves nothing half-read behind; a failed VERIFY keeps the identity (the
        # clerk may let the patient try the PIN again) but drops the PIN.
        self._next, self._op, self._acc, self._chained, self._pin = None, None, b"", 0, None
        if kind != "verify":
            self._fields = {}
            self._plan = list(IDENTITY_RECORDS)
