"""``headrace demo``: the options of the built-in demo, and running it.

The demo itself, its data and its pipelines, is :mod:`headrace.demo`.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from headrace.cli.args import nonnegative_int, positive_int

__all__ = ["add_demo_command", "demo_command"]


def add_demo_command(commands: Any) -> None:
    """Add ``demo`` to the ``headrace`` parser's subcommands."""
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
    demo.add_argument("--lines", type=positive_int, default=200_000, help="log lines (200000)")
    demo.add_argument("--shards", type=positive_int, default=8, help="gzip files (8)")
    demo.add_argument("--batch-size", type=positive_int, default=256, help="batch size (256)")
    demo.add_argument("--epochs", type=positive_int, default=1, help="epochs to run (1)")
    demo.add_argument(
        "--images",
        type=nonnegative_int,
        default=600,
        help="images to write; 0 leaves them out (600)",
    )
    demo.add_argument("--seed", type=int, default=0, help="seed for data and shuffling (0)")
    demo.add_argument(
        "--data-dir",
        type=Path,
        help="write the logs here and keep them (default: a temporary folder, removed after)",
    )

    demo.add_argument("--no-progress", action="store_true", help="no progress lines")


def demo_command(args: argparse.Namespace) -> int:
    """Run ``headrace demo``: the log demo, then the image demo; return the exit code."""
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
