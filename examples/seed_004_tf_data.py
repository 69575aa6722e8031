"""Seed 004, "Keras pipeline update - from sequence generator to tf.data", on headrace.

The seed moves a Keras input pipeline to tf.data: ``list_files`` -> a Python
augmenter through ``tf.py_function`` -> shuffle -> batch -> prefetch, and finds that
the Python step cannot run in parallel (the GIL), and that Keras needs ``set_shape``
on its outputs. Here the same pipeline is written in headrace: the Python augmenter
runs on two worker processes, every batch has its shapes already, and the pipeline
goes to Keras ``fit`` directly, and to tf.data with ``to_tf_dataset()`` (its
``element_spec`` inferred from the first batch) for tf.data's own ``prefetch``.

    python examples/seed_004_tf_data.py [--per-class 40] [--epochs 6]

It runs on any Keras backend (``KERAS_BACKEND``); tf.data needs TensorFlow.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

import headrace as hr
import headrace.vision as hv
from headrace.vision.synthetic import CLASSES, write_image_folder

SIZE = 32


def my_image_augmenter(path, rng):
    """The seed's py_function body, in plain Python: read the image, augment it."""
    img = hv.decode(path, resize=(SIZE, SIZE))
    # insert your DA here ...
    img = hv.random_flip(img, rng, vertical=True)
    img = hv.random_rotate90(img, rng)
    img = hv.random_jitter(img, rng, brightness=0.1, contrast=0.1)
    label = CLASSES.index(Path(path).parent.name)
    return img.astype(np.float32), label


def image_dataset(root: Path, *, batch_size: int = 16, seed: int = 0) -> hr.Pipeline:
    """list_files -> augment (2 processes, no GIL) -> shuffle -> batch -> prefetch."""
    return (
        hr.files(str(root / "*" / "*"), shuffle=True, seed=seed)  # tf.data.Dataset.list_files
        .random_map(my_image_augmenter, seed=seed, workers=2, backend="process")
        .shuffle(64, seed=seed)
        .batch(batch_size)
        .prefetch(2)
    )


def create_model() -> keras.Model:
    model = keras.Sequential(
        [
            keras.Input((SIZE, SIZE, 3)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(len(CLASSES), activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(0.003),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description="Seed 004's tf.data pipeline on headrace")
    parser.add_argument("--per-class", type=int, default=40, help="images per class (40)")
    parser.add_argument("--epochs", type=int, default=6, help="epochs for each fit (6)")
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    with tempfile.TemporaryDirectory(prefix="headrace-seed-004-") as folder:
        root = Path(folder)
        write_image_folder(root, per_class=args.per_class)
        dataset = image_dataset(root)
        print(f"pipeline: {dataset!r}")
        print(f"backend: {keras.backend.backend()}")

        # For debugging, as the seed does: look at one element.
        images, labels = next(iter(dataset))
        print(f"first batch: images {images.shape} {images.dtype}, labels {labels.shape}")

        # Keras fit on the pipeline: every epoch is a fresh run, no steps to compute.
        model = create_model()
        history = model.fit(dataset.to_keras(), epochs=args.epochs, verbose=0)
        first, last = history.history["loss"][0], history.history["loss"][-1]
        accuracy = history.history["accuracy"][-1]
        print(f"keras fit on the pipeline: loss {first:.3f} -> {last:.3f}, accuracy {accuracy:.2f}")
        assert last < 0.8 * first, (first, last)

        # tf.data: shapes come from the first batch, no set_shape; tf.data ops compose.
        tf_dataset = dataset.to_tf_dataset().prefetch(tf.data.AUTOTUNE)
        print(f"tf.data element_spec: {tf_dataset.element_spec}")
        single = tf_dataset.unbatch().take(1).get_single_element()
        assert tuple(single[0].shape) == (SIZE, SIZE, 3)
        history = model.fit(tf_dataset, epochs=2, shuffle=False, verbose=0)  # shuffled already
        loss, accuracy = history.history["loss"][-1], history.history["accuracy"][-1]
        print(f"keras fit on tf.data: loss {loss:.3f}, accuracy {accuracy:.2f}")
        assert accuracy > 1 / len(CLASSES) + 0.2, accuracy
    print("seed 004: trained")


if __name__ == "__main__":
    main()
