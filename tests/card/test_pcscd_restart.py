"""The watcher survives pcscd stopping and starting again (a technician restarts the service).

The shared pcscd is never touched: this test runs a private pcscd in its own mount namespace
(its socket in tmp_path) with a vpcd reader on its own port, and the watcher in a subprocess pointed
at that socket through PCSCLITE_CSOCK_NAME (pcsc-lite reads it once per process).
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import support
from vcard_support import SAMPLE_CARD, VCARD

pytestmark = [pytest.mark.pcsc, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
VPCD_LIB = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")


def free_port_pair() -> int:
    """A port p with p and p+1 free (vpcd listens on both, one per slot). Chosen per run, so two
    runs of this test at once (engineers sharing a machine) do not meet on one port."""
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("0.0.0.0", 0))
            port = a.getsockname()[1]
            if port >= 65535:
                continue
            with socket.socket() as b:
                try:
                    b.bind(("0.0.0.0", port + 1))
                except OSError:
                    continue
            return port
    raise RuntimeError("no two consecutive free TCP ports")

WATCHER = """
import json, sys, trio
from edge.card import watch_cards

async def main():
    send, receive = trio.open_memory_channel(0)
    async with trio.open_nursery() as nursery:
        await nursery.start(watch_cards, send)
        async for ev in receive:
            print(json.dumps({"kind": ev.kind, "reader": ev.reader,
                              "name": ev.identity.name if ev.identity else None,
                              "code": ev.error.code if ev.error else None}, ensure_ascii=False), flush=True)
            if ev.error:
                print(ev.error.message, file=sys.stderr, flush=True)

trio.run(main)
"""


def start_pcscd(run_dir: Path, conf_dir: Path) -> subprocess.Popen:
    sock = run_dir / "pcscd.comm"
    sock.unlink(missing_ok=True)
    proc = subprocess.Popen(["unshare", "-m", "sh", "-c",
                             f"mount --bind '{run_dir}' /run/pcscd && exec pcscd -f -c '{conf_dir}'"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not sock.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    support.require("a private pcscd in a mount namespace (root, unshare, pcscd)", sock.exists())
    return proc


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def insert_card(tmp_path: Path, port: int) -> subprocess.Popen:
    card = tmp_path / "card.json"
    card.write_text(json.dumps(SAMPLE_CARD, ensure_ascii=False), encoding="utf-8")
    return subprocess.Popen([sys.executable, str(VCARD), "--card", str(card), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)


class Lines:
    """Read JSON lines from a subprocess with a bound on each wait."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.sel = selectors.DefaultSelector()
        self.sel.register(proc.stdout, selectors.EVENT_READ)
        self.buf = b""

    def next(self, within: float = 15.0) -> dict:
        deadline = time.monotonic() + within
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not self.sel.select(left):
                raise AssertionError(f"no event within {within} s")
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            if not chunk:
                raise AssertionError(f"watcher exited: {self.proc.wait()}")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def close(self) -> None:
        self.sel.close()


def test_watcher_recovers_after_pcscd_restarts(tmp_path):
    support.require("root with unshare(1), pcscd and vsmartcard-vpcd",
                    os.geteuid() == 0 and bool(shutil.which("unshare")) and bool(shutil.which("pcscd"))
                    and VPCD_LIB.exists())
    run_dir, conf_dir = tmp_path / "run", tmp_path / "conf"
    run_dir.mkdir()
    conf_dir.mkdir()
    port = free_port_pair()
    (conf_dir / "vpcd").write_text(f'FRIENDLYNAME "Private PCD"\nDEVICENAME /dev/null:0x{port:04X}\n'
                                   f"LIBPATH {VPCD_LIB}\nCHANNELID 0x{port:04X}\n", encoding="utf-8")
    env = {**os.environ, "PCSCLITE_CSOCK_NAME": str(run_dir / "pcscd.comm")}
    pcscd = start_pcscd(run_dir, conf_dir)
    with open(tmp_path / "watcher.log", "w") as log:
        watcher = subprocess.Popen([sys.executable, "-c", WATCHER], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                   stderr=log, stdin=subprocess.DEVNULL)
    lines = Lines(watcher)
    card = None
    try:
        card = insert_card(tmp_path, port)
        ev = lines.next()
        assert (ev["kind"], ev["name"]) == ("inserted", "张三") and ev["reader"].startswith("Private PCD")
        reader = ev["reader"]

        stop(pcscd)                                  # the service goes away under the watcher
        assert lines.next() == {"kind": "removed", "reader": reader, "name": None, "code": None}
        assert lines.next() == {"kind": "error", "reader": None, "name": None, "code": "pcsc_unavailable"}
        stop(card)                                   # its vpcd link died with pcscd

        pcscd = start_pcscd(run_dir, conf_dir)       # the technician starts it again
        card = insert_card(tmp_path, port)
        ev = lines.next(30)
        assert (ev["kind"], ev["reader"], ev["name"]) == ("inserted", reader, "张三")
    finally:
        for proc in (card, watcher, pcscd):
            if proc is not None:
                stop(proc)
        lines.close()
        watcher.stdout.close()
