"""The ``headrace`` command line.

Exit codes: 0 success, 1 failure, 2 usage error. Failures print one line; ``--debug``
prints the traceback too.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import headrace

__all__ = ["main", "run"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="headrace",
        description=(
            "Stream datasets bigger than memory through generator stages into training "
            "loops. Run 'headrace demo' to see a pipeline at work."
        ),
    )
    parser.add_argument("--version", action="version", version=f"headrace {headrace.__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on failure")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="stream built-in log data through a multi-stage pipeline and report",
        description=(
            "Write gzip-compressed web-server logs, stream them through "
            "files -> interleave(text_lines) -> parse -> filter -> features -> shuffle -> "
            "batch, and print throughput and what each stage did."
        ),
    )
    demo.add_argument("--lines", type=_positive, default=200_000, help="log lines (200000)")
    demo.add_argument("--shards", type=_positive, default=8, help="gzip files (8)")
    demo.add_argument("--batch-size", type=_positive, default=256, help="batch size (256)")
    demo.add_argument("--epochs", type=_positive, default=1, help="epochs to run (1)")
    demo.add_argument("--seed", type=int, default=0, help="seed for data and shuffling (0)")
    demo.add_argument(
        "--data-dir",
        type=Path,
        help="write the logs here and keep them (default: a temporary folder, removed after)",
    )
    return parser


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _demo(args: argparse.Namespace) -> int:
    from headrace.demo import run_demo

    options = {
        "lines": args.lines,
        "shards": args.shards,
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "seed": args.seed,
    }
    if args.data_dir is not None:
        run_demo(args.data_dir, **options)
    else:
        with tempfile.TemporaryDirectory(prefix="headrace-demo-") as folder:
            run_demo(Path(folder), **options)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return _demo(args)
    except KeyboardInterrupt:
        print("headrace: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if args.debug:
            raise
        print(f"headrace {args.command}: error: {error}", file=sys.stderr)
        return 1


def run() -> None:
    """Entry point of the console script."""
    sys.exit(main())
