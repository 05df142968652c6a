"""The social security card profile, pure: APDU builders, record parsers, status word -> typed error.

No I/O here. firmware-interfaces/card-profile.md is the prose version of the same facts; the
status-word meanings are in :mod:`edge.card.status` (a test checks each is documented there).

Every parser takes arbitrary bytes and either returns a value or raises :class:`CardMalformed`
(or a :class:`CardStatusError` subclass for a well-formed refusal): nothing else escapes, which the
Hypothesis tests in tests/card/test_profile.py check with random response bytes.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from .errors import (
    CardError, CardInputError, CardMalformed, CardStatusError, NotSocialSecurityCard, PinBlocked, WrongPin,
)

# "sx1.sh.社会保障" (GBK): the social security application's name, selected by DF name.
AID = bytes.fromhex("7378312E73682EC9E7BBE1B1A3D5CF")

SW_OK = 0x9000

# READ RECORD P2 = (SFI << 3) | 0b100 ("P1 is a record number").
SFI_CARD = 5     # EF05: card information
SFI_HOLDER = 6   # EF06: holder


def p2_for_sfi(sfi: int) -> int:
    return (sfi << 3) | 0x04


@dataclass(frozen=True)
class RecordSpec:
    sfi: int
    record: int
    field: str
    encoding: str   # "ascii" | "gbk" | "bcd_date"
    max_len: int


# What the identity read fetches, in order. EF05 rec 04 (initialising institution) is not needed for
# settlement and is left unread to keep the read short.
IDENTITY_RECORDS: tuple[RecordSpec, ...] = (
    RecordSpec(SFI_CARD, 0x01, "card_id", "ascii", 32),
    RecordSpec(SFI_CARD, 0x03, "spec_version", "ascii", 4),
    RecordSpec(SFI_CARD, 0x05, "issued", "bcd_date", 4),
    RecordSpec(SFI_CARD, 0x06, "expires", "bcd_date", 4),
    RecordSpec(SFI_CARD, 0x07, "card_no", "ascii", 9),
    RecordSpec(SFI_HOLDER, 0x01, "ssn", "ascii", 18),
    RecordSpec(SFI_HOLDER, 0x02, "name", "gbk", 30),
    RecordSpec(SFI_HOLDER, 0x04, "sex", "ascii", 1),
)

# ---------------------------------------------------------------------------------------------
# APDU builders (command APDUs as bytes)


def select_aid(aid: bytes = AID) -> bytes:
    return bytes([0x00, 0xA4, 0x04, 0x00, len(aid)]) + aid


def read_record(sfi: int, record: int, le: int = 0) -> bytes:
    if not 1 <= record <= 0xFE or not 1 <= sfi <= 30:
        raise ValueError(f"record {record} / SFI {sfi} out of range")
    return bytes([0x00, 0xB2, record, p2_for_sfi(sfi), le & 0xFF])


def get_response(le: int) -> bytes:
    return bytes([0x00, 0xC0, 0x00, 0x00, le & 0xFF])


def pin_to_bcd(pin: str) -> bytes:
    """The PIN as packed BCD, two digits a byte. 4 to 12 digits, an even count (the card's rule)."""
    if not isinstance(pin, str) or not re.fullmatch(r"[0-9]{4,12}", pin) or len(pin) % 2:
        raise CardInputError("The PIN must be 4 to 12 digits, an even number of them (usually 6); "
                             "ask the patient to enter it again",
                             zh="密码应为4至12位数字（通常为6位），请参保人重新输入", field="pin")
    return bytes.fromhex(pin)


def verify_pin(pin: str) -> bytes:
    data = pin_to_bcd(pin)
    return bytes([0x00, 0x20, 0x00, 0x00, len(data)]) + data


def get_challenge(length: int = 8) -> bytes:
    return bytes([0x00, 0x84, 0x00, 0x00, length])


def external_authenticate(cryptogram: bytes, key_id: int = 0) -> bytes:
    return bytes([0x00, 0x82, 0x00, key_id, len(cryptogram)]) + cryptogram


def split_response(rapdu: bytes) -> tuple[bytes, int]:
    """A response APDU is data followed by SW1 SW2; fewer than two bytes is not a response."""
    if not isinstance(rapdu, (bytes, bytearray)) or len(rapdu) < 2:
        raise CardMalformed(f"response of {len(rapdu) if rapdu is not None else 0} bytes has no status word")
    return bytes(rapdu[:-2]), (rapdu[-2] << 8) | rapdu[-1]


def error_for_sw(sw: int, *, command: str = "") -> CardError:
    """The typed error for a final (non-9000, non-61xx/6Cxx) status word of ``command``."""
    if command == "select" and sw in (0x6A82, 0x6A81, 0x6A86, 0x6D00, 0x6E00):
        return NotSocialSecurityCard(sw)
    if command == "verify":
        if sw & 0xFFF0 == 0x63C0:
            tries = sw & 0x0F
            return WrongPin(tries) if tries else PinBlocked(sw)
        if sw in (0x6983, 0x6984):
            return PinBlocked(sw)
    return CardStatusError(sw)


# ---------------------------------------------------------------------------------------------
# Record parsing: TLV, then the field's encoding

_PADDING = frozenset((0x00, 0xFF))


def parse_tlv(data: bytes, expected_tag: int) -> bytes:
    """The value of a one-TLV record. Tag is one byte and must equal the record number; the length is
    one byte (or 81 xx for 128..255). Anything after the value must be 00/FF padding."""
    if len(data) < 2:
        raise CardMalformed(f"record {expected_tag:02X}: {len(data)} bytes, too short for a TLV")
    tag = data[0]
    if tag != expected_tag:
        raise CardMalformed(f"record {expected_tag:02X}: tag {tag:02X} where {expected_tag:02X} was expected")
    length, start = data[1], 2
    if length == 0x81:
        if len(data) < 3:
            raise CardMalformed(f"record {expected_tag:02X}: truncated length")
        length, start = data[2], 3
    elif length > 0x7F:
        raise CardMalformed(f"record {expected_tag:02X}: unsupported length byte {length:02X}")
    end = start + length
    if end > len(data):
        raise CardMalformed(f"record {expected_tag:02X}: length {length} but only {len(data) - start} bytes")
    if any(b not in _PADDING for b in data[end:]):
        raise CardMalformed(f"record {expected_tag:02X}: unexpected bytes after the value")
    return bytes(data[start:end])


def _strip_padding(value: bytes) -> bytes:
    return value.rstrip(b"\x00\xff\x20")


def decode_ascii(value: bytes, what: str) -> str:
    raw = _strip_padding(value)
    if any(b < 0x20 or b > 0x7E for b in raw):
        raise CardMalformed(f"{what}: not printable ASCII")
    return raw.decode("ascii")


def decode_gbk(value: bytes, what: str) -> str:
    # Decoded as GB 18030, the superset of GBK: every GBK name reads the same, and a rare character
    # (生僻字) written with a four-byte GB 18030 sequence still reads instead of failing the card.
    raw = _strip_padding(value)
    try:
        text = raw.decode("gb18030")
    except UnicodeDecodeError as exc:
        raise CardMalformed(f"{what}: not valid GBK text") from exc
    # Trailing ideographic spaces are padding too; control characters are not a name.
    text = text.rstrip("\u3000 ")
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in text):
        raise CardMalformed(f"{what}: contains control characters")
    return text


