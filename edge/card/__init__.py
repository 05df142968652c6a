"""The social security card path: profile (pure), session state machine (pure), pyscard adapter.

Public names are re-exported here; see docs/card.md for the design and firmware-interfaces/
card-profile.md for the card itself.
"""

from . import profile, session
from .checks import check_card
from .errors import (
    HOTLIST_REASONS, CardError, CardExpired, CardHotlisted, CardInputError, CardMalformed, CardMute,
    CardRefused, CardRemoved, CardStatusError, NoCard, NoReader, NotSocialSecurityCard, PcscUnavailable,
    PinBlocked, ReaderProblem, SessionOrderError, WrongPin,
)
from .identity import Identity, keyed_in_identity
from .reader import CARD_ANSWER_SECONDS, list_readers, read_identity, reader_status, verify_pin
from .session import CardSession
from .watch import CardEvent, watch_cards

__all__ = [
    "profile", "session",
    "Identity", "keyed_in_identity", "check_card", "CardSession",
    "list_readers", "reader_status", "read_identity", "verify_pin", "watch_cards", "CardEvent", "CARD_ANSWER_SECONDS",
    "CardError", "ReaderProblem", "PcscUnavailable", "NoReader", "NoCard", "CardRemoved", "CardMute",
    "CardMalformed", "NotSocialSecurityCard", "CardStatusError", "WrongPin", "PinBlocked", "CardRefused",
    "CardExpired", "CardHotlisted", "HOTLIST_REASONS", "CardInputError", "SessionOrderError",
]
