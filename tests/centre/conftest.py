"""Fixtures of the reconciliation tests. ``db_url`` runs a test on both centre backends.

PostgreSQL databases are created per test as r_<random> on 127.0.0.1:5432 (trust auth, maintenance
database ``test``) and dropped afterwards. ``recon_support`` (this folder) plays the edge.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

import pytest

import support

sys.path.insert(0, str(Path(__file__).parent))

PG_ADMIN = os.environ.get("SETTLE_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_admin():
    import psycopg

    try:
        return psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3)
    except psycopg.Error:
        return None


@pytest.fixture
def pg_url():
    admin = _pg_admin()
    support.require(f"PostgreSQL at {PG_ADMIN} (scripts/services starts it)", admin is not None)
    name = "r_" + secrets.token_hex(6)
    with admin:
        admin.execute(f"CREATE DATABASE {name}")
        base = PG_ADMIN.rsplit("/", 1)[0]
        try:
            yield f"{base}/{name}"
        finally:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/centre.db"
    else:
        yield request.getfixturevalue("pg_url")


# -- a real centre on loopback, on both backends ----------------------------------------------------
import httpx  # noqa: E402


@pytest.fixture
async def http():
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
async def centre(nursery, db_url):
    """The real centre (Starlette on hypercorn's trio worker) over a fresh store, bundles published by
    ``recon_support.KEY`` and the ledger seeded from the same person source data."""
    from sync.centre import ledger
    from sync.centre.server import start_centre
    from sync.centre.store import open_store
    import recon_support as rs

    store = open_store(db_url)
    for raw in (rs.CAT_RAW, rs.POL_RAW, rs.PERSONS_RAW, rs.HOT_RAW):
        store.put_bundle(raw, now=rs.T0 - rs.DAY)
    ledger.seed_from_persons(store.db, rs.PERSONS)
    running = await start_centre(nursery, store, rs.KEY)
    yield running
    running.stop()
    store.close()
