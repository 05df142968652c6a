"""The social security card's firmware, modelled: APDU in, response APDU out. No I/O.

This is our model of the card (firmware-interfaces/card-profile.md), written independently of the
reader side in edge/card/ so the tests compare two readings of the profile, not one with itself.
vcard.py puts it on the vpcd socket; tests may also pair it with edge.card.session in memory.

Card description (JSON, see cards/*.json)::

    card_id, spec_version, init_org, issued, expires (YYYY-MM-DD), card_no, ssn, name, sex,
    pin, pin_tries (left, default 3), test_key (hex, for GET CHALLENGE / EXTERNAL AUTHENTICATE),
    atr (hex, optional), get_response (bool: answer READ RECORD with 61xx, T=0 style)

Faults (dict, may change while the card runs)::

    mute: true            never answer a command APDU (the ATR still comes: a card that powers up
                          and then hangs)
    garbage: "tlv"        READ RECORD data is random bytes with 9000
             "short"      every answer is one byte (no status word)
             "bytes"      every answer is 0..40 random bytes
    sw: {"B2": "6581"}    answer this INS (hex) with this status word
    delay_ms: 50          wait before each answer (a slow card)
    pull_after: 3         the card is pulled when the 3rd command arrives (vcard.py closes the link)
    pin_blocked: true     the PIN retry counter is 0
    expired: true         the valid-until date is yesterday
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import random

AID = bytes.fromhex("7378312E73682EC9E7BBE1B1A3D5CF")   # "sx1.sh.社会保障" in GBK
PIN_TRIES_MAX = 3
# T=1 ATR: TS 3B, T0 8A (TD1 follows, 10 historical bytes), TD1 80 (TD2 follows, T=0),
# TD2 01 (T=1), historical "CNSSC3.00A", TCK (XOR of T0..last historical byte).
_ATR_BODY = bytes([0x8A, 0x80, 0x01]) + b"CNSSC3.00A"


def default_atr() -> bytes:
    tck = 0
    for b in _ATR_BODY:
        tck ^= b
    return bytes([0x3B]) + _ATR_BODY + bytes([tck])


def cryptogram(key: bytes, challenge: bytes) -> bytes:
    """The test key's answer to a challenge. Real cards use SM4/3DES; this model uses HMAC-SHA256
    truncated to 8 bytes (the standard library has no block cipher), which is enough to test the
    challenge-response flow."""
    return hmac.new(key, challenge, hashlib.sha256).digest()[:8]


def _bcd_date(text: str) -> bytes:
    return bytes.fromhex(dt.date.fromisoformat(text).strftime("%Y%m%d"))


def _tlv(tag: int, value: bytes) -> bytes:
    if len(value) > 0x7F:
        return bytes([tag, 0x81, len(value)]) + value
    return bytes([tag, len(value)]) + value


def _sw(sw: int) -> bytes:
    return bytes([sw >> 8, sw & 0xFF])


class CardModel:
    def __init__(self, card: dict, faults: dict | None = None) -> None:
        self.card = dict(card)
        self.faults: dict = {}
        self.pin_tries = int(card.get("pin_tries", PIN_TRIES_MAX))
        self.commands = 0
        self._rng = random.Random(card.get("card_id", ""))
        self.set_faults(faults or {})
        self.power_on()

    # -- description -> files ------------------------------------------------------------------

    def set_faults(self, faults: dict) -> None:
        self.faults = dict(faults)
        self.commands = 0
        if self.faults.get("pin_blocked"):
            self.pin_tries = 0

    def records(self) -> dict[tuple[int, int], bytes]:
        c = self.card
        expires = c["expires"]
        if self.faults.get("expired"):
            expires = (dt.date.today() - dt.timedelta(days=1)).isoformat()
        name = c["name"].encode("gbk").ljust(30, b"\x20")
        return {
            (5, 1): _tlv(1, c["card_id"].encode("ascii")),
            (5, 3): _tlv(3, c.get("spec_version", "3.00").encode("ascii")),
            (5, 4): _tlv(4, c.get("init_org", "000000000000").encode("ascii")),
            (5, 5): _tlv(5, _bcd_date(c["issued"])),
            (5, 6): _tlv(6, _bcd_date(expires)),
            (5, 7): _tlv(7, c["card_no"].encode("ascii")),
            (6, 1): _tlv(1, c["ssn"].encode("ascii")),
            (6, 2): _tlv(2, name),
            (6, 4): _tlv(4, str(c["sex"]).encode("ascii")),
        }

    def atr(self) -> bytes:
        return bytes.fromhex(self.card["atr"]) if self.card.get("atr") else default_atr()

    def power_on(self) -> None:
        """Power-up and reset: volatile state (selection, PIN verified, challenge) is lost."""
        self.selected = False
        self.pin_verified = False
        self.authenticated = False
        self.challenge: bytes | None = None
        self.pending = b""

    # -- commands ---------------------------------------------------------------------------------

    def process(self, apdu: bytes) -> bytes | None:
        """The response APDU, or None for "no answer" (mute). ``pull_after`` is vcard.py's job."""
        self.commands += 1
        garbage = self.faults.get("garbage")
        if self.faults.get("mute"):
            return None
        if garbage == "short":
            return b"\x90"
        if garbage == "bytes":
            return bytes(self._rng.randrange(256) for _ in range(self._rng.randrange(41)))
        ins = f"{apdu[1]:02X}" if len(apdu) > 1 else ""
        forced = self.faults.get("sw", {}).get(ins)
        if forced:
            return bytes.fromhex(forced)
        return self._process(apdu)

    def _process(self, apdu: bytes) -> bytes:
        if len(apdu) < 4:
            return _sw(0x6700)
        cla, ins, p1, p2 = apdu[:4]
        body = apdu[4:]
        lc, data, le = 0, b"", None
        if len(body) == 1:
            le = body[0]
        elif len(body) > 1:
            lc = body[0]
            data = body[1:1 + lc]
            if len(data) != lc or len(body) > lc + 2:
                return _sw(0x6700)
            if len(body) == lc + 2:
                le = body[-1]
        if cla != 0x00:
            return _sw(0x6E00)
        if ins == 0xA4:
            return self._select(p1, data)
        if ins == 0xB2:
            return self._read_record(p1, p2, le)
        if ins == 0xC0:
            return self._get_response(le)
        if ins == 0x20:
            return self._verify(data)
        if ins == 0x84:
            return self._get_challenge(le)
        if ins == 0x82:
            return self._external_authenticate(data)
        return _sw(0x6D00)

    def _select(self, p1: int, data: bytes) -> bytes:
        if p1 != 0x04:
            return _sw(0x6A86)
        if data != AID:
            self.selected = False
            return _sw(0x6A82)
        self.selected, self.pin_verified, self.authenticated = True, False, False
        return _sw(0x9000)

    def _read_record(self, rec: int, p2: int, le: int | None) -> bytes:
        if p2 & 0x07 != 0x04:
            return _sw(0x6A86)
        if not self.selected:
            return _sw(0x6A82)
        sfi = p2 >> 3
        if sfi not in (5, 6):
            return _sw(0x6A82)
        record = self.records().get((sfi, rec))
        if record is None:
            return _sw(0x6A83)
        if self.faults.get("garbage") == "tlv":
            record = bytes(self._rng.randrange(256) for _ in range(len(record)))
        if self.card.get("get_response"):
            self.pending = record
            return _sw(0x6100 | len(record))
        if le not in (None, 0) and le != len(record):
            return _sw(0x6C00 | len(record))
        return record + _sw(0x9000)

    def _get_response(self, le: int | None) -> bytes:
        if not self.pending:
            return _sw(0x6985)
        n = len(self.pending) if not le else le
        out, self.pending = self.pending[:n], self.pending[n:]
        if self.pending:
            return out + _sw(0x6100 | len(self.pending))
        return out + _sw(0x9000)

    def _verify(self, data: bytes) -> bytes:
        if not self.selected:
            return _sw(0x6985)
        if self.pin_tries <= 0:
            return _sw(0x6983)
        if data.hex().upper() == self.card["pin"]:
            self.pin_tries = PIN_TRIES_MAX
            self.pin_verified = True
            return _sw(0x9000)
        self.pin_tries -= 1
        self.pin_verified = False
        return _sw(0x63C0 | self.pin_tries)

    def _get_challenge(self, le: int | None) -> bytes:
        n = le or 8
        self.challenge = os.urandom(n)
        return self.challenge + _sw(0x9000)

    def _external_authenticate(self, data: bytes) -> bytes:
        if self.challenge is None:
            return _sw(0x6985)
        key = bytes.fromhex(self.card.get("test_key", "00" * 16))
        ok = hmac.compare_digest(data, cryptogram(key, self.challenge))
        self.challenge = None
        self.authenticated = ok
        return _sw(0x9000 if ok else 0x6300)
