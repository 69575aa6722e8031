"""Seed 002, "Pushing Data through Pipelines with Coroutines", on headrace.

Reproduces the seed's generator-expression pipeline, its composed generator functions,
the three running averagers (old style, generator, itertools one-liner), the itertools
examples, the time and memory comparison, and the log-parsing demo, each next to its
headrace equivalent. Every printed result of the seed is asserted.

    python examples/seed_002_pipelines.py [--samples 10000] [--log-lines 20000]
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import math
import re
import tempfile
import timeit
import tracemalloc
from collections import Counter
from pathlib import Path

import numpy as np

import headrace as hr

EXPECTED_PIPELINE = [1, 0, -3, -8, -15, -24, -35, -48, -63, -80]
SAMPLE = [5, 4, 2, 8, 7, 6, 3, 0, 9, 1]
EXPECTED_AVERAGES = [5.0, 4.5, 3.6666666666666665, 4.75, 5.2, 5.333333333333333, 5.0,
                     4.375, 4.888888888888889, 4.5]  # fmt: skip


# --- "A Pipeline Example": the seed's code as written -------------------------------
def pipeline(number):
    data = (i for i in range(number))
    squared = (i**2 for i in data)
    negated = (-i for i in squared)
    return (n + 1 for n in negated)


def squared(iterable):
    return (i**2 for i in iterable)


def negated(iterable):
    return (-i for i in iterable)


def add_one(iterable):
    return (i + 1 for i in iterable)


def composed_pipeline(number):
    return add_one(negated(squared(range(number))))


# ... and on headrace: the same functions as stages, or the same steps as maps.
def headrace_pipeline(number: int) -> hr.Pipeline[int]:
    return hr.range(number).pipe(squared).pipe(negated).pipe(add_one)


def headrace_maps(number: int) -> hr.Pipeline[int]:
    return hr.range(number).map(lambda i: i**2).map(lambda i: -i).map(lambda n: n + 1)


# --- "A Test For Itertools": three averagers -----------------------------------------
def old_style_averager(iterable):
    total_sum = 0
    total_elements = 0
    average = []
    for number in iterable:
        total_sum += number
        total_elements += 1
        average.append(total_sum / total_elements)
    return average


def generator_averager(iterable):
    total_sum = 0
    total_elements = 0
    for number in iterable:
        total_sum += number
        total_elements += 1
        yield total_sum / total_elements


def averager(iterable):
    return itertools.starmap(lambda a, b: b / a, enumerate(itertools.accumulate(iterable), 1))


def headrace_averager(iterable) -> hr.Pipeline[float]:
    """The running average as a scan over (sum, count), then a division."""
    return (
        hr.from_iterable(iterable)
        .scan(lambda state, x: (state[0] + x, state[1] + 1), (0, 0))
        .map(lambda state: state[0] / state[1])
    )


def check_pipelines() -> None:
    assert list(pipeline(10)) == EXPECTED_PIPELINE
    assert list(composed_pipeline(10)) == EXPECTED_PIPELINE
    lazy = headrace_pipeline(10)  # nothing runs until iterated, as in the seed
    assert list(lazy) == EXPECTED_PIPELINE
    assert list(lazy) == EXPECTED_PIPELINE  # and unlike a generator, it runs again
    assert list(headrace_maps(10)) == EXPECTED_PIPELINE
    print("pipeline(10):", list(lazy))


def check_averagers() -> None:
    for name, result in [
        ("old_style_averager", old_style_averager(SAMPLE)),
        ("generator_averager", list(generator_averager(SAMPLE))),
        ("averager", list(averager(SAMPLE))),
        ("headrace_averager", list(headrace_averager(SAMPLE))),
    ]:
        assert all(map(math.isclose, result, EXPECTED_AVERAGES)), (name, result)
    print("averages of", SAMPLE, "->", [round(a, 3) for a in headrace_averager(SAMPLE)])


def check_itertools_magic() -> None:
    assert list(itertools.starmap(pow, [(2, 5), (3, 2), (10, 3)])) == [32, 9, 1000]
    assert list(itertools.accumulate([2, 3, 4, 5, 6], lambda a, b: a * b)) == [2, 6, 24, 120, 720]
    pairs = list(enumerate(itertools.accumulate([2, 3, 4, 5, 6]), 1))
    assert pairs == [(1, 2), (2, 5), (3, 9), (4, 14), (5, 20)]
    assert list(averager([2, 3, 4, 5, 6])) == [2.0, 2.5, 3.0, 3.5, 4.0]
    # The same steps as pipeline stages: scan is accumulate, enumerate(start=1) pairs.
    steps = (
        hr.from_iterable([2, 3, 4, 5, 6])
        .scan(lambda a, b: a + b, 0)
        .enumerate(start=1)
        .map(lambda pair: pair[1] / pair[0])
    )
    assert list(steps) == [2.0, 2.5, 3.0, 3.5, 4.0]
    products = hr.from_iterable([2, 3, 4, 5, 6]).scan(lambda a, b: a * b, 1)
    assert list(products) == [2, 6, 24, 120, 720]


def measure(samples: int) -> None:
    """The seed's %timeit / %memit comparison: time to consume, and peak memory."""
    sample = np.random.default_rng(0).random(samples)
    contenders = {
        "old_style_averager": lambda: old_style_averager(sample),
        "generator_averager": lambda: list(generator_averager(sample)),
        "averager (itertools)": lambda: list(averager(sample)),
        "headrace_averager": lambda: list(headrace_averager(sample)),
    }
    print(f"running average of {samples:,} floats, fully consumed:")
    for name, run in contenders.items():
        seconds = min(timeit.repeat(run, number=3, repeat=3)) / 3
        tracemalloc.start()
        run()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"  {name:<22} {1e3 * seconds:8.2f} ms   peak {peak / 2**20:6.2f} MiB")
    # Not consuming is where generators win: the seed's 214 ns is the cost of creating
    # the generator. A pipeline is lazy the same way.
    tracemalloc.start()
    first = next(iter(headrace_averager(sample)))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert first == sample[0]
    print(f"  first average only (lazy): peak {peak / 2**10:.1f} KiB")


