"""The counter's fixtures (a real journal, a real cache with signed sample bundles, simulated cards), and
``clock_stack``: a real centre (in this process, the true clock) and a real counter daemon (`edge run`, a child process)
whose wall clock is shifted with libfaketime (the Debian ``faketime`` package), as a clerk would shift
the PC's clock: the monotonic clock is left alone (nobody can set it), and the shift is read from a file
at every clock reading, so it can be changed while the daemon runs.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from counter.conftest import cache, cards, centre, journal  # noqa: F401  (pytest finds fixtures by name)
from harness.demo import SAMPLE, SITE, seed_clerk, seed_prices, wait_for

ROOT = Path(__file__).resolve().parents[2]
HOUR_MS = 3_600_000


def libfaketime() -> str | None:
    """The preload library of the faketime package (None when it is not installed)."""
    if shutil.which("faketime") is None:
        return None
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1") + glob.glob("/usr/lib/faketime/libfaketime.so.1"))
    return found[0] if found else None


class ShiftedClock:
    """The counter PC's wall clock: ``set("-1h")``, ``set("+7d")``, ``set("+0")`` (libfaketime's
    relative offsets), effective at the daemon's next clock reading."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.set("+0")

    def set(self, offset: str) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(offset + "\n")
        os.replace(tmp, self.path)

    def env(self, lib: str) -> dict[str, str]:
        return {"LD_PRELOAD": lib, "FAKETIME_TIMESTAMP_FILE": str(self.path), "FAKETIME_NO_CACHE": "1",
                "FAKETIME_DONT_FAKE_MONOTONIC": "1"}


