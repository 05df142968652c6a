"""Helpers shared by every test folder (importable as ``support``: pyproject sets pythonpath)."""

from __future__ import annotations

import json
import os
from decimal import Decimal
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
CASES = sorted((DATA / "cases").glob("*.json"))


def require(what: str, available: bool) -> None:
    """Skip a test whose real part is missing, naming it; in CI (SETTLE_REQUIRE_ALL=1) fail instead.

    scripts/test installs and starts every part on a Debian machine, so CI never skips these.
    """
    if available:
        return
    message = f"needs {what} (scripts/test installs and starts it when run as root)"
    if os.environ.get("SETTLE_REQUIRE_ALL") == "1":
        pytest.fail(message + "; CI requires it", pytrace=False)
    pytest.skip(message)


def load_case(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"), parse_float=Decimal)
