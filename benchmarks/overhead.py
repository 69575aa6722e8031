"""Per-element overhead of headrace against the same chain written by hand.

Runs ``map -> filter -> batch(256)`` over 2,000,000 ints three ways in one process:

- baseline: builtin ``map``/``filter`` and an ``islice`` batching loop that collates
  each batch with ``np.asarray``, the fastest plain-Python equivalent;
- headrace: ``hr.range(n).map(f).filter(p).batch(256)``, as runs start by default:
  with per-stage statistics (counts, and a thread sampling the stacks);
- headrace with ``iter(stats=False)``: statistics off entirely.

Each variant runs ``--repeats`` times, interleaved so drift on a noisy machine hits all
of them alike; the medians and their ratios to the baseline are printed.

    python benchmarks/overhead.py [--n 2000000] [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterator
from itertools import islice

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
    parser.add_argument("--repeats", type=int, default=7)
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

    base = statistics.median(times["hand-written generators"])
    print(
        f"map -> filter -> batch({args.size}) over {args.n:,} ints, median of {args.repeats} runs"
    )
    for name, samples in times.items():
        median = statistics.median(samples)
        print(
            f"  {name:<26} {median:7.3f} s   ratio {median / base:5.2f}x   "
            f"{1e9 * (median - base) / args.n:+6.1f} ns/element"
        )
    ratio = statistics.median(times["headrace"]) / base
    off = statistics.median(times["headrace, stats off"]) / base
    print(
        f"headrace overhead ratio: {ratio:.3f} (target <= 1.25); statistics cost {ratio / off:.3f}x"
    )


if __name__ == "__main__":
    main()