@dataclass
class ClockStack:
    tmp: Path
    store: Any
    key: Any
    centre: Any
    centre_port: int
    state_dir: Path
    config: Path
    clock: ShiftedClock
    lib: str | None           # libfaketime; None: the daemon runs on the true clock
    proc: subprocess.Popen | None = None
    url: str = ""
    logs: list[Path] = field(default_factory=list)

    # -- the centre ----------------------------------------------------------------------------------
    def stop_centre(self) -> None:
        self.centre.stop()

    async def restart_centre(self, nursery) -> None:
        from sync.centre.server import start_centre
        self.centre = await start_centre(nursery, self.store, self.key, port=self.centre_port, background=True)

    # -- the counter daemon, under the shifted clock ---------------------------------------------------
    async def start_counter(self) -> str:
        log = self.tmp / f"edge-{len(self.logs) + 1}.log"
        self.logs.append(log)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **(self.clock.env(self.lib) if self.lib else {})}
        with open(log, "w") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "edge", "run", "--config", str(self.config)], cwd=ROOT,
                                         stdout=subprocess.PIPE, stderr=err, text=True, env=env)
        line = await trio.to_thread.run_sync(self.proc.stdout.readline)
        assert line.startswith("counter page: "), line + log.read_text()
        self.url = line.split(": ", 1)[1].strip().rstrip("/")
        return self.url

    async def stop_counter(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            await trio.to_thread.run_sync(lambda: proc.wait(30))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()

    def log_tail(self, n: int = 4000) -> str:
        """The end of the daemon's log (for an assertion's message)."""
        return self.logs[-1].read_text(errors="replace")[-n:] if self.logs else ""

    def client(self) -> httpx.AsyncClient:
        """A client of the counter API with the installation token (``api.token``) when the daemon wrote one."""
        token = self.state_dir / "api.token"
        headers = {"Authorization": f"Bearer {token.read_text().strip()}"} if token.exists() else {}
        return httpx.AsyncClient(base_url=self.url, trust_env=False, timeout=30, headers=headers)

    @staticmethod
    async def status(api: httpx.AsyncClient) -> dict:
        return await status(api)

    @staticmethod
    async def until(predicate, seconds: float = 30):
        return await until(predicate, seconds)

    def run_edge(self, *args: str) -> subprocess.CompletedProcess:
        """An `edge` command (status, diagnose), under the same shifted clock as the daemon."""
        env = {**os.environ, **(self.clock.env(self.lib) if self.lib else {})}
        return subprocess.run([sys.executable, "-m", "edge", *args], cwd=ROOT, capture_output=True, text=True,
                              env=env, timeout=120)


async def start_clock_stack(nursery, tmp: Path, lib: str | None, *, published_hours_ago: int = 30,
                            region: str | None = "330300", persons: list[dict] = ()) -> ClockStack:
    """Centre + sample bundles (with ``persons`` added to the sample's) published ``published_hours_ago``
    (so the bundles' issue time is no floor worth having) + an enrolled state directory + the daemon's
    config. The daemon is not started."""
    from edge.enrol import enroll
    from sync.centre.keys import load_or_create
    from sync.centre.publish import publish
    from sync.centre.server import start_centre
    from sync.centre.store import open_store

    centre_dir, state_dir = tmp / "centre", tmp / "edge"
    centre_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(centre_dir / "centre.db")
    key = load_or_create(centre_dir)
    then = time.time_ns() // 1_000_000 - published_hours_ago * HOUR_MS
    sample = SAMPLE
    if persons:
        sample = tmp / "sample"
        shutil.copytree(SAMPLE, sample)
        doc = json.loads((sample / "persons.json").read_text(encoding="utf-8"))
        doc["persons"].extend(persons)
        (sample / "persons.json").write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    await trio.to_thread.run_sync(lambda: publish(store, key, sample, now=then))
    await trio.to_thread.run_sync(lambda: store.ledger.seed_from_persons(
        json.loads((sample / "persons.json").read_text(encoding="utf-8"))["persons"]))
    running = await start_centre(nursery, store, key, background=True)
    token = store.create_enrol_token(SITE, ttl_ms=3_600_000)
    async with httpx.AsyncClient(trust_env=False) as client:
        await enroll(running.url, token, state_dir, client=client)
    seed_prices(state_dir)
    seed_clerk(state_dir)
    counter = {"port": 0, "online_timeout_s": 2.0, "retry_online_after_s": 2.0}
    if region is not None:
        counter["region"] = region
    config = tmp / "edge.toml"
    config.write_text(_toml({"state_dir": str(state_dir), "counter": counter,
                             "card": {"simulated": True, "enabled": True},
                             "sync": {"idle_s": 0.3, "probe_interval_s": 0.5},
                             "log": {"level": "INFO", "json": True}}))
    return ClockStack(tmp, store, key, running, int(running.url.rsplit(":", 1)[1]), state_dir, config,
                      ShiftedClock(tmp / "faketime.rc"), lib)


def _toml(data: dict) -> str:
    top = [f"{k} = {json.dumps(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for name, table in data.items():
        if isinstance(table, dict):
            top.append(f"\n[{name}]")
            top.extend(f"{k} = {'true' if v is True else 'false' if v is False else json.dumps(v)}"
                       for k, v in table.items())
    return "\n".join(top) + "\n"


async def status(api: httpx.AsyncClient) -> dict:
    return (await api.get("/api/status")).json()


async def until(predicate, seconds: float = 30):
    """``predicate`` (async) until true, at most ``seconds``; its last value."""
    with trio.fail_after(seconds):
        return await wait_for(predicate)


@pytest.fixture
def clock_stack(tmp_path, nursery):
    """``await clock_stack(region=...)``: a :class:`ClockStack` (the daemon not yet started); every
    daemon it started is stopped at the end."""
    import support

    lib = libfaketime()
    support.require("faketime (Debian package: libfaketime)", lib is not None)
    made: list[ClockStack] = []

    async def make(**options) -> ClockStack:
        s = await start_clock_stack(nursery, tmp_path, lib, **options)
        made.append(s)
        return s

    yield make
    _stop_all(made)


@pytest.fixture
def daemon_stack(tmp_path, nursery):
    """``await daemon_stack(region=..., persons=...)``: as ``clock_stack``, on the true clock (no faketime)."""
    made: list[ClockStack] = []

    async def make(**options) -> ClockStack:
        s = await start_clock_stack(nursery, tmp_path, None, **options)
        made.append(s)
        return s

    yield make
    _stop_all(made)


def _stop_all(made: list[ClockStack]) -> None:
    for s in made:
        if s.proc is not None and s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()
            s.proc.stdout.close()


# -- year_stack: the centre a child process under the counter's shifted clock (tests/time/test_year_daemons.py)
@dataclass
class YearStack(ClockStack):
    """:class:`ClockStack` whose centre is a child process under the same shifted clock as the counter."""

    centre_dir: Path = Path()

    def stop_centre(self) -> None:
        proc, self.centre = self.centre, None
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            proc.stdout.close()

    async def restart_centre(self, nursery=None, *, background: bool = False) -> None:
        await self.start_centre(background=background)

    async def start_centre(self, *, background: bool = False) -> str:
        """The centre on ``centre_port`` (0 at first: any free port); without background reconciliation
        by default (the tests reconcile when the scenario says)."""
        log = self.tmp / f"centre-{len(self.logs) + 1}.log"
        self.logs.append(log)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.clock.env(self.lib)}
        args = [sys.executable, "-m", "sync.centre", "run", "--data-dir", str(self.centre_dir),
                "--port", str(self.centre_port), *([] if background else ["--no-background"])]
        with open(log, "w") as err:
            self.centre = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
        line = await trio.to_thread.run_sync(self.centre.stdout.readline)
        assert line.startswith("centre: listening on "), line + log.read_text()
        url = line.split("listening on ", 1)[1].split()[0]
        self.centre_port = int(url.rsplit(":", 1)[1])
        return url

    def entries(self) -> list:
        from edge.journal import JournalStore

        with JournalStore.open(self.state_dir / "journal.db", signing_key=None, device=None) as j:
            return list(j.entries())

    def entry(self, seq: int):
        [e] = [e for e in self.entries() if e.seq == seq]
        return e

    def faked_ms(self) -> int:
        """What both daemons read on their wall clock now."""
        spec = self.clock.path.read_text().strip()
        return time.time_ns() // 1_000_000 + int(spec) * 1000

    def set_time(self, when) -> int:
        """Both clocks to ``when`` (from now on they run on); returns the jump in seconds."""
        before = self.faked_ms()
        offset = int(when.timestamp() - time.time())
        self.clock.set(f"{offset:+d}")
        return (self.faked_ms() - before) // 1000


async def start_year_stack(tmp: Path, lib: str, *, at=None, persons: list[dict] = (),
                           policy=None, region: str | None = "330300") -> YearStack:
    """Sample bundles (``policy`` edits the sample policy; ``persons`` added) published 30 hours before the
    true time and the ledger seeded, both clocks set to ``at`` (default: the true time), the centre
    started, a counter enrolled and configured. The counter is not started."""
    from edge.enrol import enroll
    from sync.centre.keys import load_or_create
    from sync.centre.publish import publish
    from sync.centre.store import open_store

    centre_dir, state_dir = tmp / "centre", tmp / "edge"
    centre_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(centre_dir / "centre.db")
    key = load_or_create(centre_dir)
    sample = tmp / "sample"
    shutil.copytree(SAMPLE, sample)
    doc = json.loads((sample / "persons.json").read_text(encoding="utf-8"))
    doc["persons"].extend(persons)
    (sample / "persons.json").write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    if policy is not None:
        pol = json.loads((sample / "policy.json").read_text(encoding="utf-8"))
        (sample / "policy.json").write_text(json.dumps(policy(pol), ensure_ascii=False), encoding="utf-8")
    then = time.time_ns() // 1_000_000 - 30 * HOUR_MS
    await trio.to_thread.run_sync(lambda: publish(store, key, sample, now=then))
    await trio.to_thread.run_sync(lambda: store.ledger.seed_from_persons(doc["persons"]))
    # The centre checks the token's expiry on its own (shifted) clock.
    token = store.create_enrol_token(SITE, ttl_ms=400 * 24 * HOUR_MS)
    clock = ShiftedClock(tmp / "faketime.rc")
    s = YearStack(tmp, store, key, None, 0, state_dir, tmp / "edge.toml", clock, lib, centre_dir=centre_dir)
    if at is not None:
        s.set_time(at)
    url = await s.start_centre()
    async with httpx.AsyncClient(trust_env=False) as client:
        await enroll(url, token, state_dir, client=client)
    seed_prices(state_dir)
    seed_clerk(state_dir)
    # A generous online timeout: on a loaded test machine an online visit must not fall back offline.
    counter = {"port": 0, "online_timeout_s": 15.0, "retry_online_after_s": 2.0}
    if region is not None:
        counter["region"] = region
    s.config.write_text(_toml({"state_dir": str(state_dir), "counter": counter,
                               "card": {"simulated": True, "enabled": True},
                               "sync": {"idle_s": 0.3, "probe_interval_s": 0.5},
                               "log": {"level": "INFO", "json": True}}))
    return s


@pytest.fixture
def year_stack(tmp_path):
    """``await year_stack(at=..., persons=..., policy=...)``: a :class:`YearStack`, the counter not yet
    started; both daemons are stopped at the end."""
    import support

    lib = libfaketime()
    support.require("faketime (Debian package: libfaketime)", lib is not None)
    made: list[YearStack] = []

    async def make(**options) -> YearStack:
        s = await start_year_stack(tmp_path, lib, **options)
        made.append(s)
        return s

    yield make
    for s in made:
        for proc in (s.proc, s.centre):
            if proc is not None:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                proc.stdout.close()
        s.store.close()
