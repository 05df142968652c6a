#!/usr/bin/env python3
"""The virtual social security card as its own process, speaking vsmartcard's vpcd protocol.

    python firmware-interfaces/vcard/vcard.py --card cards/zhangsan.json --port 35963 [--faults F.json]

vpcd (the pcscd driver from vsmartcard-vpcd) listens on 35963 (reader "Virtual PCD 00 00") and
35964 ("... 00 01"); this process connects to it, which is "inserting the card". Closing the
connection (exit, SIGTERM, or the ``pull_after`` fault) is pulling it out. Frames are a 2-byte
big-endian length and a payload; a 1-byte payload is a control code (0 power off, 1 power on,
2 reset, 4 "send the ATR"), and only 4 gets an answer; a longer payload is a command APDU and gets
the response APDU.

Latency: the socket has TCP_NODELAY and TCP_QUICKACK is re-armed after every recv (Linux clears it
again after each ACK). Without that, delayed ACKs interact with Nagle in pcscd and every APDU costs
about 40 ms instead of about 0.1 ms.

The faults file (JSON, see model.py) is re-read whenever it changes, so a test can switch a fault on
in the middle of a session. Standard library only: this runs without the project's venv.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model import CardModel  # noqa: E402  (the model sits beside this script)

CTRL_OFF, CTRL_ON, CTRL_RESET, CTRL_ATR = 0, 1, 2, 4


class FaultsFile:
    """Faults from a JSON file, re-read when the file is replaced (inode, size or mtime change)."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.stamp = None

    def poll(self) -> dict | None:
        if not self.path:
            return None
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if stamp == self.stamp:
            return None
        self.stamp = stamp
        with open(self.path, encoding="utf-8") as f:
            return json.load(f)


QUICK = True   # --plain-socket turns the latency options off (bench/card.py shows the difference)


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    if QUICK and hasattr(socket, "TCP_QUICKACK"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
    return buf


def _send(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(struct.pack(">H", len(payload)) + payload)


def connect(host: str, port: int, wait: float) -> socket.socket:
    deadline = time.monotonic() + wait
    while True:
        try:
            sock = socket.create_connection((host, port), timeout=2)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    sock.settimeout(None)
    if QUICK:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if hasattr(socket, "TCP_QUICKACK"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
    return sock


def serve(sock: socket.socket, model: CardModel, faults: FaultsFile, log) -> int:
    """Answer vpcd until it hangs up (0) or the card is pulled by the ``pull_after`` fault (0)."""
    while True:
        header = _recv_exact(sock, 2)
        if header is None:
            return 0
        (length,) = struct.unpack(">H", header)
        payload = _recv_exact(sock, length) if length else b""
        if payload is None:
            return 0
        changed = faults.poll()
        if changed is not None:
            model.set_faults(changed)
        if length == 1:
            code = payload[0]
            if code == CTRL_ATR:
                _send(sock, model.atr())
            elif code in (CTRL_ON, CTRL_RESET):
                model.power_on()
            log(f"control {code}")
            continue
        pull_after = model.faults.get("pull_after")
        if pull_after and model.commands + 1 >= int(pull_after):
            log("pulled")
            return 0
        delay = model.faults.get("delay_ms")
        if delay:
            time.sleep(int(delay) / 1000)
        response = model.process(payload)
        log(f"C {payload.hex()} R {response.hex() if response is not None else '(mute)'}")
        if response is not None:
            _send(sock, response)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Virtual social security card for vsmartcard's vpcd (test driver).")
    ap.add_argument("--card", required=True, help="card description JSON (see cards/)")
    ap.add_argument("--host", default="127.0.0.1", help="where vpcd listens (default 127.0.0.1)")
    ap.add_argument("--port", type=int, default=35963, help="vpcd port: 35963 reader 00 00, 35964 reader 00 01")
    ap.add_argument("--faults", help="JSON file of faults, re-read when it changes")
    ap.add_argument("--connect-wait", type=float, default=10.0, help="seconds to keep trying to reach vpcd")
    ap.add_argument("--verbose", action="store_true", help="log every exchange to stderr")
    ap.add_argument("--plain-socket", action="store_true",
                    help="no TCP_NODELAY/TCP_QUICKACK (only to measure what they save)")
    args = ap.parse_args(argv)
    global QUICK
    QUICK = not args.plain_socket

    with open(args.card, encoding="utf-8") as f:
        card = json.load(f)
    faults = FaultsFile(args.faults)
    model = CardModel(card, faults.poll() or {})
    log = (lambda msg: print(f"vcard: {msg}", file=sys.stderr, flush=True)) if args.verbose else (lambda msg: None)

    # SIGTERM is "pull the card": leave the loop so the socket closes in order.
    def _stop(signum, frame):
        raise SystemExit(0)
    signal.signal(signal.SIGTERM, _stop)

    try:
        sock = connect(args.host, args.port, args.connect_wait)
    except OSError as exc:
        print(f"vcard: cannot reach vpcd at {args.host}:{args.port} ({exc}); is pcscd running with "
              "vsmartcard-vpcd installed?", file=sys.stderr)
        return 2
    print(f"vcard: connected to {args.host}:{args.port}", file=sys.stderr, flush=True)
    try:
        with sock:
            return serve(sock, model, faults, log)
    except (ConnectionError, SystemExit, KeyboardInterrupt):
        return 0


if __name__ == "__main__":
    sys.exit(main())
