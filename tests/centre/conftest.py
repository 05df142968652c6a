"""Fixtures of the reconciliation tests. ``db_url`` (both centre backends) is in tests/conftest.py;
``recon_support`` (this folder) plays the edge."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest


sys.path.insert(0, str(Path(__file__).parent))

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
    from sync.centre.server import start_centre
    from sync.centre.store import open_store
    import recon_support as rs

    store = open_store(db_url)
    for raw in (rs.CAT_RAW, rs.POL_RAW, rs.PERSONS_RAW, rs.HOT_RAW):
        store.put_bundle(raw, now=rs.T0 - rs.DAY)
    store.ledger.seed_from_persons(rs.PERSONS)
    running = await start_centre(nursery, store, rs.KEY)
    yield running
    running.stop()
    store.close()
