"""The built-in demo: web-server logs and a folder of images, streamed into batches.

``headrace demo`` writes a few gzip-compressed log shards of its own, then runs::

    files(shards) -> interleave(text_lines) -> map(parse) -> filter(parsed)
      -> map(features) -> shuffle -> batch

then writes a labelled folder of JPEG and PNG images (several modes and sizes, one of
them damaged) and runs seed 000's image pipeline with decoding on two threads::

    image_folder -> map(load, workers=2, on_error="skip") -> random_map(augment)
      -> shuffle -> batch

and prints, for each, the throughput and what each stage did. Everything here is
public API, so the demo doubles as an example of realistic pipelines.
"""

from __future__ import annotations

import functools
import gzip
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np

import headrace as hr

__all__ = [
    "DemoResult",
    "build_image_pipeline",
    "build_pipeline",
    "parse_line",
    "run_demo",
    "run_image_demo",
    "write_logs",
]

_LINE = re.compile(
    r'(?P<host>\S+) \S+ \S+ \[(?P<time>[^\]]+)\] "(?P<method>[A-Z]+) (?P<path>\S+) \S+" '
    r"(?P<status>\d{3}) (?P<size>\d+|-) (?P<millis>\d+)"
)
_PATHS = ["/", "/index.html", "/api/items", "/api/items/42", "/static/app.js", "/login"]
_METHODS = ["GET", "GET", "GET", "POST", "PUT"]
_STATUSES = [200] * 16 + [301, 304, 404, 500]


def write_logs(folder: Path, *, lines: int, shards: int, seed: int = 0) -> list[Path]:
    """Write ``lines`` access-log lines over ``shards`` gzip files; a few are garbled."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    per_shard = -(-lines // shards)
    written = 0
    for shard in range(shards):
        path = folder / f"access-{shard:03d}.log.gz"
        with gzip.open(path, "wt", encoding="utf-8") as out:
            for _ in range(min(per_shard, lines - written)):
                if rng.random() < 0.01:
                    out.write("-- truncated line --\n")  # real logs have these
                else:
                    status = rng.choice(_STATUSES)
                    size = "-" if status == 304 else str(rng.randint(100, 50_000))
                    out.write(
                        f"10.0.{rng.randint(0, 255)}.{rng.randint(1, 254)} - - "
                        f"[21/Nov/2026:{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00 +0000] "
                        f'"{rng.choice(_METHODS)} {rng.choice(_PATHS)} HTTP/1.1" '
                        f"{status} {size} {rng.randint(1, 900)}\n"
                    )
                written += 1
        paths.append(path)
    return paths


def parse_line(line: str) -> dict[str, str] | None:
    """The named fields of one access-log line, or ``None`` if it does not parse."""
    match = _LINE.match(line)
    return match.groupdict() if match else None


def features(record: dict[str, str]) -> tuple[np.ndarray, np.float32]:
    """(x, y): size in kB, latency in s, POST flag -> whether the request failed."""
    x = np.array(
        [
            0.0 if record["size"] == "-" else int(record["size"]) / 1000,
            int(record["millis"]) / 1000,
            float(record["method"] == "POST"),
        ],
        dtype=np.float32,
    )
    return x, np.float32(int(record["status"]) >= 400)


def is_record(record: dict[str, str] | None) -> TypeGuard[dict[str, str]]:
    """Keep lines that parsed; the garbled ones are counted by the report."""
    return record is not None


def build_pipeline(folder: Path, *, batch_size: int = 256, seed: int = 0) -> hr.Pipeline[Any]:
    """The demo's pipeline over the shards in ``folder``."""
    return (
        hr.files(str(folder / "*.log.gz"), shuffle=True, seed=seed)
        .interleave(hr.text_lines, cycle_length=4, block_length=16)
        .map(parse_line)
        .filter(is_record)
        .map(features)
        .shuffle(2048, seed=seed)
        .batch(batch_size)
    )


@dataclass
class DemoResult:
    """What one demo run measured."""

    inputs: int  # log lines or image files written
    records: int
    batches: int
    seconds: float
    stats: list[dict[str, Any]]


