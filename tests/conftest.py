"""Root fixtures shared by every test folder. Area fixtures live in each folder's own conftest.py.

``db_url`` runs a test on both centre backends (SQLite and PostgreSQL). The PostgreSQL side creates
a uniquely named database (t_<random>) on 127.0.0.1:5432 (trust auth, maintenance database
``test``) and drops it afterwards, so parallel runs never collide. Set SETTLE_PG_URL to point at
another server (the URL of its maintenance database).

Markers say what a test needs (pyproject lists them): ``postgres`` and ``pcsc`` are applied here from
the fixtures that identify them (``pg_url``, ``db_url``'s PostgreSQL side, the card folder's ``pcsc``),
so a new test that uses them is marked without remembering to; tests that reach pcscd, Chromium or a
long integration run another way carry ``pcsc``, ``browser`` or ``slow`` themselves. The inner loop
deselects them all: ``-m "not slow and not pcsc and not browser and not postgres"``.
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


def pytest_collection_modifyitems(config, items):
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        callspec = getattr(item, "callspec", None)
        # db_url reaches pg_url through getfixturevalue, so its PostgreSQL side shows only in the param.
        if "pg_url" in names or (callspec is not None and callspec.params.get("db_url") == "postgres"):
            item.add_marker(pytest.mark.postgres)
        if "pcsc" in names:
            item.add_marker(pytest.mark.pcsc)


@pytest.fixture
def pg_url():
    """URL of a fresh, empty PostgreSQL database; dropped after the test."""
    admin = _pg_admin()
    support.require(f"PostgreSQL at {PG_ADMIN} (scripts/services starts it)", admin is not None)
    name = "t_" + secrets.token_hex(6)
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
