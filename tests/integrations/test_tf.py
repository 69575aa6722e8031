"""headrace.tf: a tf.data.Dataset with an inferred signature, fresh runs, clean stops."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
import tensorflow as tf

import headrace as hr
import headrace.tf as hrtf

pytestmark = pytest.mark.timeout(120)


def spec(shape: Any, dtype: tf.DType) -> tf.TensorSpec:
    return tf.TensorSpec(shape, dtype)


class Sample(NamedTuple):
    image: Any
    label: Any


def counted(pipeline: hr.Pipeline[Any]) -> tuple[hr.Pipeline[Any], Callable[[], int]]:
    """``pipeline`` with a tap counting the elements taken from it."""
    taken = 0

    def count(_: object) -> None:
        nonlocal taken
        taken += 1

    return pipeline.tap(count), lambda: taken


def as_lists(dataset: tf.data.Dataset) -> list[Any]:
    return [tf.nest.map_structure(lambda t: np.asarray(t).tolist(), element) for element in dataset]


# -- signature inference ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("elements", "expected"),
    [
        pytest.param(
            [(np.zeros((2, 3), np.float32), np.int32(1))],
            (spec((2, 3), tf.float32), spec((), tf.int32)),
            id="tuple of numpy array and scalar",
        ),
        pytest.param(
            [{"a": 1, "b": 2.5, "c": True, "d": "text", "e": b"raw"}],
            {
                "a": spec((), tf.int64),
                "b": spec((), tf.float64),
                "c": spec((), tf.bool),
                "d": spec((), tf.string),
                "e": spec((), tf.string),
            },
            id="python scalars",
        ),
        pytest.param(
            [{"x": {"sample": Sample(np.zeros((4, 4, 3), np.uint8), np.int64(2))}, "w": [1, 2]}],
            {
                "x": {"sample": Sample(spec((4, 4, 3), tf.uint8), spec((), tf.int64))},
                "w": spec((2,), tf.int64),
            },
            id="nested dict, named tuple, list as an array",
        ),
        pytest.param(
            [(np.array(["a", "bc"]), np.array([b"x"], dtype=object), np.complex64(1j))],
            (spec((2,), tf.string), spec((1,), tf.string), spec((), tf.complex64)),
            id="string arrays and complex",
        ),
        pytest.param(
            [
                (np.zeros((5, 3), np.float32), np.zeros(2), np.zeros(3)),
                (np.zeros((7, 3), np.float32), np.zeros(2), np.zeros((3, 1))),
            ],
            (spec((None, 3), tf.float32), spec((2,), tf.float64), spec(None, tf.float64)),
            id="dims differing between the first two become None",
        ),
    ],
)
def test_infer_signature(elements: list[Any], expected: Any) -> None:
    signature = hrtf.infer_signature(elements)
    assert signature == expected
    assert type(signature) is type(expected)


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        pytest.param(
            lambda p: p.batch(4),
            (spec((None, 3), tf.float32), spec((None,), tf.int64)),
            id="batch: first dim None",
        ),
        pytest.param(
            lambda p: p.batch(4, drop_remainder=True),
            (spec((4, 3), tf.float32), spec((4,), tf.int64)),
            id="batch dropping the remainder: fixed",
        ),
        pytest.param(
            lambda p: p.batch(4).map(lambda b: b).unbatch(),
            (spec((3,), tf.float32), spec((), tf.int64)),
            id="batch then unbatch: elements",
        ),
        pytest.param(
            lambda p: p.padded_batch(4),
            (spec((None, None), tf.float32), spec((None,), tf.int64)),
            id="padded_batch: every dim None",
        ),
        pytest.param(
            lambda p: p,
            (spec((3,), tf.float32), spec((), tf.int64)),
            id="unbatched",
        ),
    ],
)
def test_the_pipelines_batching_sets_the_batch_dimension(
    make: Callable[[hr.Pipeline[Any]], hr.Pipeline[Any]], expected: Any
) -> None:
    base = hr.range(10).map(lambda i: (np.full(3, i, np.float32), i))
    pipeline = make(base)
    dataset = hrtf.to_tf_dataset(pipeline)
    assert dataset.element_spec == expected
    got = as_lists(dataset)
    want = [tf.nest.map_structure(lambda a: np.asarray(a).tolist(), e) for e in pipeline]
    assert got == want


def test_padded_batches_of_varying_lengths_fit_the_signature() -> None:
    pipeline = hr.range(1, 8).map(lambda n: np.arange(n, dtype=np.int32)).padded_batch(3)
    dataset = hrtf.to_tf_dataset(pipeline)
    assert dataset.element_spec == spec((None, None), tf.int32)
    assert [tuple(batch.shape) for batch in dataset] == [(3, 3), (3, 6), (1, 7)]


def test_signature_errors_are_clear() -> None:
    with pytest.raises(ValueError, match=r"yielded no element.*output_signature="):
        hrtf.to_tf_dataset(hr.from_iterable([]))
    with pytest.raises(TypeError, match=r"element\[1\] is None"):
        hrtf.to_tf_dataset(hr.from_iterable([(1, None)]))
    with pytest.raises(TypeError, match=r"element\['x'\] .*has no tf type"):
        hrtf.to_tf_dataset(hr.from_iterable([{"x": np.array([object()])}]))
    with pytest.raises(TypeError, match="elements 0 and 1 hold int64 and float64"):
        hrtf.to_tf_dataset(hr.from_iterable([1, 2.0]))
    with pytest.raises(TypeError, match="elements 0 and 1 differ in structure"):
        hrtf.to_tf_dataset(hr.from_iterable([(1, 2), (1, 2, 3)]))
    with pytest.raises(ValueError, match="at least one element"):
        hrtf.infer_signature([])


def test_a_given_signature_is_used_without_starting_the_pipeline() -> None:
    pipeline, taken = counted(hr.range(5).map(lambda i: np.arange(i)))
    dataset = hrtf.to_tf_dataset(pipeline, output_signature=spec((None,), tf.int64))
    assert taken() == 0
    assert [len(x) for x in dataset] == [0, 1, 2, 3, 4]
    empty = hrtf.to_tf_dataset(hr.from_iterable([]), output_signature=spec((), tf.int64))
    assert list(empty) == []


# -- iteration --------------------------------------------------------------------------


def test_the_peeked_elements_are_neither_lost_nor_taken_twice() -> None:
    pipeline, taken = counted(hr.range(7).map(lambda i: (i, str(i))))
    dataset = hrtf.to_tf_dataset(pipeline)
    assert taken() == 2  # the first two elements, read for the signature
    assert as_lists(dataset) == [(i, str(i).encode()) for i in range(7)]
    assert taken() == 7  # the first iteration went on with the same run


def test_a_single_element_pipeline() -> None:
    dataset = hrtf.to_tf_dataset(hr.from_iterable([np.arange(3)]).batch(5))
    assert dataset.element_spec == spec((None, 3), tf.int64)
    assert as_lists(dataset) == [[[0, 1, 2]]]
    assert as_lists(dataset) == [[[0, 1, 2]]]


def test_a_final_partial_batch() -> None:
    pipeline = hr.range(10).map(lambda i: (np.full((2, 2), i, np.float32), i)).batch(4)
    dataset = hrtf.to_tf_dataset(pipeline)
    shapes = [(tuple(x.shape), tuple(y.shape)) for x, y in dataset]
    assert shapes == [((4, 2, 2), (4,)), ((4, 2, 2), (4,)), ((2, 2, 2), (2,))]
    assert [y.numpy().tolist() for _, y in dataset][-1] == [8, 9]


def test_every_epoch_is_a_fresh_run_seeing_all_data_once() -> None:
    pipeline, taken = counted(hr.range(50).shuffle(16, seed=3))
    dataset = hrtf.to_tf_dataset(pipeline.batch(8))
    epochs = [[v for batch in dataset for v in batch.numpy().tolist()] for _ in range(2)]
    assert all(sorted(epoch) == list(range(50)) for epoch in epochs)
    assert epochs[0] != epochs[1]  # the next epoch of the seeded shuffle
    assert taken() == 100
    repeated = [v for batch in dataset.repeat(2) for v in batch.numpy().tolist()]
    assert sorted(repeated) == sorted(list(range(50)) * 2)
    assert taken() == 200


def test_the_dataset_gives_its_runs_state_and_statistics_and_resumes_from_a_state() -> None:
    def make() -> hr.Pipeline[Any]:
        # A prefetch in the pipeline reads ahead too, and its state covers that.
        pipeline = hr.range(60).shuffle(16, seed=4).map(lambda i: np.array([i, -i]))
        return pipeline.batch(8).prefetch(2)

    whole = [b.numpy().tolist() for b in hrtf.to_tf_dataset(make())]
    for given in (None, spec((None, 2), tf.int64)):
        dataset = hrtf.to_tf_dataset(make(), output_signature=given)
        if given is not None:
            with pytest.raises(RuntimeError, match="no run yet"):
                dataset.headrace.state()
        batches = iter(dataset)
        head = [next(batches).numpy().tolist() for _ in range(3)]
        saved = json.loads(json.dumps(dataset.headrace.state()))  # plain data
        rows = dataset.headrace.stats()
        assert rows[-1]["name"] == "prefetch(2)"
        assert "batch(8)" in dataset.headrace.report()
        del batches
        resumed = hrtf.to_tf_dataset(make(), output_signature=given, state=saved)
        assert head + [b.numpy().tolist() for b in resumed] == whole
        # Its next iteration is the next epoch, whole.
        assert len(list(resumed)) == len(whole)


def test_composes_with_tf_data_operations() -> None:
    pipeline = hr.range(10).map(lambda i: (np.array([i, -i], np.float32), i)).batch(4)
    dataset = (
        hrtf.to_tf_dataset(pipeline)
        .map(lambda x, y: (x * 2.0, y + 100))
        .unbatch()
        .filter(lambda x, y: y % 2 == 0)
        .batch(3)
        .prefetch(2)
    )
    got = as_lists(dataset)
    assert got == [
        ([[0.0, 0.0], [4.0, -4.0], [8.0, -8.0]], [100, 102, 104]),
        ([[12.0, -12.0], [16.0, -16.0]], [106, 108]),
    ]
    # A tf.function consuming the dataset: the graph path.
    total = tf.function(lambda ds: ds.reduce(tf.constant(0, tf.int64), lambda s, e: s + e[1]))
    assert int(total(dataset.unbatch())) == 520


def test_a_tf_training_loop_with_gradient_tape() -> None:
    rng = np.random.default_rng(0)
    true_w = rng.normal(size=(4, 1)).astype(np.float32)
    features = rng.normal(size=(256, 4)).astype(np.float32)
    targets = features @ true_w + np.float32(0.5)
    pipeline = (
        hr.from_iterable(list(zip(features, targets, strict=True))).shuffle(64, seed=0).batch(32)
    )
    dataset = hrtf.to_tf_dataset(pipeline).prefetch(2)
    w = tf.Variable(tf.zeros((4, 1)))
    b = tf.Variable(tf.zeros((1,)))
    optimizer_rate = 0.1

    @tf.function
    def step(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((x @ w + b - y) ** 2)
        grad_w, grad_b = tape.gradient(loss, [w, b])
        w.assign_sub(optimizer_rate * grad_w)
        b.assign_sub(optimizer_rate * grad_b)
        return loss

    epoch_losses = []
    for _ in range(4):
        losses = [float(step(x, y)) for x, y in dataset]
        assert len(losses) == 8
        epoch_losses.append(sum(losses) / len(losses))
    assert epoch_losses[-1] < 0.05 * epoch_losses[0]
    np.testing.assert_allclose(w.numpy(), true_w, atol=0.05)


KERAS_SCRIPT = textwrap.dedent(
    """
    import json

    import keras
    import numpy as np

    import headrace as hr
    import headrace.tf as hrtf

    assert keras.backend.backend() == "tensorflow"
    rng = np.random.default_rng(0)
    true_w = rng.normal(size=(6, 1)).astype(np.float32)
    features = rng.normal(size=(320, 6)).astype(np.float32)
    targets = features @ true_w - np.float32(1.0)
    taken = []
    pipeline = (
        hr.from_iterable(list(zip(features, targets)))
        .map(lambda pair: pair, workers=2)
        .tap(taken.append)
        .shuffle(64, seed=0)
        .batch(32)
    )
    dataset = hrtf.to_tf_dataset(pipeline).prefetch(2)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    history = model.fit(dataset, epochs=4, verbose=0)
    print(json.dumps({"loss": history.history["loss"], "taken": len(taken)}))
    """
)


def test_keras_model_fit_on_the_tensorflow_backend(tmp_path: Path) -> None:
    script = tmp_path / "fit.py"
    script.write_text(KERAS_SCRIPT)
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"}
    completed = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
        env=env,
    )
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    losses = result["loss"]
    assert len(losses) == 4
    assert losses[-1] < 0.1 * losses[0]
    assert result["taken"] == 4 * 320  # each epoch, one fresh run over all the data


# -- stopping ---------------------------------------------------------------------------


def closing_marker(closed: list[str]) -> Callable[[Iterable[Any]], Iterator[Any]]:
    """A pipe stage that records when its run ends, however it ends."""

    def stage(upstream: Iterable[Any]) -> Iterator[Any]:
        try:
            yield from upstream
        finally:
            closed.append("closed")

    return stage


def test_an_abandoned_iteration_closes_the_run(
    threads_left: Callable[..., list[str]], eventually: Callable[..., bool]
) -> None:
    closed: list[str] = []
    pipeline = (
        hr.range(1000)
        .map(lambda i: np.full(4, i, np.float32), workers=2)
        .pipe(closing_marker(closed))
        .batch(4)
    )
    dataset = hrtf.to_tf_dataset(pipeline)
    assert any(t.name.startswith("headrace-") for t in threading.enumerate())
    got = [batch.numpy()[:, 0].tolist() for batch in dataset.take(2)]
    assert got == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert eventually(lambda: closed == ["closed"], timeout=5.0)
    assert threads_left(5.0) == []

    # A later iteration starts a fresh run, and abandoning it closes that one too.
    iterator = iter(dataset)
    assert next(iterator).numpy()[:, 0].tolist() == [0, 1, 2, 3]
    assert threads_left(0.0) != []
    del iterator
    assert eventually(lambda: closed == ["closed", "closed"], timeout=5.0)
    assert threads_left(5.0) == []


def test_a_dataset_never_iterated_releases_the_run_it_peeked_at(
    threads_left: Callable[..., list[str]], eventually: Callable[..., bool]
) -> None:
    closed: list[str] = []
    pipeline = hr.range(100).map(lambda i: i, workers=2).pipe(closing_marker(closed))
    dataset = hrtf.to_tf_dataset(pipeline)
    assert closed == []
    del dataset
    gc.collect()
    assert eventually(lambda: closed == ["closed"], timeout=5.0)
    assert threads_left(5.0) == []


def test_an_error_in_the_pipeline_reaches_tf_and_closes_the_run(
    threads_left: Callable[..., list[str]],
) -> None:
    def fail_at_20(i: int) -> int:
        if i == 20:
            raise RuntimeError("bad example 20")
        return i

    dataset = hrtf.to_tf_dataset(hr.range(100).map(fail_at_20, workers=2))
    with pytest.raises(tf.errors.UnknownError, match="bad example 20"):
        for _ in dataset:
            pass
    assert threads_left(5.0) == []


def test_a_known_length_is_the_datasets_cardinality() -> None:
    sized = hr.range(10).map(lambda i: (float(i), i)).batch(4)
    assert int(hrtf.to_tf_dataset(sized).cardinality()) == len(sized) == 3
    assert len(list(hrtf.to_tf_dataset(sized))) == 3
    endless = hr.range(3).map(float).repeat()
    assert int(hrtf.to_tf_dataset(endless).cardinality()) == int(tf.data.INFINITE_CARDINALITY)
    filtered = hr.range(10).filter(lambda i: i % 2).map(float)
    assert int(hrtf.to_tf_dataset(filtered).cardinality()) == int(tf.data.UNKNOWN_CARDINALITY)


def test_a_source_reading_in_batches_may_end_with_a_short_batch(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("x,y\n" + "".join(f"{i},{2 * i}\n" for i in range(5)))
    rows = hr.read_csv(path, dtype="float32", batch_size=2).map(lambda b: (b["x"], b["y"]))
    dataset = hrtf.to_tf_dataset(rows)
    assert [spec.shape.as_list() for spec in dataset.element_spec] == [[None], [None]]
    assert [x.numpy().tolist() for x, _ in dataset] == [[0, 1], [2, 3], [4]]
    # Taken apart again, the rows have no batch dimension.
    assert hrtf.to_tf_dataset(rows.unbatch()).element_spec[0].shape.as_list() == []
