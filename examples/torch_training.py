"""A plain PyTorch training loop fed by a headrace pipeline, headrace doing the parallelism.

The data: points ``x`` in 8 dimensions and a target ``y = x . w + 1 + noise``. The
pipeline makes each example from its index on two worker threads, shuffles them
(anew every epoch, reproducibly), batches them into numpy arrays and hands them to
torch as tensors that share the arrays' memory::

    hr.range(samples)
      .map(make_example, workers=2)    the per-example work, on headrace's workers
      .shuffle(1024, seed=0)           a new order every epoch
      .batch(batch_size)               (x, y) numpy batches
    hrt.to_torch(...)                  the same batches as torch tensors

The loop iterates the dataset directly: there is no DataLoader and no worker process
to start; ``DataLoader(dataset, batch_size=None, num_workers=0)`` would do the same
for code that expects a DataLoader. Each epoch is a fresh run of the pipeline.

With ``--checkpoint PATH`` the loop saves the model, the optimizer and the data's
position (``data.state_dict()``) every 10 steps, and a program started again with the
same path goes on from there, mid-epoch, with the next batch. ``--stop-after N``
ends the program after N steps, as an interruption would.

    python examples/torch_training.py [--samples 8192] [--epochs 8] [--batch-size 64]
        [--checkpoint PATH] [--stop-after N]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch import nn

import headrace as hr
import headrace.torch as hrt

FEATURES = 8
WEIGHTS = np.linspace(-2.0, 2.0, FEATURES).astype(np.float32)
NOISE = 0.1


def make_example(index: int) -> tuple[np.ndarray, np.ndarray]:
    """Example ``index``: always the same one, whichever worker makes it."""
    rng = np.random.default_rng(index)
    x = rng.normal(size=FEATURES).astype(np.float32)
    y = x @ WEIGHTS + 1.0 + NOISE * rng.normal()
    return x, np.float32(y).reshape(1)


def training_data(samples: int, batch_size: int, workers: int) -> hrt.TorchDataset:
    pipeline = (
        hr.range(samples).map(make_example, workers=workers).shuffle(1024, seed=0).batch(batch_size)
    )
    return hrt.to_torch(pipeline)


#: Steps between two checkpoints.
SAVE_EVERY = 10


def train(
    samples: int,
    epochs: int,
    batch_size: int,
    workers: int,
    checkpoint: Path | None = None,
    stop_after: int | None = None,
) -> list[float]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(FEATURES, 16), nn.ReLU(), nn.Linear(16, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    loss_fn = nn.MSELoss()
    data = training_data(samples, batch_size, workers)
    print(f"{len(data)} batches per epoch from {data.pipeline!r}")
    first, losses, total, count, steps = 1, [], 0.0, 0, 0
    if checkpoint is not None and checkpoint.exists():
        saved = torch.load(checkpoint)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        data.load_state_dict(saved["data"])  # the next batch is the one after
        first, losses, total, count = saved["epoch"], saved["losses"], *saved["sums"]
        print(f"resumed in epoch {first} after {count} examples")
    for epoch in range(first, epochs + 1):
        for x, y in data:  # a fresh run of the pipeline every epoch
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(x)
            count += len(x)
            steps += 1
            if checkpoint is not None and steps % SAVE_EVERY == 0:
                state = {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "data": data.state_dict(),
                    "epoch": epoch,
                    "losses": losses,
                    "sums": (total, count),
                }
                torch.save(state, checkpoint)
            if steps == stop_after:
                print(f"stopped after {steps} steps, in epoch {epoch}")
                return losses
        losses.append(total / count)
        total, count = 0.0, 0
        print(f"epoch {epoch}: loss {losses[-1]:.4f}")
    return losses


def main() -> None:
    parser = argparse.ArgumentParser(description="PyTorch training on a headrace pipeline")
    parser.add_argument("--samples", type=int, default=8192, help="examples per epoch (8192)")
    parser.add_argument("--epochs", type=int, default=8, help="epochs (8)")
    parser.add_argument("--batch-size", type=int, default=64, help="batch size (64)")
    parser.add_argument("--workers", type=int, default=2, help="headrace map workers (2)")
    parser.add_argument("--checkpoint", type=Path, help="save here, and resume from here")
    parser.add_argument("--stop-after", type=int, help="end after this many steps")
    args = parser.parse_args()
    losses = train(
        args.samples, args.epochs, args.batch_size, args.workers, args.checkpoint, args.stop_after
    )
    if args.stop_after is not None and len(losses) < args.epochs:
        return
    assert losses[-1] < 0.2 * losses[0], f"the loss did not drop enough: {losses}"
    print(f"loss dropped from {losses[0]:.4f} to {losses[-1]:.4f}")
    print("torch training: done")


if __name__ == "__main__":
    main()
