"""``read_csv`` against the hand-written CSV generator of a Keras tutorial (seed 003).

The workload is the tutorial's: a file of ``x,y`` rows read into ``(X, y)`` float32
batches of 250. Two files are made here, in a temporary folder, each of ``--rows``
rows (5,000,000 by default):

- ``seed``: the tutorial's own data, ``x,y`` then ``1,1``, ``2,2``, ... ;
- ``floats``: random float32 values, ``x`` uniform in [-10, 10) and ``y = 3x + 1`` plus
  noise, written with the fewest digits that read back exactly (``2.7392337,9.366796``).

Variants, interleaved, each timed ``--repeats`` times (medians reported):

- baseline: the tutorial's ``generate_arrays_from_file``, as published but for three
  changes that let it run and be compared: it passes over the header line (the
  original hands ``'x'`` to ``np.array(dtype='float32')`` and fails), its batches hold
  250 rows (the original tests ``> batchsize`` and yields 251), and it stops at the end
  of the file (the original reopens it forever);
- headrace: ``read_csv(path, dtype="float32", batch_size=250).map(lambda b: (b["x"],
  b["y"]))`` with the pyarrow engine;
- headrace, types inferred: the same without ``dtype=``, as the README writes it
  (``int64`` batches from the seed file, ``float64`` from the float one);
- headrace, Python engine (the csv module; for information, timed ``--python-repeats``
  times, once by default).

Every variant's batches are first checked against the baseline's (count, and sums of
X and of y) in a pass of their own; the timed passes only take the batches, as a
training loop would. CPU seconds are given beside wall seconds (the pyarrow engine
parses on a thread per core), and the CPU seconds other processes took during a timed
pass, at most: on a shared machine, a disturbed run shows.

Then peak memory: a fresh interpreter streams the ``seed`` file through ``read_csv``
in batches of 250, another one a file ten times longer, and each reports its peak
resident set (``VmHWM``); ``idle`` only imports headrace and pyarrow.

    .venv/bin/python benchmarks/read_csv.py [--quick] [--rows 5000000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from _machine import machine_busy
from headrace.readers import read_csv

BATCH = 250


def seed_generator(path: str, batchsize: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Seed 003's ``generate_arrays_from_file`` with the three changes marked."""
    inputs = []
    targets = []
    batchcount = 0
    with open(path) as f:
        next(f)  # changed: pass over the header line
        for line in f:
            x, y = line.split(",")
            inputs.append(x)
            targets.append(y)
            batchcount += 1
            if batchcount >= batchsize:  # changed: was ">", which yields 251 rows
                X = np.array(inputs, dtype="float32")
                y = np.array(targets, dtype="float32")
                yield (X, y)
                inputs = []
                targets = []
                batchcount = 0
    # changed: the original is inside "while True:" and reads the file again forever


