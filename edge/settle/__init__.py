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
    "Cancellation", "Line", "Reason", "Settlement", "canonical_json", "set_memo_size",
]


def set_memo_size(entries: int) -> None:
    """How many split lines and rendered reasons (and their JSON) the engine remembers, per memo; each is
    cleared whole when full. 0 (none) by default: a counter settles visits that rarely repeat, and a
    memo that misses costs memory and a key per line and reason (measured ~25 % slower settles); the
    centre's replay re-settles a city's repeated prescriptions and sets it. Same bytes either way."""
    from . import engine, result

    engine._LINES_MAX = result._RENDERED_MAX = max(0, int(entries))
