"""Errors of the cache.

    Problem                 (sync.problem) the project's one error base
    └── CacheError          cache_error: base; ``code``, ``message``, ``zh`` (the clerk), ``hint``
        └── CacheUnavailable    cache_unavailable: the cache database cannot be opened, read or written

A refused bundle raises :class:`sync.bundles.BundleError` (signature, chain, staleness, content).
"""

from __future__ import annotations

from typing import ClassVar

from sync.problem import Problem


class CacheError(Problem):
    code: ClassVar[str] = "cache_error"
    zh = "本地医保数据出错：请联系技术人员"
    status = 503


class CacheUnavailable(CacheError):
    code = "cache_unavailable"
    zh = "本地医保数据无法读取或写入：请联系技术人员"
    hint = "Check the state directory's disk (space, permissions); the cache is rebuilt from the centre if lost."
