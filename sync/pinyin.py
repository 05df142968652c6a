"""Pinyin initials of catalogue names: part of the catalogue contract. Pure.

The centre writes each item's initials (``py``) into the catalogue bundle when it publishes; the counter
computes them for items that arrive without. Both must agree on the text form, so the one function lives
in the shared root: 阿莫西林胶囊 -> ``amxljn``; full-width to half-width (NFKC), lower case, no spaces.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache


def normalise(text: str) -> str:
    """Lower case, full-width to half-width (NFKC), no spaces: what both terms and queries go through."""
    return "".join(unicodedata.normalize("NFKC", text).lower().split())


@lru_cache(maxsize=1)
def _pinyin():
    # Loaded on first use: pypinyin's dictionaries take a noticeable moment to import.
    from pypinyin import Style, lazy_pinyin
    return lazy_pinyin, Style.FIRST_LETTER


def initials(name: str) -> str:
    """Pinyin initials of a name: 阿莫西林胶囊 -> amxljn (non-Chinese characters kept as they are)."""
    lazy_pinyin, first = _pinyin()
    return normalise("".join(lazy_pinyin(name, style=first, errors=lambda s: list(s))))
