"""Parallel map against inline work and against torch's DataLoader, six comparisons.

Every ratio is measured in this run against its baseline; variants are interleaved
and each figure is the median of several repeats. The machine has 2 cores, so anything
else running skews the figures: each row says what share of the machine other
processes took while it was timed ("others"), read from ``/proc/stat``.

1. cpu: a pure-Python loop (about 3 ms an element) on the process backend with 2
   workers, against inline ``map``. Workers start with every run, so the start-up
   (time to the first element) is measured on its own too.
2. decode: Pillow JPEG decode and resize to 224x224 (Pillow releases the GIL) on the
   thread backend with 2 workers, against inline ``map``, on JPEG files made here.
3. loader: decode, resize, float32 and batches of 32 from the same files, headrace
   against ``torch.utils.data.DataLoader(num_workers=2)``. Each contender runs in a
   fresh interpreter of its own (which imports torch, as a training loop does), so
   peak memory can be measured for its whole process tree.
4. transport: a 224x224x3 float32 array per element back from a process worker,
   through shared memory and, with ``HEADRACE_SHARED_MEMORY=0``, pickled through the
   pipe; a run that makes the same arrays and returns ``0`` is subtracted to leave
   the transport alone.
5. cheap: ``x * 2`` on 2M ints, then ``batch(256)``, with ``workers=2`` on each
   backend against inline: what automatic task batching leaves of the transport;
   and the time to the first batch of a process map's first run and of its next run
   (whose workers were kept).
6. logs: 1M access-log lines, as the README writes the log pipeline: a hand-written
   loop (``open``, ``re.match``, ``groupdict``) against ``text_lines -> parse``
   inline, and ``text_lines -> map(parse_record, on_error="skip")`` inline against
   the same with ``workers=2, backend="process"``.

    .venv/bin/pip install -e '.[bench]' -c benchmarks/constraints.txt
    .venv/bin/python benchmarks/parallel.py [--quick] [--only cpu,decode,...,cheap,logs]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import random
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

import headrace as hr
from _machine import live_descendants_cpu

SECTIONS = ("cpu", "decode", "loader", "transport", "cheap", "logs")
SIZE = (224, 224)
BATCH = 32
# Contenders of the loader comparison, each run in a fresh interpreter; "idle" only
# imports what the others import, the floor their memory figures stand on.
CONTENDERS = ("idle", "torch DataLoader", "headrace thread", "headrace process")
BEST = "headrace thread"  # the configuration the loader targets are judged on
SHARED_MEMORY = "HEADRACE_SHARED_MEMORY"


def median(samples: Iterable[float]) -> float:
    return statistics.median(list(samples))


def _machine_cpu() -> tuple[float, float]:
    """CPU seconds since boot that all processes spent, and that the hypervisor stole."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    except OSError:  # not Linux: nothing to tell
        return 0.0, 0.0
    user, nice, system, _, _, irq, softirq, steal = (int(f) for f in fields)
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, steal / tick


