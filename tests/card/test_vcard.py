"""The virtual card process on its own: vpcd framing, control codes, socket options, live faults.

A loopback listener plays vpcd here, so these run without pcscd.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import subprocess
import sys

import pytest

import vcard_support
from vcard_support import SAMPLE_CARD, VCARD

model = vcard_support.card_model()


@contextlib.contextmanager
def fake_vpcd(tmp_path, card=SAMPLE_CARD, faults=None):
    card_file = tmp_path / "card.json"
    card_file.write_text(json.dumps(card, ensure_ascii=False), encoding="utf-8")
    faults_file = tmp_path / "faults.json"
    faults_file.write_text(json.dumps(faults or {}), encoding="utf-8")
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(10)
        port = server.getsockname()[1]
        proc = subprocess.Popen([sys.executable, str(VCARD), "--card", str(card_file), "--port", str(port),
                                 "--faults", str(faults_file)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        try:
            conn, _ = server.accept()
            with conn:
                conn.settimeout(10)
                yield conn, faults_file, proc
        finally:
            proc.terminate()
            proc.wait(10)


def send(conn, payload: bytes) -> None:
    conn.sendall(struct.pack(">H", len(payload)) + payload)


def recv(conn) -> bytes:
    def exact(n):
        buf = b""
        while len(buf) < n:
            chunk = conn.recv(n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return buf
    (n,) = struct.unpack(">H", exact(2))
    return exact(n)


def test_control_codes_and_apdus(tmp_path):
    with fake_vpcd(tmp_path) as (conn, _faults, _proc):
        for code in (1, 0, 2):              # power on/off/reset: no answer expected
            send(conn, bytes([code]))
        send(conn, b"\x04")
        assert recv(conn) == model.default_atr()
        send(conn, bytes.fromhex("00A404000F7378312E73682EC9E7BBE1B1A3D5CF"))
        assert recv(conn) == b"\x90\x00"
        send(conn, bytes.fromhex("00B2023400"))
        answer = recv(conn)
        assert answer[:2] == b"\x02\x1e" and answer[2:6].decode("gbk") == "张三" and answer[-2:] == b"\x90\x00"
        send(conn, bytes.fromhex("00B2093400"))
        assert recv(conn) == b"\x6a\x83"


def test_faults_switch_while_running_and_pull_closes_the_link(tmp_path):
    with fake_vpcd(tmp_path) as (conn, faults, proc):
        send(conn, bytes.fromhex("00A404000F7378312E73682EC9E7BBE1B1A3D5CF"))
        assert recv(conn) == b"\x90\x00"
        tmp = faults.with_suffix(".tmp")
        tmp.write_text(json.dumps({"sw": {"B2": "6581"}}), encoding="utf-8")
        tmp.replace(faults)
        send(conn, bytes.fromhex("00B2012C00"))
        assert recv(conn) == b"\x65\x81"
        tmp.write_text(json.dumps({"pull_after": 1}), encoding="utf-8")
        tmp.replace(faults)
        send(conn, bytes.fromhex("00B2012C00"))
        with pytest.raises(EOFError):
            recv(conn)
        assert proc.wait(10) == 0


def test_challenge_response_with_the_test_key():
    card = model.CardModel(SAMPLE_CARD)
    assert card.process(bytes.fromhex("0082000008") + bytes(8)) == b"\x69\x85"   # no challenge yet
    challenge = card.process(bytes.fromhex("0084000008"))[:-2]
    assert len(challenge) == 8
    good = model.cryptogram(bytes.fromhex(SAMPLE_CARD["test_key"]), challenge)
    assert card.process(bytes.fromhex("0082000008") + good) == b"\x90\x00" and card.authenticated
    challenge = card.process(bytes.fromhex("0084000008"))[:-2]
    assert card.process(bytes.fromhex("0082000008") + bytes(8)) == b"\x63\x00" and not card.authenticated


def test_model_rejects_malformed_commands():
    card = model.CardModel(SAMPLE_CARD)
    assert card.process(b"\x00\xa4") == b"\x67\x00"
    assert card.process(bytes.fromhex("80A4040000")) == b"\x6e\x00"
    assert card.process(bytes.fromhex("00FF000000")) == b"\x6d\x00"
    assert card.process(bytes.fromhex("00B2012C00")) == b"\x6a\x82"          # nothing selected
    assert card.process(bytes.fromhex("00A404000F") + b"x" * 15) == b"\x6a\x82"
    assert card.process(bytes.fromhex("00A4040005") + b"x" * 3) == b"\x67\x00"


def test_process_exits_with_a_clear_message_when_vpcd_is_not_there(tmp_path):
    card_file = tmp_path / "card.json"
    card_file.write_text(json.dumps(SAMPLE_CARD), encoding="utf-8")
    with socket.create_server(("127.0.0.1", 0)) as s:
        free_port = s.getsockname()[1]
    done = subprocess.run([sys.executable, str(VCARD), "--card", str(card_file), "--port", str(free_port),
                           "--connect-wait", "0.2"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "cannot reach vpcd" in done.stderr
