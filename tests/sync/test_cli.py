"""The `centre` and `edge` sync commands as real processes: publish, token, run, enroll, sync."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edge.cli import build_parser as edge_parser
from sync.centre.cli import build_parser as centre_parser

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sync" / "centre" / "sample"
DOCS = ROOT / "docs" / "sync.md"


def sh(*argv, **kw):
    return subprocess.run([sys.executable, "-m", *argv], capture_output=True, text=True, cwd=kw.pop("cwd", ROOT),
                          timeout=60, **kw)


def subcommands(parser):
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return action, action.choices


@pytest.mark.parametrize("parser,names", [(centre_parser, ("run", "migrate", "enroll-token", "publish", "devices", "rejections", "register", "revoke")),
                                          (edge_parser, ("enroll", "sync"))])
def test_commands_have_help_and_docs(parser, names):
    action, choices = subcommands(parser())
    helps = {c.dest: c.help for c in action._choices_actions}
    docs = DOCS.read_text(encoding="utf-8")
    for name in names:
        assert helps.get(name), f"{name} has no help text"
        for a in choices[name]._actions:
            if a.dest != "help":
                assert a.help, f"{name} {a.dest} has no help text"
        assert f"{'centre' if parser is centre_parser else 'edge'} {name}" in docs, f"{name} missing from docs/sync.md"


@pytest.mark.slow
def test_end_to_end_processes(tmp_path):
    data = tmp_path / "centre"
    r = sh("sync.centre", "publish", "--data-dir", str(data), "--source", str(SAMPLE))
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert sorted(x["kind"] for x in rows) == ["catalogue", "hotlist", "persons", "policy"]
    assert (data / "bundle.key").stat().st_mode & 0o777 == 0o600
    r = sh("sync.centre", "publish", "--data-dir", str(data), "--source", str(SAMPLE))
    assert r.returncode == 0 and r.stdout == "" and "nothing changed" in r.stderr
    r = sh("sync.centre", "publish", "--data-dir", str(data), "--source", str(tmp_path / "nowhere"))
    assert r.returncode == 1 and "bad_source" in r.stderr
    token = sh("sync.centre", "enroll-token", "--data-dir", str(data), "--site", "S330300001").stdout.strip()
    assert token.startswith("ET-")
    server = subprocess.Popen([sys.executable, "-m", "sync.centre", "run", "--data-dir", str(data), "--port", "0",
                               "--no-background"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                              cwd=ROOT)
    try:
        line = server.stdout.readline()
        assert "listening on http://" in line, line
        url = line.split("listening on ")[1].split()[0]
        state = tmp_path / "edge"
        r = sh("edge", "enroll", url, token, "--state-dir", str(state))
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["device"] == "D-S330300001-1"
        r = sh("edge", "enroll", url, token, "--state-dir", str(tmp_path / "edge2"))
        assert r.returncode == 1 and "already used" in r.stderr and "bad_enrolment_token" in r.stderr
        # one journaled sale, then a round by hand: bundles into the cache, the entry to the centre
        from edge.journal.keys import load_device_key
        from edge.journal.store import JournalStore
        from harness.simulate import pharmacy_sale

        with JournalStore.open(state / "journal.db", signing_key=load_device_key(state / "device.key"),
                               device="D-S330300001-1") as j:
            j.append("settlement", pharmacy_sale(1, device="D-S330300001-1"))
        r = sh("edge", "sync", "--once", "--state-dir", str(state))
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        assert (out["uploaded"], out["acked_seq"], out["backlog"], out["downlink"]) == (1, 1, 0, 4)
        from edge.cache import Cache

        cache = Cache.open(state / "cache.db")
        try:
            assert {k: v["version"] for k, v in cache.versions().items()} == {
                "catalogue": 1, "policy": 1, "persons": 1, "hotlist": 1}
            assert cache.person_count() == 20
        finally:
            cache.close()
        r = sh("sync.centre", "devices", "--data-dir", str(data))
        assert json.loads(r.stdout)["high_water"] == 1
        r = sh("sync.centre", "rejections", "--data-dir", str(data))
        assert r.returncode == 0 and r.stdout == ""
        from edge.journal.keys import public_key_b64

        other = public_key_b64(load_device_key(state / "device.key"))
        r = sh("sync.centre", "register", "--data-dir", str(data), "D-S330300001-5", "--site", "S330300001",
               "--pubkey", other)
        assert r.returncode == 0 and "registered" in r.stdout
        r = sh("sync.centre", "register", "--data-dir", str(data), "D-S330300001-6", "--site", "S330300001",
               "--pubkey", "not-a-key")
        assert r.returncode == 1
        r = sh("sync.centre", "revoke", "--data-dir", str(data), "D-S330300001-1")
        assert r.returncode == 0
        r = sh("edge", "sync", "--once", "--state-dir", str(state))
        assert r.returncode == 1 and "device_revoked" in r.stderr
    finally:
        server.terminate()
        server.wait(timeout=10)
        server.stdout.close()
