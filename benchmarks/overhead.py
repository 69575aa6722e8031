"""Per-element overhead of headrace against the same chain written by hand.

Runs ``map -> filter -> batch(256)`` over 2,000,000 ints three ways in one process:

- baseline: builtin ``map``/``filter`` and an ``islice`` batching loop that collates
  each batch with ``np.asarray``, the fastest plain-Python equivalent;
- headrace: ``hr.range(n).map(f).filter(p).batch(256)``, as runs start by default:
  with per-stage statistics (counts, and a thread sampling the stacks);
- headrace with ``iter(stats=False)``: statistics off entirely.

Each round runs every variant once, back to back, and ``--repeats`` rounds are run. A
variant's ratio is the median, over the rounds, of its time divided by the baseline's
time in the same round (with the quartiles): on a shared machine whose speed drifts
from second to second (the pure-Python baseline alone took from 0.35 to 0.66 s
in one day here), pairing each run with its neighbour cancels the drift that comparing medians
of separate series does not.

    python benchmarks/overhead.py [--n 2000000] [--repeats 15]

The figures are for the installed headrace, or the one ``PYTHONPATH`` points at: run
the same script against two checkouts to compare them.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path

import numpy as np

import headrace as hr


def double(x: int) -> int:
    return x * 2


def keep(x: int) -> bool:
    return x % 3 != 0


def baseline(n: int, size: int) -> Iterator[np.ndarray]:
    items = filter(keep, map(double, range(n)))
    while True:
        chunk = list(islice(items, size))
        if not chunk:
            return
        yield np.asarray(chunk)


def consume(batches: Iterator[np.ndarray]) -> int:
    total = 0
    for b in batches:
        total += len(b)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2_000_000)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()

    pipeline = hr.range(args.n).map(double).filter(keep).batch(args.size)
    variants: dict[str, Callable[[], Iterator[np.ndarray]]] = {
        "hand-written generators": lambda: baseline(args.n, args.size),
        "headrace": lambda: iter(pipeline),
        "headrace, stats off": lambda: pipeline.iter(stats=False),
    }
    expected = consume(baseline(args.n, args.size))
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, make in variants.items():
            start = time.perf_counter()
            count = consume(make())
            times[name].append(time.perf_counter() - start)
            if count != expected:
                raise SystemExit(f"{name} produced {count} elements, expected {expected}")

    base_times = times["hand-written generators"]
    print(
        f"map -> filter -> batch({args.size}) over {args.n:,} ints, {args.repeats} rounds "
        f"(headrace {hr.__version__} from {Path(hr.__file__).parent})"
    )
    print(f"  {'':<26} {'median':>8}   ratio to the baseline in the same round")
    ratios: dict[str, float] = {}
    for name, samples in times.items():
        paired = sorted(t / b for t, b in zip(samples, base_times, strict=True))
        ratios[name] = statistics.median(paired)
        quartiles = f"{paired[len(paired) // 4]:.2f} to {paired[3 * len(paired) // 4]:.2f}"
        print(
            f"  {name:<26} {statistics.median(samples):7.3f}s   {ratios[name]:.3f}x "
            f"(quartiles {quartiles})"
        )
    on, off = ratios["headrace"], ratios["headrace, stats off"]
    print(f"headrace overhead ratio: {on:.3f} (target <= 1.2); statistics cost {on / off:.3f}x")


if __name__ == "__main__":
    main()