def _own_cpu() -> float:
    """CPU seconds of this process and of its descendants, reaped (finished workers and
    children) or alive (worker processes kept between runs)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime + live_descendants_cpu()


class OtherLoad:
    """What other processes on the machine took while timed runs were going.

    The benchmark has the machine's 2 cores to itself only if nothing else runs; this
    tells a reader how far to trust a figure. Use as ``with others:`` around timed
    runs; ``+`` adds two up.
    """

    def __init__(self) -> None:
        self.wall = self.others = self.stolen = 0.0

    def __enter__(self) -> None:
        self._start = (time.perf_counter(), _own_cpu(), *_machine_cpu())

    def __exit__(self, *_: object) -> None:
        wall, own, busy, stolen = self._start
        now_busy, now_stolen = _machine_cpu()
        self.wall += time.perf_counter() - wall
        self.others += max(0.0, (now_busy - busy) - (_own_cpu() - own))
        self.stolen += now_stolen - stolen

    def __add__(self, other: OtherLoad) -> OtherLoad:
        total = OtherLoad()
        total.wall, total.others = self.wall + other.wall, self.others + other.others
        total.stolen = self.stolen + other.stolen
        return total

    @property
    def share(self) -> float:
        """The others' CPU time as a share of the machine's while the runs went."""
        return self.others / max(self.wall * (os.cpu_count() or 1), 1e-9)

    def __str__(self) -> str:
        text = (
            f"other processes took {self.others:.1f} CPU-s during {self.wall:.0f} s of "
            f"timed runs ({100 * self.share:.0f}% of the machine)"
        )
        stolen = f", the hypervisor stole {self.stolen:.1f} s" if self.stolen >= 0.05 else ""
        return text + stolen


def interleaved(
    variants: dict[str, Callable[[], object]], repeats: int
) -> tuple[dict[str, float], dict[str, OtherLoad]]:
    """Each variant's median wall seconds, and what other processes took meanwhile.

    The variants run in turns, so drift on a noisy machine hits all of them alike.
    """
    times: dict[str, list[float]] = {name: [] for name in variants}
    others = {name: OtherLoad() for name in variants}
    for _ in range(repeats):
        for name, run in variants.items():
            with others[name]:
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
    return {name: median(samples) for name, samples in times.items()}, others


def total(loads: dict[str, OtherLoad]) -> OtherLoad:
    return sum(loads.values(), OtherLoad())


def drain(pipeline: Iterable[Any]) -> int:
    count = 0
    for _ in pipeline:
        count += 1
    return count


# -- 1. CPU-bound pure Python -------------------------------------------------------


def spin(seed: int, rounds: int) -> int:
    """A linear congruential generator, ``rounds`` steps: pure Python, holds the GIL."""
    x = seed
    for _ in range(rounds):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
    return x


def calibrate(seconds: float) -> int:
    """How many rounds of :func:`spin` take about ``seconds`` here."""
    rounds = 20_000
    spin(0, rounds)
    took = min(_timed(partial(spin, 0, rounds)) for _ in range(5))
    return max(1, round(rounds * seconds / took))


def _timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def time_to_first(pipeline: hr.Pipeline[Any]) -> float:
    """Seconds from starting a run to its first element (the run is then closed)."""
    start = time.perf_counter()
    with pipeline.iter() as run:
        next(run)
        return time.perf_counter() - start


def bench_cpu(quick: bool) -> None:
    n, repeats = (300, 3) if quick else (2000, 5)
    work = partial(spin, rounds=calibrate(0.003))
    each = median(_timed(partial(work, i)) for i in range(20))
    source = hr.range(n)
    inline = source.map(work)
    process = source.map(work, workers=2, backend="process")
    if list(process) != list(inline):
        raise SystemExit("process backend results differ from inline")
    firsts: list[float] = []
    median_s, others = interleaved(
        {
            "inline": lambda: drain(inline),
            "process": lambda: drain(process),
            "first": lambda: firsts.append(time_to_first(process)),
        },
        repeats,
    )
    # The start-up of the workers is what separates the run from a perfect split.
    first = median(firsts) - each
    ceiling = median_s["inline"] / (median_s["inline"] / 2 + first)
    print(
        f"\n1. CPU-bound pure Python: {n} elements of {1e3 * each:.2f} ms "
        f"({n * each:.1f} s of work), median of {repeats}"
    )
    for label, key in (("inline map", "inline"), ("map(workers=2), process backend", "process")):
        print(f"   {label:<34} {median_s[key]:7.3f} s   others {100 * others[key].share:3.0f}%")
    print(
        f"   speed-up: {median_s['inline'] / median_s['process']:.2f}x (target >= 1.7; "
        f"{ceiling:.2f}x if the two workers split the work perfectly after start-up)"
    )
    print(
        f"   start-up, time to first element less one element's work: {first:.3f} s "
        f"(the first element itself: {first + each:.3f} s)"
    )
    print(f"   {total(others)}")


# -- 2. Pillow decode on threads ------------------------------------------------------


def make_jpegs(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """Write ``count`` 640x480 JPEGs that the codec finds about as hard as photos.

    Smooth colour fields, shapes with sharp edges and sensor-like noise: about
    117 KiB each at quality 90, where flat or random pixels would be far easier or
    far harder to decode than real images.
    """
    rng = np.random.default_rng(seed)
    paths = []
    for number in range(count):
        low = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
        image = Image.fromarray(low).resize((640, 480), Image.Resampling.BICUBIC)
        draw = ImageDraw.Draw(image)
        for _ in range(12):
            x, y = int(rng.integers(0, 640)), int(rng.integers(0, 480))
            w, h = (int(v) for v in rng.integers(20, 200, 2))
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
            shape((x, y, x + w, y + h), fill=colour)
        pixels = np.asarray(image).astype(np.int16) + rng.normal(0, 12, (480, 640, 3)).astype(
            np.int16
        )
        path = folder / f"{number:05d}.jpg"
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def decode(path: Path) -> np.ndarray:
    """Decode a JPEG and resize it to 224x224: uint8, HWC."""
    with Image.open(path) as image:
        small = image.convert("RGB").resize(SIZE, Image.Resampling.BILINEAR)
    return np.asarray(small)


def load(path: Path) -> np.ndarray:
    """:func:`decode`, then float32 in [0, 1]: what a model takes."""
    return np.asarray(decode(path), dtype=np.float32) / np.float32(255)


def bench_decode(paths: list[Path], quick: bool) -> None:
    repeats = 3 if quick else 7
    source = hr.from_iterable(paths)
    inline = source.map(decode)
    threads = source.map(decode, workers=2)
    if not all(map(np.array_equal, inline, threads)):
        raise SystemExit("thread backend results differ from inline")
    median_s, others = interleaved(
        {"inline": lambda: drain(inline), "thread": lambda: drain(threads)}, repeats
    )
    n = len(paths)
    print(f"\n2. Pillow decode + resize to 224x224: {n} JPEGs of 640x480, median of {repeats}")
    for label, key in (("inline map", "inline"), ("map(workers=2), thread backend", "thread")):
        seconds = median_s[key]
        print(
            f"   {label:<34} {seconds:7.3f} s  {n / seconds:7.1f} images/s   "
            f"others {100 * others[key].share:3.0f}%"
        )
    print(f"   speed-up: {median_s['inline'] / median_s['thread']:.2f}x (target >= 1.6)")
    print(f"   {total(others)}")


# -- 3. against torch's DataLoader, one fresh interpreter per contender --------------


class ImageFiles:
    """The map-style dataset a DataLoader reads: ``load`` of the i-th file."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> np.ndarray:
        return load(self.paths[index])


