"""The ``centre`` command line: a thin layer over the library (groups in ``sync/centre/commands/``)."""

from __future__ import annotations

import argparse
import sys

from sync import cligroups
from sync.centre.commands import backup, cancel, core, ectoken, review

GROUPS = (core, review, ectoken, backup, cancel)


def build_parser() -> argparse.ArgumentParser:
    return cligroups.build_parser("centre", "City centre: ingest, publish, reconcile, review.",
                                  GROUPS)


def main(argv: list[str] | None = None) -> int:
    return cligroups.run(build_parser(), argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
