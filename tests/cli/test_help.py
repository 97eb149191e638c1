"""`kopilka --help` lists every registered command and subcommand, one line each with its
description; `kopilka replay --help` lists raw and events."""

from __future__ import annotations

import argparse
import re

import pytest

from kopilka.cli import main as cli
from kopilka.cli.help import command_tree, install


def _help(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as done:
        cli.main([*argv, "--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


def _registered(parser: argparse.ArgumentParser, prefix: str = "") -> list[str]:
    """Every command path the parsers accept, found independently of cli_help."""
    paths = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                paths.append(prefix + name)
                paths += _registered(sub, f"{prefix}{name} ")
    return paths


# "  replay events            loyalty.events into ...": the path, its aliases, 2+ spaces, the text
_LINE = re.compile(r"  (\S+(?: \S+)*?)(?: \(([^)]*)\))?  +(\S.*)")


def test_every_registered_command_is_a_line_of_the_help_with_its_description(capsys):
    shown, aliases = {}, set()
    for line in _help(capsys).splitlines():
        if match := _LINE.fullmatch(line):
            shown[match[1]] = match[3]
            aliases |= {
                f"{match[1].rpartition(' ')[0]} {a}".strip()
                for a in (match[2] or "").split(", ")
                if a
            }
    registered = _registered(cli.parser())
    assert len(registered) > 30
    for path in registered:
        if path in aliases:
            continue
        assert path in shown, f"`kopilka --help` has no line for `kopilka {path}`"
        assert len(shown[path].split()) >= 2, f"`kopilka {path}` has no description"


def test_the_commands_operators_need_are_there(capsys):
    text = _help(capsys)
    for path in (
        "run",
        "worker",
        "ingest",
        "dispatch",
        "migrate",
        "replay raw",
        "replay events",
        "dead-letters redrive",
        "reconcile",
        "endpoints add",
        "deliveries redeliver",
        "tenants create",
    ):
        assert f"\n  {path} " in text, path


def test_replay_help_lists_raw_and_events(capsys):
    text = _help(capsys, "replay")
    assert "raw" in text and "events" in text
    assert "through normalize again" in text and "into the read model" in text


def test_a_command_registered_without_a_description_is_caught():
    p = argparse.ArgumentParser(prog="x")
    sub = p.add_subparsers(dest="command")
    sub.add_parser("described", help="does a thing")
    sub.add_parser("bare")
    tree = dict(command_tree(p))
    assert tree == {"described": "does a thing", "bare": ""}
    assert all(text for _, text in command_tree(cli.parser())), [
        path for path, text in command_tree(cli.parser()) if not text
    ]
    assert "  bare" in install(p).format_help()
