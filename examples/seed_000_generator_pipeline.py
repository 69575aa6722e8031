"""Seed 000, "Generators-Based Data Processing Pipeline", on headrace.

Runs the seed's examples: the Catalan-number generator, the ``send()``-driven loss
extractor, and the image pipeline built from two-``yield`` coroutines chained by
``GeneratorPipeline``: discover -> one-hot labels -> read/resize -> augment (rotate90) ->
rescale (per-channel means) -> shuffle -> ``model.train_on_batch``. The seed's usage
code runs unchanged on ``headrace.GeneratorPipeline``; the same steps then run as a
re-runnable ``headrace.Pipeline`` for several epochs.

Images are in-memory numpy arrays here, so ``read_images`` looks paths up in an
in-memory store and resizes with numpy; ``examples/image_classifier.py`` runs the same
steps on real JPEG and PNG files with ``headrace.vision``.

    python examples/seed_000_generator_pipeline.py [--per-class 40] [--epochs 5]
"""

from __future__ import annotations

import argparse
import re
from itertools import islice
from math import ceil

import numpy as np

import headrace as hr
from headrace import GeneratorPipeline


# --- Generators and yield ---------------------------------------------------------
def catalan(start=0):
    from math import factorial

    n = start
    while True:
        next_number = factorial(2 * n) // factorial(n + 1) // factorial(n)
        yield next_number
        n += 1


def check_catalan() -> None:
    catalan_numbers = catalan()
    first_5_numbers = [next(catalan_numbers) for _ in range(5)]
    assert first_5_numbers == [1, 1, 2, 5, 14]
    next_5_numbers = list(islice(catalan_numbers, 0, 5))
    assert next_5_numbers == [42, 132, 429, 1430, 4862]
    # As a pipeline the generator function is re-runnable and sliceable by stages.
    numbers = hr.from_generator(catalan)
    assert list(numbers.take(5)) == [1, 1, 2, 5, 14]
    assert list(numbers.skip(5).take(5)) == [42, 132, 429, 1430, 4862]
    print("catalan:", list(numbers.take(10)))


# --- Sending values into a generator ------------------------------------------------
def loss_extractor(regex=r"val_loss=(\d+\.\d+)"):
    """Receives a file name, answers its validation loss, or False if it has none."""
    pattern = re.compile(regex)
    while True:
        filename = yield
        match = pattern.search(filename)
        yield float(match.group(1)) if match else False


def apply(generator, value):
    """The seed's helper: prime with None, then send the value."""
    generator.send(None)
    return generator.send(value)


FILENAMES = ["weights_epoch=1_val_loss=0.9121.h5", "log.txt", "weights_epoch=2_val_loss=0.7402.h5"]


def check_send() -> None:
    extractor = loss_extractor()
    by_hand = [apply(extractor, name) for name in FILENAMES]
    assert by_hand == [0.9121, False, 0.7402]
    # The same coroutine as a pipeline stage, with the non-matches filtered out.
    losses = hr.from_iterable(FILENAMES).coroutine(loss_extractor).filter(lambda x: x is not False)
    assert list(losses) == [0.9121, 0.7402]
    print("losses:", list(losses))


# --- Images processing pipeline (in-memory images) -----------------------------------
CLASSES = ["airedale", "boxer", "golden_retriever"]
TINTS = {"airedale": (170, 110, 60), "boxer": (90, 60, 40), "golden_retriever": (220, 180, 90)}


