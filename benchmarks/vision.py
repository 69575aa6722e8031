"""``headrace.vision`` against a hand-written Pillow and numpy loop doing the same work.

The work, per image of a class-per-subfolder folder of JPEGs: decode (asking libjpeg
for its draft mode at 224x224, as ``hv.decode(path, size=(224, 224))`` does), resize
to 224x224 (bilinear), flip left-right with probability 0.5, normalize with the
ImageNet mean and standard deviation on the 0..255 scale into float32, and collate
batches of 32 images with their labels. The folder is made here, in a temporary
folder (or in ``--folder``, kept and reused): ``--images`` photo-like JPEGs of about
500x375 at quality 90, in four classes.

Variants, interleaved, each timed ``--repeats`` times (the median and the best are
reported; the targets are judged on the medians):

- hand-written: a loop over the folder with ``Image.open``, ``draft``, ``resize``,
  ``np.array``, a numpy ``Generator`` for the flips and ``np.stack`` for the batches;
- headrace, fused: ``image_folder(root).random_map(augment, seed=0, workers=W)
  .batch(32)``, where ``augment`` decodes and resizes in one call
  (``hv.decode(path, resize=(224, 224))``), flips and normalizes (the recommended
  form: one stage, all the work on the workers);
- headrace, fused, decode then resize: the same with ``hv.resize(hv.decode(path,
  size=...), ...)``, which copies the full-size image out of Pillow and back;
- headrace, two stages: ``.map(load, workers=W)`` (decode and resize) then
  ``.random_map(flip_normalize, seed=0, workers=W)`` and ``.batch(32)``; with
  workers, the two stages join: both calls run in the same task on the same worker.

W is 0 (inline, one thread), 2 on the thread backend, and 2 on the process backend
for the fused and the two-stage forms; and ``"auto"`` on each backend for the fused
form (compared with the best of 0 and 2). With ``--peers``, two more contenders do the
same work, timed in the same interleaved rounds:

- torch: a map-style ``Dataset`` whose ``__getitem__`` is the hand-written loop's
  per-image work, read by ``DataLoader(num_workers=2, batch_size=32,
  persistent_workers=True)`` (its workers kept across epochs, as headrace keeps its
  own), started, and warmed by one epoch, before TensorFlow is imported (the
  workers are forks);
- tf.data with TensorFlow's own ops: ``read_file``, ``decode_jpeg``, ``resize``
  (bilinear), ``random_flip_left_right`` and the normalization, in
  ``map(num_parallel_calls=2)``, then ``batch(32)``; the batches stay tensors. It
  runs twice: with ``resize``'s default (``antialias=False``: each output pixel
  interpolates the 4 nearest input pixels, which skips most of the input when
  shrinking), and with ``antialias=True``, the filter Pillow's bilinear resize (so
  every other contender) uses when it shrinks.

Their images differ from the hand-written loop's in the last bits (another decoder
and resize), so only the counts are checked.

Before timing, every headrace variant's batches are checked against the hand-written
loop's: the same shapes, dtypes and labels, and, with flips
turned off, the same arrays. Each row says what share of the machine other processes
took while it was timed: on a busy machine the ratios are not to be trusted.

Targets: the inline fused form at least 0.90x the hand-written loop, and the fused
form with 2 thread workers at least 1.6x (on 2 cores); with ``--peers``, the fused
form with 2 workers at least 1.0x torch's DataLoader and 0.9x tf.data, on each
backend.

    .venv/bin/python benchmarks/vision.py [--images 400] [--repeats 5] [--folder DIR]
        [--peers]   (torch and tensorflow installed, as the test extra installs them)
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageDraw

import headrace as hr
import headrace.vision as hv
from _machine import live_descendants_cpu, machine_busy

SIZE = (224, 224)  # (height, width)
BATCH = 32
CLASSES = ("cat", "dog", "fox", "owl")
MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)
# The hand-written loop's constants: float32, and the reciprocal of the deviation,
# so that it multiplies, as a careful hand-written loop does (and as hv.normalize does).
MEAN32 = np.array(MEAN, dtype=np.float32)
INV_STD32 = np.float32(1) / np.array(STD, dtype=np.float32)

Batch = tuple[np.ndarray, np.ndarray]
TF = "tf.data, native ops, 2 parallel calls"
TF_ANTIALIAS = "tf.data, antialiased resize, 2 parallel calls"
BASELINE = "hand-written Pillow + numpy"


# -- the folder -----------------------------------------------------------------------


def make_folder(root: Path, count: int, seed: int = 0) -> None:
    """Write ``count`` JPEGs into ``root/<class>/``, as hard to decode as photos.

    Smooth colour fields, shapes with sharp edges and sensor-like noise, about 500x375
    (widths 400 to 640, a fifth of them portrait), quality 90.
    """
    rng = np.random.default_rng(seed)
    for name in CLASSES:
        (root / name).mkdir(parents=True, exist_ok=True)
    for number in range(count):
        width = int(rng.integers(400, 641))
        height = round(width * rng.uniform(0.66, 0.80))
        if rng.random() < 0.2:
            width, height = height, width
        low = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
        image = Image.fromarray(low).resize((width, height), Image.Resampling.BICUBIC)
        draw = ImageDraw.Draw(image)
        for _ in range(12):
            x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
            w, h = (int(v) for v in rng.integers(20, 200, 2))
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
            shape((x, y, x + w, y + h), fill=colour)
        noise = rng.normal(0, 12, (height, width, 3)).astype(np.int16)
        pixels = np.clip(np.asarray(image).astype(np.int16) + noise, 0, 255).astype(np.uint8)
        path = root / CLASSES[number % len(CLASSES)] / f"{number:05d}.jpg"
        Image.fromarray(pixels).save(path, quality=90)


# -- the hand-written loop ------------------------------------------------------------


def handwritten(root: Path, *, p: float = 0.5, seed: int = 0) -> Iterator[Batch]:
    """Batches of ``(images, labels)``, with Pillow and numpy only."""
    classes = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
    files = [
        (os.path.join(root, name, file), label)
        for label, name in enumerate(classes)
        for file in sorted(os.listdir(os.path.join(root, name)))
        if file.lower().endswith((".jpg", ".jpeg"))
    ]
    rng = np.random.default_rng(seed)
    images: list[np.ndarray] = []
    labels: list[int] = []
    for path, label in files:
        with Image.open(path) as image:
            image.draft("RGB", (SIZE[1], SIZE[0]))
            rgb = image if image.mode == "RGB" else image.convert("RGB")
            array = np.array(rgb.resize((SIZE[1], SIZE[0]), Image.Resampling.BILINEAR))
        if rng.random() < p:
            array = array[:, ::-1]
        out = np.subtract(array, MEAN32, dtype=np.float32)
        out *= INV_STD32
        images.append(out)
        labels.append(label)
        if len(images) == BATCH:
            yield np.stack(images), np.array(labels)
            images, labels = [], []
    if images:
        yield np.stack(images), np.array(labels)


# -- headrace -------------------------------------------------------------------------


def augment(item: tuple[str, int], rng: np.random.Generator, p: float = 0.5) -> Any:
    """The fused step: decode and resize in one call, flip, normalize."""
    path, label = item
    image = hv.decode(path, resize=SIZE)
    return hv.normalize(hv.random_flip(image, rng, p=p), MEAN, STD), label


def augment_in_two_calls(item: tuple[str, int], rng: np.random.Generator, p: float = 0.5) -> Any:
    """The fused step with the full-size image made an array before resizing."""
    path, label = item
    image = hv.resize(hv.decode(path, size=SIZE), SIZE)
    return hv.normalize(hv.random_flip(image, rng, p=p), MEAN, STD), label


def load(item: tuple[str, int]) -> tuple[np.ndarray, int]:
    """The first of two steps: decode and resize."""
    path, label = item
    return hv.decode(path, resize=SIZE), label


def flip_normalize(item: tuple[np.ndarray, int], rng: np.random.Generator, p: float = 0.5) -> Any:
    """The second of two steps: flip and normalize."""
    image, label = item
    return hv.normalize(hv.random_flip(image, rng, p=p), MEAN, STD), label


def fused(
    root: Path,
    workers: int | Literal["auto"],
    backend: str = "thread",
    p: float = 0.5,
    *,
    two_calls: bool = False,
) -> hr.Pipeline[Any]:
    step = augment_in_two_calls if two_calls else augment
    if p != 0.5:
        step = partial(step, p=p)
    return (
        hr.image_folder(root)
        .random_map(step, seed=0, workers=workers, backend=backend)
        .batch(BATCH)
    )


def two_stage(
    root: Path, workers: int, backend: str = "thread", p: float = 0.5
) -> hr.Pipeline[Any]:
    step = flip_normalize if p == 0.5 else partial(flip_normalize, p=p)
    return (
        hr.image_folder(root)
        .map(load, workers=workers, backend=backend)
        .random_map(step, seed=0, workers=workers, backend=backend)
        .batch(BATCH)
    )


# -- the peers: torch's DataLoader and tf.data ------------------------------------------


def listing(root: Path) -> list[tuple[str, int]]:
    classes = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
    return [
        (os.path.join(root, name, file), label)
        for label, name in enumerate(classes)
        for file in sorted(os.listdir(os.path.join(root, name)))
        if file.lower().endswith((".jpg", ".jpeg"))
    ]


class Images:
    """The map-style dataset a DataLoader reads: the hand-written loop's work on the
    i-th file, its flip drawn from a generator of the worker's own."""

    def __init__(self, files: list[tuple[str, int]]) -> None:
        self.files = files
        self.rng = np.random.default_rng()

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        path, label = self.files[index]
        with Image.open(path) as image:
            image.draft("RGB", (SIZE[1], SIZE[0]))
            rgb = image if image.mode == "RGB" else image.convert("RGB")
            array = np.array(rgb.resize((SIZE[1], SIZE[0]), Image.Resampling.BILINEAR))
        if self.rng.random() < 0.5:
            array = array[:, ::-1]
        out = np.subtract(array, MEAN32, dtype=np.float32)
        out *= INV_STD32
        return out, label


