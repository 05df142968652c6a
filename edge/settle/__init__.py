"""Pure settlement engine (DOMAIN.md section 4). See :mod:`edge.settle.engine` for the rules."""

from .engine import ENGINE_VERSION, apply, cancel, settle, settle_case
from .errors import CannotCancel, InvalidInput, NoChronicFiling, NoPolicyRule, SettlementError
from .inputs import (
    CatalogueItem, ChronicFiling, Item, OfflineLimits, PersonState, Policy, Rule, Visit,
    parse_catalogue, parse_items, parse_offline_limits, parse_person, parse_policy, parse_visit,
)
from .money import MAX_FEN, round_fen, yuan
from .result import Cancellation, Line, Reason, Settlement, canonical_json

__all__ = [
    "ENGINE_VERSION", "settle", "cancel", "apply", "settle_case",
    "SettlementError", "InvalidInput", "NoPolicyRule", "NoChronicFiling", "CannotCancel",
    "CatalogueItem", "ChronicFiling", "Item", "OfflineLimits", "PersonState", "Policy", "Rule", "Visit",
    "parse_catalogue", "parse_items", "parse_offline_limits", "parse_person", "parse_policy", "parse_visit",
    "MAX_FEN", "round_fen", "yuan",
    "Cancellation", "Line", "Reason", "Settlement", "canonical_json",
]
