"""What the checks look at, and the read-only snapshots they share.

Diagnostics never write to the journal or the cache: a technician runs them on a counter that may
hold the only copy of unsent settlements. The databases are read through SQLite's backup API from a
``mode=ro`` connection into a private temporary directory, and every check works on that snapshot
(the libraries' own ``open`` would create or migrate a missing file). The snapshot is taken once
per run and shared; a trio lock keeps concurrent checks from taking it twice.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable
from urllib.parse import quote

import trio

from .errors import SnapshotError

DEFAULT_STATE_DIR = "./var/edge"
SERVICE_STATE_DIR = "/var/lib/counter-edge"
DEFAULT_PCSC_SOCKET = "/run/pcscd/pcscd.comm"
JOURNAL_FILE, CACHE_FILE, DEVICE_FILE, KEY_FILE, CONFIG_FILE = (
    "journal.db", "cache.db", "device.json", "device.key", "edge.toml")


def default_state_dir() -> Path:
    """$EDGE_STATE_DIR, else ./var/edge, else the service's /var/lib/counter-edge when only that exists
    (a technician on an installed counter types `edge diagnose` from any directory)."""
    env = os.environ.get("EDGE_STATE_DIR")
    if env:
        return Path(env)
    if not Path(DEFAULT_STATE_DIR).exists() and Path(SERVICE_STATE_DIR).exists():
        return Path(SERVICE_STATE_DIR)
    return Path(DEFAULT_STATE_DIR)


def default_pcsc_socket() -> str:
    # pcsc-lite's client library honours PCSCLITE_CSOCK_NAME; diagnose looks where pyscard will look.
    return os.environ.get("PCSCLITE_CSOCK_NAME") or DEFAULT_PCSC_SOCKET


async def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """Blocking work of a check, in a worker thread the check's bound can abandon: a hung disk or a
    wedged pcscd must not hold the technician's run past its bound. Only used for reads of private
    snapshots or of files, so an abandoned thread changes nothing anyone relies on."""
    return await trio.to_thread.run_sync(fn, *args, abandon_on_cancel=True)


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def snapshot_db(src: Path, dst: Path) -> Path:
    """Copy SQLite database ``src`` (with its WAL) to ``dst`` without writing to ``src``."""
    if not src.exists():
        raise SnapshotError(f"{src} does not exist")
    try:
        source = sqlite3.connect(f"file:{quote(str(src.resolve()))}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise SnapshotError(f"{src} cannot be opened read-only: {exc}") from exc
    try:
        target = sqlite3.connect(dst)
        try:
            source.backup(target)
        finally:
            target.close()
    except sqlite3.Error as exc:
        raise SnapshotError(f"{src} cannot be read: {exc}") from exc
    finally:
        source.close()
    return dst


@dataclass
class Context:
    """Inputs of a diagnose run. Every location is injectable so tests can break one thing at a time."""

    state_dir: Path = field(default_factory=default_state_dir)
    centre_url: str | None = None          # default: centre_url from device.json
    pcsc_socket: str = field(default_factory=default_pcsc_socket)
    reader: str | None = None              # default: the first reader holding a card
    daemon_url: str | None = None          # default: from edge.toml, else the counter's default port
    clock_ms: Callable[[], int] = wall_ms  # the local wall clock the skew check compares
    config_file: Path | None = None        # default: edge.toml in the state directory
    workdir: Path | None = None            # private temp dir for snapshots (set by the runner)
    _memo: dict[str, Any] = field(default_factory=dict, repr=False)
    _locks: dict[str, trio.Lock] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir)

    def path(self, name: str) -> Path:
        return self.state_dir / name

    @property
    def config_path(self) -> Path:
        return Path(self.config_file) if self.config_file else self.path(CONFIG_FILE)

    async def once(self, key: str, make: Callable[[], Awaitable[Any]]) -> Any:
        """Compute ``make()`` once per run (exceptions are remembered and re-raised too)."""
        lock = self._locks.setdefault(key, trio.Lock())
        async with lock:
            if key not in self._memo:
                try:
                    self._memo[key] = ("ok", await make())
                except Exception as exc:  # remembered: every check sharing it reports the same cause
                    self._memo[key] = ("err", exc)
        kind, value = self._memo[key]
        if kind == "err":
            raise value
        return value

    async def snapshot(self, name: str) -> Path:
        """A private read-only copy of the database ``name`` in the state directory."""
        async def make() -> Path:
            if self.workdir is None:
                raise RuntimeError("Context.workdir is not set (use edge.diagnose.run)")
            return await in_thread(snapshot_db, self.path(name), self.workdir / name)
        return await self.once(f"snapshot:{name}", make)

    async def device(self):
        """device.json as edge.enrol.DeviceConfig (NotEnrolled / EnrolError when missing or damaged)."""
        from edge.enrol import load_device

        async def make():
            return await in_thread(load_device, self.state_dir)
        return await self.once("device", make)

    async def centre(self) -> str | None:
        """The centre URL to probe: --centre, else the enrolled one; None when neither is known."""
        if self.centre_url:
            return self.centre_url.rstrip("/")
        try:
            return (await self.device()).centre_url.rstrip("/")
        except Exception:
            return None

    def config(self) -> dict:
        """edge.toml as a dict ({} when absent); a damaged file raises ValueError naming the file."""
        import tomllib

        path = self.config_path
        try:
            with open(path, "rb") as f:
                return tomllib.load(f)
        except FileNotFoundError:
            return {}
        except (tomllib.TOMLDecodeError, OSError) as exc:
            raise ValueError(f"{path} cannot be read: {exc}") from exc
