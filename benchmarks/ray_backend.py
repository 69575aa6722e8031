"""``backend="ray"`` against the process backend and against Ray Data, on a local cluster.

One local Ray cluster serves every variant; the variants run interleaved and each
figure is the median of several repeats. The cluster counts 4 CPUs on this 2-core
machine (``ray.init(num_cpus=4)``): the ray backend keeps its 2 actors between runs,
as the README says, and they hold their CPUs while idle, so Ray Data's 2 need 2 more
in Ray's accounting; only one of the two runs at a time.

1. images (W3): JPEG decode and resize to 224x224, float32, on 2 workers:
   ``from_iterable(paths).map(load, workers=2, backend=...)`` for ``"process"`` and
   ``"ray"``, against Ray Data's own ``from_items(paths).map_batches(decode_batch,
   concurrency=2, batch_size=8)`` iterated as numpy batches.
2. logs (W4): access-log lines parsed by the README's ``parse_record``, as the README
   writes it (``text_lines(path).map(parse_record, on_error="skip", workers=2,
   backend=...)``), against ``ray.data.read_text(path).map_batches(parse_batch,
   concurrency=2)``.
3. costs: what a task costs the consumer's thread on the ray backend (a no-op with
   ``chunk_size=1``: tasks per second), and the time from a run's start to its first
   element, for a new pipeline (its actors start) and for a later run of the same
   one (its kept actors), from which the scaling estimate in BENCHMARKS.md is worked
   out.

    .venv/bin/python benchmarks/ray_backend.py [--quick]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import ray
import ray.data

import headrace as hr

sys.path.insert(0, str(Path(__file__).parent))
from parallel import (  # the shared workloads of benchmarks/parallel.py
    drain,
    interleaved,
    load,
    make_jpegs,
    parse_record,
    total,
    write_log,
)


def decode_batch(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Ray Data's map_batches function: the same ``load`` on each path of a batch."""
    return {"image": np.stack([load(Path(p)) for p in batch["path"]])}


def parse_batch(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Ray Data's map_batches function: ``parse_record`` on each line, bad ones dropped."""
    kept = []
    for line in batch["text"]:
        try:
            kept.append(parse_record(str(line)))
        except hr.ParseError:
            continue
    return {"status": np.array([r["status"] for r in kept])}


def ray_data_rows(dataset: Any) -> int:
    return sum(len(next(iter(b.values()))) for b in dataset.iter_batches(batch_format="numpy"))


def bench_images(folder: Path, count: int, repeats: int) -> None:
    paths = make_jpegs(folder, count)
    source = hr.from_iterable(paths)
    on = {backend: source.map(load, workers=2, backend=backend) for backend in ("process", "ray")}
    items = ray.data.from_items([{"path": str(p)} for p in paths])
    variants = {
        "process backend, 2 workers": lambda: drain(on["process"]),
        "ray backend, 2 actors": lambda: drain(on["ray"]),
        "Ray Data map_batches, concurrency 2": lambda: ray_data_rows(
            items.map_batches(decode_batch, batch_size=8, concurrency=2)
        ),
    }
    assert drain(on["ray"]) == drain(on["process"]) == count
    times, others = interleaved(variants, repeats)
    for pipeline in on.values():
        pipeline.close()
    report(f"images: {count} JPEGs decoded and resized to 224x224 float32", count, times)
    print(f"  ({total(others)})")


def bench_logs(folder: Path, lines: int, repeats: int) -> None:
    path = folder / "access.log"
    write_log(path, lines)
    logging.getLogger("headrace").setLevel(logging.ERROR)  # the skip summaries
    parsed = {
        backend: hr.text_lines(str(path)).map(
            parse_record, on_error="skip", workers=2, backend=backend
        )
        for backend in ("process", "ray")
    }
    text = ray.data.read_text(str(path))
    variants = {
        "process backend, 2 workers": lambda: drain(parsed["process"]),
        "ray backend, 2 actors": lambda: drain(parsed["ray"]),
        "Ray Data map_batches, concurrency 2": lambda: ray_data_rows(
            text.map_batches(parse_batch, concurrency=2)
        ),
    }
    assert drain(parsed["ray"]) == drain(parsed["process"])
    times, others = interleaved(variants, repeats)
    for pipeline in parsed.values():
        pipeline.close()
    report(f"logs: {lines:,} access-log lines parsed", lines, times)
    print(f"  ({total(others)})")


def bench_costs(repeats: int) -> None:
    tasks = 2000
    noop = hr.range(tasks).map(int, workers=2, backend="ray", chunk_size=1)
    seconds = statistics.median(_timed(lambda: drain(noop)) for _ in range(repeats))
    noop.close()
    starts: dict[str, list[float]] = {"new": [], "kept": []}
    for _ in range(repeats):
        pipeline = hr.range(10).map(int, workers=2, backend="ray")
        for kind in ("new", "kept"):  # the first run starts actors, the next keeps them
            begin = time.perf_counter()
            with pipeline.iter() as run:
                next(run)
            starts[kind].append(time.perf_counter() - begin)
        pipeline.close()
    print(
        f"costs: a task of one element costs the consumer {1e3 * seconds / tasks:.2f} ms "
        f"({tasks / seconds:,.0f} tasks/s with 2 actors); a run's start to its first "
        f"element: {statistics.median(starts['new']):.3f} s with 2 actors started, "
        f"{1e3 * statistics.median(starts['kept']):.1f} ms on kept actors"
    )


def _timed(call: Any) -> float:
    begin = time.perf_counter()
    call()
    return time.perf_counter() - begin


def report(title: str, count: int, times: dict[str, float]) -> None:
    base = times["process backend, 2 workers"]
    print(title)
    for name, seconds in times.items():
        print(
            f"  {name:38s} {seconds:7.2f} s  {count / seconds:10,.0f}/s  "
            f"x{base / seconds:.2f} of the process backend"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes")
    args = parser.parse_args()
    images, lines, repeats = (64, 100_000, 3) if args.quick else (256, 400_000, 5)
    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    try:
        with tempfile.TemporaryDirectory() as scratch:
            bench_images(Path(scratch), images, repeats)
            bench_logs(Path(scratch), lines, repeats)
        bench_costs(repeats)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
