"""Fixtures of the security tests: the counter's (a real journal, cache, API on loopback) and the
centre's (a real centre on loopback over SQLite and PostgreSQL) are the same as their own areas'."""

from __future__ import annotations

import pytest

from counter.conftest import api, cache, cards, centre, counter, journal  # noqa: F401  (fixtures)


@pytest.fixture
async def running_centre(nursery, tmp_path):
    """A real centre on loopback over SQLite (the sync tests' own)."""
    from sync.centre.server import start_centre
    from sync.centre.store import open_store

    store = open_store(tmp_path / "centre.db")
    try:
        yield await start_centre(nursery, store)
    finally:
        store.close()
