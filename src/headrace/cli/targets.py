"""``headrace run`` and ``headrace bench``: a pipeline from the user's code, run or
timed from the command line, with progress and the per-stage report.

Both name the pipeline as a target, ``MODULE_OR_FILE:NAME``: :func:`load_target` finds
the object it names, :func:`pipeline_of` the pipeline that object is or makes, and a
target that names no pipeline is a :class:`TargetError` (a usage error: exit 2).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from headrace.cli.args import positive_int, worker_count
from headrace.pipeline import Pipeline
from headrace.stats import diagnose, format_table

__all__ = [
    "TargetError",
    "add_target_commands",
    "bench_command",
    "load_target",
    "pipeline_of",
    "run_command",
]


class TargetError(ValueError):
    """``MODULE_OR_FILE:NAME`` does not name a pipeline (a usage error: exit 2)."""


def load_target(target: str) -> Any:
    """The object ``MODULE_OR_FILE:NAME`` names: ``pipelines.py:train``,
    ``myproject.data:make_pipeline`` (``NAME`` may be dotted: ``data:Loaders.train``).

    A file is run as a module named after it, its folder first on ``sys.path`` (so it
    imports its neighbours); a module is imported from the current folder or
    ``sys.path``.
    """
    where, colon, name = target.rpartition(":")
    if not colon or not where or not name:
        raise TargetError(
            f"{target!r} is not MODULE_OR_FILE:NAME (such as pipelines.py:train or "
            "mypackage.data:make_pipeline)"
        )
    if where.endswith(".py") or Path(where).is_file():
        path = Path(where)
        if not path.is_file():
            raise TargetError(f"no such file: {where}")
        folder = str(path.resolve().parent)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        spec = importlib.util.spec_from_file_location(path.stem, path)
        if spec is None or spec.loader is None:
            raise TargetError(f"cannot load {where} as Python")
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        spec.loader.exec_module(module)
    else:
        if "" not in sys.path and "." not in sys.path:
            sys.path.insert(0, "")
        try:
            module = importlib.import_module(where)
        except ModuleNotFoundError as error:
            # The module named (or a package above it), not one it imports.
            if error.name and (where == error.name or where.startswith(error.name + ".")):
                raise TargetError(f"no module named {where!r}") from None
            raise
    found: Any = module
    for part in name.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise TargetError(f"{where} has no {name!r}") from None
    return found


def pipeline_of(found: Any, target: str, **kwargs: Any) -> Pipeline[Any]:
    """The pipeline ``found`` is, or returns when called with ``kwargs``."""
    if isinstance(found, Pipeline):
        if kwargs:
            raise TargetError(
                f"{target} is a pipeline, not a function: to try worker counts, name a "
                "function that takes workers= and returns the pipeline"
            )
        return found
    if not callable(found):
        kind = type(found).__name__
        article = "an" if kind[:1].lower() in "aeiou" else "a"
        raise TargetError(f"{target} is {article} {kind}, not a pipeline or a function")
    try:
        inspect.signature(found).bind(**kwargs)
    except TypeError:
        if not kwargs:
            raise TargetError(
                f"{target} needs arguments; name a function that needs none"
            ) from None
        names = ", ".join(f"{k}=" for k in kwargs)
        raise TargetError(f"{target} does not take {names}") from None
    except ValueError:
        pass  # no signature to check (a builtin): let the call tell
    made = found(**kwargs)
    if not isinstance(made, Pipeline):
        raise TargetError(f"{target}() returned a {type(made).__name__}, not a pipeline")
    return made


def add_target_commands(commands: Any) -> None:
    """Add ``run`` and ``bench`` to the ``headrace`` parser's subcommands."""
    target_help = (
        "MODULE_OR_FILE:NAME naming a pipeline, or a function that returns one "
        "(pipelines.py:train, mypackage.data:make_pipeline)"
    )
    run = commands.add_parser(
        "run",
        help="run a pipeline from your code with progress and the per-stage report",
        description=(
            "Iterate a pipeline defined in your code, showing progress, then print what "
            "each stage did and which one limits the throughput. Exit 0 when it ran, 1 "
            "when the pipeline failed (one line; --debug shows the traceback), 2 when "
            "the target or an option is wrong."
        ),
    )
    _arguments(run, target_help, "stop after this many elements (all)")
    run.add_argument("--epochs", type=positive_int, default=1, help="epochs to run (1)")
    run.add_argument("--no-progress", action="store_true", help="no progress line")

    bench = commands.add_parser(
        "bench",
        help="measure a pipeline's throughput, optionally for several worker counts",
        description=(
            "Time a pipeline from your code: elements per second (median of --repeats "
            "runs) and the per-stage figures of the last run. With --workers, NAME "
            "must be a function taking workers=; each count is tried and the best is "
            "named. Exit codes as for run."
        ),
    )
    _arguments(bench, target_help, "elements per timed run (a whole epoch)")
    bench.add_argument("--repeats", type=positive_int, default=3, help="timed runs each (3)")
    bench.add_argument(
        "--workers",
        type=worker_count,
        nargs="+",
        metavar="N",
        help="worker counts to try (0 1 2 4), or auto (the stage's own choice)",
    )


