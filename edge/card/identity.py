"""The identity read from a card (or keyed in by the clerk for a damaged card)."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass

from .errors import CardInputError
from .profile import CARD_NO_RE, SEX_CODES, SSN_RE, ssn_check_char


@dataclass(frozen=True)
class Identity:
    """Who holds the card. Fields read from a card are always filled; a keyed-in identity
    (``keyed_in=True``) has ``card_id`` None, no dates, no ATR and no reader, and is never settled
    offline (DOMAIN.md section 2)."""

    card_id: str | None       # 卡识别码 (EF05 rec 01); the hotlist key
    region: str | None        # issuing region: the first 6 characters of card_id
    card_no: str              # 社会保障卡卡号 (EF05 rec 07), 9 characters
    ssn: str                  # 社会保障号码 (EF06 rec 01), 18 characters
    name: str                 # EF06 rec 02, decoded from GBK, padding removed
    sex: str                  # GB/T 2261.1 code: "1" male, "2" female, "0" unknown, "9" unspecified
    spec_version: str         # EF05 rec 03, e.g. "3.00"
    issued: dt.date | None    # EF05 rec 05
    expires: dt.date | None   # EF05 rec 06 (valid until, inclusive)
    atr: str                  # hex, upper case, no spaces
    reader: str
    keyed_in: bool = False

    @property
    def sex_label(self) -> str:
        return SEX_CODES.get(self.sex, "unknown")

    def to_dict(self) -> dict:
        """Everything, dates as ISO text (for --show-pii and the counter page, never for logs)."""
        out = asdict(self)
        for k in ("issued", "expires"):
            out[k] = out[k].isoformat() if out[k] else None
        return out

    def redacted(self) -> dict:
        """Safe for logs and the journal's card events: no name, SSN or card number in clear."""
        out = self.to_dict()
        out["name"] = _mask(self.name, keep_start=1, keep_end=0)
        out["ssn"] = _mask(self.ssn, keep_start=6, keep_end=2)
        out["card_no"] = _mask(self.card_no, keep_start=0, keep_end=3)
        if self.card_id:
            out["card_id"] = _mask(self.card_id, keep_start=6, keep_end=4)
        return out


def _mask(text: str, *, keep_start: int, keep_end: int) -> str:
    if not text:
        return text
    if len(text) <= keep_start + keep_end:
        return "*" * len(text)
    end = text[len(text) - keep_end:] if keep_end else ""
    return text[:keep_start] + "*" * (len(text) - keep_start - keep_end) + end


def keyed_in_identity(card_no: str, ssn: str, *, region: str | None = None) -> Identity:
    """An identity the clerk typed from a damaged card: card number + social security number.

    The SSN's check character is verified (GB 11643), so a typo is caught here rather than at the
    centre days later. Sex follows from the SSN (17th digit odd: male). ``region`` is the issuing
    region if the clerk knows it (6 digits); the SSN's first 6 digits are the birthplace, not the
    issuer, so they are not used for it.
    """
    card_no = (card_no or "").strip().upper()
    ssn = (ssn or "").strip().upper()
    if not CARD_NO_RE.fullmatch(card_no):
        raise CardInputError("The card number must be 9 letters or digits as printed on the card",
                             zh="卡号应为卡面上印的9位字母或数字", field="card_no")
    if not SSN_RE.fullmatch(ssn):
        raise CardInputError("The social security number must be 18 characters: 17 digits and a digit or X",
                             zh="社会保障号码应为18位：17位数字加1位数字或X", field="ssn")
    if ssn_check_char(ssn[:17]) != ssn[17]:
        raise CardInputError("The social security number's last character does not match (typing "
                             "error?); check it against the ID card",
                             zh="社会保障号码校验位不符，可能录入有误，请与身份证核对", field="ssn")
    if region is not None and not (len(region) == 6 and region.isdigit()):
        raise CardInputError("The region code must be 6 digits, e.g. 330300",
                             zh="地区代码应为6位数字，例如330300", field="region")
    sex = "1" if int(ssn[16]) % 2 else "2"
    return Identity(card_id=None, region=region, card_no=card_no, ssn=ssn, name="", sex=sex,
                    spec_version="", issued=None, expires=None, atr="", reader="", keyed_in=True)
