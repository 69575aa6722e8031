"""Seed 001, "Understanding generators in Python", on headrace.

Runs the seed's generator basics (``myGen``, generator expressions, Fibonacci with
``islice``) and rebuilds its Keras train/validation batch generators as pipelines.
The pipelines give the same batches as the seed's ``while True`` generators, restart
by themselves every epoch, and know their length, which is the ``steps_per_epoch`` the
seed computes by hand. Then the seed's ``fit_generator`` call becomes
``model.fit(train.to_keras(), validation_data=val.to_keras())``: Keras reads the
steps of both from the pipelines.

    python examples/seed_001_generators.py [--epochs 5]

Keras runs on its configured backend (``KERAS_BACKEND``).
"""

from __future__ import annotations

import argparse
import itertools
from math import ceil

import numpy as np

import headrace as hr


def myGen(n):
    yield n
    yield n + 1


def fib():
    a, b = 0, 1
    while True:
        yield a
        a, b = b, a + b


def check_basics() -> None:
    g = myGen(6)
    assert [next(g), next(g)] == [6, 7]
    assert next(g, "done") == "done"
    assert list(hr.from_generator(myGen, 6)) == [6, 7]
    g = (n for n in range(3, 5))
    assert list(g) == [3, 4] == [n for n in range(3, 5)]
    assert list(itertools.islice(fib(), 10)) == [0, 1, 1, 2, 3, 5, 8, 13, 21, 34]
    assert list(hr.from_generator(fib).take(10)) == [0, 1, 1, 2, 3, 5, 8, 13, 21, 34]


train_size, val_size, batch_size = 3000, 1000, 32
rng = np.random.default_rng(0)
s1_training = rng.random((train_size, 4), dtype=np.float32)
s2_training = rng.random((train_size, 2), dtype=np.float32)
s1_validation = rng.random((val_size, 4), dtype=np.float32)
s2_validation = rng.random((val_size, 2), dtype=np.float32)


def labels(s1, s2):
    """A rule a small model can learn, so that the losses can fall."""
    return (s1.sum(axis=1) - 2 * s2.sum(axis=1) > 0).astype(np.int64)


label_training = labels(s1_training, s2_training)
label_validation = labels(s1_validation, s2_validation)


def trainGenerator(batch_size):
    while True:
        for i in range(0, train_size, batch_size):
            start_pos = i
            end_pos = min(i + batch_size, train_size)
            train_s1_X_batch = np.asarray(s1_training[start_pos:end_pos])
            train_s2_X_batch = np.asarray(s2_training[start_pos:end_pos])
            train_y_batch = np.asarray(label_training[start_pos:end_pos])
            train_concat_X_batch = np.concatenate([train_s1_X_batch, train_s2_X_batch], axis=-1)
            yield (train_concat_X_batch, train_y_batch)


def batches(s1, s2, label, batch_size: int) -> hr.Pipeline:
    """Rows zipped from the three arrays, concatenated, batched: no index arithmetic."""
    return (
        hr.zip(s1, s2, label)
        .map(lambda row: (np.concatenate([row[0], row[1]]), row[2]))
        .batch(batch_size)
    )


def train_pipeline(batch_size: int) -> hr.Pipeline:
    return batches(s1_training, s2_training, label_training, batch_size)


def val_pipeline(batch_size: int) -> hr.Pipeline:
    return batches(s1_validation, s2_validation, label_validation, batch_size)


def check_batches() -> None:
    pipeline = train_pipeline(batch_size)
    steps_per_epoch = int(np.ceil(train_size / batch_size))
    assert len(pipeline) == steps_per_epoch == ceil(train_size / batch_size)
    seed_batches = itertools.islice(trainGenerator(batch_size), 2 * steps_per_epoch)
    ours = itertools.chain(pipeline, pipeline)  # two epochs, each a fresh run
    for (xa, ya), (xb, yb) in zip(seed_batches, ours, strict=True):
        assert np.array_equal(xa, xb) and np.array_equal(ya, yb)
    print(f"train pipeline: {len(pipeline)} batches per epoch, same as the seed's generator")


def train_with_keras(epochs: int) -> None:
    """The seed's fit_generator call, on the pipelines: no steps computed by hand."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="binary_crossentropy")

    class Steps(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.planned = self.params["steps"]

    steps = Steps()
    history = model.fit(
        train_pipeline(batch_size).to_keras(),
        epochs=epochs,
        validation_data=val_pipeline(batch_size).to_keras(),
        callbacks=[steps],
        verbose=0,
    )
    losses = [round(loss, 3) for loss in history.history["val_loss"]]
    print(f"keras ({keras.backend.backend()}): {steps.planned} steps per epoch, val_loss {losses}")
    assert steps.planned == len(train_pipeline(batch_size)) == ceil(train_size / batch_size)
    assert losses[-1] < 0.5 * losses[0], losses


def main() -> None:
    parser = argparse.ArgumentParser(description="Seed 001 on headrace")
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    check_basics()
    check_batches()
    train_with_keras(args.epochs)
    print("seed 001: all outputs match")


if __name__ == "__main__":
    main()