def contender(name: str, paths: list[Path]) -> Callable[[], Iterator[Any]]:
    """A function that starts one epoch of ``name``'s batches."""
    import torch

    if name == "torch DataLoader":
        dataset: Any = ImageFiles(paths)  # map-style: __len__ and __getitem__ are enough
        loader: Any = torch.utils.data.DataLoader(dataset, batch_size=BATCH, num_workers=2)
        return lambda: iter(loader)
    source = hr.from_iterable(paths)
    if name == "headrace thread":
        pipeline = source.map(load, workers=2).batch(BATCH)
    elif name == "headrace process":
        pipeline = source.map(load, workers=2, backend="process").batch(BATCH)
    else:
        raise ValueError(f"unknown contender {name!r}")
    # The training loop takes tensors; from_numpy shares the batch's memory.
    return lambda: (torch.from_numpy(batch) for batch in pipeline)


def child(name: str, folder: Path, epochs: int) -> None:
    """Run ``epochs`` epochs of one contender after a warm-up; print the figures as JSON."""
    import torch  # every contender pays for it, as a training process does

    paths = sorted(folder.glob("*.jpg"))
    result: dict[str, Any] = {"epochs": []}
    if name != "idle":
        start_epoch = contender(name, paths)
        checksum = 0.0
        for batch in start_epoch():  # warm-up: page cache, lazy imports, a checksum
            checksum += float(torch.as_tensor(batch).sum())
        result["checksum"] = checksum
        for _ in range(epochs):
            start = time.perf_counter()
            count = 0
            for batch in start_epoch():
                count += len(batch)
            result["epochs"].append(time.perf_counter() - start)
            if count != len(paths):
                raise SystemExit(f"{name}: {count} images in an epoch, expected {len(paths)}")
    print(json.dumps(result))