def make_images(per_class: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A fake image folder: ``class/name.jpg`` -> uint8 HxWx3 array of varied size."""
    rng = np.random.default_rng(seed)
    store = {}
    for image_class in CLASSES:
        for i in range(per_class):
            h, w = rng.integers(20, 48, size=2)
            noise = rng.normal(0, 40, size=(h, w, 3))
            store[f"{image_class}/{i:04d}.jpg"] = np.clip(
                noise + TINTS[image_class], 0, 255
            ).astype(np.uint8)
    return store


class LabelBinarizer:
    """The part of scikit-learn's LabelBinarizer the seed uses: fit, then one-hot."""

    def fit(self, labels):
        self.classes_ = sorted(set(labels))
        return self

    def transform(self, labels):
        index = {c: i for i, c in enumerate(self.classes_)}
        return np.eye(len(self.classes_), dtype=np.float32)[[index[c] for c in labels]]


def discover_images(store):
    for filename in sorted(store):
        image_class = filename.split("/")[0]
        yield filename, image_class


def dataset(store, batch_size=32):
    images_and_classes = list(discover_images(store))
    n_batches = int(ceil(len(images_and_classes) / batch_size))
    classes = [c for (img, c) in images_and_classes]
    binarizer = LabelBinarizer().fit(classes)
    order = np.random.default_rng(1).permutation(len(images_and_classes))
    images_and_classes = [images_and_classes[i] for i in order]  # mix classes per batch
    start = 0
    for _ in range(n_batches):
        batch = images_and_classes[start : (start + batch_size)]
        paths, labels = zip(*batch)
        encoded = binarizer.transform(labels)
        start += batch_size
        yield np.asarray(paths), encoded


def resize_nearest(image, target_size):
    height, width = target_size
    rows = np.arange(height) * image.shape[0] // height
    cols = np.arange(width) * image.shape[1] // width
    return image[rows][:, cols]


def read_images(store, target_size=(24, 24)):
    while True:
        filenames, y = yield
        images = []
        for sample in filenames:
            img = store[str(sample)]
            img = resize_nearest(img, target_size)
            images.append(img)
        yield images, y


def augment(rotate90=False, seed=0):
    rng = np.random.default_rng(seed)
    while True:
        images, y = yield
        if rotate90:
            images = [np.rot90(img, k=int(rng.integers(4))) for img in images]
        yield images, y


def rescale_images(mean):
    mean = np.asarray(mean, dtype=np.float32)
    while True:
        images, y = yield
        x = np.stack(images).astype(np.float32) - mean
        yield x, y


def shuffle_samples(seed=0):
    rng = np.random.default_rng(seed)
    while True:
        x, y = yield
        order = rng.permutation(len(x))
        yield x[order], y[order]


class SoftmaxModel:
    """A small numpy classifier with Keras's ``train_on_batch`` shape of API."""

    def __init__(self, classes: int, learning_rate: float = 0.1) -> None:
        self.w = np.zeros((3, classes), dtype=np.float32)
        self.b = np.zeros(classes, dtype=np.float32)
        self.learning_rate = learning_rate
        self.batches_seen = 0

    def features(self, x: np.ndarray) -> np.ndarray:
        return x.mean(axis=(1, 2)) / 64.0  # per-channel mean colour

    def predict(self, x: np.ndarray) -> np.ndarray:
        logits = self.features(x) @ self.w + self.b
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def train_on_batch(self, x: np.ndarray, y: np.ndarray) -> float:
        f = self.features(x)
        p = self.predict(x)
        grad = (p - y) / len(x)
        self.w -= self.learning_rate * f.T @ grad
        self.b -= self.learning_rate * grad.sum(axis=0)
        return float(-(y * np.log(p + 1e-9)).sum(axis=1).mean())

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        return float((self.predict(x).argmax(1) == y.argmax(1)).mean())


def create_model() -> SoftmaxModel:
    return SoftmaxModel(len(CLASSES))


MEAN = [103.939, 116.779, 123.68]


def train_with_seed_code(store) -> SoftmaxModel:
    """The seed's usage code, unchanged but for the in-memory store argument."""
    # chain generators together
    pipeline = GeneratorPipeline(
        dataset(store),
        read_images(store),
        augment(rotate90=True),
        rescale_images(mean=[103.939, 116.779, 123.68]),
        shuffle_samples(),
    )

    # build model
    model = create_model()

    # start training
    for x_batch, y_batch in pipeline:
        model.train_on_batch(x_batch, y_batch)
        model.batches_seen += 1
    return model


def image_pipeline(store, batch_size=32) -> hr.Pipeline:
    """The same steps as a re-runnable headrace pipeline: every iteration is an epoch."""
    return (
        hr.from_generator(dataset, store, batch_size)
        .coroutine(read_images, store)
        .coroutine(augment, rotate90=True)
        .coroutine(rescale_images, mean=MEAN)
        .coroutine(shuffle_samples)
    )


def check_images(per_class: int, epochs: int) -> None:
    store = make_images(per_class)
    model = train_with_seed_code(store)
    assert model.batches_seen == ceil(len(store) / 32), model.batches_seen
    first = next(iter(image_pipeline(store)))
    size = min(32, len(store))
    assert first[0].shape == (size, 24, 24, 3) and first[1].shape == (size, len(CLASSES))

    # Same coroutines driven by GeneratorPipeline and by Pipeline give the same batches.
    seed_style = GeneratorPipeline(
        dataset(store), read_images(store), augment(rotate90=True),
        rescale_images(mean=MEAN), shuffle_samples(),
    )  # fmt: skip
    for (xa, ya), (xb, yb) in zip(seed_style, image_pipeline(store), strict=True):
        assert np.array_equal(xa, xb) and np.array_equal(ya, yb)

    pipeline = image_pipeline(store)
    model = create_model()
    for epoch in range(epochs):
        losses = [model.train_on_batch(x, y) for x, y in pipeline]
        print(f"epoch {epoch}: mean loss {np.mean(losses):.3f}")
    x_all, y_all = zip(*pipeline, strict=True)
    accuracy = model.accuracy(np.concatenate(x_all), np.concatenate(y_all))
    chance = 1 / len(CLASSES)
    print(f"training accuracy {accuracy:.2f} (chance {chance:.2f})")
    assert accuracy > chance + 0.25, accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description="Seed 000 on headrace")
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    check_catalan()
    check_send()
    check_images(args.per_class, args.epochs)
    print("seed 000: all outputs match")


if __name__ == "__main__":
    main()
