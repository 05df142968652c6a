"""The daemon with a real centre on loopback: online settlement, fallback to offline without the clerk
doing anything, the backlog sent on reconnection, and a clean shutdown of `edge run` on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trio

from harness.demo import ITEMS, LISI, WANGFANG, ZHANGSAN, restart_centre, start_stack, stop_centre, wait_for
from edge.journal import JournalStore, verify_entries

ROOT = Path(__file__).resolve().parents[2]


async def _status(api):
    return (await api.get("/api/status")).json()


@pytest.fixture
async def stack(tmp_path, nursery):
    # probe_s large: the tests below decide when the counter learns about an outage.
    s = await start_stack(nursery, tmp_path, probe_s=3600, idle_s=0.2)
    async with httpx.AsyncClient(base_url=s.daemon.url, trust_env=False, headers=s.daemon.headers) as api:
        with trio.fail_after(30):  # first download
            await wait_for(lambda: _bundles(api))
        s.api = api
        yield s


async def _bundles(api):
    # All four bundles, and a completed sync round (the cache's refresh time is known).
    s = await _status(api)
    return len(s["cache"]["bundles"]) == 4 and s["cache"]["age_s"] is not None


async def test_online_settlement_is_journaled_with_the_centres_answer(stack):
    api = stack.api
    await api.post("/api/card/simulate", json=ZHANGSAN)
    r = await api.post("/api/settle", json={"req": "T-ON-1", "med_type": "11", "acct_used_flag": True, "pin": "123456",
                                           "items": ITEMS})
    assert r.status_code == 200, r.text
    assert r.json()["mode"] == "online"
    entry = stack.daemon.counter.journal.get(r.json()["seq"])
    assert entry.body["mode"] == "online" and entry.body["acct_limit"] is None
    assert entry.body["basis"]["centre"]["policy"]["policy_version"]
    assert entry.body["psn_no"] == "3303000000000001"
    with trio.fail_after(30):  # upload
        await wait_for(lambda: _sent(api))
    assert stack.store.high_water(entry.device) == entry.seq


async def _sent(api):
    return (await _status(api))["backlog"]["count"] == 0


async def test_centre_refusal_online_becomes_a_full_payment_claim(stack):
    api = stack.api
    await api.post("/api/card/simulate", json=WANGFANG)
    body = {"req": "T-ARR", "med_type": "11", "items": ITEMS}
    r = await api.post("/api/settle", json=body)
    assert r.status_code == 409 and r.json()["error"]["cause"] == "arrears"
    r = await api.post("/api/claim", json=body)
    assert r.status_code == 200 and r.json()["cause"] == "arrears"


async def test_keyed_in_card_settles_online_without_the_account(stack):
    r = await stack.api.post("/api/settle", json={"req": "T-KEY", "med_type": "11", "acct_used_flag": True,
                                                  "items": ITEMS, "keyed_in": {"card_no": "B12345678",
                                                                               "certno": LISI["certno"]}})
    assert r.status_code == 200, r.text
    assert r.json()["mode"] == "online" and r.json()["setlinfo"]["acct_pay"] == 0


async def test_centre_gone_mid_day_falls_back_to_offline_then_sends_the_backlog(stack, nursery):
    api = stack.api
    await api.post("/api/card/simulate", json=ZHANGSAN)
    assert (await _status(api))["online"] is True
    await stop_centre(stack)
    # The counter has not noticed yet (probe interval is an hour): the settle itself finds out.
    r = await api.post("/api/settle", json={"req": "T-OFF-1", "med_type": "11", "items": ITEMS})
    assert r.status_code == 200, r.text
    assert r.json()["mode"] == "offline"
    s = await _status(api)
    assert s["online"] is False and s["backlog"]["count"] >= 1
    entry = stack.daemon.counter.journal.get(r.json()["seq"])
    assert entry.body["basis"]["limits"]["offline_visits"] == [1, 5]
    await restart_centre(nursery, stack)
    stack.daemon.uplink.wake()
    with trio.fail_after(30):  # the backlog to reach the centre
        await wait_for(lambda: _sent(api))
    assert stack.store.high_water(entry.device) >= entry.seq


@pytest.mark.slow
async def test_edge_run_stops_cleanly_on_sigterm(tmp_path, nursery):
    s = await start_stack(nursery, tmp_path / "a")
    state_dir = tmp_path / "edge2"
    from edge.enrol import enroll
    token = s.store.create_enrol_token("S330300001", ttl_ms=3_600_000)
    async with httpx.AsyncClient(trust_env=False) as c:
        await enroll(s.centre.url, token, state_dir, client=c)
    proc = subprocess.Popen([sys.executable, "-m", "edge", "run", "--state-dir", str(state_dir), "--port", "0",
                             "--simulated-card"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = await trio.to_thread.run_sync(proc.stdout.readline)
        assert line.startswith("counter page: "), line + proc.stderr.read()
        url = line.split(": ", 1)[1].strip().rstrip("/")
        # The daemon wrote its installation token at start; a local client reads it as the HIS does.
        token = (state_dir / "api.token").read_text().strip()
        async with httpx.AsyncClient(base_url=url, trust_env=False, headers={"Authorization": f"Bearer {token}"}) as api:
            with trio.fail_after(30):  # first download
                await wait_for(lambda: _bundles(api))
            await api.post("/api/card/simulate", json=ZHANGSAN)
            r = await api.post("/api/settle", json={"req": "T-SIG", "med_type": "11", "items": ITEMS})
            assert r.status_code == 200, r.text
        proc.send_signal(signal.SIGTERM)
        code = await trio.to_thread.run_sync(lambda: proc.wait(30))
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert code == 0, err
    logs = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any(rec.get("event") == "stopped" for rec in logs), err
    assert any(rec.get("event") == "journaled" for rec in logs)
    assert "张三" not in err and ZHANGSAN["certno"] not in err
    with JournalStore.open(state_dir / "journal.db", signing_key=None, device=None) as j:
        assert j.count() == 1
        assert verify_entries(j.raw_entries(), j.verify_key).ok
