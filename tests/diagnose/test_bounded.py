"""diagnose is bounded: a centre (and a daemon) that accept connections and never answer cost at most
the checks' bounds, never a hang. Shown on trio's MockClock, so the test takes milliseconds.

The clock autojumps only after 50 ms of real idleness (not 0): key and device.json are read in
worker threads, and a clock that jumped while a thread worked would expire bounds that real time
never reaches.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

from edge.diagnose import Context, run
from edge.diagnose._centre import HTTP_S, TLS_S
from edge.enrol import DeviceConfig, save_device
from edge.journal import create_device_key

NETWORK = ["enrolment", "device_key", "centre_dns", "centre_tcp", "centre_tls", "centre_signed", "clock", "daemon"]


@pytest.fixture
def clock():
    return trio.testing.MockClock(autojump_threshold=0.05)


@pytest.fixture
async def blackhole():
    """A loopback port that accepts TCP (the kernel's backlog) and never reads or answers."""
    sock = trio.socket.socket()
    await sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def enrolled(tmp_path, url: str):
    state = tmp_path / "state"
    create_device_key(state / "device.key")
    save_device(state, DeviceConfig(device="D-S330300001-9", site="S330300001", centre_url=url,
                                    bundle_key="A" * 43 + "=", bundle_key_id="k1", enrolled_at="2026-11-24T09:00:00Z"))
    return state


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_silent_centre_and_daemon_are_bounded(clock, tmp_path, blackhole, scheme):
    url = f"{scheme}://127.0.0.1:{blackhole}"
    ctx = Context(state_dir=enrolled(tmp_path, url), daemon_url=f"http://127.0.0.1:{blackhole}")
    start = trio.current_time()
    report = await run(ctx, only=NETWORK)
    elapsed = trio.current_time() - start
    found = report.by_check()

    assert elapsed < 10, report.to_json()
    assert elapsed >= HTTP_S - 1      # the bounds were really waited out, not short-circuited
    assert found["centre_dns"].status == "ok" and found["centre_tcp"].status == "ok"  # TCP itself connects
    # httpx's own timeout (just under the check's bound) ends the request first.
    assert found["centre_signed"].status == "fail" and "Timeout" in found["centre_signed"].finding
    assert found["centre_signed"].data["code"] == "transport_error"
    assert found["clock"].status == "warn" and "cannot compare the clock" in found["clock"].finding
    assert found["daemon"].status == "fail" and "did not answer within" in found["daemon"].finding
    if scheme == "https":
        assert found["centre_tls"].status == "fail" and f"within {TLS_S:g} s" in found["centre_tls"].finding
    assert report.exit_code == 2


async def test_refused_centre_answers_at_once(clock, tmp_path):
    with trio.socket.socket() as s:   # a port nothing listens on: connection refused
        await s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = Context(state_dir=enrolled(tmp_path, f"http://127.0.0.1:{port}"), daemon_url=f"http://127.0.0.1:{port}")
    start = trio.current_time()
    report = await run(ctx, only=NETWORK)
    assert trio.current_time() - start < 1      # nothing to wait for: refusals come back immediately
    assert report.by_check()["centre_tcp"].status == "fail" and report.exit_code == 2


async def test_wedged_pcscd_is_bounded(clock, tmp_path):
    """A pcscd that stopped accepting (its listen backlog full): connecting blocks in the worker thread;
    the check's bound abandons it and says so."""
    import socket

    path = str(tmp_path / "pcscd.comm")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(0)
    fillers = []
    try:
        for _ in range(3):   # fill the backlog with connections nobody accepts
            s = socket.socket(socket.AF_UNIX)
            s.setblocking(False)
            try:
                s.connect(path)
            except BlockingIOError:
                pass
            fillers.append(s)
        start = trio.current_time()
        report = await run(Context(state_dir=tmp_path, pcsc_socket=path), only=["pcscd"])
        f = report.by_check()["pcscd"]
        assert f.status == "fail" and "no result within 3 s" in f.finding
        assert trio.current_time() - start < 10 and report.exit_code == 2
    finally:
        listener.close()     # the abandoned connect() now fails and its thread ends
        for s in fillers:
            s.close()