def decode_bcd_date(value: bytes, what: str) -> dt.date:
    if len(value) != 4:
        raise CardMalformed(f"{what}: BCD date must be 4 bytes, got {len(value)}")
    digits = value.hex()
    if not digits.isdigit():
        raise CardMalformed(f"{what}: {digits.upper()} is not BCD")
    try:
        return dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError as exc:
        raise CardMalformed(f"{what}: {digits} is not a calendar date") from exc


def decode_field(spec: RecordSpec, record_data: bytes):
    """One identity field from a READ RECORD answer's data (TLV included)."""
    value = parse_tlv(record_data, spec.record)
    if len(value) > spec.max_len:
        raise CardMalformed(f"{spec.field}: {len(value)} bytes, at most {spec.max_len} allowed")
    if spec.encoding == "bcd_date":
        return decode_bcd_date(value, spec.field)
    if spec.encoding == "gbk":
        return decode_gbk(value, spec.field)
    return decode_ascii(value, spec.field)


# ---------------------------------------------------------------------------------------------
# Field rules (shared by the card read and the keyed-in path)

CARD_ID_RE = re.compile(r"[0-9]{6}[0-9A-Z]{10,26}")
CARD_NO_RE = re.compile(r"[0-9A-Z]{9}")
SSN_RE = re.compile(r"[0-9]{17}[0-9X]")
SPEC_VERSION_RE = re.compile(r"[0-9]\.[0-9]{2}")
SEX_CODES = {"0": "unknown", "1": "male", "2": "female", "9": "unspecified"}  # GB/T 2261.1

_SSN_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_SSN_CHECK = "10X98765432"


def ssn_check_char(first17: str) -> str:
    """GB 11643 check character of an 18-character citizen ID number."""
    return _SSN_CHECK[sum(int(d) * w for d, w in zip(first17, _SSN_WEIGHTS)) % 11]


def validate_fields(fields: dict) -> None:
    """The cross-field rules a correctly personalised card satisfies; CardMalformed otherwise."""
    if not CARD_ID_RE.fullmatch(fields["card_id"]):
        raise CardMalformed("card identification code: not 6 region digits followed by letters/digits")
    if not SPEC_VERSION_RE.fullmatch(fields["spec_version"]):
        raise CardMalformed(f"spec version {fields['spec_version']!r} is not like '3.00'")
    if not CARD_NO_RE.fullmatch(fields["card_no"]):
        raise CardMalformed("card number: not 9 letters/digits")
    if not SSN_RE.fullmatch(fields["ssn"]):
        raise CardMalformed("social security number: not 17 digits and a check character")
    if not fields["name"]:
        raise CardMalformed("name: empty")
    if fields["sex"] not in SEX_CODES:
        raise CardMalformed(f"sex: code {fields['sex']!r} is not 0, 1, 2 or 9")
    if fields["expires"] < fields["issued"]:
        raise CardMalformed("valid-until date is before the issue date")