def torch_loader(root: Path) -> Any:
    from torch.utils.data import DataLoader

    return DataLoader(
        Images(listing(root)), batch_size=BATCH, num_workers=2, persistent_workers=True
    )


def tf_dataset(root: Path, *, antialias: bool = False) -> Any:
    import tensorflow as tf

    files = listing(root)
    paths = tf.constant([path for path, _ in files])
    labels = tf.constant([label for _, label in files])
    mean = tf.constant(MEAN, tf.float32)
    inverse = tf.constant(1.0, tf.float32) / tf.constant(STD, tf.float32)

    def load(path: Any, label: Any) -> Any:
        image = tf.io.decode_jpeg(tf.io.read_file(path), channels=3)
        image = tf.image.resize(image, SIZE, antialias=antialias)  # bilinear, float32
        image = tf.image.random_flip_left_right(image)
        return (image - mean) * inverse, label

    files_dataset = tf.data.Dataset.from_tensor_slices((paths, labels))
    return files_dataset.map(load, num_parallel_calls=2).batch(BATCH)


# -- measuring ------------------------------------------------------------------------


def own_cpu() -> float:
    """CPU seconds of this process and of its children, reaped or alive (process
    workers, kept between runs; a DataLoader's persistent workers)."""
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime + live_descendants_cpu()