def _arguments(parser: argparse.ArgumentParser, target_help: str, items_help: str) -> None:
    """The arguments ``run`` and ``bench`` share."""
    parser.add_argument("target", metavar="MODULE_OR_FILE:NAME", help=target_help)
    parser.add_argument("--items", type=positive_int, help=items_help)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


def _iterate(
    pipeline: Pipeline[Any], items: int | None, *, progress: bool
) -> tuple[int, float, list[dict[str, Any]], dict[str, Any]]:
    """Run ``pipeline`` (up to ``items`` elements): the count, the seconds, and its
    per-stage rows and summary."""
    count = 0
    started = time.perf_counter()
    with pipeline.iter(progress=progress) as run:
        for _ in run:
            count += 1
            if items is not None and count >= items:
                break
        seconds = time.perf_counter() - started
        return count, seconds, run.stats(), run.summary()


def run_command(args: argparse.Namespace) -> int:
    """``headrace run``: iterate, with progress; print the report of every epoch."""
    pipeline = pipeline_of(load_target(args.target), args.target)
    reports: list[dict[str, Any]] = []
    for epoch in range(args.epochs):
        progress = not args.no_progress and not args.json
        count, seconds, rows, summary = _iterate(pipeline, args.items, progress=progress)
        verdict = diagnose(rows, summary)
        reports.append(
            {
                "epoch": epoch,
                "elements": count,
                "seconds": seconds,
                "per_second": count / seconds if seconds > 0 else 0.0,
                "stages": rows,
                "summary": summary,
                "bottleneck": verdict,
            }
        )
        if not args.json:
            print(
                f"epoch {epoch}: {count:,} elements in {seconds:.2f} s "
                f"({count / max(seconds, 1e-9):,.0f}/s)"
            )
            print(format_table(rows))
            print(f"bottleneck: {verdict['hint']}")
    if args.json:
        print(json.dumps({"pipeline": repr(pipeline), "epochs": reports}, default=str))
    return 0


def bench_command(args: argparse.Namespace) -> int:
    """``headrace bench``: elements per second, per worker count when asked."""
    found = load_target(args.target)
    choices: list[int | str | None] = list(args.workers) if args.workers else [None]
    results: list[dict[str, Any]] = []
    for workers in choices:
        kwargs = {} if workers is None else {"workers": workers}
        pipeline = pipeline_of(found, args.target, **kwargs)
        rates = []
        rows: list[dict[str, Any]] = []
        summary: dict[str, Any] = {}
        count = 0
        for _ in range(args.repeats):
            count, seconds, rows, summary = _iterate(pipeline, args.items, progress=False)
            rates.append(count / seconds if seconds > 0 else 0.0)
        results.append(
            {
                "workers": workers,
                "elements": count,
                "per_second": statistics.median(rates),
                "runs": rates,
                "stages": rows,
                "bottleneck": diagnose(rows, summary),
            }
        )
        if not args.json:
            label = "as defined" if workers is None else f"workers={workers!r}"
            print(
                f"{label}: {statistics.median(rates):,.0f} elements/s "
                f"(median of {args.repeats} runs of {count:,})"
            )
    best = max(results, key=lambda r: r["per_second"])
    if args.json:
        print(json.dumps({"target": args.target, "results": results, "best": best["workers"]}))
        return 0
    print(f"what each stage did ({'last run' if len(results) == 1 else 'best, last run'}):")
    print(format_table(best["stages"]))
    print(f"bottleneck: {best['bottleneck']['hint']}")
    if len(results) > 1:
        slowest = min(r["per_second"] for r in results)
        ratio = best["per_second"] / slowest if slowest > 0 else float("inf")
        print(
            f"best: workers={best['workers']!r} ({best['per_second']:,.0f} elements/s, "
            f"{ratio:.2f}x the slowest)"
        )
    return 0
