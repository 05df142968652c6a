"""``edge run`` and ``edge status``: the counter daemon.

The demo boots a centre as well, so it lives outside the product (``python -m harness.demo``, what
scripts/demo runs): the counter's CLI does not import the harness.

Exit status: 0 ok; 2 bad configuration or not enrolled (message on stderr says what to do);
``edge status``: 0 online, 1 offline (the daemon answers, the centre does not), 3 the daemon does not answer
or its installation token (``api.token``) cannot be read.
"""

from __future__ import annotations

import json
import sys


def register(sub) -> None:
    p = sub.add_parser("run", help="run the counter daemon (card watcher, local API and page, uplink)",
                       description="Run the counter daemon until SIGTERM or Ctrl-C. The counter page and API are "
                                   "served on 127.0.0.1 only (see docs/counter.md).")
    p.add_argument("--config", metavar="edge.toml", help="TOML configuration (every key optional; see docs/counter.md)")
    p.add_argument("--state-dir", help="state directory (overrides state_dir in the config)")
    p.add_argument("--port", type=int, help="API port on 127.0.0.1 (overrides counter.port; 0 = any free port)")
    p.add_argument("--simulated-card", action="store_true",
                   help="demo only: no card reader; identities are put in through the API (labelled 模拟读卡)")
    p.set_defaults(func=run)

    p = sub.add_parser("status", help="ask the running daemon: online/offline, backlog, cache versions and ages",
                       description="Print the running daemon's status (GET /api/status on 127.0.0.1).")
    p.add_argument("--config", metavar="edge.toml", help="configuration, to find the port")
    p.add_argument("--url", help="the daemon's URL (default http://127.0.0.1:<counter.port>)")
    p.add_argument("--state-dir", help="state directory holding api.token (overrides state_dir in the config)")
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.set_defaults(func=status)


def _config(args):
    import dataclasses
    from pathlib import Path

    from edge import config

    cfg = config.load(getattr(args, "config", None))
    if getattr(args, "state_dir", None):
        cfg = dataclasses.replace(cfg, state_dir=Path(args.state_dir))
    if getattr(args, "port", None) is not None:
        cfg = dataclasses.replace(cfg, counter=dataclasses.replace(cfg.counter, port=args.port))
    if getattr(args, "simulated_card", False):
        cfg = dataclasses.replace(cfg, card=dataclasses.replace(cfg.card, simulated=True))
    return cfg


def run(args) -> int:
    import trio

    from edge import daemon, logs
    from edge.config import ConfigError

    try:
        cfg = _config(args)
    except ConfigError as exc:
        print(f"edge run: {exc.message}", file=sys.stderr)
        return 2
    logs.setup(cfg.log.level, json_lines=cfg.log.json)

    def ready(running) -> None:
        print(f"counter page: {running.url}/", flush=True)

    try:
        trio.run(partial_run(daemon.run_until_signal, cfg, ready))
    except BaseException as exc:      # noqa: BLE001 - start-up failures come wrapped in nursery groups
        found = _start_failure(exc)
        if found is None:
            raise
        if isinstance(found, OSError):
            print(f"edge run: cannot listen on {cfg.counter.host}:{cfg.counter.port} ({found.strerror}): another "
                  "program uses the port; stop it or set counter.port in the config", file=sys.stderr)
        else:
            print(f"edge run: {found.message}", file=sys.stderr)
        return 2
    return 0


def _start_failure(exc: BaseException):
    """The DaemonError (or the listening socket's OSError) inside a possibly nested exception group."""
    from edge.daemon import DaemonError

    if isinstance(exc, (DaemonError, OSError)):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            found = _start_failure(sub)
            if found is not None:
                return found
    return None


def partial_run(fn, cfg, ready):
    async def main():
        await fn(cfg, on_ready=ready)
    return main


def status(args) -> int:
    import httpx

    from edge.config import ConfigError

    try:
        cfg = _config(args)
    except ConfigError as exc:
        print(f"edge status: {exc.message}", file=sys.stderr)
        return 2
    url = (args.url or f"http://127.0.0.1:{cfg.counter.port}").rstrip("/")
    from edge.counter.auth import read_token

    token = read_token(cfg.state_dir)     # the installation token: run as the counter's user (docs/counter.md)
    try:
        r = httpx.get(url + "/api/status", timeout=5, trust_env=False,
                      headers={"Authorization": f"Bearer {token}"} if token else {})
        if r.status_code == 401:
            print(f"edge status: the daemon at {url} answers but wants its installation token, which could not be "
                  f"read from {cfg.state_dir}/api.token: run as the counter's user, with --config or --state-dir "
                  "naming its state directory", file=sys.stderr)
            return 3
        s = r.json()
    except (httpx.HTTPError, ValueError) as exc:
        print(f"edge status: the daemon does not answer at {url} ({exc.__class__.__name__}); is `edge run` running?",
              file=sys.stderr)
        return 3
    if args.json:
        print(json.dumps(s, ensure_ascii=False, indent=2))
    else:
        print(status_text(s))
    return 0 if s["online"] else 1


def status_text(s: dict) -> str:
    """The status in words: an empty backlog, a cache never refreshed, no bundles are said, never printed as None."""
    b = s.get("backlog")
    lines = [f"device {s['device']}: {'ONLINE' if s['online'] else 'OFFLINE'}"
             f"{' (last error: ' + s['last_error'] + ')' if s.get('last_error') else ''}"]
    clock = s.get("clock")
    if clock:
        # Nothing settles offline until the PC clock is fixed: said first, in the clerk's words too.
        lines.append(f"CLOCK FAULT ({clock.get('code')}): {clock.get('detail')}")
        lines.append(f"时钟错误：{clock.get('zh')}")
    if b is None:
        lines.append("backlog: unknown (the journal cannot be read)")
    elif not b["count"]:
        lines.append("backlog: empty (everything was sent)")
    else:
        oldest = "unknown" if b.get("oldest_age_s") is None else f"{b['oldest_age_s']} s"
        lines.append(f"backlog: {b['count']} entries, {b['bytes']} bytes, oldest {oldest}")
    age = s["cache"]["age_s"]
    bundles = ", ".join(f"{k} v{v['version']} ({v['age_s']} s)" for k, v in sorted(s["cache"]["bundles"].items()))
    lines.append(f"cache: refreshed {'never' if age is None else str(age) + ' s ago'}; "
                 f"{bundles or 'no bundles yet'}")
    lines.append(f"journal: {'ok' if s['journal']['ok'] else 'NOT WRITABLE: ' + json.dumps(s['journal']['error'])}")
    return "\n".join(lines)

