"""The ``edge`` command line: a thin layer over the library (groups in ``edge/commands/``)."""

from __future__ import annotations

import argparse
import sys

from edge.commands import card, daemon, diagnose, journal, operators, prices, settle, sync
from sync import cligroups

GROUPS = (settle, journal, card, sync, daemon, diagnose, prices, operators)


def build_parser() -> argparse.ArgumentParser:
    return cligroups.build_parser("edge", "Offline-first settlement agent for the clinic or pharmacy counter.",
                                  GROUPS)


def main(argv: list[str] | None = None) -> int:
    return cligroups.run(build_parser(), argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
