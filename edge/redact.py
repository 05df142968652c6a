"""Personal-data redaction for support bundles and logs: names, SSNs, card numbers, card ids, PINs.

Two layers, because neither is enough alone:

* **Structured** (:meth:`Redactor.obj`): in JSON-like data a key says what a value is (``name``,
  ``ssn``/``certno``, ``card_no``, ``card_id``, ``pin``, ``psn_no``, secrets such as ``token`` or
  ``private_key``), so the value is replaced whatever it looks like. Every such value is also
  *learned*: the same string is then scrubbed wherever it appears in free text (a name in a log line
  cannot be recognised by shape, but it can be recognised once a structured record named it).
* **Text** (:meth:`Redactor.text`): shapes that identify people whatever the context:

      SSN (社会保障号码)       17 digits + digit or X (also 6-8-4 groups) -> first 6 (region) + ************
      card id (卡识别码)       6 digits + 10..26 of [0-9A-Z]        -> first 6 (region) + ****
      card number (卡号)       9 letters/digits with a digit, alone -> *********
      PIN                      after pin/password/密码, and the data of a VERIFY APDU (00 20 00 xx Lc …)
      name                     after name=/name:/姓名/持卡人, and every learned name

Tokens are matched only where no letter or digit touches them (Python's ``\\b`` would treat Chinese
characters as word characters and miss ``姓名张三330324…``). False positives (a 9-character code
that is not a card number) cost a little readability; a false negative leaks a patient's data, so
the shapes are deliberately wide. The region prefix is kept: it tells the technician which city's
cards are involved without identifying anyone.

``install_log_redaction()`` adds a :class:`RedactingFilter` to a logger's handlers so log files never
hold these in clear in the first place.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Iterable

NAME, PIN, SECRET = "[name]", "[pin]", "[secret]"

_EDGE_L = r"(?<![0-9A-Za-z])"
_EDGE_R = r"(?![0-9A-Za-z])"
# Also written in groups (330302 19900101 1235, 330302-19900101-1235), as people copy them from ID cards.
SSN_RE = re.compile(_EDGE_L + r"([0-9]{6})(?:[0-9]{11}|[ -][0-9]{8}[ -][0-9]{3})[0-9Xx]" + _EDGE_R)
CARD_ID_RE = re.compile(_EDGE_L + r"([0-9]{6})[0-9A-Z]{10,26}" + _EDGE_R)
CARD_NO_RE = re.compile(_EDGE_L + r"[0-9A-Za-z]{9}" + _EDGE_R)   # masked only when it holds a digit
# "PIN 123456", "pin=1234", "password: 1234", "密码：123456", JSON "pin": "123456"
PIN_TEXT_RE = re.compile(r"(?i)((?:pin|passwd|password|passcode|密码)[\"']?\s*[:=：]?\s*[\"']?)([0-9]{4,12})")
# VERIFY (CLA 00, INS 20, P1 00, any P2), Lc, then Lc bytes of PIN data; spaces optional, any case.
# Only spaces or tabs between bytes: a trace line must never swallow the next line.
VERIFY_APDU_RE = re.compile(r"(?i)" + _EDGE_L + r"(00[ \t]?20[ \t]?00[ \t]?[0-9a-f]{2}[ \t]?)([0-9a-f]{2})"
                            r"((?:[ \t]?[0-9a-f]{2})+)" + _EDGE_R)
# The value runs to the next delimiter; a second capitalised word is taken too ("Zhang San").
NAME_TEXT_RE = re.compile(r"((?i:name|holder|patient|姓名|持卡人|患者)[\"']?\s*[:=：]\s*[\"']?)"
                          r"([^\s,;，；\"'<>]{1,40}(?: [A-Z][a-z]+)?)")

NAME_KEYS = frozenset({"name", "psn_name", "holder", "holder_name", "patient", "patient_name", "xm", "cardholder"})
SSN_KEYS = frozenset({"ssn", "certno", "cert_no", "mdtrt_cert_no", "idcard", "id_card", "id_no", "sfzh"})
CARD_NO_KEYS = frozenset({"card_no", "cardno", "card_number"})
CARD_ID_KEYS = frozenset({"card_id", "cardid", "card_sn"})
PIN_KEYS = frozenset({"pin", "passwd", "password", "passcode"})
PSN_KEYS = frozenset({"psn_no"})
_PII_KEYS = NAME_KEYS | SSN_KEYS | CARD_NO_KEYS | CARD_ID_KEYS | PIN_KEYS | PSN_KEYS
SECRET_KEY_PARTS = ("token", "secret", "private", "seed", "password", "passwd", "signing_key", "api_key",
                    "credential")


def _mask_ssn(value: str) -> str:
    return value[:6] + "*" * 12 if len(value) >= 6 else "*" * len(value)


def _mask_tail(value: str, keep: int) -> str:
    return "*" * max(0, len(value) - keep) + value[len(value) - keep:] if len(value) > keep else "*" * len(value)


def _is_secret_key(key: str) -> bool:
    k = key.lower()
    return any(part in k for part in SECRET_KEY_PARTS) or k in ("key", "pin")


class Redactor:
    """Redacts text and JSON-like data; remembers structured PII to scrub it from free text too."""

    def __init__(self, known: Iterable[str] = ()) -> None:
        self._known: set[str] = set()
        self._lengths: list[int] = []
        self._firsts_re: re.Pattern | None = None
        for value in known:
            self.learn(value)

    # -- learning ------------------------------------------------------------------------------------
    def learn(self, value: Any) -> None:
        """Scrub ``value`` wherever it appears from now on (names and ids found in structured data)."""
        if not isinstance(value, str):
            return
        value = value.strip()
        if len(value) < 2 or value.startswith("[") or set(value) <= {"*"}:
            return  # one character (a surname alone) would blank too much; masks are already safe
        if SSN_RE.fullmatch(value) or CARD_ID_RE.fullmatch(value):
            return  # the shapes scrub these wherever they stand alone; learning them only costs time
        if value not in self._known:
            self._known.add(value)
            self._lengths = sorted({len(v) for v in self._known}, reverse=True)   # longest first
            self._firsts_re = None

    def learn_from(self, data: Any) -> None:
        """Walk ``data`` and learn every value stored under a personal-data key."""
        if isinstance(data, dict):
            for k, v in data.items():
                key = str(k).lower()
                if key in _PII_KEYS:
                    if isinstance(v, (str, int)):
                        self.learn(str(v))
                self.learn_from(v)
        elif isinstance(data, (list, tuple)):
            for v in data:
                self.learn_from(v)

    def _scrub_known(self, text: str) -> str:
        """Replace every learned value. A set lookup per candidate position (a position holding the
        first character of some learned value), not one huge regex alternation: a site's journal
        names thousands of people, and logs are megabytes."""
        if not self._known:
            return text
        if self._firsts_re is None:
            firsts = sorted({v[0] for v in self._known})
            self._firsts_re = re.compile("[" + "".join(re.escape(c) for c in firsts) + "]")
        out, pos = [], 0
        for m in self._firsts_re.finditer(text):
            i = m.start()
            if i < pos:
                continue
            for length in self._lengths:
                candidate = text[i:i + length]
                if candidate in self._known:
                    out.append(text[pos:i])
                    out.append(_mask_known(candidate))
                    pos = i + length
                    break
        out.append(text[pos:])
        return "".join(out)

    # -- redacting -----------------------------------------------------------------------------------
    def text(self, text: str) -> str:
        """Redact every personal-data shape (and every learned value) in free text."""
        if not text:
            return text
        text = self._scrub_known(text)
        text = VERIFY_APDU_RE.sub(_redact_apdu, text)
        text = PIN_TEXT_RE.sub(lambda m: m.group(1) + PIN, text)
        text = NAME_TEXT_RE.sub(lambda m: m.group(1) + NAME, text)
        text = SSN_RE.sub(lambda m: _mask_ssn(m.group(0)), text)
        text = CARD_ID_RE.sub(lambda m: m.group(1) + "*" * (len(m.group(0)) - 6), text)
        text = CARD_NO_RE.sub(lambda m: "*" * 9 if not m.group(0).isalpha() else m.group(0), text)
        return text

    def obj(self, data: Any, *, _key: str | None = None) -> Any:
        """Redact JSON-like data: by key first, then every string by shape. Returns a new object."""
        if _key is None:
            self.learn_from(data)
        if isinstance(data, dict):
            return {k: self._value(str(k), v) for k, v in data.items()}
        if isinstance(data, (list, tuple)):
            return [self.obj(v, _key="") for v in data]
        if isinstance(data, str):
            return self.text(data)
        if isinstance(data, (bytes, bytearray)):
            return data.hex()
        return data

    def _value(self, key: str, value: Any) -> Any:
        k = key.lower()
        if value is None or isinstance(value, bool):
            return value
        if k in NAME_KEYS and isinstance(value, (str, int)):
            return NAME
        if k in PIN_KEYS and isinstance(value, (str, int)):
            return PIN
        if k in SSN_KEYS and isinstance(value, (str, int)):
            return _mask_ssn(str(value))
        if k in CARD_ID_KEYS and isinstance(value, str):
            return value[:6] + "*" * max(0, len(value) - 6)
        if k in CARD_NO_KEYS and isinstance(value, (str, int)):
            return "*" * len(str(value))
        if k in PSN_KEYS and isinstance(value, (str, int)):
            return _mask_tail(str(value), 4)
        if _is_secret_key(k) and isinstance(value, (str, int, bytes)):
            return SECRET
        return self.obj(value, _key=k)


def _mask_known(value: str) -> str:
    if SSN_RE.fullmatch(value):
        return _mask_ssn(value)
    if CARD_ID_RE.fullmatch(value):
        return value[:6] + "*" * (len(value) - 6)
    if any("\u4e00" <= ch <= "\u9fff" for ch in value) or value.replace(" ", "").isalpha():
        return NAME
    return "*" * len(value)


def _redact_apdu(m: re.Match) -> str:
    head, lc, data = m.group(1), m.group(2), m.group(3)
    n = int(lc, 16)
    spaced = " " in data or "\t" in data
    digits = re.sub(r"[ \t]", "", data)
    pin_hex, rest = digits[: 2 * n], digits[2 * n:]
    masked = "**" * (len(pin_hex) // 2)
    if spaced:
        masked = " " + " ".join(masked[i:i + 2] for i in range(0, len(masked), 2))
        rest = "".join(" " + rest[i:i + 2] for i in range(0, len(rest), 2))
    return head + lc + masked + rest


_default = Redactor()


def redact_text(text: str) -> str:
    """Shape-based redaction of one text (no learned values)."""
    return _default.text(text)


def redact_obj(data: Any) -> Any:
    """Key- and shape-based redaction of JSON-like data (a fresh Redactor: nothing is remembered)."""
    return Redactor().obj(data)


class RedactingFilter(logging.Filter):
    """A logging filter that renders the message and redacts it before any handler writes it."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.redactor = redactor or Redactor()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: leave the record as is, logging reports it itself
            return True
        record.msg, record.args = self.redactor.text(message), None
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> RedactingFilter:
    """Redact every record that reaches ``logger``'s handlers (default: the root logger)."""
    logger = logger or logging.getLogger()
    filt = RedactingFilter()
    for handler in logger.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(filt)
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(filt)
    return filt
