"""Training a JAX model straight from a headrace pipeline.

A linear regression with a jitted gradient step, fed by a pipeline that generates
noisy examples of a known linear function in parallel, shuffles and batches them::

    hr.range(n).map(make_example, workers=2)   one (x, y) pair per index
      .shuffle(512, seed=0).batch(64)          numpy batches
    headrace.jax.to_jax(pipeline, prefetch=2)  batches on the device, two ahead

Every epoch iterates the same ``to_jax`` iterable again, which starts a fresh run of
the pipeline (a new shuffle). The script prints the mean loss per epoch and checks
that training reduced it and recovered the weights.

    python examples/jax_training.py [--examples 4096] [--epochs 5] [--batch-size 64]
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

import headrace as hr
import headrace.jax as hrj

FEATURES = 8
TRUE_W = np.linspace(-2.0, 2.0, FEATURES).astype(np.float32)
TRUE_B = np.float32(0.5)


def make_example(index: int) -> tuple[np.ndarray, np.float32]:
    """One (features, target) pair, the same for the same index."""
    rng = np.random.default_rng(index)
    x = rng.normal(size=FEATURES).astype(np.float32)
    noise = np.float32(0.01 * rng.normal())
    return x, np.float32(x @ TRUE_W + TRUE_B + noise)


def loss_fn(params, x, y):
    w, b = params
    prediction = x @ w + b
    return jnp.mean((prediction - y) ** 2)


@jax.jit
def train_step(params, x, y, learning_rate):
    loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
    params = jax.tree_util.tree_map(lambda p, g: p - learning_rate * g, params, grads)
    return params, loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=4096)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=0.05)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    pipeline = (
        hr.range(args.examples)
        .map(make_example, workers=args.workers)
        .shuffle(512, seed=0)
        .batch(args.batch_size)
    )
    batches = hrj.to_jax(pipeline, prefetch=2, device=jax.devices()[0])
    print(f"{len(batches)} batches of up to {args.batch_size} per epoch")

    params = (jnp.zeros(FEATURES, jnp.float32), jnp.zeros((), jnp.float32))
    losses = []
    for epoch in range(args.epochs):
        total, count = 0.0, 0
        for x, y in batches:  # a fresh run of the pipeline every epoch
            params, loss = train_step(params, x, y, args.learning_rate)
            total += float(loss) * len(y)
            count += len(y)
        losses.append(total / count)
        print(f"epoch {epoch}: mean loss {losses[-1]:.4f}")

    weight_error = float(jnp.max(jnp.abs(params[0] - TRUE_W)))
    print(f"largest weight error {weight_error:.4f}")
    assert count == args.examples, "every example is seen once per epoch"
    assert losses[-1] < 0.1 * losses[0], "the loss dropped clearly"
    print("jax training: loss dropped")


if __name__ == "__main__":
    main()