def _tree(root: int) -> list[int]:
    """``root`` and its descendants, from the parent ids in ``/proc/*/stat``."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found = [root]
    for pid in found:
        found.extend(p for p, parent in parents.items() if parent == pid)
    return found


def _rollup(pid: int) -> tuple[int, int]:
    """RSS and PSS of one process, in bytes (0, 0 if it is gone)."""
    rss = pss = 0
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0, 0
    for line in text.splitlines():
        if line.startswith("Rss:"):
            rss = int(line.split()[1]) * 1024
        elif line.startswith("Pss:"):
            pss = int(line.split()[1]) * 1024
    return rss, pss


class TreeSampler:
    """Peak summed RSS and PSS of a process tree, sampled on a thread every ``period`` s.

    RSS counts a page shared by several processes (forked pages, libraries, shared
    memory) once per process; PSS divides it among them, so the PSS sum is what the
    tree costs the machine. Sampling misses peaks shorter than the period.
    ``ru_maxrss`` is no use here: a process started by ``subprocess`` (vfork, then
    exec) keeps its parent's high-water mark, so an interpreter started from a
    300 MiB parent reports at least 300 MiB.
    """

    def __init__(self, root: int, period: float = 0.01) -> None:
        self.root, self.period = root, period
        self.rss = self.pss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            sizes = [_rollup(pid) for pid in _tree(self.root)]
            self.rss = max(self.rss, sum(r for r, _ in sizes))
            self.pss = max(self.pss, sum(p for _, p in sizes))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def spawn(name: str, folder: Path, epochs: int, *, sample: bool) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", name, "--folder", str(folder)]
    command += ["--epochs", str(epochs)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    sampler = TreeSampler(process.pid) if sample else None
    out, _ = process.communicate()
    if sampler is not None:
        sampler.stop()
    if process.returncode:
        raise SystemExit(f"{name} failed with exit code {process.returncode}")
    result: dict[str, Any] = json.loads(out.splitlines()[-1])
    if sampler is not None:
        result["rss"], result["pss"] = sampler.rss, sampler.pss
    return result


def bench_loader(folder: Path, count: int, quick: bool) -> None:
    rounds, epochs = (1, 2) if quick else (5, 2)
    epoch_s: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    checksums: dict[str, float] = {}
    others = {name: OtherLoad() for name in CONTENDERS[1:]}
    # Timing rounds run unobserved (sampling /proc costs CPU); memory has its own round.
    for _ in range(rounds):
        for name in CONTENDERS[1:]:
            with others[name]:
                result = spawn(name, folder, epochs, sample=False)
            epoch_s[name] += result["epochs"]
            checksums[name] = result["checksum"]
    memory: dict[str, dict[str, Any]] = {}
    for name in CONTENDERS:
        memory[name] = spawn(name, folder, 1, sample=True)
    spread = max(checksums.values()) - min(checksums.values())
    if spread > 1e-6 * max(abs(c) for c in checksums.values()):
        raise SystemExit(f"the contenders' batches differ: checksums {checksums}")

    mib = 2**20
    runs = rounds * epochs
    print(
        f"\n3. decode + resize + float32 + batch({BATCH}) of {count} JPEGs, 2 workers, "
        f"each contender in a fresh interpreter with torch imported; median of {runs} epochs "
        f"({rounds} interpreters x {epochs}), one more interpreter each for memory"
    )
    print(
        f"   {'':<18} {'epoch':>8} {'images/s':>9} {'vs DataLoader':>14} "
        f"{'peak RSS':>9} {'peak PSS':>9} {'PSS - idle':>10} {'others':>6}"
    )
    base = median(epoch_s["torch DataLoader"])
    idle_pss = memory["idle"]["pss"]
    for name in CONTENDERS:
        m = memory[name]
        timing, share = f"{'':>8} {'':>9} {'':>14}", ""
        if name != "idle":
            seconds = median(epoch_s[name])
            timing = f"{seconds:7.3f}s {count / seconds:9.1f} {base / seconds:13.2f}x"
            share = f"{100 * others[name].share:5.0f}%"
        print(
            f"   {name:<18} {timing} {m['rss'] / mib:6.0f}MiB {m['pss'] / mib:6.0f}MiB "
            f"{(m['pss'] - idle_pss) / mib:7.0f}MiB {share}"
        )
    speed = base / median(epoch_s[BEST])
    ratio = (memory[BEST]["pss"] - idle_pss) / (memory["torch DataLoader"]["pss"] - idle_pss)
    print(f"   {BEST}: {speed:.2f}x DataLoader's throughput (target >= 1.0)")
    print(
        f"   {BEST}: peak PSS {memory[BEST]['pss'] / mib:.0f} MiB vs "
        f"{memory['torch DataLoader']['pss'] / mib:.0f} MiB "
        f"({ratio:.2f}x of DataLoader's above idle; target < 1)"
    )
    print(
        "   peak RSS, PSS: sums over the interpreter and its worker processes, sampled every"
        " 10 ms (RSS counts shared pages once per process, PSS divides them)"
    )
    print(f"   {total(others)} (interpreter start-ups included)")


# -- 4. transport of arrays from process workers -------------------------------------


class Constant:
    """Returns a fresh copy of one array for every element, or, with ``send=False``,
    makes the copy and returns 0: the difference is the transport alone. (The same
    object twice in one task would be pickled once.)"""

    def __init__(self, value: np.ndarray, *, send: bool = True) -> None:
        self.value = value
        self.send = send

    def __call__(self, _: object) -> Any:
        fresh = self.value.copy()
        return fresh if self.send else 0


@contextlib.contextmanager
def shared_memory(on: bool) -> Iterator[None]:
    """Runs started inside send arrays through shared memory (the default) or not.

    The process backend reads ``HEADRACE_SHARED_MEMORY`` when a run starts its
    workers; ``0`` sends every buffer pickled through the pipe.
    """
    saved = os.environ.pop(SHARED_MEMORY, None)
    if not on:
        os.environ[SHARED_MEMORY] = "0"
    try:
        yield
    finally:
        os.environ.pop(SHARED_MEMORY, None)
        if saved is not None:
            os.environ[SHARED_MEMORY] = saved


def bench_transport(quick: bool) -> None:
    n, repeats = (500, 3) if quick else (4000, 5)
    array = np.random.default_rng(0).random((*SIZE, 3), dtype=np.float32)
    tiny = hr.range(n).map(Constant(array, send=False), workers=1, backend="process")
    # One pipeline per setting: a pipeline keeps the workers of its first run, which
    # read the setting when they start.
    big = {
        shared: hr.range(n).map(Constant(array), workers=1, backend="process")
        for shared in (True, False)
    }

    def run(pipeline: hr.Pipeline[Any], shared: bool) -> Callable[[], object]:
        def go() -> object:
            with shared_memory(shared):
                return drain(pipeline)

        return go

    for shared in (True, False):
        with shared_memory(shared):
            if not all(np.array_equal(a, array) for a in big[shared]):
                raise SystemExit("an array came back changed")
    variants = {
        "tiny result": run(tiny, True),
        "array, shared memory": run(big[True], True),
        "array, pickled through the pipe": run(big[False], False),
    }
    wall: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    others = {name: OtherLoad() for name in variants}
    for _ in range(repeats):
        for name, go in variants.items():
            with others[name]:
                start, start_cpu = time.perf_counter(), _own_cpu()
                go()
                wall[name].append(time.perf_counter() - start)
                cpu[name].append(_own_cpu() - start_cpu)
    mib = array.nbytes / 2**20
    print(
        f"\n4. transport: {n} results of a {SIZE[0]}x{SIZE[1]}x3 float32 array "
        f"({array.nbytes / 1024:.0f} KiB, a fresh copy each) from 1 process worker, median "
        f"of {repeats}; costs above the run that makes the copies and returns 0; CPU of "
        "the consumer and the worker together"
    )
    print(
        f"   {'':<32} {'wall':>8} {'per element':>12} {'per MiB':>9} {'CPU':>8} "
        f"{'per element':>12} {'others':>6}"
    )
    base_wall, base_cpu = median(wall["tiny result"]), median(cpu["tiny result"])
    per_element: dict[str, tuple[float, float]] = {}
    for name in variants:
        seconds, cpu_s = median(wall[name]), median(cpu[name])
        share = f"{100 * others[name].share:5.0f}%"
        line = f"   {name:<32} {seconds:7.3f}s"
        if name == "tiny result":
            print(f"{line} {'':>12} {'':>9} {cpu_s:7.3f}s {'':>12} {share}")
            continue
        extra = per_element[name] = ((seconds - base_wall) / n, (cpu_s - base_cpu) / n)
        print(
            f"{line} {1e6 * extra[0]:9.0f} us {1e6 * extra[0] / mib:6.0f} us"
            f" {cpu_s:7.3f}s {1e6 * extra[1]:9.0f} us {share}"
        )
    segment = per_element["array, shared memory"]
    pipe = per_element["array, pickled through the pipe"]
    print(
        f"   shared memory / pipe per element: {segment[0] / pipe[0]:.2f}x wall "
        f"(target < 0.5), {segment[1] / pipe[1]:.2f}x CPU"
    )
    print(f"   {total(others)}")


def source() -> str:
    """Where headrace is imported from and, in a git checkout, at which commit."""
    where = Path(hr.__file__).resolve().parent
    git = ["git", "-C", str(where)]
    try:
        commit = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        changed = subprocess.run(
            [*git, "status", "--porcelain", "--", "."], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return str(where)
    return f"{where} at {commit}{', with uncommitted changes' if changed else ''}"


# -- 5. a cheap function: what task batching leaves of the transport ---------------


def double(x: int) -> int:
    return x * 2


def bench_cheap(quick: bool) -> None:
    n, repeats = (400_000, 3) if quick else (2_000_000, 5)
    inline = hr.range(n).map(double).batch(256)
    variants = {
        "inline": inline,
        "thread": hr.range(n).map(double, workers=2).batch(256),
        "process": hr.range(n).map(double, workers=2, backend="process").batch(256),
        "thread, auto": hr.range(n).map(double, workers="auto").batch(256),
        "process, auto": hr.range(n).map(double, workers="auto", backend="process").batch(256),
    }
    expected = sum(int(b.sum()) for b in inline)
    for name, pipeline in variants.items():
        if sum(int(b.sum()) for b in pipeline) != expected:
            raise SystemExit(f"{name} results differ from inline")
    median_s, others = interleaved(
        {name: partial(drain, pipeline) for name, pipeline in variants.items()}, repeats
    )
    with variants["process"].iter(stats=True) as run:
        drain(run)
        chunk = run.stats()[1]["chunk"]
    # Start-up: a new pipeline starts its workers; its next run finds them kept.
    firsts, seconds = [], []
    for _ in range(repeats):
        fresh = hr.range(n).map(double, workers=2, backend="process").batch(256)
        firsts.append(time_to_first(fresh))
        seconds.append(time_to_first(fresh))
        fresh.close()
    print(
        f"\n5. cheap function: x * 2 on {n:,} ints, then batch(256); workers=2, tasks "
        f"sized automatically (process backend: {chunk:.0f} elements a task), median of "
        f"{repeats}; each variant is one pipeline run again and again (epochs), so "
        "the process workers started in an untimed first run are kept"
    )
    best = min(median_s[name] for name in ("inline", "thread", "process"))
    for name in variants:
        ratio = median_s["inline"] / median_s[name]
        target = "" if name == "inline" else f"   {ratio:.2f}x inline (target >= 0.8)"
        if name.endswith("auto"):
            target = f"   {best / median_s[name]:.2f}x the best fixed count (target >= 0.9)"
        print(
            f"   {name:<13} {median_s[name]:7.3f} s   others "
            f"{100 * others[name].share:3.0f}%{target}"
        )
    print(
        f"   process backend, time to the first batch: {1e3 * median(firsts):.1f} ms on a "
        f"new pipeline, {1e3 * median(seconds):.1f} ms on its next run (kept workers; "
        "target < 20 ms)"
    )
    print(f"   {total(others)}")


# -- 6. the log pipeline ---------------------------------------------------------------

LOG_LINE = re.compile(
    r'(?P<host>\S+) \S+ \S+ \[(?P<time>[^\]]+)\] "(?P<method>[A-Z]+) (?P<path>\S+) \S+" '
    r"(?P<status>\d{3}) (?P<size>\d+|-) (?P<millis>\d+)"
)


def parse_record(line: str) -> dict[str, str]:
    """The README's ``parse_record``: the named fields of an access-log line."""
    found = LOG_LINE.fullmatch(line)
    if found is None:
        raise hr.ParseError(f"not an access-log line: {line[:40]!r}")
    return found.groupdict()


