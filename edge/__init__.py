"""The counter agent: card, settlement engine, journal, cache, offline decisions, counter API."""

__version__ = "0.1.0"
