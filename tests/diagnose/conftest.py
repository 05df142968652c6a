"""Fixtures of the diagnose tests: a real centre on loopback and an enrolled, healthy state directory.

``healthy`` is what a working counter looks like: enrolled with the centre (device.json, device.key
0600), a journal whose entries the centre acknowledged through the real uplink, and a cache holding
the four bundles signed by the centre's key, refreshed just now. Each test then breaks one thing.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trio

# diag_helpers.py sits beside this file; pythonpath only has tests/ (appended so nothing else shadows).
if str(Path(__file__).parent) not in sys.path:
    sys.path.append(str(Path(__file__).parent))

from diag_helpers import fill_journal, publish_sample_bundles  # noqa: E402


@dataclass
class State:
    dir: Path
    device: str
    centre_url: str
    centre: object


@pytest.fixture
def centre_store(tmp_path):
    from sync.centre.store import open_store

    s = open_store(tmp_path / "centre.db")
    yield s
    s.close()


@pytest.fixture
async def centre(nursery, centre_store):
    from sync.centre.server import start_centre

    return await start_centre(nursery, centre_store)


@pytest.fixture
async def healthy(centre, tmp_path) -> State:
    from edge.enrol import enroll
    from edge.journal import JournalStore, load_device_key
    from edge.uplink import CentreClient, Uplink

    state = tmp_path / "state"
    token = await trio.to_thread.run_sync(centre.store.create_enrol_token, "S330300001")
    async with httpx.AsyncClient() as http:
        cfg = await enroll(centre.url, token, state, client=http)
        key = load_device_key(state / "device.key")
        journal = JournalStore.open(state / "journal.db", signing_key=key, device=cfg.device)
        try:
            await trio.to_thread.run_sync(fill_journal, journal, 5)
            up = Uplink(journal, CentreClient(centre.url, cfg.device, key, client=http), state_dir=state)
            await up.sync_once()
            assert journal.backlog().count == 0
        finally:
            journal.close()
    await trio.to_thread.run_sync(publish_sample_bundles, state, centre.key, int(time.time() * 1000))
    return State(state, cfg.device, centre.url, centre)
