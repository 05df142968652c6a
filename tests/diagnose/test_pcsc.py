"""The card checks on the real PC/SC stack: pcscd + vpcd + the virtual card (tests/vcard_support.py).

pcscd is shared with the card tests and is never stopped here. "pcscd stopped" points the agent at
a socket that does not exist (PCSCLITE_CSOCK_NAME, which pcsc-lite's client honours); "no reader"
starts a private pcscd with no reader configuration in its own mount namespace, so its socket and
pid file never touch the shared one. Both run `edge diagnose` as a child process, because pcsc-lite
reads PCSCLITE_CSOCK_NAME once per process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge.diagnose import Context, run

import diag_helpers
import support
import vcard_support

SLOT = 1   # the card tests mostly use slot 0; one slot each keeps a stray card out of our reader


def diagnose_cli(state_dir: Path, *checks: str, env: dict | None = None) -> tuple[int, dict]:
    args = [sys.executable, "-m", "edge", "diagnose", "--json", "--state-dir", str(state_dir),
            "--daemon", diag_helpers.dead_url()]
    for c in checks:
        args += ["--only", c]
    out = subprocess.run(args, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=60,
                         cwd=Path(__file__).parents[2])
    return out.returncode, json.loads(out.stdout)


def by_check(report: dict) -> dict:
    return {f["check"]: f for f in report["findings"]}


def test_pcscd_stopped(tmp_path):
    code, report = diagnose_cli(tmp_path, "pcscd", "readers", "card",
                                env={"PCSCLITE_CSOCK_NAME": str(tmp_path / "no-pcscd" / "pcscd.comm")})
    found = by_check(report)
    assert found["pcscd"]["status"] == "fail" and "not running" in found["pcscd"]["finding"]
    assert "systemctl start pcscd" in found["pcscd"]["next_step"]
    assert found["readers"]["status"] == "fail" and found["readers"]["data"]["code"] == "pcsc_unavailable"
    assert found["card"]["status"] == "fail"
    assert code == 2 and report["exit_code"] == 2


@pytest.mark.pcsc
async def test_pcscd_check_in_process_with_an_injected_socket(tmp_path):
    report = await run(Context(state_dir=tmp_path, pcsc_socket=str(tmp_path / "gone.comm")), only=["pcscd"])
    assert report.by_check()["pcscd"].status == "fail" and report.exit_code == 2
    vcard_support.require_pcsc()
    report = await run(Context(state_dir=tmp_path), only=["pcscd"])
    assert report.by_check()["pcscd"].status == "ok" and report.exit_code == 0


@pytest.fixture
def private_pcscd(tmp_path):
    """A pcscd of our own with no readers, its socket in tmp_path (mount namespace: root + unshare)."""
    tools = shutil.which("unshare") and shutil.which("pcscd") and shutil.which("mount")
    support.require("root with unshare(1) and pcscd, to run a private pcscd without readers",
                    bool(tools) and os.geteuid() == 0)
    run_dir, conf = tmp_path / "pcscd-run", tmp_path / "pcscd-conf"
    run_dir.mkdir()
    conf.mkdir()
    proc = subprocess.Popen(["unshare", "-m", "sh", "-c",
                             f"mount --bind '{run_dir}' /run/pcscd && exec pcscd -f -c '{conf}'"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    sock = run_dir / "pcscd.comm"
    deadline = time.monotonic() + 10
    while not sock.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        why = proc.stderr.read1(2000) if proc.poll() is not None else "timeout"
        support.require(f"a private pcscd (it did not start: {why})", sock.exists())
        yield sock
    finally:
        proc.terminate()   # our own process (sh exec'd pcscd): never the shared pcscd
        proc.wait(timeout=10)
        proc.stderr.close()


@pytest.mark.pcsc
def test_no_reader(tmp_path, private_pcscd):
    code, report = diagnose_cli(tmp_path, "pcscd", "readers", env={"PCSCLITE_CSOCK_NAME": str(private_pcscd)})
    found = by_check(report)
    assert found["pcscd"]["status"] == "ok"
    assert found["readers"]["status"] == "fail" and found["readers"]["finding"] == "no card reader is attached"
    assert "USB" in found["readers"]["next_step"] and found["readers"]["finding_zh"] == "未连接读卡器"
    assert code == 2


@pytest.mark.pcsc
async def test_configured_reader_missing(tmp_path):
    vcard_support.require_pcsc()
    report = await run(Context(state_dir=tmp_path, reader="Reader That Is Not There"), only=["readers"])
    f = report.by_check()["readers"]
    assert f.status == "fail" and "not attached" in f.finding and any(r.startswith("Virtual PCD") for r in f.data["readers"])


@pytest.mark.pcsc
async def test_card_read_then_pulled(tmp_path):
    vcard_support.require_pcsc()
    card = vcard_support.SAMPLE_CARD
    with vcard_support.virtual_card(card, slot=SLOT) as inserted:
        ctx = Context(state_dir=tmp_path, reader=inserted.reader)
        report = await run(ctx, only=["card"])
        f = report.by_check()["card"]
        assert f.status == "ok", f
        assert f.data["spec_version"] == card["spec_version"] and f.data["region"] == card["card_id"][:6]
        assert f.data["atr"] and f.data["reader"] == inserted.reader
        text = json.dumps(f.to_dict(), ensure_ascii=False)
        for secret in (card["name"], card["ssn"], card["card_no"], card["card_id"]):
            assert secret not in text      # identity readable, but never printed
        assert report.exit_code == 0
        inserted.pull()
        report = await run(ctx, only=["card"])
    f = report.by_check()["card"]
    assert f.status == "warn" and f.data["code"] in ("no_card", "card_removed")
    assert "Insert a social security card" in f.next_step
    assert report.exit_code == 1


@pytest.mark.pcsc
async def test_mute_card_fails(tmp_path):
    vcard_support.require_pcsc()
    with vcard_support.virtual_card(slot=SLOT, faults={"mute": True}) as inserted:
        report = await run(Context(state_dir=tmp_path, reader=inserted.reader), only=["card"])
    f = report.by_check()["card"]
    assert f.status == "fail" and f.data["code"] == "card_mute" and "reader" in f.next_step
    assert report.exit_code == 2


@pytest.mark.pcsc
async def test_expired_card_reads_but_warns(tmp_path):
    vcard_support.require_pcsc()
    with vcard_support.virtual_card(vcard_support.EXPIRED_CARD, slot=SLOT) as inserted:
        report = await run(Context(state_dir=tmp_path, reader=inserted.reader), only=["card"])
    f = report.by_check()["card"]
    assert f.status == "warn" and "expired on 2022-05-20" in f.finding
    assert report.exit_code == 1


@pytest.mark.slow
def test_wedged_pcscd_does_not_hang_diagnose(tmp_path):
    """pcscd's socket accepts nothing (backlog full): the PC/SC client blocks connecting; diagnose still
    ends, naming the bound, because the blocked calls run in threads the bound abandons."""
    import socket

    path = str(tmp_path / "pcscd.comm")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(0)
    fillers = []
    try:
        for _ in range(3):
            s = socket.socket(socket.AF_UNIX)
            s.setblocking(False)
            try:
                s.connect(path)
            except BlockingIOError:
                pass
            fillers.append(s)
        code, report = diagnose_cli(tmp_path, "pcscd", "readers", env={"PCSCLITE_CSOCK_NAME": path})
    finally:
        listener.close()
        for s in fillers:
            s.close()
    found = by_check(report)
    assert found["pcscd"]["status"] == "fail" and "no result within" in found["pcscd"]["finding"]
    assert found["readers"]["status"] == "fail"
    assert code == 2


async def test_stale_pcscd_socket(tmp_path):
    """pcscd crashed and left its socket file behind: connecting is refused."""
    import socket

    path = str(tmp_path / "pcscd.comm")
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)
    s.close()            # the file stays, nobody listens
    report = await run(Context(state_dir=tmp_path, pcsc_socket=path), only=["pcscd"])
    f = report.by_check()["pcscd"]
    assert f.status == "fail" and "refuses connections" in f.finding and "restart pcscd" in f.next_step
    assert report.exit_code == 2
