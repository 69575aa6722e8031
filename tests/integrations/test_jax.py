"""headrace.jax: batches put on a JAX device, prefetched, in a real training loop."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import headrace as hr
import headrace.jax as hrj

CPU = jax.devices("cpu")[0]


def pairs(n: int) -> hr.Pipeline[Any]:
    return hr.range(n).map(lambda i: (np.full(3, i, np.float32), np.int32(i)))


def assert_on_cpu(leaf: Any) -> None:
    assert isinstance(leaf, jax.Array)
    assert leaf.devices() == {CPU}


def test_tuple_batches_become_device_arrays_with_the_same_values() -> None:
    pipeline = pairs(10).batch(4)
    expected = list(pipeline)
    got = list(hrj.to_jax(pipeline, device=CPU))
    assert len(got) == len(expected) == 3
    for (x, y), (ex, ey) in zip(got, expected, strict=True):
        assert isinstance((x, y), tuple)
        assert_on_cpu(x)
        assert_on_cpu(y)
        assert x.dtype == jnp.float32
        assert y.dtype == jnp.int32
        np.testing.assert_array_equal(np.asarray(x), ex)
        np.testing.assert_array_equal(np.asarray(y), ey)
    assert got[-1][0].shape == (2, 3)  # the last, partial batch


class Sample(NamedTuple):
    image: np.ndarray
    label: int


def test_dicts_named_tuples_and_nesting_keep_their_structure() -> None:
    pipeline = hr.range(6).map(
        lambda i: {
            "sample": Sample(np.full((2, 2), i, np.uint8), i),
            "extra": (np.float64(i) / 2, np.bool_(i % 2)),
            "name": f"file-{i}.png",
        }
    )
    batches = list(hrj.to_jax(pipeline.batch(3), prefetch=2, device=CPU))
    assert len(batches) == 2
    first = batches[0]
    assert set(first) == {"sample", "extra", "name"}
    assert isinstance(first["sample"], Sample)
    assert_on_cpu(first["sample"].image)
    assert first["sample"].image.dtype == jnp.uint8
    np.testing.assert_array_equal(np.asarray(first["sample"].label), [0, 1, 2])
    assert isinstance(first["extra"], tuple)
    np.testing.assert_allclose(np.asarray(batches[1]["extra"][0]), [1.5, 2.0, 2.5])
    np.testing.assert_array_equal(np.asarray(batches[1]["extra"][1]), [True, False, True])
    # Strings stay on the host, as they were batched.
    assert isinstance(first["name"], np.ndarray)
    assert first["name"].tolist() == ["file-0.png", "file-1.png", "file-2.png"]


def test_unbatched_scalars_and_default_device() -> None:
    got = list(hrj.to_jax(hr.range(4).map(lambda i: i * 1.5), prefetch=0))
    assert all(isinstance(value, jax.Array) and value.shape == () for value in got)
    assert [float(value) for value in got] == [0.0, 1.5, 3.0, 4.5]


@pytest.mark.parametrize("prefetch", [0, 1, 3])
def test_prefetch_takes_at_most_that_many_batches_ahead(prefetch: int) -> None:
    taken = 0

    def count(_: object) -> None:
        nonlocal taken
        taken += 1

    pipeline = pairs(40).batch(4).tap(count)
    seen = 0
    most_ahead = 0
    for _ in hrj.to_jax(pipeline, prefetch=prefetch, device=CPU):
        seen += 1
        most_ahead = max(most_ahead, taken - seen)
        assert taken - seen <= prefetch
    assert seen == taken == 10
    assert most_ahead == prefetch  # the look-ahead is actually used


def test_every_iteration_is_a_fresh_run_and_an_early_stop_closes_it(
    threads_left: Callable[..., list[str]],
) -> None:
    pipeline = pairs(64).map(lambda s: s, workers=2).batch(4)
    batches = hrj.to_jax(pipeline, prefetch=2, device=CPU)
    assert len(batches) == 16
    first = [int(y[0]) for _, y in batches]
    second = [int(y[0]) for _, y in batches]
    assert first == second == list(range(0, 64, 4))

    iterator = iter(batches)
    next(iterator)
    assert any(t.name.startswith("headrace-") for t in threading.enumerate())
    iterator.close()
    assert iterator.closed
    assert threads_left() == []
    with pytest.raises(StopIteration):
        next(iterator)

    with iter(batches) as run:  # a with block closes it too
        next(run)
    assert run.closed
    assert threads_left() == []

    for _ in batches:  # a break drops the iterator, whose run is then closed
        break
    assert threads_left() == []


def test_an_error_in_the_pipeline_reaches_the_loop_and_closes_the_run(
    threads_left: Callable[..., list[str]],
) -> None:
    def fail_at_five(i: int) -> int:
        if i == 5:
            raise RuntimeError("bad example 5")
        return i

    iterator = iter(hrj.to_jax(hr.range(20).map(fail_at_five, workers=2), prefetch=2))
    with pytest.raises(RuntimeError, match="bad example 5"):
        for _ in iterator:
            pass
    assert iterator.closed
    assert threads_left() == []


def drain(values: Any, into: list[int]) -> None:
    """Append ``int(value)`` for every value, up to the error that ends them."""
    for value in values:
        into.append(int(value))


def fail_at_four(i: int) -> int:
    if i == 4:
        raise RuntimeError("bad example 4")
    return i


@pytest.mark.parametrize("prefetch", [0, 2, 6])
def test_an_error_taking_batches_ahead_comes_after_the_batches_before_it(
    prefetch: int, threads_left: Callable[..., list[str]]
) -> None:
    pipeline = hr.range(10).map(fail_at_four)
    plain: list[int] = []
    with pytest.raises(RuntimeError, match="bad example 4") as expected:
        drain(pipeline, plain)
    assert plain == [0, 1, 2, 3]

    iterator = iter(hrj.to_jax(pipeline, prefetch=prefetch))
    got: list[int] = []
    with pytest.raises(RuntimeError, match="bad example 4") as raised:
        drain(iterator, got)
    assert got == plain
    assert raised.value.__notes__ == expected.value.__notes__  # where it was raised
    assert iterator.closed
    assert threads_left() == []
    with pytest.raises(StopIteration):  # raised once, then the run is over
        next(iterator)


@pytest.mark.usefixtures("nothing_left_running")
def test_an_error_putting_a_batch_on_the_device_closes_the_run() -> None:
    assert not jax.config.jax_enable_x64  # so that 2**40 does not fit in an int32
    pipeline = hr.range(40).map(lambda i: i if i < 3 else 2**40 + i, workers=2)
    iterator = iter(hrj.to_jax(pipeline, prefetch=2))
    got: list[int] = []
    with pytest.raises(OverflowError):
        drain(iterator, got)
    assert got == [0, 1, 2]  # those put before the error still reach the loop
    assert iterator.closed


@pytest.mark.parametrize("prefetch", [0, 1, 3])
def test_state_is_after_the_last_batch_returned_and_resumes_there(prefetch: int) -> None:
    data = hrj.to_jax(pairs(40).shuffle(8, seed=2).batch(4), prefetch=prefetch, resumable=True)
    whole = [np.asarray(y).tolist() for _, y in data.iter(epoch=3)]
    with data.iter(epoch=3) as batches:
        taken = [np.asarray(next(batches)[1]).tolist() for _ in range(4)]
        state = batches.state()  # batches 5 to 8 may be on the device already
        assert (state["epoch"], state["position"]) == (3, 4)
        assert batches.stats()[0]["items_out"] >= 4
        assert "shuffle" in batches.report()
    rest = [np.asarray(y).tolist() for _, y in data.iter(state=state)]
    assert taken + rest == whole
    with data.iter(epoch=3) as batches:
        assert len(list(batches)) == 10
        end = batches.state()
    assert (end["epoch"], end["position"]) == (4, 0)  # the next epoch's start


def test_with_batches_ahead_the_state_needs_resumable() -> None:
    with hrj.to_jax(pairs(10).batch(2), prefetch=2).iter() as batches:
        next(batches)
        with pytest.raises(ValueError, match=r"taken 2 batch\(es\) ahead.*resumable=True"):
            batches.state()
    with hrj.to_jax(pairs(10).batch(2), prefetch=0).iter() as batches:
        next(batches)
        assert batches.state()["position"] == 1


def test_the_state_of_an_unseeded_shuffle_is_refused_with_or_without_prefetch() -> None:
    for prefetch in (0, 2):
        pipeline = pairs(10).shuffle(4).batch(2)
        with hrj.to_jax(pipeline, prefetch=prefetch, resumable=True).iter() as batches:
            next(batches)
            with pytest.raises(ValueError, match="give it a seed"):
                batches.state()


def test_the_orbax_handler_refuses_what_it_cannot_save_or_restore(tmp_path: Any) -> None:
    handler = hrj.CheckpointHandler()
    data = hrj.to_jax(pairs(4).batch(2))
    with pytest.raises(TypeError, match=r"CheckpointSave takes the iterator"):
        handler.save(tmp_path, item=data)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"CheckpointRestore takes what to_jax\(\) returned"):
        handler.restore(tmp_path, item=iter(data))  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError, match="no headrace state saved"):
        handler.restore(tmp_path, item=data)
    batches = iter(hrj.to_jax(pairs(4).batch(2), resumable=True))
    next(batches)
    handler.save(tmp_path, item=batches)
    assert [np.asarray(y).tolist() for _, y in handler.restore(tmp_path, item=data)] == [[2, 3]]


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="prefetch"):
        hrj.to_jax(hr.range(3), prefetch=-1)
    with pytest.raises(TypeError, match="device"):
        hrj.to_jax(hr.range(3), device="cpu")  # type: ignore[arg-type]


def test_a_jitted_linear_model_trains_on_a_pipeline() -> None:
    rng = np.random.default_rng(0)
    true_w = rng.normal(size=(5,)).astype(np.float32)
    features = rng.normal(size=(512, 5)).astype(np.float32)
    targets = features @ true_w + 0.3
    pipeline = (
        hr.from_iterable(list(zip(features, targets, strict=True))).shuffle(128, seed=1).batch(32)
    )

    def loss_fn(params: tuple[jax.Array, jax.Array], x: jax.Array, y: jax.Array) -> jax.Array:
        w, b = params
        return jnp.mean((x @ w + b - y) ** 2)

    @jax.jit
    def step(
        params: tuple[jax.Array, jax.Array], x: jax.Array, y: jax.Array
    ) -> tuple[tuple[jax.Array, jax.Array], jax.Array]:
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        w, b = params
        return (w - 0.1 * grads[0], b - 0.1 * grads[1]), loss

    params = (jnp.zeros(5), jnp.zeros(()))
    epoch_losses = []
    for _ in range(4):
        losses = []
        for x, y in hrj.to_jax(pipeline, prefetch=2, device=CPU):
            params, loss = step(params, x, y)
            losses.append(float(loss))
        assert len(losses) == 16
        epoch_losses.append(sum(losses) / len(losses))
    assert epoch_losses[-1] < 0.05 * epoch_losses[0]
    np.testing.assert_allclose(np.asarray(params[0]), true_w, atol=0.05)
