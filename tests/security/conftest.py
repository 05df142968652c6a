"""Fixtures of the security tests: the counter's (a real journal, cache, API on loopback) and the
centre's (a real centre on loopback over SQLite and PostgreSQL) are the same as their own areas'."""

from __future__ import annotations

from counter.conftest import api, cache, cards, centre, counter, journal  # noqa: F401  (fixtures)
