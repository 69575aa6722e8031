"""The ``headrace`` command line.

Exit codes: 0 success, 1 failure, 2 usage error. Failures print one line; ``--debug``
(before or after the command) prints the traceback too, and keeps the exit code.

This module holds the top-level parser and :func:`main`; each subcommand's options and
what it does are a module of this package: :mod:`~headrace.cli.demo` (``demo``),
:mod:`~headrace.cli.targets` (``run`` and ``bench``) and :mod:`~headrace.cli.inspect`
(``inspect``), their value types :mod:`~headrace.cli.args`.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence

import headrace
from headrace.cli.demo import add_demo_command, demo_command
from headrace.cli.inspect import add_inspect_command, inspect_command
from headrace.cli.targets import TargetError, add_target_commands, bench_command, run_command

__all__ = ["main", "run"]

_DEBUG_HELP = "on failure, print the traceback as well (the exit code stays the same)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="headrace",
        description=(
            "Stream datasets bigger than memory through generator stages into training "
            "loops. Run 'headrace demo' to see a pipeline at work."
        ),
    )
    parser.add_argument("--version", action="version", version=f"headrace {headrace.__version__}")
    parser.add_argument("--debug", action="store_true", help=_DEBUG_HELP)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    add_demo_command(commands)
    add_target_commands(commands)
    add_inspect_command(commands)
    # --debug is read before or after the command (``headrace run x:p --debug``); given
    # after it, it must not reset the value given before.
    for command in commands.choices.values():
        command.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=_DEBUG_HELP
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        if args.command == "inspect":
            return inspect_command(args)
        if args.command in ("run", "bench"):
            return run_command(args) if args.command == "run" else bench_command(args)
        return demo_command(args)
    except KeyboardInterrupt:
        print("headrace: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of the output has gone (``| head``): not a failure. Standard
        # output goes to /dev/null so that the flush at exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as error:
        if args.debug:
            traceback.print_exc()

        # The note headrace adds names the stage and the element: keep it on the line.
        notes = [
            note.removeprefix("headrace: ")
            for note in getattr(error, "__notes__", ())
            if isinstance(note, str) and note.startswith("headrace: raised in")
        ]
        where = f" ({notes[0]})" if notes else ""
        print(f"headrace {args.command}: error: {error}{where}", file=sys.stderr)
        return 2 if isinstance(error, TargetError) else 1


def run() -> None:
    """Entry point of the console script."""
    sys.exit(main())
