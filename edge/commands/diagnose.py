"""``edge diagnose``, ``edge support-bundle`` and ``edge service install|uninstall``: field-technician tools.

Thin layer over :mod:`edge.diagnose`, :mod:`edge.diagnose.bundle` and :mod:`edge.service`.
Exit status of ``edge diagnose``: 0 healthy, 1 degraded (warnings), 2 broken (a check failed).
"""

from __future__ import annotations

import sys
from pathlib import Path

EXIT_USAGE = 64


def register(sub) -> None:
    p = sub.add_parser("diagnose", help="check this counter and say what is wrong and what to do (zh-CN/English)",
                       description="Run every check (card service, readers, card, disk, device key, enrolment, "
                                   "config, journal, backlog, last sync, bundles, centre DNS/TCP/TLS/signed request, "
                                   "clock, daemon). Exit 0 healthy, 1 degraded, 2 broken. Read-only: the journal "
                                   "and cache are never changed. See docs/operations.md.")
    _common(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON (for tools)")
    p.add_argument("--lang", choices=("both", "en", "zh"), default="both", help="language of the human report")
    from edge.diagnose import NAMES

    p.add_argument("--only", action="append", metavar="CHECK",
                   help=f"run only this check (repeatable): {', '.join(NAMES)}")
    p.set_defaults(func=run_diagnose)

    b = sub.add_parser("support-bundle", help="write a tar.gz for the help desk (personal data redacted)",
                       description="Run diagnose and collect config (secrets removed), recent logs, journal "
                                   "statistics and a redacted rendering of unacknowledged entries, versions.")
    _common(b)
    b.add_argument("--out", metavar="FILE", help="where to write (default ./support-bundle-<device>-<time>.tar.gz)")
    b.add_argument("--log", action="append", default=[], metavar="FILE", help="also include this log file")
    b.set_defaults(func=run_bundle)

    s = sub.add_parser("service", help="install or uninstall the systemd service (counter-edge)",
                       description="Install or uninstall the counter-edge systemd unit, its user and state "
                                   "directory. --root DIR installs into another root (packaging, tests).")
    ssub = s.add_subparsers(dest="service_command", metavar="ACTION")
    i = ssub.add_parser("install", help="install the unit, create the user and /var/lib/counter-edge")
    i.add_argument("--root", default="/", help="install under this root directory (default /)")
    i.add_argument("--exec", dest="exec_path", help="path of the edge executable the unit runs")
    i.set_defaults(func=run_service_install)
    u = ssub.add_parser("uninstall", help="remove the unit (refuses while journal entries are unsent)")
    u.add_argument("--root", default="/", help="uninstall from this root directory (default /)")
    u.add_argument("--force", action="store_true", help="remove the unit even with unsent entries (state is kept)")
    u.set_defaults(func=run_service_uninstall)
    s.set_defaults(func=lambda args: (s.print_help(), EXIT_USAGE)[1])


def _common(p) -> None:
    p.add_argument("--state-dir", help="state directory (default $EDGE_STATE_DIR or ./var/edge; "
                                       "/var/lib/counter-edge for the service)")
    p.add_argument("--centre", metavar="URL", help="centre URL to probe (default: the enrolled one)")
    p.add_argument("--reader", help="card reader name (or a unique part of it) to test")
    p.add_argument("--daemon", metavar="URL", help="the agent's local API (default from edge.toml)")
    p.add_argument("--config", metavar="edge.toml", help="the agent's configuration (default: edge.toml in the state "
                                                         "directory)")


def _context(args):
    from edge.diagnose import Context
    from edge.diagnose._context import default_state_dir

    return Context(state_dir=Path(args.state_dir) if args.state_dir else default_state_dir(),
                   centre_url=args.centre, reader=args.reader, daemon_url=args.daemon,
                   config_file=Path(args.config) if args.config else None)


def run_diagnose(args) -> int:
    import trio

    from edge.diagnose import render_text, run

    try:
        report = trio.run(lambda: run(_context(args), only=args.only))
    except ValueError as exc:  # unknown --only names
        print(f"edge diagnose: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(report.to_json())
    else:
        print(render_text(report, lang=args.lang))
    return report.exit_code


def run_bundle(args) -> int:
    import time

    import trio

    from edge.diagnose.bundle import build_bundle

    ctx = _context(args)
    out = args.out
    if not out:
        try:  # the device id in the name tells the help desk whose bundle it is before opening it
            from edge.enrol import load_device
            who = load_device(ctx.state_dir).device + "-"
        except Exception:
            who = ""
        out = f"support-bundle-{who}{time.strftime('%Y%m%d-%H%M%S')}.tar.gz"
    try:
        summary = trio.run(lambda: build_bundle(ctx, out, log_files=[Path(p) for p in args.log]))
    except OSError as exc:
        print(f"edge support-bundle: cannot write {out}: {exc.strerror or exc}; choose another --out "
              "(e.g. a USB stick) and try again", file=sys.stderr)
        return 1
    print(f"wrote {summary.path} ({summary.bytes} bytes, diagnose: {summary.diagnose_status}, "
          f"{summary.unacknowledged} unacknowledged entries rendered); personal data redacted.")
    print(f"已生成支持包 {summary.path}（个人信息已脱敏），请发送给医保中心技术支持。")
    return 0


def run_service_install(args) -> int:
    from edge.service import ServiceError, install

    try:
        report = install(Path(args.root), exec_path=args.exec_path)
    except ServiceError as exc:
        print(f"edge service install: {exc}", file=sys.stderr)
        return 1
    for line in report:
        print(line)
    return 0


def run_service_uninstall(args) -> int:
    from edge.service import ServiceError, uninstall

    try:
        report = uninstall(Path(args.root), force=args.force)
    except ServiceError as exc:
        print(f"edge service uninstall: {exc}", file=sys.stderr)
        return 1
    for line in report:
        print(line)
    return 0
