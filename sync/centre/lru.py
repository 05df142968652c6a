"""A small bounded, thread-safe LRU map for parsed values the centre would otherwise re-parse.

The store owns one (``store.parsed``): parsed policy and catalogue bundles keyed by their hash
(published bundles never change) and the current hotlist keyed by its version. Bounded because a
long-running centre publishes new versions for years; thread-safe because handlers run in worker
threads. Two threads missing the same key may both build it; the value is the same, the last one stays.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, Generic, Hashable, TypeVar

V = TypeVar("V")


class LRU(Generic[V]):
    def __init__(self, maxsize: int = 32) -> None:
        if maxsize < 1:
            raise ValueError("an LRU holds at least one value")
        self.maxsize = maxsize
        self._items: OrderedDict[Hashable, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, build: Callable[[], V]) -> V:
        """The value for ``key``, built (outside the lock: parsing may be slow) and kept when missing."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = build()
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items
