"""Fixtures of the scale-out tests: several centre connections (workers) over one database.

``recon_support`` (tests/centre) plays the edge: real signed, hash-chained entries."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent / "centre"))
sys.path.insert(0, str(Path(__file__).parent))
