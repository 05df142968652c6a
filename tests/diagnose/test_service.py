"""The systemd unit and `edge service install|uninstall` against a temporary root directory."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess

import pytest

from edge.service import POLKIT_PATH, STATE, SYSUSERS_PATH, TEMPLATE, UNIT_PATH, ServiceError, install, uninstall

import diag_helpers
import support


def unit(text: str) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str
    cp.read_string(text)
    return cp


def test_unit_file_restarts_runs_as_its_own_user_state_under_var_lib():
    cp = unit(TEMPLATE.read_text(encoding="utf-8"))
    svc = cp["Service"]
    assert svc["Restart"] == "on-failure" and svc["User"] == "counter-edge"
    assert svc["StateDirectory"] == "counter-edge" and svc["StateDirectoryMode"] == "0700"
    assert "--state-dir /var/lib/counter-edge" in svc["ExecStart"]
    assert cp["Unit"]["StartLimitIntervalSec"] == "0"
    assert cp["Install"]["WantedBy"] == "multi-user.target"


def test_systemd_analyze_accepts_the_unit(tmp_path):
    analyze = shutil.which("systemd-analyze")
    support.require("systemd-analyze (Debian package systemd)", analyze is not None)
    path = tmp_path / "counter-edge.service"
    path.write_text(TEMPLATE.read_text(encoding="utf-8").replace("@EDGE@", "/usr/bin/true"), encoding="utf-8")
    out = subprocess.run([analyze, "verify", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "counter-edge.service" not in out.stderr     # no warnings about our unit


def test_install_then_uninstall_in_a_temp_root(tmp_path):
    root = tmp_path / "root"
    done = install(root, exec_path="/opt/counter/bin/edge")
    unit_text = (root / UNIT_PATH).read_text(encoding="utf-8")
    assert "ExecStart=/opt/counter/bin/edge run --state-dir /var/lib/counter-edge" in unit_text
    assert "counter-edge" in (root / SYSUSERS_PATH).read_text(encoding="utf-8")
    assert "pcsc-lite" in (root / POLKIT_PATH).read_text(encoding="utf-8")
    state = root / STATE
    assert state.is_dir() and oct(state.stat().st_mode & 0o777) == "0o700"
    if shutil.which("systemd-sysusers") and os.geteuid() == 0:
        passwd = (root / "etc" / "passwd").read_text(encoding="utf-8")
        user = next(line.split(":") for line in passwd.splitlines() if line.startswith("counter-edge:"))
        assert state.stat().st_uid == int(user[2]) and user[6] == "/usr/sbin/nologin"
    assert any("systemctl enable --now counter-edge" in line for line in done)   # no systemd here: told what to run
    (state / "device.json").write_text("{}", encoding="utf-8")

    removed = uninstall(root)
    assert not (root / UNIT_PATH).exists() and not (root / SYSUSERS_PATH).exists() and not (root / POLKIT_PATH).exists()
    assert (state / "device.json").exists()    # the state directory is never deleted
    assert any("kept" in line for line in removed)


async def test_uninstall_refuses_while_entries_are_unsent(healthy, tmp_path):
    from edge.journal import JournalStore, load_device_key

    root = tmp_path / "root"
    install(root, exec_path="/usr/bin/edge")
    state = root / STATE
    shutil.copytree(healthy.dir, state, dirs_exist_ok=True)
    with JournalStore.open(state / "journal.db", signing_key=load_device_key(state / "device.key"),
                           device=healthy.device) as journal:
        diag_helpers.fill_journal(journal, 3)
    with pytest.raises(ServiceError, match="3 journal entries are not yet acknowledged"):
        uninstall(root)
    assert (root / UNIT_PATH).exists()
    done = uninstall(root, force=True)
    assert not (root / UNIT_PATH).exists() and (state / "journal.db").exists()
    assert any("3 entries are still unsent" in line for line in done)


def test_cli_service_install_uninstall(tmp_path, capsys):
    from edge.cli import main

    root = tmp_path / "r"
    assert main(["service", "install", "--root", str(root), "--exec", "/usr/bin/edge"]) == 0
    assert (root / UNIT_PATH).exists()
    assert main(["service", "uninstall", "--root", str(root)]) == 0
    assert not (root / UNIT_PATH).exists()
    assert "removed" in capsys.readouterr().out
