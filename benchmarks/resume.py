"""Time to the first batch of a resumed run, early and late in an epoch: seek against replay.

Two pipelines over 10,000,000 elements, batched by 256 (39,062 batches an epoch):

- seekable: ``range -> map -> random_map -> batch``: every stage maps its output count
  to its input count, so a resumed run opens the source at the saved element;
- replayed: the same with a ``filter`` that keeps every element, which hides the count
  (a filter's outputs do not tell its inputs), so a resumed run computes the epoch
  again up to the saved batch and drops it.

For states taken after ``--positions`` batches (10, 1,000 and 10,000 by default), each
resumed ``--repeats`` times, it prints the median time from ``iter(state=...)`` to the
first batch and the ratio of replay to seek. Seeking should not grow with the
position; replaying grows with it (about 3.4 s per 1,000 batches here: random_map
makes a generator per element), so late positions take minutes.

    .venv/bin/python benchmarks/resume.py [--repeats 3] [--positions 10 1000 10000]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np

import headrace as hr

N = 10_000_000
BATCH = 256
POSITIONS = (10, 1_000, 10_000)


def double(x: int) -> int:
    return 2 * x


def jitter(x: int, rng: np.random.Generator) -> float:
    return x + rng.random()


def keep(x: float) -> bool:
    return True


def seekable() -> hr.Pipeline[Any]:
    return hr.range(N).map(double).random_map(jitter, seed=0).batch(BATCH)


def replayed() -> hr.Pipeline[Any]:
    return hr.range(N).map(double).filter(keep).random_map(jitter, seed=0).batch(BATCH)


def first_batch(pipeline: hr.Pipeline[Any], state: dict[str, Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    with pipeline.iter(state=state) as run:
        batch = next(run)
    return time.perf_counter() - start, batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--positions", type=int, nargs="+", default=list(POSITIONS))
    args = parser.parse_args()
    print(f"range({N:,}) -> map -> random_map -> batch({BATCH}); time to the first batch")
    print(f"  {'resumed after':>14} {'seek s':>9} {'replay s':>9} {'replay/seek':>12}")
    for position in args.positions:
        times: dict[str, list[float]] = {"seek": [], "replay": []}
        batches = {}
        for _ in range(args.repeats):
            for name, make in (("seek", seekable), ("replay", replayed)):
                pipeline = make()
                state = {**_state_of(pipeline), "position": position}
                seconds, batch = first_batch(pipeline, state)
                times[name].append(seconds)
                batches[name] = batch
        if not np.array_equal(batches["seek"], batches["replay"]):
            raise SystemExit(f"after {position} batches the two resumed runs differ")
        seek, replay = (statistics.median(times[name]) for name in ("seek", "replay"))
        print(f"  {position:>14,} {seek:9.4f} {replay:9.3f} {replay / seek:11.0f}x")


def _state_of(pipeline: hr.Pipeline[Any]) -> dict[str, Any]:
    with pipeline.iter(epoch=0) as run:
        next(run)
        return run.state()


if __name__ == "__main__":
    main()
