"""Fixtures of the backup/restore tests (``db_url``, both backends, is in tests/conftest.py)."""

from __future__ import annotations

import httpx
import pytest


@pytest.fixture
async def http():
    async with httpx.AsyncClient() as client:
        yield client
