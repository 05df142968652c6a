"""Local cache of the centre's signed bundles (catalogue, policy, persons, hotlist) and item search."""

from .errors import CacheError, CacheUnavailable
from .search import initials, normalise
from .store import Cache, Person, Refresh

__all__ = ["Cache", "Person", "Refresh", "CacheError", "CacheUnavailable", "initials", "normalise"]
