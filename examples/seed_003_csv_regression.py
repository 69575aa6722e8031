"""Seed 003, "Using simple generators to flow data from file with Keras", on headrace.

The seed streams a CSV file of ``x,y`` rows (``y = x``) into a small Keras regression
model with a hand-written ``while True`` generator, and passes ``steps_per_epoch``
(and, for a validation generator, ``validation_steps``) computed by hand from the
number of rows. Here ``headrace.read_csv`` streams the same file, and
``headrace.keras.to_keras`` hands the pipeline to ``fit``: each epoch reads the file
afresh, Keras counts the steps itself, and validation reads a file of its own.

The script writes both files, checks that ``read_csv`` gives the batches of the seed's
generator (with three changes that make the seed's code run, marked below), trains the
seed's Dense(16)-Dense(8)-Dense(1) model and prints the validation loss of each epoch.

    python examples/seed_003_csv_regression.py [--rows 100000] [--epochs 10]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")  # any Keras 3 backend works

import keras
import numpy as np

import headrace as hr
from headrace.keras import to_keras


# --- The seed's generator, with three changes ---------------------------------------
def generate_arrays_from_file(path, batchsize):
    inputs = []
    targets = []
    batchcount = 0
    with open(path) as f:
        next(f)  # changed: pass over the header line ('x' is no float32)
        for line in f:
            x, y = line.split(",")
            inputs.append(x)
            targets.append(y)
            batchcount += 1
            if batchcount >= batchsize:  # changed: was ">", which yields batchsize + 1 rows
                X = np.array(inputs, dtype="float32")
                y = np.array(targets, dtype="float32")
                yield (X, y)
                inputs = []
                targets = []
                batchcount = 0
    # changed: the seed reads the file again forever ("while True:"); a Keras epoch
    # then ends after steps_per_epoch batches, computed by hand from the row count.


# --- The same on headrace -------------------------------------------------------------
def xy_batches(path: Path, batch_size: int) -> hr.Pipeline:
    """``(X, y)`` float32 batches of shape ``(n, 1)``, the model's input and target."""
    return hr.read_csv(str(path), dtype="float32", batch_size=batch_size).map(
        lambda b: (b["x"][:, None], b["y"][:, None])
    )


def write_csv(path: Path, xs: np.ndarray) -> None:
    """The seed's file: an ``x,y`` header, then one ``x,x`` row per value."""
    with open(path, "w") as out:
        out.write("x,y\n")
        out.writelines(f"{x:g},{x:g}\n" for x in xs)


def check_batches(path: Path, batch_size: int) -> int:
    """read_csv gives the seed's batches (up to the short last one, which it keeps)."""
    ours = list(xy_batches(path, batch_size))
    seed = list(generate_arrays_from_file(str(path), batch_size))
    assert len(ours) == len(seed) + (len(ours[-1][0]) < batch_size)
    for (X, y), (seed_X, seed_y) in zip(ours, seed):
        assert np.array_equal(X[:, 0], seed_X) and np.array_equal(y[:, 0], seed_y)
    return len(ours)


class PrintValidationLoss(keras.callbacks.Callback):
    """One line per epoch; the test reads the ``val_loss`` values back."""

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        print(
            f"epoch {epoch + 1}: val_loss {float(logs['val_loss']):.4f} "
            f"(training loss {float(logs['loss']):.4f})",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="training rows")
    parser.add_argument("--val-rows", type=int, default=2_000, help="validation rows")
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        train_csv = Path(folder) / "rows.csv"
        val_csv = Path(folder) / "rows_validation.csv"
        write_csv(train_csv, np.arange(1, args.rows + 1, dtype=np.float64))
        # Validation values lie between the training values: 1.5, ..., spread evenly.
        step = max(args.rows // args.val_rows, 1)
        write_csv(val_csv, np.arange(1, args.rows, step, dtype=np.float64)[: args.val_rows] + 0.5)

        batches = check_batches(train_csv, args.batch_size)
        print(f"read_csv: {batches} batches of the seed's generator per epoch")

        keras.utils.set_random_seed(args.seed)
        model = keras.Sequential(
            [
                keras.Input(shape=(1,)),
                keras.layers.Dense(16, activation="relu"),
                keras.layers.Dense(8, activation="relu"),
                keras.layers.Dense(1, activation="linear"),
            ]
        )
        model.compile(
            loss="mean_absolute_error",
            optimizer=keras.optimizers.Adam(),
            metrics=["mean_squared_error"],
        )
        validation = to_keras(xy_batches(val_csv, args.batch_size))
        before, _ = model.evaluate(validation, verbose=0)
        print(f"epoch 0: val_loss {before:.4f} (before training)")
        # No steps_per_epoch, no validation_steps: every epoch reads each file once.
        history = model.fit(
            to_keras(xy_batches(train_csv, args.batch_size)),
            epochs=args.epochs,
            validation_data=validation,
            callbacks=[PrintValidationLoss()],
            verbose=0,
        )
        last = float(history.history["val_loss"][-1])
        print(f"validation loss: {before:.4f} before training, {last:.4f} after")
        print("seed 003: trained from CSV files")


if __name__ == "__main__":
    main()
