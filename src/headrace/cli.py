"""The ``headrace`` command line.

Exit codes: 0 success, 1 failure, 2 usage error. Failures print one line; ``--debug``
(before or after the command) prints the traceback too, and keeps the exit code.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import traceback
from collections.abc import Sequence
from pathlib import Path

import headrace

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

    demo = commands.add_parser(
        "demo",
        help="stream built-in logs and images through multi-stage pipelines and report",
        description=(
            "Write gzip-compressed web-server logs, stream them through "
            "files -> interleave(text_lines) -> parse -> filter -> features -> shuffle -> "
            "batch; then write a folder of labelled JPEG and PNG images and stream it "
            "through image_folder -> decode/resize on 2 threads -> augment -> shuffle -> "
            "batch. Print throughput and what each stage did."
        ),
    )
    demo.add_argument("--lines", type=_positive, default=200_000, help="log lines (200000)")
    demo.add_argument("--shards", type=_positive, default=8, help="gzip files (8)")
    demo.add_argument("--batch-size", type=_positive, default=256, help="batch size (256)")
    demo.add_argument("--epochs", type=_positive, default=1, help="epochs to run (1)")
    demo.add_argument(
        "--images", type=_count, default=600, help="images to write; 0 leaves them out (600)"
    )
    demo.add_argument("--seed", type=int, default=0, help="seed for data and shuffling (0)")
    demo.add_argument(
        "--data-dir",
        type=Path,
        help="write the logs here and keep them (default: a temporary folder, removed after)",
    )

    demo.add_argument("--no-progress", action="store_true", help="no progress lines")

    from headrace.inspecting import add_inspect_command
    from headrace.running import add_commands

    add_commands(commands)
    add_inspect_command(commands)
    # --debug is read before or after the command (``headrace run x:p --debug``); given
    # after it, it must not reset the value given before.
    for command in commands.choices.values():
        command.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=_DEBUG_HELP
        )
    return parser


def _positive(text: str) -> int:
    return _integer(text, 1)


def _count(text: str) -> int:
    return _integer(text, 0)


def _integer(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
    return value


def _demo(args: argparse.Namespace) -> int:
    if args.data_dir is not None:
        _run_demos(args, args.data_dir)
    else:
        with tempfile.TemporaryDirectory(prefix="headrace-demo-") as folder:
            _run_demos(args, Path(folder))
    return 0


def _run_demos(args: argparse.Namespace, folder: Path) -> None:
    from headrace.demo import run_demo, run_image_demo

    run_demo(
        folder,
        lines=args.lines,
        shards=args.shards,
        batch_size=args.batch_size,
        epochs=args.epochs,
        seed=args.seed,
        progress=not args.no_progress,
    )
    if args.images:
        print()
        run_image_demo(
            folder / "images", images=args.images, seed=args.seed, progress=not args.no_progress
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        if args.command == "inspect":
            from headrace.inspecting import inspect_command

            return inspect_command(args)
        if args.command in ("run", "bench"):
            from headrace.running import bench_command, run_command

            return run_command(args) if args.command == "run" else bench_command(args)
        return _demo(args)
    except KeyboardInterrupt:
        print("headrace: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of the output has gone (``| head``): not a failure. Standard
        # output goes to /dev/null so that the flush at exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as error:
        from headrace.running import TargetError

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