def drain(batches: Iterator[Batch] | hr.Pipeline[Any]) -> int:
    """Take every batch, as a training loop would; the image count."""
    count = 0
    for images, _ in batches:
        count += len(images)
    return count


def check(root: Path, count: int, variants: dict[str, Callable[[float], Any]]) -> None:
    """Every variant against the hand-written loop, untimed: shapes, dtypes and labels
    with flips; with flips turned off (``p=0``), the very same arrays."""
    reference = list(handwritten(root))
    plain = list(handwritten(root, p=0.0))
    for name, make in variants.items():
        for p, expected in ((0.5, reference), (0.0, plain)):
            got = list(make(p))
            if len(got) != len(expected) or sum(len(x) for x, _ in got) != count:
                raise SystemExit(f"{name}: {len(got)} batches, expected {len(expected)}")
            for (x, y), (ex, ey) in zip(got, expected, strict=True):
                if x.shape != ex.shape or x.dtype != ex.dtype or y.dtype.kind != ey.dtype.kind:
                    raise SystemExit(f"{name}: a {x.shape} {x.dtype} batch, expected {ex.shape}")
                if not np.array_equal(y, ey):
                    raise SystemExit(f"{name}: labels differ from the hand-written loop's")
                if p == 0.0 and not np.array_equal(x, ex):
                    raise SystemExit(f"{name}: images differ from the hand-written loop's")
            if p == 0.5:  # the flips happen: about half the images differ from unflipped
                flipped = sum(
                    int(not np.array_equal(x, ex))
                    for (xs, _), (exs, _) in zip(got, plain, strict=True)
                    for x, ex in zip(xs, exs, strict=True)
                )
                if not 0.3 * count < flipped < 0.7 * count:
                    raise SystemExit(f"{name}: {flipped} of {count} flipped, expected about half")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--folder", type=Path, help="made if empty, reused otherwise")
    parser.add_argument("--peers", action="store_true", help="also torch's DataLoader and tf.data")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = args.folder or Path(scratch)
        if not any(root.glob("*/*.jpg")):
            make_folder(root, args.images)
        run(root, args.repeats, peers=args.peers)