def run_demo(
    folder: Path,
    *,
    lines: int = 200_000,
    shards: int = 8,
    batch_size: int = 256,
    epochs: int = 1,
    seed: int = 0,
    echo: Callable[[str], None] = print,
    progress: bool = False,
) -> DemoResult:
    """Write the logs, stream them ``epochs`` times and report; returns the figures."""
    started = time.perf_counter()
    write_logs(folder, lines=lines, shards=shards, seed=seed)
    echo(
        f"wrote {lines:,} log lines in {shards} gzip shards to {folder} "
        f"({time.perf_counter() - started:.2f} s)"
    )
    pipeline = build_pipeline(folder, batch_size=batch_size, seed=seed)
    echo(f"pipeline: {pipeline!r}")
    result = DemoResult(lines, 0, 0, 0.0, [])
    for epoch in range(epochs):
        records = batches = 0
        failure_rate = 0.0
        start = time.perf_counter()
        with pipeline.iter(progress=progress) as run:
            for _features, y in run:
                batches += 1
                records += len(y)
                failure_rate += float(y.sum())
            seconds = time.perf_counter() - start
            result.stats = run.stats()
            report = run.report()
        result.records, result.batches, result.seconds = records, batches, seconds
        echo(
            f"epoch {epoch}: {batches:,} batches of up to {batch_size}, {records:,} records "
            f"in {seconds:.2f} s ({records / seconds:,.0f} records/s); "
            f"failed requests {failure_rate / max(records, 1):.1%}"
        )
    dropped = lines - result.records
    echo(f"garbled lines dropped by filter(is_record): {dropped:,}")
    echo("what each stage did (last epoch; 'busy': its share of the time, sampled):")
    echo(report)
    return result


#: Seed 000's per-channel means, subtracted by the image pipeline's rescale step.
IMAGE_MEAN = (103.939, 116.779, 123.68)


def load_image(sample: tuple[str, int], size: int) -> tuple[np.ndarray, int]:
    """Decode and resize one image in one step (JPEG draft mode when it is much larger)."""
    import headrace.vision as hv

    path, label = sample
    return hv.decode(path, resize=(size, size)), label


def augment(sample: tuple[np.ndarray, int], rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Seed 000's rotate90 augmentation plus a flip, then its per-channel rescale."""
    import headrace.vision as hv

    image, label = sample
    image = hv.random_flip(hv.random_rotate90(image, rng), rng)
    return hv.normalize(image, IMAGE_MEAN), label


def build_image_pipeline(
    root: Path, *, size: int = 64, batch_size: int = 32, workers: int = 2, seed: int = 0
) -> hr.Pipeline[Any]:
    """The demo's image pipeline: damaged images are skipped and counted, not fatal."""
    return (
        hr.image_folder(root, shuffle=True, seed=seed)
        .map(functools.partial(load_image, size=size), workers=workers, on_error="skip")
        .random_map(augment, seed=seed)
        .shuffle(256, seed=seed)
        .batch(batch_size)
    )


def run_image_demo(
    folder: Path,
    *,
    images: int = 600,
    batch_size: int = 32,
    workers: int = 2,
    seed: int = 0,
    echo: Callable[[str], None] = print,
    progress: bool = False,
) -> DemoResult:
    """Write ``images`` images (and one damaged file), stream them once and report."""
    from headrace.vision.synthetic import CLASSES, write_image_folder

    started = time.perf_counter()
    per_class = -(-images // len(CLASSES))
    written = write_image_folder(folder, per_class=per_class, damaged=1, seed=seed)
    echo(
        f"wrote {len(written) - 1:,} images in {len(CLASSES)} classes, JPEG and PNG in seven "
        f"modes, and 1 damaged file to {folder} ({time.perf_counter() - started:.2f} s)"
    )
    pipeline = build_image_pipeline(folder, batch_size=batch_size, workers=workers, seed=seed)
    echo(f"pipeline: {pipeline!r}")
    start = time.perf_counter()
    records = batches = 0
    shape = ""
    with pipeline.iter(progress=progress) as run:
        for x, y in run:
            batches += 1
            records += len(y)
            shape = f"{tuple(x.shape[1:])} {x.dtype} "
        seconds = time.perf_counter() - start
        stats = run.stats()
        report = run.report()
    echo(
        f"images: {batches:,} batches of up to {batch_size} {shape}arrays, {records:,} images "
        f"in {seconds:.2f} s ({records / seconds:,.0f} images/s)"
    )
    rejected = [row for row in stats if row.get("rejected")]
    for row in rejected:
        echo(f"damaged images skipped by {row['name']}: {row['rejected']}; {row['examples'][0]}")
    echo("what each stage did:")
    echo(report)
    return DemoResult(len(written), records, batches, seconds, stats)
