"""Seed 000's image pipeline on real files: discover, one-hot, read/resize, augment,
rescale, shuffle, batch, and a small classifier trained on the batches.

The example writes a labelled image folder (JPEG and PNG files in RGB, grey, palette,
RGBA, CMYK and 16-bit modes, of many sizes, and one damaged file), then builds the
seed's steps as one headrace pipeline::

    image_folder(root)                      discover: (path, label) per image
      .map(read, workers=2, on_error=skip)  read/resize in parallel, one-hot the label
      .random_map(augment, seed=...)        rotate90 by a random multiple, as the seed
      .map(rescale)                         subtract the seed's per-channel means
      .shuffle(...).batch(32)               mix classes, then batches for train_on_batch

and trains a numpy softmax classifier with a Keras-like ``train_on_batch`` until its
training accuracy clearly beats chance. Every epoch re-runs the pipeline, with new
rotations and a new shuffle.

    python examples/image_classifier.py [--per-class 60] [--epochs 8] [--workers 2]
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
from pathlib import Path

import numpy as np

import headrace as hr
import headrace.vision as hv
from headrace.vision.synthetic import write_image_folder

SIZE = 32
MEAN = [103.939, 116.779, 123.68]  # seed 000's rescale_images(mean=...)


def read(sample, encoder, size=SIZE):
    """Read and resize one image; one-hot its label (the seed's LabelBinarizer step)."""
    path, label = sample
    image = hv.decode(path, resize=(size, size))  # decoded and resized in one step
    return image, encoder.one_hot([encoder.classes[label]])[0]


def augment(sample, rng):
    """The seed's augment(rotate90=True): a random multiple of 90 degrees."""
    image, target = sample
    return hv.random_rotate90(image, rng), target


def rescale(sample):
    """The seed's rescale_images(mean=[103.939, 116.779, 123.68])."""
    image, target = sample
    return hv.normalize(image, MEAN), target


def image_pipeline(root, *, batch_size=32, workers=2, seed=0) -> hr.Pipeline:
    images = hr.image_folder(root)  # discover
    encoder = hv.LabelEncoder.fit(images.classes)  # one-hot encoder, fitted from the classes
    return (
        images.map(functools.partial(read, encoder=encoder), workers=workers, on_error="skip")
        .random_map(augment, seed=seed)
        .map(rescale)
        .shuffle(1024, seed=seed)
        .batch(batch_size)
    )


class SoftmaxModel:
    """A softmax classifier on an 8x8 grey thumbnail, with Keras's ``train_on_batch``."""

    def __init__(self, classes: int, learning_rate: float = 0.5) -> None:
        self.w = np.zeros((64, classes), dtype=np.float32)
        self.b = np.zeros(classes, dtype=np.float32)
        self.learning_rate = learning_rate

    def features(self, x: np.ndarray) -> np.ndarray:
        grey = x.mean(axis=3)  # N x 32 x 32
        n, h, w = grey.shape
        cells = grey.reshape(n, 8, h // 8, 8, w // 8).mean(axis=(2, 4)).reshape(n, 64)
        return (cells - cells.mean(axis=1, keepdims=True)) / 64.0

    def predict(self, x: np.ndarray) -> np.ndarray:
        logits = self.features(x) @ self.w + self.b
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def train_on_batch(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        f = self.features(x)
        p = self.predict(x)
        grad = (p - y) / len(x)
        self.w -= self.learning_rate * f.T @ grad
        self.b -= self.learning_rate * grad.sum(axis=0)
        loss = float(-(y * np.log(p + 1e-9)).sum(axis=1).mean())
        return loss, float((p.argmax(1) == y.argmax(1)).mean())


def train(root: Path, *, epochs: int, workers: int, seed: int) -> float:
    pipeline = image_pipeline(root, workers=workers, seed=seed)
    print(f"pipeline: {pipeline!r}")
    classes = len(hr.image_folder(root).classes)
    model = SoftmaxModel(classes)
    accuracy = 0.0
    for epoch in range(epochs):
        started = time.perf_counter()
        with pipeline.iter(stats=True) as run:
            results = [model.train_on_batch(x, y) for x, y in run]
            stats = run.stats()
        losses, accuracies = zip(*results, strict=True)
        accuracy = float(np.mean(accuracies))
        rejected = sum(row.get("rejected", 0) for row in stats)
        print(
            f"epoch {epoch}: {len(results)} batches in {time.perf_counter() - started:.2f} s, "
            f"loss {np.mean(losses):.3f}, training accuracy {accuracy:.2f}, "
            f"images skipped {rejected}"
        )
    chance = 1 / classes
    print(f"final training accuracy {accuracy:.2f} (chance {chance:.2f})")
    return accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description="Seed 000's image pipeline, trained")
    parser.add_argument("--per-class", type=int, default=60, help="images per class (60)")
    parser.add_argument("--epochs", type=int, default=8, help="epochs (8)")
    parser.add_argument("--workers", type=int, default=2, help="decoding threads (2)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="headrace-images-") as folder:
        root = Path(folder)
        written = write_image_folder(root, per_class=args.per_class, damaged=1, seed=args.seed)
        print(f"wrote {len(written)} images (1 damaged) to {root}")
        accuracy = train(root, epochs=args.epochs, workers=args.workers, seed=args.seed)
    assert accuracy > 1 / 3 + 0.3, f"training accuracy {accuracy:.2f} does not beat chance"
    print("image classifier: trained")


if __name__ == "__main__":
    main()
