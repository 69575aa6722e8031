"""A PyTorch model trained from a pipeline whose image decoding runs on a Ray cluster.

The data: a folder of small PNG images in two classes (reddish and bluish pictures with
noise), written here. The pipeline lists them, decodes and resizes each on Ray actors,
shuffles, batches, and hands the batches to a plain torch loop::

    hr.image_folder(root)                          (path, label), one folder per class
      .map(load, workers=2, backend="ray")         decoding on two Ray actors
      .shuffle(256, seed=0).batch(32)              (x, y) numpy batches

Without ``--address`` the program starts a local Ray cluster of ``--cpus`` CPUs. On a
real cluster, pass its address (``--address auto`` on a node of the cluster, or
``--address ray://HEAD:10001`` from outside, with ``ray[client]``) and put the images
where every node reads them (a shared filesystem, or an ``s3://`` folder:
``image_folder`` and ``decode`` take fsspec URLs); ``--workers`` then sets how many
actors decode, ``resources=`` what each asks of the cluster.

    python examples/ray_cluster.py [--images 256] [--epochs 4] [--workers 2]
        [--address ADDRESS] [--cpus 2]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import ray
import torch
from PIL import Image
from torch import nn

import headrace as hr
from headrace.vision import decode

SIZE = 16
CLASSES = ("blue", "red")


def write_images(root: Path, count: int) -> None:
    """``count`` PNG images, half of each class, their colour plus noise."""
    rng = np.random.default_rng(0)
    for index in range(count):
        label = index % 2
        base = np.array([40, 60, 200] if label == 0 else [200, 50, 40], dtype=np.float64)
        noise = rng.normal(0, 60, size=(24, 32, 3))
        pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
        folder = root / CLASSES[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(folder / f"{index:05d}.png")


def load(item: tuple[str, int]) -> tuple[np.ndarray, np.int64]:
    """Runs on a Ray actor: decode, resize, scale to [0, 1], channels first."""
    path, label = item
    image = decode(path, resize=(SIZE, SIZE)).astype(np.float32) / 255.0
    return image.transpose(2, 0, 1), np.int64(label)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--address", default=None, help="a Ray cluster to connect to")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of a local cluster")
    args = parser.parse_args()

    if args.address is None:
        ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    else:
        ray.init(address=args.address)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        write_images(root, args.images)
        pipeline = (
            hr.image_folder(str(root))
            .map(load, workers=args.workers, backend="ray")
            .shuffle(256, seed=0)
            .batch(32)
        )
        model = nn.Sequential(nn.Flatten(), nn.Linear(3 * SIZE * SIZE, len(CLASSES)))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
        loss_fn = nn.CrossEntropyLoss()
        for epoch in range(args.epochs):
            total, count, correct = 0.0, 0, 0
            for x, y in pipeline:
                inputs, targets = torch.from_numpy(x), torch.from_numpy(y)
                optimizer.zero_grad()
                logits = model(inputs)
                loss = loss_fn(logits, targets)
                loss.backward()
                optimizer.step()
                total += loss.item() * len(y)
                count += len(y)
                correct += int((logits.argmax(1) == targets).sum())
            print(f"epoch {epoch} loss {total / count:.4f} accuracy {correct / count:.3f}")
    ray.shutdown()
    print("ray cluster training: done")


if __name__ == "__main__":
    main()