def write_log(path: Path, lines: int) -> None:
    """Access-log lines, one in a hundred garbled."""
    rng = random.Random(0)
    methods, paths = ["GET", "GET", "POST"], ["/", "/api/items", "/static/app.js"]
    with path.open("w") as out:
        for _ in range(lines):
            if rng.random() < 0.01:
                out.write("-- truncated line --\n")
                continue
            out.write(
                f"10.0.{rng.randint(0, 255)}.{rng.randint(1, 254)} - - "
                f"[21/Nov/2026:{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00 +0000] "
                f'"{rng.choice(methods)} {rng.choice(paths)} HTTP/1.1" '
                f"{rng.choice([200, 200, 404])} {rng.randint(100, 50_000)} "
                f"{rng.randint(1, 900)}\n"
            )


def hand_loop(path: Path) -> int:
    """What a user writes without a library: the same records, counted."""
    count = 0
    with path.open() as lines:
        for line in lines:
            found = LOG_LINE.fullmatch(line.rstrip("\n"))
            if found is not None:
                found.groupdict()
                count += 1
    return count


def bench_logs(quick: bool) -> None:
    lines, repeats = (200_000, 3) if quick else (1_000_000, 5)
    logging.getLogger("headrace").setLevel(logging.ERROR)  # the skip summaries
    with tempfile.TemporaryDirectory(prefix="headrace-bench-") as tmp:
        path = Path(tmp) / "access.log"
        write_log(path, lines)
        parsed = hr.text_lines(path).parse(LOG_LINE, on_error="skip")
        inline = hr.text_lines(path).map(parse_record, on_error="skip")
        process = hr.text_lines(path).map(
            parse_record, workers=2, backend="process", on_error="skip"
        )
        auto = hr.text_lines(path).map(
            parse_record, workers="auto", backend="process", on_error="skip"
        )
        counts = {hand_loop(path), drain(parsed), drain(inline), drain(process), drain(auto)}
        if len(counts) != 1:
            raise SystemExit(f"the variants count different records: {counts}")
        median_s, others = interleaved(
            {
                "hand-written loop": partial(hand_loop, path),
                "text_lines -> parse": partial(drain, parsed),
                "map inline": partial(drain, inline),
                "map, 2 process workers": partial(drain, process),
                "map, workers='auto'": partial(drain, auto),
            },
            repeats,
        )
    print(
        f"\n6. log pipeline: {lines:,} access-log lines (1% garbled, skipped), records "
        f"as dicts, median of {repeats}"
    )
    for name, seconds in median_s.items():
        print(
            f"   {name:<24} {seconds:7.3f} s {lines / seconds / 1e3:6.0f}K lines/s   "
            f"others {100 * others[name].share:3.0f}%"
        )
    hand, parse = median_s["hand-written loop"], median_s["text_lines -> parse"]
    print(f"   text_lines -> parse: {hand / parse:.2f}x the hand-written loop (target >= 0.8)")
    ratio = median_s["map inline"] / median_s["map, 2 process workers"]
    print(f"   map with 2 process workers: {ratio:.2f}x inline (target >= 1.3)")
    fixed = min(median_s["map inline"], median_s["map, 2 process workers"])
    ratio = fixed / median_s["map, workers='auto'"]
    print(f"   map, workers='auto': {ratio:.2f}x the best fixed count (target >= 0.9)")
    print(f"   {total(others)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a minute or so")
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    parser.add_argument("--images", type=int, help="JPEGs to make (default 384, quick 96)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--epochs", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.folder, args.epochs)
        return
    only = args.only.split(",")
    unknown = set(only) - set(SECTIONS)
    if unknown:
        parser.error(f"--only takes {', '.join(SECTIONS)}; got {', '.join(sorted(unknown))}")
    count = args.images or (96 if args.quick else 384)

    import PIL
    import torch

    print(
        f"headrace {hr.__version__} parallel benchmarks{' (quick)' if args.quick else ''}: "
        f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}, numpy {np.__version__}, "
        f"Pillow {PIL.__version__}, torch {torch.__version__}\nheadrace from {source()}"
    )
    if "cpu" in only:
        bench_cpu(args.quick)
    if "decode" in only or "loader" in only:
        with tempfile.TemporaryDirectory(prefix="headrace-bench-") as tmp:
            paths = make_jpegs(Path(tmp), count)
            mib = sum(p.stat().st_size for p in paths) / 2**20
            print(f"\n(made {count} JPEGs of 640x480, {mib:.1f} MiB, in {tmp})")
            if "decode" in only:
                bench_decode(paths, args.quick)
            if "loader" in only:
                bench_loader(Path(tmp), count, args.quick)
    if "transport" in only:
        bench_transport(args.quick)
    if "cheap" in only:
        bench_cheap(args.quick)
    if "logs" in only:
        bench_logs(args.quick)


if __name__ == "__main__":
    main()
