"""`edge diagnose` / `edge support-bundle` on the command line, the public surface, and the docs."""

from __future__ import annotations

import json
import os
import sys
import tarfile
from pathlib import Path

import pytest

import edge.diagnose
from edge.cli import build_parser, main

import diag_helpers

ROOT = Path(__file__).resolve().parents[2]
OPS = ROOT / "docs" / "operations.md"


async def test_cli_json_and_exit_code(healthy, capsys):
    # The CLI runs its own trio loop: run it in a worker thread, as a technician's shell would.
    import trio

    os.chmod(healthy.dir / "device.key", 0o640)
    args = ["diagnose", "--json", "--state-dir", str(healthy.dir), "--daemon", diag_helpers.dead_url(),
            "--only", "device_key", "--only", "journal"]
    code = await trio.to_thread.run_sync(main, args)
    report = json.loads(capsys.readouterr().out)
    assert code == 2 and report["exit_code"] == 2 and report["status"] == "broken"
    assert [f["check"] for f in report["findings"]] == ["device_key", "journal"]
    assert report["findings"][0]["status"] == "fail" and report["findings"][1]["status"] == "ok"

    os.chmod(healthy.dir / "device.key", 0o600)
    code = await trio.to_thread.run_sync(main, args[:1] + args[2:])   # human output
    text = capsys.readouterr().out
    assert code == 0
    assert "[ OK ] device key" in text and "设备密钥" in text and "Result: HEALTHY" in text


def test_cli_unknown_check_is_a_usage_error(tmp_path, capsys):
    assert main(["diagnose", "--state-dir", str(tmp_path), "--only", "nonsense"]) == 64
    assert "unknown checks: nonsense" in capsys.readouterr().err


def test_cli_support_bundle(tmp_path, capsys):
    out = tmp_path / "usb" / "bundle.tar.gz"
    assert main(["support-bundle", "--state-dir", str(tmp_path / "state"), "--daemon", diag_helpers.dead_url(),
                 "--out", str(out)]) == 0
    assert "personal data redacted" in capsys.readouterr().out
    with tarfile.open(out) as tar:
        assert "support-bundle/diagnose.json" in tar.getnames()
    assert oct(out.stat().st_mode & 0o777) == "0o600"


def test_public_surface():
    assert set(edge.diagnose.__all__) >= {"Context", "Finding", "CHECKS", "run", "render_text", "Report", "exit_code"}
    for name in edge.diagnose.__all__:
        assert hasattr(edge.diagnose, name), name
    for check in edge.diagnose.CHECKS:
        assert check.title and check.title_zh and check.bound_s <= 10


@pytest.mark.parametrize("command", ["diagnose", "support-bundle", "service"])
def test_commands_have_help_and_are_documented(command):
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert sub.choices[command].description or sub.choices[command].format_help()
    helps = {a.dest: a.help for a in sub._choices_actions}
    assert helps.get(command), f"`edge {command}` has no help text"
    assert f"edge {command}" in OPS.read_text(encoding="utf-8"), f"`edge {command}` missing from docs/operations.md"


def test_every_check_is_documented():
    text = OPS.read_text(encoding="utf-8")
    for check in edge.diagnose.CHECKS:
        assert f"`{check.name}`" in text, f"check {check.name} missing from docs/operations.md"


@pytest.mark.slow
def test_scripts_diagnose_and_support_bundle(tmp_path):
    import subprocess

    env = {**os.environ, "EDGE_STATE_DIR": str(tmp_path / "state"), "EDGE_PYTHON": sys.executable}
    out = subprocess.run([str(ROOT / "scripts" / "diagnose"), "--json", "--only", "disk", "--only", "enrolment"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    report = json.loads(out.stdout)
    assert out.returncode == 2 and report["state_dir"] == str(tmp_path / "state")
    assert {f["check"]: f["status"] for f in report["findings"]} == {"disk": "ok", "enrolment": "fail"}
    out = subprocess.run([str(ROOT / "scripts" / "support-bundle"), "--daemon", diag_helpers.dead_url()],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    bundles = list(tmp_path.glob("support-bundle-*.tar.gz"))   # written where the technician stands
    assert len(bundles) == 1 and tarfile.is_tarfile(bundles[0])
