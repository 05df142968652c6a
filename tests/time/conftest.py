"""The counter's fixtures (a real journal, a real cache with signed sample bundles, simulated cards)."""

from counter.conftest import cache, cards, centre, journal  # noqa: F401  (pytest finds fixtures by name)