def run(root: Path, repeats: int, *, peers: bool = False) -> None:
    count = sum(1 for _ in root.glob("*/*.jpg"))
    # Builders take the flip probability, so that check() can turn the flips off.
    builders: dict[str, Callable[[float], Any]] = {
        "fused, inline": lambda p: fused(root, 0, p=p),
        "two stages, inline": lambda p: two_stage(root, 0, p=p),
        "fused, 2 threads": lambda p: fused(root, 2, p=p),
        "two stages, 2 threads": lambda p: two_stage(root, 2, p=p),
        "fused, 2 processes": lambda p: fused(root, 2, "process", p=p),
        "two stages, 2 processes": lambda p: two_stage(root, 2, "process", p=p),
        "fused, workers='auto', threads": lambda p: fused(root, "auto", p=p),
        "fused, workers='auto', processes": lambda p: fused(root, "auto", "process", p=p),
        "fused, decode then resize, inline": lambda p: fused(root, 0, p=p, two_calls=True),
        "fused, decode then resize, 2 threads": lambda p: fused(root, 2, p=p, two_calls=True),
    }
    check(root, count, builders)
    # One seed, the same draws: every headrace variant gives the very same batches.
    first = [x for x, _ in builders["fused, inline"](0.5)]
    for name, make in builders.items():
        if not all(np.array_equal(a, x) for a, (x, _) in zip(first, make(0.5), strict=True)):
            raise SystemExit(f"{name}: batches differ from the inline fused form's")

    pipelines = {name: make(0.5) for name, make in builders.items()}
    variants: dict[str, Callable[[], int]] = {
        BASELINE: lambda: drain(handwritten(root)),
        **{f"headrace {name}": partial(drain, pipeline) for name, pipeline in pipelines.items()},
    }
    if peers:
        loader = torch_loader(root)
        if drain(loader) != count:  # forks the workers before TensorFlow starts threads
            raise SystemExit("torch DataLoader: a wrong image count")
        datasets = {antialias: tf_dataset(root, antialias=antialias) for antialias in (False, True)}
        if any(drain(dataset) != count for dataset in datasets.values()):
            raise SystemExit("tf.data: a wrong image count")
        variants["torch DataLoader, 2 workers"] = partial(drain, loader)
        variants[TF] = partial(drain, datasets[False])
        variants[TF_ANTIALIAS] = partial(drain, datasets[True])
        for pipeline in pipelines.values():
            drain(pipeline)  # kept process workers started, as the peers' are
    times: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    others: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, go in variants.items():
            busy, own, start = machine_busy(), own_cpu(), time.perf_counter()
            if go() != count:
                raise SystemExit(f"{name}: not {count} images")
            wall = time.perf_counter() - start
            used = own_cpu() - own
            times[name].append(wall)
            cpu[name].append(used)
            others[name].append(
                max(0.0, machine_busy() - busy - used) / (wall * (os.cpu_count() or 1))
            )
    median = {name: statistics.median(samples) for name, samples in times.items()}
    best = {name: min(samples) for name, samples in times.items()}
    base, base_best = median[BASELINE], best[BASELINE]
    print(
        f"{count} JPEGs of about 500x375 -> {SIZE[0]}x{SIZE[1]} float32, batches of {BATCH}; "
        f"median and best of {repeats}, {os.cpu_count()} cores"
    )
    print(
        f"  {'variant':<47} {'wall s':>6} {'CPU s':>5} {'images/s':>8} {'ratio':>6}"
        f"  {'best s':>6} {'ratio':>6}  others"
    )
    for name, seconds in median.items():
        print(
            f"  {name:<47} {seconds:6.3f} {statistics.median(cpu[name]):5.2f} "
            f"{count / seconds:8.1f} {base / seconds:5.2f}x  {best[name]:6.3f} "
            f"{base_best / best[name]:5.2f}x  {100 * statistics.median(others[name]):4.0f}%"
        )
    for label, name, target in (
        ("inline (fused) vs hand-written:  ", "headrace fused, inline", 0.9),
        ("2 thread workers vs hand-written:", "headrace fused, 2 threads", 1.6),
    ):
        ratio, ratio_best = base / median[name], base_best / best[name]
        print(
            f"{label} {ratio:.2f}x median, {ratio_best:.2f}x best "
            f"(target >= {target:.2f}: {'met' if ratio >= target else 'missed'})"
        )
    for backend in ("threads", "processes"):
        fixed = min(median[f"headrace fused, {n}"] for n in ("inline", f"2 {backend}"))
        ratio = fixed / median[f"headrace fused, workers='auto', {backend}"]
        print(
            f"workers='auto' on {backend} vs the best fixed count (0 or 2): {ratio:.2f}x "
            f"(target >= 0.90: {'met' if ratio >= 0.9 else 'missed'})"
        )
    if peers:
        for peer, target in (
            ("torch DataLoader, 2 workers", 1.0),
            (TF, 0.9),
            (TF_ANTIALIAS, 0.9),
        ):
            for name in ("headrace fused, 2 threads", "headrace fused, 2 processes"):
                ratio = median[peer] / median[name]
                print(
                    f"{name} vs {peer}: {ratio:.2f}x "
                    f"(target >= {target:.2f}: {'met' if ratio >= target else 'missed'})"
                )


if __name__ == "__main__":
    main()
