"""Search terms for catalogue items: code, pinyin initials and name substrings. Pure.

The clerk types a code prefix ("8690"), pinyin initials ("amxl" for 阿莫西林) or any part of the name
("西林"). Each item is stored under a handful of *terms*; a query is a prefix range scan over an
index of terms, so a search costs the same on 100 items or 100,000 (no table scan, no LIKE '%x%').
Name substrings are covered by indexing every suffix of the product name (names are short).
"""

from __future__ import annotations

from sync.pinyin import initials, normalise

__all__ = ["initials", "normalise", "terms", "upper_bound"]

MAX_NAME_SUFFIXES = 16


def terms(code: str, name: str, py: str | None) -> set[str]:
    out = {normalise(code)}
    py = normalise(py) if py else initials(name)
    if py:
        out.add(py)
    # Suffixes of the product name proper (before the first space: "阿莫西林胶囊 0.25g*24" -> the part
    # before the strength), so "莫西林" finds it; the strength is not worth an index entry per character.
    n = normalise(name.split()[0] if name.split() else name)
    for i in range(min(len(n), MAX_NAME_SUFFIXES)):
        out.add(n[i:])
    out.add(normalise(name))
    out.discard("")
    return out


def upper_bound(prefix: str) -> str:
    """Smallest string greater than every string starting with ``prefix`` (for a range scan)."""
    return prefix + "\U0010ffff"
