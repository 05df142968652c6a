"""Fixtures of the sync tests. ``db_url`` runs a test on both centre backends (SQLite, PostgreSQL).

The PostgreSQL side creates a uniquely named database (x_<random>) on 127.0.0.1:5432 (trust auth,
maintenance database ``test``) and drops it afterwards, so parallel engineers and runs never collide.
Set SETTLE_PG_URL to point at another server (the URL of its maintenance database).
"""

from __future__ import annotations

import os
import secrets

import pytest

import support

PG_ADMIN = os.environ.get("SETTLE_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_admin():
    import psycopg

    try:
        return psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3)
    except psycopg.Error:
        return None


@pytest.fixture
def pg_url():
    """URL of a fresh, empty PostgreSQL database; dropped after the test."""
    admin = _pg_admin()
    support.require(f"PostgreSQL at {PG_ADMIN} (scripts/services starts it)", admin is not None)
    name = "x_sync_" + secrets.token_hex(6)
    with admin:
        admin.execute(f"CREATE DATABASE {name}")
        base = PG_ADMIN.rsplit("/", 1)[0]
        try:
            yield f"{base}/{name}"
        finally:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path):
    """A fresh centre database URL on each backend: the same test runs on SQLite and PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/centre.db"
    else:
        yield request.getfixturevalue("pg_url")


# -- a real centre on loopback ----------------------------------------------------------------------
import httpx  # noqa: E402
import trio  # noqa: E402
from sync.centre.server import start_centre  # noqa: E402


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
