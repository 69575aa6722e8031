"""A JAX training loop killed mid-epoch and restarted from Orbax sees every row once.

A training script runs a small JAX regression with
``to_jax(pipeline, prefetch=2, resumable=True)``
and saves, every 5 steps, the train state and the data's place with one Orbax
``CheckpointManager`` (``headrace.jax.CheckpointSave``; asynchronous saving, Orbax's
default). It kills itself with SIGKILL at a given step; restarted, it restores the
latest checkpoint (``CheckpointRestore`` gives the iterator that goes on) and its log
of the batches after that checkpoint is cut (they are trained again). Over all
processes the rows must be those of an uninterrupted training, in the same order, and
the parameters it ends with the same: the batches put on the device ahead of the
step do not move the saved place.
"""

from __future__ import annotations

import json
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

    import jax
    import jax.numpy as jnp
    import numpy as np
    import orbax.checkpoint as ocp

    import headrace as hr
    import headrace.jax as hrj

    folder, kill_at = sys.argv[1], int(sys.argv[2])
    log = os.path.join(folder, "rows.log")


    def example(i):
        x = np.array([i % 13 / 13, i % 7 / 7, i % 5 / 5], dtype=np.float32)
        return x, np.float32(x @ [1.0, -2.0, 0.5]), np.int32(i)


    pipeline = hr.range(300).shuffle(64, seed=7).map(example).batch(16)
    data = hrj.to_jax(pipeline, prefetch=2, resumable=True)


    @jax.jit
    def update(params, x, y):
        def loss(p):
            return jnp.mean((x @ p["w"] + p["b"] - y) ** 2)

        grads = jax.grad(loss)(params)
        return jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, params, grads)


    train = {
        "params": {"w": jnp.zeros(3), "b": jnp.zeros(())},
        "step": np.array(0),
        "epoch": np.array(0),
    }
    manager = ocp.CheckpointManager(
        os.path.join(folder, "checkpoints"), options=ocp.CheckpointManagerOptions(max_to_keep=2)
    )
    latest = manager.latest_step()
    if latest is None:
        batches = iter(data)
    else:
        restored = manager.restore(
            latest,
            args=ocp.args.Composite(
                train=ocp.args.StandardRestore(train), data=hrj.CheckpointRestore(data)
            ),
        )
        train, batches = restored["train"], restored["data"]
        with open(log) as file:  # the batches after the checkpoint are trained again
            kept = file.read().splitlines()[: int(train["step"])]
        with open(log, "w") as file:
            file.writelines(line + "\\n" for line in kept)
    params, step, epoch = train["params"], int(train["step"]), int(train["epoch"])
    while epoch < 2:
        for x, y, ids in batches:
            params = update(params, x, y)
            step += 1
            with open(log, "a") as file:
                file.write(json.dumps(np.asarray(ids).tolist()) + "\\n")
            if step % 5 == 0:
                state = {"params": params, "step": np.array(step), "epoch": np.array(epoch)}
                manager.save(
                    step,
                    args=ocp.args.Composite(
                        train=ocp.args.StandardSave(state), data=hrj.CheckpointSave(batches)
                    ),
                )
            if step == kill_at:
                manager.wait_until_finished()
                os.kill(os.getpid(), signal.SIGKILL)
        epoch += 1
        batches = iter(data)
    manager.wait_until_finished()
    np.savez(os.path.join(folder, "final.npz"), **{k: np.asarray(v) for k, v in params.items()})
    """
)


def train(folder: Path, kill_at: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(folder / "train.py"), str(folder), str(kill_at)],
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )


def test_a_killed_jax_loop_resumes_from_orbax_and_sees_every_row_once(tmp_path: Path) -> None:
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    for folder in (whole, killed):
        folder.mkdir()
        (folder / "train.py").write_text(SCRIPT)
    with ThreadPoolExecutor(1) as beside:  # the uninterrupted run, meanwhile
        uninterrupted = beside.submit(train, whole, -1)
        # 19 steps an epoch (300 rows in batches of 16): killed between checkpoints in
        # the first epoch, right after one at the end of it (step 20 is the second
        # epoch's first), and in the second; then left to finish.
        for kill_at in (12, 19, 20, 33):
            done = train(killed, kill_at)
            assert done.returncode == -signal.SIGKILL, done.stderr
        done = train(killed, -1)
        assert done.returncode == 0, done.stderr
        done = uninterrupted.result()
        assert done.returncode == 0, done.stderr

    seen = [json.loads(line) for line in (killed / "rows.log").read_text().splitlines()]
    expected = [json.loads(line) for line in (whole / "rows.log").read_text().splitlines()]
    assert len(expected) == 2 * 19
    assert seen == expected  # the same batches, in the same order, none twice
    assert sorted(i for batch in seen for i in batch) == sorted(list(range(300)) * 2)
    final, ours = np.load(whole / "final.npz"), np.load(killed / "final.npz")
    for name in final.files:
        np.testing.assert_allclose(ours[name], final[name], rtol=1e-6, atol=1e-7)