# --- "Demo": a generator-based pipeline to parse logs ---------------------------------
LOG_LINE = re.compile(
    r"(?P<host>\S+) .* \"(?P<method>\w+) (?P<path>\S+) [^\"]*\" (?P<status>\d+) (?P<size>\d+|-)"
)


def write_log(path: Path, lines: int) -> None:
    with gzip.open(path, "wt") as out:
        for i in range(lines):
            status = 404 if i % 17 == 0 else 200
            size = "-" if i % 5 == 0 else str(100 + i % 900)
            out.write(
                f'10.0.0.{i % 7} - - [21/Nov/2026] "GET /page/{i % 13} HTTP/1.1" {status} {size}\n'
            )


def log_report(path: Path) -> tuple[int, Counter[str]]:
    """Bytes served, and 404s per path, from a gzip log, streamed line by line."""
    records = (
        hr.text_lines(str(path))
        .map(LOG_LINE.match)
        .filter(lambda match: match is not None)
        .map(lambda match: match.groupdict())
    )
    served = records.map(lambda r: 0 if r["size"] == "-" else int(r["size"]))
    total = sum(served)
    missing = Counter(r["path"] for r in records.filter(lambda r: r["status"] == "404"))
    return total, missing


def check_logs(lines: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "access.log.gz"
        write_log(path, lines)
        total, missing = log_report(path)
    expected_total = sum(0 if i % 5 == 0 else 100 + i % 900 for i in range(lines))
    assert total == expected_total, (total, expected_total)
    assert sum(missing.values()) == len(range(0, lines, 17))
    print(f"log demo: {lines:,} lines, {total:,} bytes served, top 404s {missing.most_common(2)}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Seed 002 on headrace")
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--log-lines", type=int, default=20_000)
    args = parser.parse_args()
    check_pipelines()
    check_averagers()
    check_itertools_magic()
    measure(args.samples)
    check_logs(args.log_lines)
    print("seed 002: all outputs match")


if __name__ == "__main__":
    main()
