"""The daemon's configuration: a TOML file, every key optional, defaults documented here and in
docs/counter.md. Unknown keys and wrong types are refused with a message naming the key (a typo in
``onlne_timeout_s`` must not silently leave the default in place).

::

    state_dir = "/var/lib/counter-edge"   # device.json + device.key (from `edge enroll`), journal.db, cache.db

    [counter]
    host = "127.0.0.1"                   # loopback only: any other address is refused
    port = 8765
    level = "village"                    # institution level the policy rules are keyed by
    online_timeout_s = 2.0               # wait this long for the centre, then settle offline
    retry_online_after_s = 30.0          # after the centre failed, go straight offline this long
    region = ""                          # the site's 6-digit region code, e.g. "330300"; a card issued
                                         # elsewhere is 异地 ("": not set, no card is taken for 异地)

    [card]
    enabled = true                       # watch the PC/SC readers (pcscd)
    simulated = false                    # demo/benchmark only: identities put in through the API
    poll_interval_s = 0.2

    [sync]
    enabled = true                       # run the uplink (journal up, bundles and outcomes down)
    idle_s = 30.0                        # pause between sync rounds when all is sent
    probe_interval_s = 5.0               # how often the centre's reachability is checked (banner)

    [log]
    level = "INFO"                       # DEBUG may show more detail; INFO and above never names a patient
    json = true                          # one JSON object per line on stderr
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from sync.problem import Problem


class ConfigError(Problem):
    """The configuration file is refused; the message names the key (a one-class tree under Problem:
    the daemon and the diagnostics report it and stop, nothing more specific is caught)."""

    code = "config_invalid"
    zh = "配置文件有误，请按提示修改配置后重新启动"


@dataclass(frozen=True)
class CounterConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    level: str = "village"
    online_timeout_s: float = 2.0
    retry_online_after_s: float = 30.0
    region: str = ""                     # the site's region code; "" = not set


@dataclass(frozen=True)
class CardConfig:
    enabled: bool = True
    simulated: bool = False
    poll_interval_s: float = 0.2


@dataclass(frozen=True)
class SyncConfig:
    enabled: bool = True
    idle_s: float = 30.0
    probe_interval_s: float = 5.0


@dataclass(frozen=True)
class LogConfig:
    level: str = "INFO"
    json: bool = True


@dataclass(frozen=True)
class Config:
    state_dir: Path = Path("/var/lib/counter-edge")
    counter: CounterConfig = field(default_factory=CounterConfig)
    card: CardConfig = field(default_factory=CardConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    log: LogConfig = field(default_factory=LogConfig)


_SECTIONS = {"counter": CounterConfig, "card": CardConfig, "sync": SyncConfig, "log": LogConfig}


def _typed(cls, data: dict, where: str):
    if not isinstance(data, dict):
        raise ConfigError(f"[{where}] must be a table")
    known = {f.name: f for f in fields(cls)}
    out = {}
    for key, value in data.items():
        if key not in known:
            raise ConfigError(f"unknown key {where}.{key}; known keys: {', '.join(known)}")
        want = str(known[key].type)  # the annotation's text: this module postpones annotations (PEP 563)
        ok = {"bool": isinstance(value, bool), "int": isinstance(value, int) and not isinstance(value, bool),
              "float": isinstance(value, (int, float)) and not isinstance(value, bool),
              "str": isinstance(value, str)}[want]
        if not ok:
            raise ConfigError(f"{where}.{key} must be a {want}, got {value!r}")
        out[key] = float(value) if want == "float" else value
    return cls(**out)


def from_dict(data: dict[str, Any], *, base_dir: Path | None = None) -> Config:
    from edge.counter.api import is_loopback

    data = dict(data)
    state = data.pop("state_dir", None)
    parts = {}
    for name, cls in _SECTIONS.items():
        parts[name] = _typed(cls, data.pop(name, {}), name)
    if data:
        raise ConfigError(f"unknown key(s) {', '.join(sorted(data))}; known: state_dir, {', '.join(_SECTIONS)}")
    if state is not None and not isinstance(state, str):
        raise ConfigError("state_dir must be a path (text)")
    c = parts["counter"]
    if not is_loopback(c.host):
        raise ConfigError(f"counter.host must be a loopback address (127.0.0.1 or ::1), not {c.host!r}: the counter "
                          "API serves this PC's HIS and clerks only and must never be reachable from the network")
    if not 0 <= c.port <= 65535:
        raise ConfigError(f"counter.port must be 0..65535, got {c.port}")
    if c.region and not (len(c.region) == 6 and c.region.isdigit()):
        raise ConfigError(f"counter.region must be the site's 6-digit region code (e.g. \"330300\"), got {c.region!r}")
    if c.online_timeout_s <= 0 or c.retry_online_after_s < 0:
        raise ConfigError("counter.online_timeout_s must be > 0 and retry_online_after_s ≥ 0")
    if parts["log"].level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"log.level must be DEBUG, INFO, WARNING or ERROR, got {parts['log'].level!r}")
    state_dir = Path(state) if state else Config.state_dir
    if base_dir is not None and not state_dir.is_absolute():
        state_dir = base_dir / state_dir
    return Config(state_dir=state_dir, **parts)


def load(path: str | Path | None) -> Config:
    """Read the TOML file (None: all defaults)."""
    if path is None:
        return Config()
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {p} does not exist: create it (see docs/counter.md) or leave --config out") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {p} cannot be read: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {p} is not valid TOML: {exc}") from exc
    return from_dict(data, base_dir=p.parent)