def headrace_batches(
    path: str, engine: str, dtype: str | None = "float32"
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    pipeline = read_csv(path, dtype=dtype, batch_size=BATCH, engine=engine)
    return iter(pipeline.map(lambda b: (b["x"], b["y"])))


def write_file(path: Path, rows: int, kind: str) -> None:
    """``x,y`` rows, written by pyarrow's CSV writer a million at a time."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(3)
    kind_type = pa.int64() if kind == "seed" else pa.float32()
    schema = pa.schema([("x", kind_type), ("y", kind_type)])
    options = pacsv.WriteOptions(include_header=False)
    with open(path, "wb") as out:
        out.write(b"x,y\n")
        with pacsv.CSVWriter(out, schema, write_options=options) as writer:
            for start in range(0, rows, 1_000_000):
                count = min(1_000_000, rows - start)
                if kind == "seed":
                    x = np.arange(start + 1, start + count + 1, dtype=np.int64)
                    y = x
                else:
                    x = rng.uniform(-10, 10, count).astype(np.float32)
                    y = (3 * x + 1 + rng.normal(0, 0.1, count)).astype(np.float32)
                writer.write_table(pa.table({"x": x, "y": y}, schema=schema))


def checksum(batches: Iterator[tuple[np.ndarray, np.ndarray]]) -> tuple[int, float, float]:
    """Batches, and the sums of X and of y: run once per variant, untimed."""
    count, sum_x, sum_y = 0, 0.0, 0.0
    for X, y in batches:
        if X.dtype.kind not in "if" or y.dtype.kind not in "if" or len(X) != BATCH:
            raise SystemExit(f"a batch of {len(X)} rows of {X.dtype}, {y.dtype}")
        count += 1
        sum_x += float(X.sum(dtype=np.float64))
        sum_y += float(y.sum(dtype=np.float64))
    return count, sum_x, sum_y


def timed(make: Callable[[], Iterator[Any]]) -> tuple[float, float, float, int]:
    """Wall and CPU seconds to take every batch, as a training loop would; the CPU
    seconds other processes took meanwhile (on a shared machine, a disturbed run shows);
    and the count."""
    busy, wall, cpu = machine_busy(), time.perf_counter(), time.process_time()
    count = 0
    for _ in make():
        count += 1
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return wall, cpu, max(0.0, machine_busy() - busy - cpu), count


def bench_speed(path: Path, kind: str, rows: int, repeats: int, python_repeats: int) -> None:
    name = str(path)
    variants: dict[str, Callable[[], Iterator[Any]]] = {
        "seed 003 generator": lambda: seed_generator(name, BATCH),
        "headrace read_csv, pyarrow": lambda: headrace_batches(name, "pyarrow"),
        "headrace, types inferred": lambda: headrace_batches(name, "pyarrow", None),
        "headrace read_csv, python": lambda: headrace_batches(name, "python"),
    }
    sums = {variant: checksum(make()) for variant, make in variants.items()}
    expected = sums["seed 003 generator"]
    for variant, result in sums.items():
        if result[0] != expected[0] or not np.allclose(result[1:], expected[1:]):
            raise SystemExit(f"{variant} gave {result}, the baseline {expected}")
    counts = dict.fromkeys(variants, repeats)
    counts["headrace read_csv, python"] = python_repeats
    walls: dict[str, list[float]] = {variant: [] for variant in variants}
    cpus: dict[str, list[float]] = {variant: [] for variant in variants}
    others: dict[str, list[float]] = {variant: [] for variant in variants}
    for round_ in range(repeats):
        for variant, make in variants.items():
            if round_ < counts[variant]:
                wall, cpu, other, count = timed(make)
                if count != expected[0]:
                    raise SystemExit(f"{variant} gave {count} batches, expected {expected[0]}")
                walls[variant].append(wall)
                cpus[variant].append(cpu)
                others[variant].append(other)
    base = statistics.median(walls["seed 003 generator"])
    print(
        f"{kind} file: {rows:,} rows, {path.stat().st_size / 2**20:.0f} MiB, "
        f"{expected[0]:,} batches of {BATCH}; medians of {repeats} "
        f"({python_repeats} for the Python engine)"
    )
    for variant in variants:
        wall, cpu = statistics.median(walls[variant]), statistics.median(cpus[variant])
        print(
            f"  {variant:<28} {wall:7.3f} s  (cpu {cpu:6.3f} s)  {rows / wall / 1e6:6.2f} M rows/s"
            f"  speed-up {base / wall:5.1f}x   all: {' '.join(f'{w:.3f}' for w in walls[variant])}"
            f"  (others' cpu up to {max(others[variant]):.3f} s)"
        )


def peak_rss() -> int:
    """This process's peak resident set in bytes (``VmHWM``; ``ru_maxrss`` elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def child(path: str) -> None:
    import pyarrow  # noqa: F401  # the idle figure imports what the readers import

    rows = 0
    if path != "idle":
        for X, _ in headrace_batches(path, "pyarrow"):
            rows += len(X)
    print(json.dumps({"rows": rows, "peak": peak_rss()}))


def spawn(path: str) -> dict[str, int]:
    # VmHWM is the new interpreter's own: ru_maxrss would carry over this process's
    # high-water mark through vfork and exec.
    out = subprocess.run(
        [sys.executable, __file__, "--child", path], capture_output=True, text=True, check=True
    ).stdout
    result: dict[str, int] = json.loads(out.splitlines()[-1])
    return result


def bench_memory(small: Path, rows: int, folder: Path) -> None:
    large = folder / "large.csv"
    started = time.perf_counter()
    write_file(large, rows * 10, "seed")
    made = time.perf_counter() - started
    print(
        f"peak RSS streaming with read_csv(dtype='float32', batch_size={BATCH}), each in a "
        f"fresh interpreter (the 10x file: {large.stat().st_size / 2**20:.0f} MiB, "
        f"written in {made:.0f} s)"
    )
    mib = 2**20
    idle = spawn("idle")["peak"]
    print(f"  {'idle (imports only)':<26} {idle / mib:7.1f} MiB")
    peaks = {}
    for label, path, count in (("file", small, rows), ("10x file", large, rows * 10)):
        started = time.perf_counter()
        result = spawn(str(path))
        if result["rows"] != count:
            raise SystemExit(f"the {label} gave {result['rows']} rows, expected {count}")
        peaks[label] = result["peak"]
        took = time.perf_counter() - started
        print(
            f"  {f'{count:,} rows':<26} {result['peak'] / mib:7.1f} MiB "
            f"({(result['peak'] - idle) / mib:+.1f} over idle, {took:.1f} s)"
        )
    print(f"  10x the rows: peak RSS x{peaks['10x file'] / peaks['file']:.2f}")
    large.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200,000 rows, a few seconds")
    parser.add_argument("--rows", type=int, help="rows per file (default 5,000,000)")
    parser.add_argument("--repeats", type=int, help="timed runs per variant (default 5)")
    parser.add_argument("--python-repeats", type=int, help="runs of the Python engine (1)")
    parser.add_argument("--only", default="speed,memory", help="speed, memory or both")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    rows = args.rows or (200_000 if args.quick else 5_000_000)
    repeats = args.repeats or (3 if args.quick else 5)
    python_repeats = args.python_repeats or 1
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, "
        f"{os.cpu_count()} cores, {platform.machine()}"
    )
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        files = {}
        for kind in ("seed", "floats"):
            files[kind] = folder / f"{kind}.csv"
            write_file(files[kind], rows, kind)
        if "speed" in args.only:
            for kind, path in files.items():
                bench_speed(path, kind, rows, repeats, python_repeats)
        if "memory" in args.only:
            bench_memory(files["seed"], rows, folder)


if __name__ == "__main__":
    main()
