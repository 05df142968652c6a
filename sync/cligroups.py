"""Assemble a command line from group modules, each with ``register(subparsers)``.

Both CLIs (``edge`` and ``centre``) are thin layers made this way, so a command group can grow
without touching the others. The groups are passed as modules, imported plainly by each CLI, so the
layer contracts see every import (no module named by a string).
"""

from __future__ import annotations

import argparse
from types import ModuleType


def build_parser(prog: str, description: str, groups: tuple[ModuleType, ...]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for group in groups:
        group.register(sub)
    return parser


def run(parser: argparse.ArgumentParser, argv: list[str] | None) -> int:
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)
