"""The ``centre`` command line: assembles the command groups in ``sync/centre/commands/``."""

from __future__ import annotations

import argparse
import importlib
import sys

GROUPS = ("core", "review")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="centre", description="City centre: ingest, publish, reconcile, review.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for group in GROUPS:
        importlib.import_module(f"sync.centre.commands.{group}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
