"""Public surface and docs: OpenAPI covers every route, CLI commands have help and are documented,
the config's documented defaults are the real ones, logs never name a patient at INFO."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

import edge.counter as counter_pkg
from edge import config
from edge.cli import build_parser
from edge.counter import build_app
from edge.counter.openapi import spec

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "counter.md"


def test_openapi_documents_every_route_and_nothing_else(counter):
    app = build_app(counter).app
    served = {(r.path, m.lower()) for r in app.routes for m in (r.methods or []) if m != "HEAD"}
    documented = {(p, m) for p, ops in spec()["paths"].items() for m in ops}
    assert served == documented


def test_public_names():
    assert set(counter_pkg.__all__) >= {"Counter", "build_app", "serve", "CardDesk", "SimulatedCards", "Clock"}


# The demo moved out of the product into the harness package (python -m harness.demo): no `edge demo`.
@pytest.mark.parametrize("command", ["run", "status"])
def test_commands_have_help_and_are_documented(command):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert sub.choices[command].description
    helps = {a.dest: a.help for a in sub._choices_actions}
    assert helps[command]
    assert f"edge {command}" in DOC.read_text(encoding="utf-8")


def test_config_defaults_are_documented_and_validated(tmp_path):
    text = DOC.read_text(encoding="utf-8")
    c = config.Config()
    for section, obj in (("counter", c.counter), ("card", c.card), ("sync", c.sync), ("log", c.log)):
        for key, value in vars(obj).items():
            shown = json.dumps(value) if not isinstance(value, str) else f'"{value}"'
            assert f"{key} = {shown}" in text, f"docs/counter.md lacks `{key} = {shown}` in [{section}]"
    f = tmp_path / "edge.toml"
    f.write_text('state_dir = "s"\n[counter]\nport = 9000\n', encoding="utf-8")
    loaded = config.load(f)
    assert loaded.counter.port == 9000 and loaded.state_dir == tmp_path / "s"
    for bad, why in [('[counter]\nhost = "0.0.0.0"\n', "loopback"), ('[counter]\nonlne_timeout_s = 1\n', "unknown key"),
                     ('[card]\nsimulated = "yes"\n', "must be a bool"), ("[counter\n", "not valid TOML")]:
        f.write_text(bad, encoding="utf-8")
        with pytest.raises(config.ConfigError, match=why):
            config.load(f)
    with pytest.raises(config.ConfigError, match="does not exist"):
        config.load(tmp_path / "missing.toml")


def test_logs_drop_names_and_id_numbers_at_info():
    from edge import logs

    buf = io.StringIO()
    level = logging.getLogger().level
    handler = logs.setup("DEBUG", stream=buf)
    try:
        log = logging.getLogger("edge.test")
        log.info("card read: 姓名：张三 certno 330302199001011235",
                 extra={"event": "card", "certno": "330302199001011235", "psn_name": "张三"})
        log.debug("debug keeps fields", extra={"certno": "X"})
    finally:
        logging.getLogger().removeHandler(handler)
        logging.getLogger().setLevel(level)
    lines = [json.loads(line) for line in buf.getvalue().splitlines()]
    info = lines[0]
    assert info["event"] == "card" and "certno" not in info and "psn_name" not in info
    assert "330302199001011235" not in info["msg"] and "张三" not in info["msg"]
    assert lines[1]["certno"] == "X"


@pytest.mark.slow
async def test_edge_status_reads_the_running_daemon(api, tmp_path):
    import sys

    import trio

    url = str(api.base_url).rstrip("/")
    state = tmp_path / "state"           # where `edge status` finds the installation token, as on a counter
    state.mkdir()
    (state / "api.token").write_text(api.headers["authorization"].removeprefix("Bearer ") + "\n")
    nobody = await trio.run_process([sys.executable, "-m", "edge", "status", "--url", url, "--state-dir",
                                     str(tmp_path / "elsewhere")], capture_stderr=True, check=False)
    assert nobody.returncode == 3 and b"api.token" in nobody.stderr
    done = await trio.run_process([sys.executable, "-m", "edge", "status", "--url", url, "--json", "--state-dir",
                                   str(state)], capture_stdout=True, check=False)
    assert done.returncode == 1                       # the daemon answers; the centre does not (offline)
    s = json.loads(done.stdout)
    assert s["online"] is False and s["backlog"]["count"] == 0
    done = await trio.run_process([sys.executable, "-m", "edge", "status", "--url", url, "--state-dir", str(state)],
                                  capture_stdout=True, check=False)
    assert b"OFFLINE" in done.stdout and b"catalogue v1" in done.stdout
    gone = await trio.run_process([sys.executable, "-m", "edge", "status", "--url", "http://127.0.0.1:9"],
                                  capture_stderr=True, check=False)
    assert gone.returncode == 3 and b"does not answer" in gone.stderr


@pytest.mark.slow
async def test_edge_run_refuses_to_start_unenrolled_or_misconfigured(tmp_path):
    import sys

    import trio

    done = await trio.run_process([sys.executable, "-m", "edge", "run", "--state-dir", str(tmp_path / "none"),
                                   "--port", "0"], capture_stderr=True, capture_stdout=True, check=False)
    assert done.returncode == 2 and b"not enrolled" in done.stderr and b"edge enroll" in done.stderr
    bad = tmp_path / "edge.toml"
    bad.write_text('[counter]\nhost = "0.0.0.0"\n', encoding="utf-8")
    done = await trio.run_process([sys.executable, "-m", "edge", "run", "--config", str(bad)], capture_stderr=True,
                                  check=False)
    assert done.returncode == 2 and b"loopback" in done.stderr
