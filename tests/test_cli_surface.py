"""Every command of both CLIs has help text and is documented (sqlite-utils' tests/test_docs.py idea)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

import edge.cli
import sync.centre.cli

ROOT = Path(__file__).resolve().parents[1]
DOCS = "\n".join(p.read_text(encoding="utf-8") for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])


def walk(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield prefix + (name,), helps.get(name), sub
                yield from walk(sub, prefix + (name,))


COMMANDS = [("edge", *path, help_) for path, help_, _ in walk(edge.cli.build_parser())] + \
           [("centre", *path, help_) for path, help_, _ in walk(sync.centre.cli.build_parser())]


def test_both_clis_have_their_core_commands():
    names = {c[:2] for c in COMMANDS}
    for must in [("edge", "settle-case"), ("edge", "run"), ("edge", "journal"), ("edge", "enroll"),
                 ("edge", "diagnose"), ("centre", "run"), ("centre", "publish"), ("centre", "report")]:
        assert must in names


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c[:-1]) for c in COMMANDS])
def test_command_has_help_and_is_documented(command):
    *path, help_ = command
    assert help_ and help_.strip(), f"{' '.join(path)} has no help text"
    # Documented: the command line as typed appears somewhere in the README or docs/.
    assert f"{path[0]} {' '.join(path[1:])}" in DOCS or f"`{path[-1]}`" in DOCS, \
        f"`{' '.join(path)}` is not mentioned in README.md or docs/*.md"
