"""A PyTorch training killed mid-epoch and restarted sees every row exactly as often.

A training script saves the model, the optimizer and ``dataset.state_dict()`` after
every step, and kills itself with SIGKILL at a given step, as an out-of-memory killer
or a preempted machine would. Restarted, it loads the checkpoint and goes on. The rows
it trained on, over both processes, must be those of an uninterrupted training, in
the same order, and the weights it ends with the same.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(240)

SCRIPT = textwrap.dedent(
    """
    import json, os, signal, sys

    import numpy as np
    import torch

    import headrace as hr
    import headrace.torch as hrt

    checkpoint, log, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
    rows = (
        hr.range(300)
        .shuffle(64, seed=7)
        .map(lambda i: np.array([i, i % 7], dtype=np.float32), workers=2)
        .batch(16)
    )
    dataset = hrt.to_torch(rows)
    epoch, step = 0, 0
    if os.path.exists(checkpoint):
        saved = torch.load(checkpoint)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        dataset.load_state_dict(saved["data"])
        epoch, step = saved["epoch"], saved["step"]
    while epoch < 2:
        for batch in dataset:
            loss = model(batch).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            with open(log, "a") as out:
                out.write(json.dumps(batch[:, 0].int().tolist()) + "\\n")
            step += 1
            state = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "data": dataset.state_dict(),
                "epoch": epoch,
                "step": step,
            }
            torch.save(state, checkpoint + ".tmp")
            os.replace(checkpoint + ".tmp", checkpoint)
            if step == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
        epoch += 1
    torch.save(model.state_dict(), checkpoint + ".final")
    """
)


def train(folder: Path, kill_at: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            str(folder / "train.py"),
            str(folder / "ck.pt"),
            str(folder / "rows.log"),
            str(kill_at),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_killed_training_resumes_with_the_next_batch_and_sees_every_row_once(
    tmp_path: Path,
) -> None:
    import torch

    whole, killed = tmp_path / "whole", tmp_path / "killed"
    for folder in (whole, killed):
        folder.mkdir()
        (folder / "train.py").write_text(SCRIPT)
    with ThreadPoolExecutor(1) as beside:  # the uninterrupted run, meanwhile
        uninterrupted = beside.submit(train, whole, -1)
        # Killed mid-epoch twice (19 steps an epoch: steps 7 and 26), then left to finish.
        for kill_at in (7, 26):
            done = train(killed, kill_at)
            assert done.returncode == -signal.SIGKILL, done.stderr
        done = train(killed, kill_at=-1)
        assert done.returncode == 0, done.stderr
        done = uninterrupted.result()
        assert done.returncode == 0, done.stderr

    seen = [json.loads(line) for line in (killed / "rows.log").read_text().splitlines()]
    expected = [json.loads(line) for line in (whole / "rows.log").read_text().splitlines()]
    assert len(expected) == 2 * 19
    assert seen == expected  # the same batches, in the same order, none twice
    for name, value in torch.load(whole / "ck.pt.final").items():
        assert torch.equal(torch.load(killed / "ck.pt.final")[name], value), name
