# SPDX-License-Identifier: GPL-2.0-only
"""Every subcommand and every option of every subcommand says what it is for in --help."""

import argparse

from uffdprobe.cli.main import build_parser


def _walk(parser: argparse.ArgumentParser, path: str):
    """(where, what) for every subcommand and option lacking help text, down through every subparser."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            described = {choice.dest: choice.help for choice in action._choices_actions}
            for name, child in action.choices.items():
                if not (described.get(name) or "").strip():
                    yield f"{path} {name}", "subcommand"
                yield from _walk(child, f"{path} {name}")
        elif action.help != argparse.SUPPRESS and not (action.help or "").strip():
            yield path, "/".join(action.option_strings) or action.dest


def test_every_option_and_subcommand_has_help():
    missing = list(_walk(build_parser(), "uffdprobe"))
    assert not missing, "no help text: " + ", ".join(f"{where}: {what}" for where, what in missing)


def test_the_walk_finds_a_missing_help():
    """The walk itself notices an option and a subcommand without help (the test above can fail)."""
    parser = argparse.ArgumentParser(prog="x")
    sub = parser.add_subparsers()
    sub.add_parser("quiet").add_argument("--silent")
    sub.add_parser("loud", help="says").add_argument("--said", help="what")
    assert sorted(_walk(parser, "x")) == [("x quiet", "--silent"), ("x quiet", "subcommand")]
