"""``headrace inspect PATH``: the options, the help, and the report printed.

What the report holds, and reading the files for it, is :mod:`headrace.inspecting`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any

from headrace.cli.args import nonnegative_int, positive_int
from headrace.inspecting import KINDS, format_report, inspect_path

__all__ = ["add_inspect_command", "inspect_command"]

_DESCRIPTION = """\
Tell what a dataset on disk holds and what is wrong with it. PATH is a file, a folder,
or a glob or brace pattern (quote it: 'data/*.csv', 'shard-{000..009}.tar'). Formats
go by file name: CSV (.csv, .tsv), JSON Lines (.jsonl, .ndjson, and .json files whose
first line is a whole JSON value), Parquet (.parquet, .pq), WebDataset tar shards
(.tar, .tgz), each also compressed as .gz, .bz2 or .xz; a folder is searched for such
files, or else read as an image folder (one subfolder of images per class).

The report gives the files, the record count, the columns with the types their values
would convert to (CSV), the keys with the types of their values (JSON Lines), the
schema and null counts from the file footers (Parquet, whose row counts come from the
footers too), the fields of the samples (tar), or the classes with their image counts
and the sizes and modes of a sample of decoded images; then a few records and the
problems found: files that cannot be read, malformed rows and undecodable images,
named by file and line."""

_EPILOG = """\
exit status:
  0  the data was read; the problems found, if any, are listed in the report
  1  nothing could be inspected: PATH does not exist, holds no data files, or not one
     record of it could be read
  2  usage error"""


def add_inspect_command(commands: Any) -> None:
    """Add the ``inspect`` subcommand to the ``headrace`` parser's subcommands."""
    parser = commands.add_parser(
        "inspect",
        help="tell what a dataset on disk holds (records, columns, classes) and what is wrong",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("path", metavar="PATH", help="a file, a folder, or a glob or brace pattern")
    parser.add_argument(
        "--format",
        dest="kind",
        choices=KINDS,
        help="read the files as this format, whatever their names say",
    )
    parser.add_argument(
        "--samples", type=nonnegative_int, default=3, metavar="K", help="sample records to show (3)"
    )
    parser.add_argument(
        "--limit",
        type=positive_int,
        metavar="N",
        help="stop after N records of each format (default: read everything)",
    )
    parser.add_argument(
        "--check",
        type=nonnegative_int,
        default=200,
        metavar="N",
        help="images to decode, spread over the folder; 0 decodes none (200)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the report as JSON instead of text"
    )


def inspect_command(args: argparse.Namespace) -> int:
    """Run ``headrace inspect``: print the report; return the exit code."""
    logger = logging.getLogger("headrace")
    level = logger.level
    # The readers log a summary of what they rejected; the report lists it already.
    logger.setLevel(logging.ERROR)
    try:
        report = inspect_path(
            args.path, kind=args.kind, samples=args.samples, limit=args.limit, check=args.check
        )
    finally:
        logger.setLevel(level)
    text = json.dumps(report, indent=2, ensure_ascii=False) if args.json else format_report(report)
    try:
        print(text, flush=True)
    except BrokenPipeError:
        # The reader of the output has gone (``| head``): not a failure of the inspection.
        # Standard output goes to /dev/null so that the flush at exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    problems = report["problems"] or any(part["problems"] for part in report["datasets"])
    if not any(part["records"] for part in report["datasets"]) and (
        problems or not report["datasets"]
    ):
        # Nothing read, and something in the way (empty files are not a failure).
        print(
            f"headrace inspect: error: not one record of {args.path!r} could be read "
            "(see the problems above)",
            file=sys.stderr,
        )
        return 1
    return 0
