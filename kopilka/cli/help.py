"""`kopilka --help`: every command and subcommand on one line each, read from the parsers.

The list is generated from what kopilka/cli/main.py and the other modules of kopilka/cli/
register, so a command added anywhere shows up in the help without anyone editing a docstring
(and a command registered without a `help=` is caught by tests/cli/test_help.py).
"""

from __future__ import annotations

import argparse


def _subcommands(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def command_tree(parser: argparse.ArgumentParser, prefix: str = "") -> list[tuple[str, str]]:
    """(command path, its help) of every command, each followed by its subcommands, in the
    order they were registered; a command's aliases follow its name in parentheses."""
    sub = _subcommands(parser)
    if sub is None:
        return []
    helps = {choice.dest: choice.help or "" for choice in sub._choices_actions}
    out: list[tuple[str, str]] = []
    names: dict[int, list[str]] = {}  # parser -> its name, then its aliases
    for name, parser_ in sub.choices.items():
        names.setdefault(id(parser_), []).append(name)
    for name, *aliases in names.values():  # (a command without help= has no choice action)
        shown = f"{prefix}{name}" + (f" ({', '.join(aliases)})" if aliases else "")
        out.append((shown, helps.get(name, "")))
        out += command_tree(sub.choices[name], f"{prefix}{name} ")
    return out


def epilog(parser: argparse.ArgumentParser) -> str:
    """The commands section of `kopilka --help`."""
    rows = command_tree(parser)
    width = max(len(path) for path, _ in rows) + 2
    lines = [f"  {path:<{width}}{text}" for path, text in rows]
    return "commands (`kopilka COMMAND --help` for its options):\n" + "\n".join(lines)


def install(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """List every command in the parser's help (call once every command is registered)."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter  # the list as written
    parser.epilog = epilog(parser)
    return parser
