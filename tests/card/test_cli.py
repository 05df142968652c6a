"""`edge card ...`: every command has help text and is documented; the commands work on real readers."""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vcard_support import SAMPLE_CARD, virtual_card
from edge.cli import build_parser, main

DOCS = Path(__file__).resolve().parents[2] / "docs" / "card.md"


def card_commands() -> dict[str, argparse.ArgumentParser]:
    top = build_parser()
    sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    card = sub.choices["card"]
    inner = next(a for a in card._actions if isinstance(a, argparse._SubParsersAction))
    helps = {c.dest: c.help for c in inner._choices_actions}
    assert all(helps.values()), f"card commands without help: {helps}"
    return inner.choices


def test_every_card_command_has_help_and_is_documented():
    commands = card_commands()
    assert {"readers", "read", "check-pin", "keyed-in"} <= set(commands)
    text = DOCS.read_text(encoding="utf-8")
    for name, parser in commands.items():
        assert f"edge card {name}" in text, f"docs/card.md does not mention `edge card {name}`"
        for action in parser._actions:
            if action.dest != "help":
                assert action.help, f"edge card {name}: {action.dest} has no help text"


def test_keyed_in_command(capsys):
    assert main(["card", "keyed-in", "A12345678", "330302199001011235", "--region", "330300"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["keyed_in"] is True and out["card_id"] is None and "330302199001011235" not in json.dumps(out)
    assert main(["card", "keyed-in", "A12345678", "330302199001011236"]) == 3
    assert json.loads(capsys.readouterr().out)["error"]["field"] == "ssn"


@pytest.mark.pcsc
def test_readers_read_and_check_pin(pcsc, capsys, monkeypatch):
    with virtual_card(SAMPLE_CARD) as card:
        assert main(["card", "readers", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)[card.reader] is True

        assert main(["card", "read", "--json"]) == 0
        redacted = json.loads(capsys.readouterr().out)
        assert redacted["name"] == "张*" and redacted["region"] == "330300"
        assert SAMPLE_CARD["ssn"] not in json.dumps(redacted) and "A12345678" not in json.dumps(redacted)

        assert main(["card", "read", "--reader", card.reader, "--json", "--show-pii"]) == 0
        full = json.loads(capsys.readouterr().out)
        assert (full["name"], full["ssn"], full["card_no"]) == ("张三", SAMPLE_CARD["ssn"], "A12345678")

        assert main(["card", "read"]) == 0
        assert "330300" in capsys.readouterr().out

        monkeypatch.setattr("sys.stdin", io.StringIO("000000\n"))
        assert main(["card", "check-pin", "--json"]) == 3
        assert json.loads(capsys.readouterr().out)["error"]["tries_left"] == 2
        monkeypatch.setattr("sys.stdin", io.StringIO("123456\n"))
        assert main(["card", "check-pin"]) == 0
        assert "PIN correct" in capsys.readouterr().out
    assert main(["card", "read"]) == 3
    err = capsys.readouterr().err
    assert "No card" in err and "请插入社会保障卡" in err


def run_edge_without_pcscd(*args: str) -> subprocess.CompletedProcess:
    # pcsc-lite's client library finds pcscd through PCSCLITE_CSOCK_NAME: point it nowhere.
    env = {**os.environ, "PCSCLITE_CSOCK_NAME": "/nonexistent/pcscd.comm"}
    return subprocess.run([sys.executable, "-m", "edge", *args], capture_output=True, text=True, env=env,
                          timeout=60, cwd=Path(__file__).resolve().parents[2])


@pytest.mark.slow
def test_pcscd_not_running_is_a_clear_typed_error():
    done = run_edge_without_pcscd("card", "readers", "--json")
    assert done.returncode == 3, done.stderr
    error = json.loads(done.stdout)["error"]
    assert error["code"] == "pcsc_unavailable" and "pcscd" in error["message"] and error["retryable"]
    done = run_edge_without_pcscd("card", "read")
    assert done.returncode == 3 and "pcscd" in done.stderr and "读卡服务" in done.stderr


WATCH_WITHOUT_PCSCD = """
import trio
from edge.card import watch_cards

async def main():
    send, receive = trio.open_memory_channel(0)
    async with trio.open_nursery() as nursery:
        await nursery.start(watch_cards, send)
        with trio.fail_after(10):
            event = await receive.receive()
        print(event.kind, event.reader, event.error.code)
        nursery.cancel_scope.cancel()

trio.run(main)
"""


def test_watcher_reports_pcscd_down_as_an_error_event():
    env = {**os.environ, "PCSCLITE_CSOCK_NAME": "/nonexistent/pcscd.comm"}
    done = subprocess.run([sys.executable, "-c", WATCH_WITHOUT_PCSCD], capture_output=True, text=True,
                          env=env, timeout=60, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["error", "None", "pcsc_unavailable"]


@pytest.mark.pcsc
def test_watch_prints_events_until_interrupted(pcsc):
    import selectors
    import signal

    proc = subprocess.Popen([sys.executable, "-m", "edge", "card", "watch", "--json", "--poll", "0.1"],
                            cwd=Path(__file__).resolve().parents[2], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)

    def next_line() -> dict:
        assert sel.select(15), "no event from `edge card watch` within 15 s"
        return json.loads(proc.stdout.readline())
    try:
        with virtual_card(SAMPLE_CARD) as card:
            ev = next_line()
            assert (ev["kind"], ev["reader"], ev["identity"]["name"]) == ("inserted", card.reader, "张*")
            assert SAMPLE_CARD["ssn"] not in json.dumps(ev)
        assert next_line() == {"kind": "removed", "reader": card.reader, "identity": None, "error": None}
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        sel.close()
        proc.stdout.close()
