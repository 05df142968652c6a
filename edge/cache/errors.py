"""Errors of the cache.

    CacheError              base; ``code``, ``message`` (what to do next)
    └── CacheUnavailable    cache_unavailable: the cache database cannot be opened, read or written

A refused bundle raises :class:`sync.bundles.BundleError` (signature, chain, staleness, content).
"""

from __future__ import annotations


class CacheError(Exception):
    code = "cache_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class CacheUnavailable(CacheError):
    code = "cache_unavailable"
