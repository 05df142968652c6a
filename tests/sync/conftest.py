"""Fixtures of the sync tests. ``db_url`` and ``pg_url`` (both centre backends) are in tests/conftest.py."""

from __future__ import annotations

import httpx
import pytest

from sync.centre.server import start_centre


@pytest.fixture
def sqlite_store(tmp_path):
    from sync.centre.store import open_store

    s = open_store(tmp_path / "centre.db")
    yield s
    s.close()


@pytest.fixture
async def centre(nursery, sqlite_store):
    return await start_centre(nursery, sqlite_store)


@pytest.fixture
async def http():
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
async def centre_any(nursery, db_url):
    """A running centre on each backend (SQLite and PostgreSQL)."""
    from sync.centre.store import open_store

    store = open_store(db_url)
    try:
        yield await start_centre(nursery, store)
    finally:
        store.close()
