"""The ``edge`` command line: a thin layer over the library.

Each command group lives in ``edge/commands/<group>.py`` with a ``register(subparsers)`` function;
this module only assembles them, so a group can grow without touching the others.
"""

from __future__ import annotations

import argparse
import importlib
import sys

GROUPS = ("settle", "journal", "card", "sync", "daemon", "diagnose")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge", description="Offline-first settlement agent for the clinic or pharmacy counter.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for group in GROUPS:
        importlib.import_module(f"edge.commands.{group}").register(sub)
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
