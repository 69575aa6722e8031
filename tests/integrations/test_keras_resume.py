"""A Keras ``fit`` killed mid-epoch and restarted sees every row exactly as often.

A training script fits a small Keras 3 model (torch backend) with
``headrace.keras.DataCheckpoint`` saving every 5 batches, and kills itself with
SIGKILL at a given step, as an out-of-memory killer or a preempted machine would.
Restarted, the same ``fit`` call loads the checkpoint and goes on mid-epoch. The model
logs the rows of every batch it trains on; the log of the batches after the last
checkpoint is cut on restart (those batches are trained again). Over all processes
the rows must be those of an uninterrupted training, in the same order, and the
weights it ends with the same. The pipeline's length is known in one case, and
unknown (a filter) in the other: then Keras counts an epoch's batches itself, and must
not take a resumed epoch's rest for a whole epoch.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.timeout(300)

SCRIPT = textwrap.dedent(
    """
    import json, os, signal, sys

    import keras
    import numpy as np

    import headrace as hr
    from headrace.keras import DataCheckpoint, to_keras

    folder, kill_at, unknown = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
    log = os.path.join(folder, "rows.log")
    checkpoint = os.path.join(folder, "checkpoint")
    step = 0
    if os.path.exists(os.path.join(checkpoint, "checkpoint.json")):
        with open(os.path.join(checkpoint, "checkpoint.json")) as file:
            step = json.load(file)["step"]
    if step and os.path.exists(log):
        with open(log) as file:  # the batches after the checkpoint are trained again
            kept = file.read().splitlines()[:step]
        with open(log, "w") as file:
            file.writelines(line + "\\n" for line in kept)


    def example(i):
        x = np.array([i % 13 / 13, i % 7 / 7, i % 5 / 5], dtype=np.float32)
        return {"x": x, "id": np.int64(i)}, np.array([x @ [1.0, -2.0, 0.5]], np.float32)


    rows = hr.range(400).shuffle(64, seed=7)
    if unknown:
        rows = rows.filter(lambda i: i % 10 != 3)
    data = to_keras(rows.map(example).batch(16))


    class Logged(keras.Model):
        def __init__(self):
            super().__init__()
            self.hidden = keras.layers.Dense(8, activation="relu")
            self.out = keras.layers.Dense(1)

        def call(self, inputs):
            return self.out(self.hidden(inputs["x"]))

        if keras.backend.backend() == "torch":  # where train_step sees each batch

            def train_step(self, data):
                ids = keras.ops.convert_to_numpy(data[0]["id"]).tolist()
                with open(log, "a") as file:
                    file.write(json.dumps(ids) + "\\n")
                return super().train_step(data)


    class Kill(keras.callbacks.Callback):
        def __init__(self, step):
            super().__init__()
            self.step = step

        def on_train_batch_end(self, batch, logs=None):
            self.step += 1
            if self.step == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)


    keras.utils.set_random_seed(0)
    model = Logged()
    model({"x": np.zeros((1, 3), np.float32), "id": np.zeros((1,), np.int64)})
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    saver = DataCheckpoint(checkpoint, data, save_freq=5)
    history = model.fit(data, epochs=3, verbose=0, callbacks=[saver, Kill(step)])
    np.savez(os.path.join(folder, "final.npz"), *model.get_weights())
    with open(os.path.join(folder, "epochs.json"), "w") as file:
        json.dump(history.epoch, file)
    """
)


def train(
    folder: Path, kill_at: int, unknown: bool, backend: str = "torch"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(folder / "train.py"), str(folder), str(kill_at), str(int(unknown))],
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
        env={**os.environ, "KERAS_BACKEND": backend},
    )


@pytest.mark.parametrize("unknown", [False, True], ids=["known_length", "unknown_length"])
def test_a_killed_fit_resumes_with_the_next_batch_and_sees_every_row_once(
    tmp_path: Path, unknown: bool
) -> None:
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    for folder in (whole, killed):
        folder.mkdir()
        (folder / "train.py").write_text(SCRIPT)
    with ThreadPoolExecutor(1) as beside:  # the uninterrupted fit, meanwhile
        uninterrupted = beside.submit(train, whole, -1, unknown)
        # Killed three times: between checkpoints (every 5 steps) in the first epoch
        # and in the second, and right after one (step 25: of known length, the first
        # epoch's last batch, before its end was seen); then left to finish.
        for kill_at in (12, 25, 37):
            done = train(killed, kill_at, unknown)
            assert done.returncode == -signal.SIGKILL, done.stderr
            saved = json.loads((killed / "checkpoint" / "checkpoint.json").read_text())
            assert saved["step"] == kill_at - kill_at % 5
        done = train(killed, -1, unknown)
        assert done.returncode == 0, done.stderr
        done = uninterrupted.result()
        assert done.returncode == 0, done.stderr
    assert not (killed / "checkpoint" / "checkpoint.json").exists()  # deleted at the end

    seen = [json.loads(line) for line in (killed / "rows.log").read_text().splitlines()]
    expected = [json.loads(line) for line in (whole / "rows.log").read_text().splitlines()]
    per_epoch = 23 if unknown else 25  # 360 or 400 rows in batches of 16
    assert len(expected) == 3 * per_epoch
    assert seen == expected  # the same batches, in the same order, none twice
    rows = sorted(i for batch in seen for i in batch)
    wanted = [i for i in range(400) if not (unknown and i % 10 == 3)]
    assert rows == sorted(wanted * 3)  # every row once an epoch
    assert json.loads((killed / "epochs.json").read_text()) == [1, 2]  # the last fit: 1 on
    final, ours = np.load(whole / "final.npz"), np.load(killed / "final.npz")
    for name in final.files:
        np.testing.assert_allclose(ours[name], final[name], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(("backend", "unknown"), [("jax", False), ("tensorflow", True)])
def test_a_killed_fit_resumes_on_the_other_backends(
    tmp_path: Path, backend: str, unknown: bool
) -> None:
    # The same training, killed at the same steps; the weights it ends with are those
    # of an uninterrupted one. On jax, of known length, the kill at step 25 leaves a
    # checkpoint after the first epoch's last batch (a resumed epoch with no batches
    # would crash jax's fit); tensorflow's datasets read batches ahead of the one
    # trained on, and its fit counts the batches of an epoch of unknown length itself.
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    for folder in (whole, killed):
        folder.mkdir()
        (folder / "train.py").write_text(SCRIPT)
    with ThreadPoolExecutor(1) as beside:  # the uninterrupted fit, meanwhile
        uninterrupted = beside.submit(train, whole, -1, unknown, backend)
        for kill_at in (12, 25, 37):
            done = train(killed, kill_at, unknown, backend)
            assert done.returncode == -signal.SIGKILL, done.stderr
        done = train(killed, -1, unknown, backend)
        assert done.returncode == 0, done.stderr
        done = uninterrupted.result()
        assert done.returncode == 0, done.stderr
    assert json.loads((killed / "epochs.json").read_text()) == [1, 2]
    final, ours = np.load(whole / "final.npz"), np.load(killed / "final.npz")
    for name in final.files:
        np.testing.assert_allclose(ours[name], final[name], rtol=1e-6, atol=1e-7)
