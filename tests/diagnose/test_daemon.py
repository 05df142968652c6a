"""diagnose beside the real counter daemon and centre (harness.demo.start_stack): a healthy
counter exits 0; the daemon stopping is named; the journal is read while the daemon writes it."""

from __future__ import annotations

import httpx
import pytest
import trio

from harness.demo import start_stack
from edge.diagnose import NAMES, Context, run

import diag_helpers
import vcard_support

SLOT = 1


@pytest.fixture
async def stack(tmp_path, nursery):
    s = await start_stack(nursery, tmp_path, idle_s=0.2)

    async def synced():
        async with httpx.AsyncClient(base_url=s.daemon.url, trust_env=False, headers=s.daemon.headers) as api:
            st = (await api.get("/api/status")).json()
        return len(st["cache"]["bundles"]) == 4 and st["cache"]["age_s"] is not None and st["backlog"]["count"] == 0
    with trio.fail_after(30):  # first sync round
        await diag_helpers.eventually(synced)
    return s


@pytest.mark.pcsc
async def test_healthy_counter_exits_0(stack, tmp_path):
    vcard_support.require_pcsc()
    with vcard_support.virtual_card(slot=SLOT) as card:
        ctx = Context(state_dir=tmp_path / "edge", daemon_url=stack.daemon.url, reader=card.reader)
        report = await run(ctx)
    not_ok = {f.check: f.finding for f in report.findings if f.status != "ok"}
    assert not_ok == {}, report.to_json()
    assert report.exit_code == 0 and [f.check for f in report.findings] == list(NAMES)
    found = report.by_check()
    assert found["daemon"].data["device"] == found["enrolment"].data["device"]
    assert found["last_sync"].data["source"] in ("daemon", "cache") and found["last_sync"].data["age_hours"] < 1


async def test_daemon_stopped(stack, tmp_path):
    ctx = Context(state_dir=tmp_path / "edge", daemon_url=stack.daemon.url)
    assert (await run(ctx, only=["daemon"])).exit_code == 0
    stack.daemon.cancel_scope.cancel()
    with trio.fail_after(30):  # daemon stopped
        await diag_helpers.eventually(lambda: _down(stack.daemon.url))
    report = await run(ctx, only=["daemon", "journal", "backlog"])
    found = report.by_check()
    assert found["daemon"].status == "fail" and "not running" in found["daemon"].finding
    assert found["journal"].status == "ok" and found["backlog"].status == "ok"   # works with the daemon down
    assert report.exit_code == 2


async def _down(url: str) -> bool:
    async with httpx.AsyncClient(trust_env=False) as client:
        try:
            await client.get(url + "/api/status")
        except httpx.ConnectError:   # refused: the listening socket is closed (not just a graceful close)
            return True
        except httpx.HTTPError:
            return False
    return False
