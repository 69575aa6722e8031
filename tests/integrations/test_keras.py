"""headrace.keras: Keras 3 trains, validates, evaluates and predicts from pipelines.

The tests run on the torch backend (tests/conftest.py sets it before Keras is imported);
one test runs the same checks in fresh interpreters on the jax and tensorflow backends.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from collections import Counter
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import pytest

import headrace as hr
import headrace.keras as hrk
from headrace.keras import PipelineAdapter, to_keras

#: Keras' torch backend turns tensors into numpy arrays with np.array(tensor), which
#: numpy 2 flags for torch's __array__ (no copy keyword): in fit's logs and in predict,
#: whatever the input. (Made an error, it even leaves fit's history as torch tensors.)
pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.filterwarnings(
        "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
    ),
]

N, BATCH = 256, 32
WEIGHTS = np.array([1.0, -2.0, 0.5], dtype=np.float32)


def arrays(n: int = N, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    return x, (x @ WEIGHTS)[:, None]


def batches(x: np.ndarray, y: np.ndarray, *, keep: Callable[[int], bool] | None = None,
            seen: list[int] | None = None, workers: int = 1) -> hr.Pipeline[Any]:  # fmt: skip
    """``(x, y)`` batches of BATCH rows; ``keep`` filters rows (the length becomes
    unknown), ``seen`` records the index of every row that the pipeline reads."""

    def row(i: int) -> tuple[np.ndarray, np.ndarray]:
        if seen is not None:
            seen.append(i)
        return x[i], y[i]

    pipeline = hr.range(len(x))
    if keep is not None:
        pipeline = pipeline.filter(keep)
    # A small fixed buffer: what a run read shows what Keras took from it, plus at
    # most one row in flight (by default a cheap map reads whole tasks ahead).
    return pipeline.map(row, workers=workers, buffer_size=2 * max(workers, 1)).batch(BATCH)


def model() -> Any:
    keras.utils.set_random_seed(0)
    net = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)]
    )
    net.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
    return net


class Steps(keras.callbacks.Callback):  # type: ignore[misc]
    """The steps Keras plans per epoch at the start, and the batches each epoch took."""

    def __init__(self) -> None:
        super().__init__()
        self.planned: int | str | None = "not started"
        self.per_epoch: list[int] = []

    def on_train_begin(self, logs: Any = None) -> None:
        self.planned = self.params["steps"]

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self.per_epoch.append(0)

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        self.per_epoch[-1] += 1


def runs(seen: list[int], first: int = 0) -> list[list[int]]:
    """Split the row indices a pipeline read into its runs (each starts at ``first``)."""
    found: list[list[int]] = []
    for i in seen:
        if i == first or not found:
            found.append([])
        found[-1].append(i)
    return found


def on_backend(backend: str, code: str, *args: str, timeout: float = 100) -> Any:
    """What a script prints last, as JSON, run in a fresh interpreter on a Keras backend
    (``args`` are its ``sys.argv[1:]``); the test fails with its stderr if it fails."""
    completed = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "KERAS_BACKEND": backend},
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def ran_out_filters() -> list[Any]:
    return [f for f in warnings.filters if f[1] is not None and "ran out" in f[1].pattern]


# -- fit -------------------------------------------------------------------------------


def test_keras_takes_the_adapter_as_it_is() -> None:
    from keras.src.trainers.data_adapters import get_data_adapter
    from keras.src.trainers.data_adapters.data_adapter import DataAdapter

    adapter = to_keras(batches(*arrays()))
    assert isinstance(adapter, DataAdapter)
    assert isinstance(adapter, PipelineAdapter)
    assert get_data_adapter(adapter) is adapter
    assert type(PipelineAdapter(batches(*arrays()))) is type(adapter)
    assert adapter.num_batches == N // BATCH
    assert to_keras(batches(*arrays(), keep=lambda i: i % 2 == 0)).num_batches is None
    assert to_keras(hr.range(3).map(lambda i: np.zeros((2, 1))).repeat()).num_batches is None


def test_fit_infers_the_steps_of_a_pipeline_of_known_length() -> None:
    x, y = arrays()
    seen: list[int] = []
    pipeline = batches(x, y, seen=seen)
    steps = Steps()
    history = model().fit(to_keras(pipeline), epochs=3, callbacks=[steps], verbose=0)
    assert steps.planned == len(pipeline) == N // BATCH
    assert steps.per_epoch == [len(pipeline)] * 3
    losses = history.history["loss"]
    assert losses[-1] < 0.2 * losses[0]
    # Every epoch is a run of its own, over every row once; before them, Keras read
    # one batch to build the model, and left that run (which is closed).
    build, *epochs = runs(seen)
    assert epochs == [list(range(N))] * 3
    assert build == list(range(len(build)))
    assert BATCH <= len(build) <= BATCH + 1


def test_after_fit_the_adapter_gives_the_last_epochs_statistics() -> None:
    x, y = arrays()
    adapter = to_keras(batches(x, y))
    with pytest.raises(RuntimeError, match="no run yet"):
        adapter.stats()
    model().fit(adapter, epochs=2, verbose=0)
    rows = adapter.stats()
    assert rows[-1]["name"] == f"batch({BATCH})"
    assert rows[-1]["items_out"] == N // BATCH  # one epoch's batches, the last one's
    assert rows[0]["items_out"] == N
    assert f"batch({BATCH})" in adapter.report()


def test_fit_on_a_pipeline_of_unknown_length_counts_the_steps_itself() -> None:
    x, y = arrays()
    seen: list[int] = []
    pipeline = batches(x, y, keep=lambda i: i % 3 != 0, seen=seen)
    kept = [i for i in range(N) if i % 3 != 0]
    expected = -(-len(kept) // BATCH)
    steps = Steps()
    filters = list(warnings.filters)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model().fit(to_keras(pipeline), epochs=3, callbacks=[steps], verbose=0)
    assert steps.planned is None  # not known ahead
    assert steps.per_epoch == [expected] * 3
    assert history.history["loss"][-1] < 0.2 * history.history["loss"][0]
    build, *epochs = runs(seen, first=kept[0])
    assert epochs == [kept] * 3
    assert build == kept[: len(build)]
    assert BATCH <= len(build) <= BATCH + 1
    # Keras' "Your input ran out of data" at the end of each run stayed quiet, and the
    # filter that kept it quiet is gone again.
    assert [str(w.message) for w in caught if "ran out of data" in str(w.message)] == []
    assert warnings.filters == filters
    assert ran_out_filters() == []


def test_keras_still_warns_when_steps_per_epoch_asks_for_more_than_a_run_has() -> None:
    # 8 batches a run, 3 per epoch: the third epoch gets 2 before the run ends.
    with pytest.warns(UserWarning, match="ran out of data"):
        model().fit(to_keras(batches(*arrays())), epochs=3, steps_per_epoch=3, verbose=0)
    assert ran_out_filters() == []


def test_validation_runs_its_own_pipeline_every_epoch() -> None:
    x, y = arrays()
    val_x, val_y = arrays(96, seed=1)
    val_seen: list[int] = []
    validation = batches(val_x, val_y, keep=lambda i: i != 5, seen=val_seen)
    net = model()
    history = net.fit(
        to_keras(batches(x, y)), epochs=4, validation_data=to_keras(validation), verbose=0
    )
    val_losses = history.history["val_loss"]
    assert len(val_losses) == 4
    assert val_losses[-1] < 0.2 * val_losses[0]
    # Each validation pass read every validation row once (the model was built).
    assert Counter(val_seen) == {i: 4 for i in range(96) if i != 5}
    keep = np.arange(96) != 5
    expected = net.evaluate(val_x[keep], val_y[keep], batch_size=BATCH, verbose=0)
    assert val_losses[-1] == pytest.approx(expected, rel=1e-5)


def test_evaluate_and_predict_take_pipelines() -> None:
    x, y = arrays()
    net = model()
    net.fit(x, y, batch_size=BATCH, epochs=2, verbose=0)
    known, unknown = batches(x, y), batches(x, y, keep=lambda i: i < 200)
    assert net.evaluate(to_keras(known), verbose=0) == pytest.approx(
        net.evaluate(x, y, batch_size=BATCH, verbose=0), rel=1e-5
    )
    assert net.evaluate(to_keras(unknown), verbose=0) == pytest.approx(
        net.evaluate(x[:200], y[:200], batch_size=BATCH, verbose=0), rel=1e-5
    )
    expected = net.predict(x, batch_size=BATCH, verbose=0)
    # Batches of x alone, (x,) and (x, y): predict uses x.
    for pipeline in (hr.from_iterable(np.split(x, 8)), known.map(lambda b: (b[0],)), known):
        assert np.allclose(net.predict(to_keras(pipeline), verbose=0), expected, atol=1e-6)
    assert np.allclose(net.predict(to_keras(unknown), verbose=0), expected[:200], atol=1e-6)
    assert ran_out_filters() == []


# -- runs that Keras leaves ------------------------------------------------------------


@pytest.mark.usefixtures("nothing_left_running")
def test_runs_cut_short_by_steps_per_epoch_are_closed(
    live_threads: Callable[[], list[str]],
) -> None:
    pipeline = batches(*arrays(), workers=2)
    names: list[list[str]] = []
    probe = keras.callbacks.LambdaCallback(on_epoch_end=lambda *_: names.append(live_threads()))
    # 3 batches of 8 per epoch: the run goes on into the next epoch and is left
    # unfinished when fit returns (as is the run Keras reads to build the model).
    model().fit(to_keras(pipeline), epochs=2, steps_per_epoch=3, callbacks=[probe], verbose=0)
    assert len(names) == 2
    assert all(names)
    model().evaluate(to_keras(pipeline), steps=2, verbose=0)


class StopAt(keras.callbacks.Callback):  # type: ignore[misc]
    def __init__(self, batch: int) -> None:
        super().__init__()
        self.batch = batch

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        if batch == self.batch:
            self.model.stop_training = True


@pytest.mark.usefixtures("nothing_left_running")
def test_close_ends_a_run_that_keras_keeps_after_stopping_mid_epoch() -> None:
    x, y = arrays()
    # Stopped in the middle of an epoch, Keras keeps the run in a reference cycle that
    # only the garbage collector frees; the with block closes it at once.
    with to_keras(batches(x, y, workers=2)) as data:
        model().fit(data, epochs=2, callbacks=[StopAt(2)], verbose=0)
    adapter = to_keras(batches(x, y, workers=2))
    iterator = iter(adapter.get_numpy_iterator())
    assert next(iterator)[0].shape == (BATCH, 3)
    adapter.close()
    assert list(iterator) == []


def test_every_pass_keras_asks_for_is_a_new_run() -> None:
    x, y = arrays()
    adapter = to_keras(batches(x, y, keep=lambda i: i < 100))
    numpy_passes = [list(adapter.get_numpy_iterator()) for _ in range(2)]
    loader = adapter.get_torch_dataloader()
    torch_passes = [list(loader) for _ in range(2)]
    for one in (*numpy_passes, *torch_passes):
        assert [len(b[0]) for b in one] == [32, 32, 32, 4]
        assert np.array_equal(np.concatenate([np.asarray(b[0]) for b in one]), x[:100])
    assert type(torch_passes[0][0][0]).__module__.startswith("torch")
    # The end of a run of unknown length quiets Keras' warning until Keras' next
    # on_epoch_end (which follows that warning), the next run, or close().
    assert len(ran_out_filters()) == 1
    adapter.on_epoch_end()
    assert ran_out_filters() == []
    iterator = iter(adapter.get_numpy_iterator())
    list(iterator)
    assert len(ran_out_filters()) == 1
    next(iter(adapter.get_numpy_iterator()))
    assert ran_out_filters() == []


@pytest.mark.usefixtures("nothing_left_running")
def test_the_tf_dataset_reads_its_signature_from_its_first_run(
    live_threads: Callable[[], list[str]], threads_left: Callable[..., list[str]]
) -> None:
    x, y = arrays()
    seen: list[int] = []
    adapter = to_keras(batches(x, y, seen=seen, workers=2))
    dataset = adapter.get_tf_dataset()
    assert [spec.shape.as_list() for spec in dataset.element_spec] == [[None, 3], [None, 1]]
    assert live_threads()  # the first run is open, its first batches read
    for _ in range(2):
        got = np.concatenate([np.asarray(bx) for bx, _ in dataset])
        np.testing.assert_array_equal(got, x)
    # Two passes, two runs, each reading every row once: the batches the signature
    # came from are the first pass's own.
    assert Counter(seen) == dict.fromkeys(range(N), 2)
    # A dataset made and never iterated holds a run until it is dropped, or until
    # close() releases it.
    unused = adapter.get_tf_dataset()
    assert live_threads()
    del unused
    assert threads_left() == []
    unused = adapter.get_tf_dataset()
    assert live_threads()
    adapter.close()
    assert threads_left() == []
    del unused
    with pytest.raises(ValueError, match="no batches for Keras"):
        to_keras(hr.from_iterable([])).get_tf_dataset()
    assert ran_out_filters() == []


# -- errors ----------------------------------------------------------------------------


def test_an_element_that_is_not_a_batch_fails_clearly() -> None:
    x, y = arrays()
    with pytest.raises(ValueError, match=r"as a batch.*\(\), \(\)\].*\.batch\(n\)"):
        model().fit(to_keras(hr.zip(x[:, 0], y[:, 0])), epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"\[\(32, 3\), \(16, 1\)\]"):
        model().fit(to_keras(batches(x, y).map(lambda b: (b[0], b[1][:16]))), verbose=0)


def test_text_columns_are_refused_naming_the_column(tmp_path: Any) -> None:
    # A column of a CSV file with a non-number in its first rows is read as text; the
    # torch backend cannot take it, and the error names it and how to set its type.
    x, y = arrays()
    lines = [f"{a},{b},{c},{t}" for (a, b, c), (t,) in zip(x, y, strict=True)]
    lines[5] = "n/a," + lines[5].split(",", 1)[1]
    (tmp_path / "d.csv").write_text("a,b,c,t\n" + "\n".join(lines) + "\n")

    def xy(batch: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        return {k: batch[k] for k in "abc"}, batch["t"]

    pipeline = hr.read_csv(str(tmp_path / "d.csv"), batch_size=BATCH).map(xy)
    inputs = {k: keras.Input((1,), name=k) for k in "abc"}
    net = keras.Model(
        inputs, keras.layers.Dense(1)(keras.layers.Concatenate()(list(inputs.values())))
    )
    net.compile(optimizer="adam", loss="mse")
    with pytest.raises(
        TypeError, match=r"torch backend takes numbers, but batch\[0\]\['a'\] .*'n/a'.*dtype="
    ):
        net.fit(to_keras(pipeline), epochs=1, verbose=0)
    # Typed as a number, "n/a" is a bad row: skipped under the policy, the rest trains.
    fixed = hr.read_csv(
        str(tmp_path / "d.csv"), batch_size=BATCH, dtype={"a": "float32"}, on_error="skip"
    )
    adapter = to_keras(fixed.map(xy))
    history = net.fit(adapter, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert next(r for r in adapter.stats() if "rejected" in r)["rejected"] == 1


def test_data_checkpoint_refuses_bad_arguments_and_a_foreign_file(tmp_path: Any) -> None:
    x, y = arrays()
    data = to_keras(batches(x, y))
    with pytest.raises(TypeError, match="the adapter fit trains on"):
        hrk.DataCheckpoint(tmp_path, batches(x, y))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="save_freq must be a positive int or 'epoch'"):
        hrk.DataCheckpoint(tmp_path, data, save_freq=0)
    (tmp_path / "checkpoint.json").write_text('{"epoch": 1}')
    net = model()
    with pytest.raises(ValueError, match=r"checkpoint\.json is not a DataCheckpoint file"):
        net.fit(data, epochs=1, verbose=0, callbacks=[hrk.DataCheckpoint(tmp_path, data)])


def test_data_checkpoint_saves_at_its_frequency_and_deletes_at_the_end(tmp_path: Any) -> None:
    x, y = arrays()
    data = to_keras(batches(x, y))
    saved: list[dict[str, Any]] = []

    class Peek(keras.callbacks.Callback):  # type: ignore[misc]
        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            if (tmp_path / "checkpoint.json").exists():
                saved.append(json.loads((tmp_path / "checkpoint.json").read_text()))

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.on_train_batch_end(0)

    saver = hrk.DataCheckpoint(tmp_path, data, save_freq=3)
    model().fit(data, epochs=2, verbose=0, callbacks=[saver, Peek()])
    steps = sorted({entry["step"] for entry in saved})
    assert steps == [3, 6, 8, 9, 12, 15, 16]  # every 3 batches, and each epoch's end
    assert not (tmp_path / "checkpoint.json").exists()


class Saves(keras.callbacks.Callback):  # type: ignore[misc]
    """The checkpoints a DataCheckpoint before it in the list wrote, as they were."""

    def __init__(self, path: Any) -> None:
        super().__init__()
        self.path = path / "checkpoint.json"
        self.seen: dict[int, dict[str, Any]] = {}

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        if self.path.exists():
            saved = json.loads(self.path.read_text())
            self.seen[saved["step"]] = saved

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self.on_train_batch_end(0)


def test_with_steps_per_epoch_the_saved_place_follows_the_run_across_epochs(
    tmp_path: Any,
) -> None:
    # One run of 8 batches feeds epochs of 3: the place saved is the run's, not the
    # Keras epoch's batch number.
    x, y = arrays()
    data = to_keras(batches(x, y))
    saver = hrk.DataCheckpoint(tmp_path, data, save_freq=2, delete_on_end=False)
    saves = Saves(tmp_path)
    model().fit(data, epochs=2, steps_per_epoch=3, verbose=0, callbacks=[saver, saves])
    assert {step: s["data"]["position"] for step, s in saves.seen.items()} == {
        2: 2,
        3: 3,
        4: 4,
        6: 6,
    }
    assert (saves.seen[3]["epoch"], saves.seen[3]["complete"]) == (1, True)


def test_a_fit_stopped_mid_epoch_goes_on_with_the_rest_of_that_epoch(tmp_path: Any) -> None:
    x, y = arrays()

    class Stop(keras.callbacks.Callback):  # type: ignore[misc]
        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            if batch == 2:
                self.model.stop_training = True

    class Count(keras.callbacks.Callback):  # type: ignore[misc]
        trained = 0

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            Count.trained += 1

    first = to_keras(batches(x, y))
    saver = hrk.DataCheckpoint(tmp_path, first, save_freq="epoch", delete_on_end=False)
    model().fit(first, epochs=3, verbose=0, callbacks=[saver, Stop()])
    saved = json.loads((tmp_path / "checkpoint.json").read_text())
    assert (saved["epoch"], saved["complete"], saved["in_epoch"]) == (0, False, 3)
    again = to_keras(batches(x, y))
    saver = hrk.DataCheckpoint(tmp_path, again, save_freq="epoch")
    history = model().fit(again, epochs=3, verbose=0, callbacks=[saver, Count()])
    assert history.epoch == [0, 1, 2]
    assert Count.trained == 5 + 8 + 8  # the rest of epoch 0, then two whole epochs


STEPS_PER_EXECUTION = """
import json, pathlib, sys
import keras, numpy as np
import headrace as hr
from headrace.keras import DataCheckpoint, to_keras

folder = pathlib.Path(sys.argv[1])
x = np.random.default_rng(0).normal(size=(256, 3)).astype(np.float32)
data = to_keras(hr.from_iterable(list(zip(x, x.sum(axis=1, keepdims=True)))).batch(32))
net = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
net.compile(optimizer="adam", loss="mse", steps_per_execution=2)
seen = {}


class Saves(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if (folder / "checkpoint.json").exists():
            saved = json.loads((folder / "checkpoint.json").read_text())
            seen[saved["step"]] = saved["data"]["position"]


saver = DataCheckpoint(folder, data, save_freq=4, delete_on_end=False)
net.fit(data, epochs=1, verbose=0, callbacks=[saver, Saves()])
print(json.dumps(seen))
"""


def test_steps_per_execution_counts_batches_not_executions(tmp_path: Any) -> None:
    # Keras calls a callback once per execution of several batches (jax backend; torch
    # takes only one): the steps saved are batches, and the place is after the last.
    found = on_backend("jax", STEPS_PER_EXECUTION, str(tmp_path), timeout=120)
    assert found == {"4": 4, "8": 8}


def test_a_checkpoint_at_an_epochs_end_goes_on_with_the_next_epoch(tmp_path: Any) -> None:
    x, y = arrays()
    first = to_keras(batches(x, y))
    saver = hrk.DataCheckpoint(tmp_path, first, save_freq="epoch", delete_on_end=False)
    model().fit(first, epochs=1, verbose=0, callbacks=[saver])
    saved = json.loads((tmp_path / "checkpoint.json").read_text())
    assert (saved["step"], saved["data"]["position"]) == (8, 8)  # the end of the data epoch
    done = saved["data"]["epoch"]
    again = to_keras(batches(x, y))
    saver = hrk.DataCheckpoint(tmp_path, again, save_freq="epoch", delete_on_end=False)
    history = model().fit(again, epochs=3, verbose=0, callbacks=[saver])
    assert history.epoch == [1, 2]  # epoch 0 was done
    saved = json.loads((tmp_path / "checkpoint.json").read_text())
    # Two more data epochs, after the one done, and whole.
    assert (saved["step"], saved["data"]["epoch"], saved["data"]["position"]) == (24, done + 2, 8)


def test_a_keras_without_the_adapter_class_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    hrk._keras_class.cache_clear()
    monkeypatch.setitem(sys.modules, "keras.src.trainers.data_adapters.data_adapter", None)
    try:
        with pytest.raises(ImportError, match=r"data_adapter\.DataAdapter, which Keras 3\."):
            to_keras(batches(*arrays()))
    finally:
        hrk._keras_class.cache_clear()


def test_a_keras_whose_fit_refuses_adapters_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    from keras.src.trainers import data_adapters

    def older(x: Any, **kwargs: Any) -> Any:
        raise ValueError(f"Unrecognized data type: x={x}")

    hrk._keras_class.cache_clear()
    monkeypatch.setattr(data_adapters, "get_data_adapter", older)
    try:
        with pytest.raises(ImportError, match=r"does not take data adapters.*3\.7 or later"):
            to_keras(batches(*arrays()))
    finally:
        hrk._keras_class.cache_clear()


# -- the other backends, and the seed's example ----------------------------------------

OTHER_BACKEND = """
import json, os, sys, warnings
from collections import Counter
warnings.simplefilter("error", UserWarning)
import keras, numpy as np
import headrace as hr
from headrace.keras import to_keras
rng = np.random.default_rng(0)
x = rng.normal(size=(256, 3)).astype("float32")
y = (x @ np.array([1.0, -2.0, 0.5], "float32"))[:, None]
known = hr.zip(x, y).batch(32)
unknown = hr.zip(x, y).filter(lambda e: float(e[1][0]) < 1.5).batch(32)
reads = {"train": Counter(), "val": Counter(), "train2": Counter()}
def counted(name, keep=None):
    rows = hr.range(256).tap(lambda i: reads[name].update([i])).map(lambda i: (x[i], y[i]))
    return (rows if keep is None else rows.filter(keep)).batch(32)
keras.utils.set_random_seed(0)
net = keras.Sequential([keras.Input((3,)), keras.layers.Dense(8, activation="relu"),
                        keras.layers.Dense(1)])
net.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
first = net.evaluate(to_keras(unknown), verbose=0)
history = net.fit(to_keras(counted("train")), epochs=3,
                  validation_data=to_keras(counted("val", lambda e: float(e[1][0]) < 1.5)),
                  verbose=0)
history2 = net.fit(to_keras(counted("train2", lambda e: float(e[1][0]) < 1.5)), epochs=2,
                   verbose=0)
predicted = net.predict(to_keras(known), verbose=0)
# Two inputs, as the list that Keras takes for them.
a, b = x[:, :1], x[:, 1:]
two = hr.from_iterable([([a[i:i + 32], b[i:i + 32]], y[i:i + 32]) for i in range(0, 256, 32)])
inputs = [keras.Input((1,)), keras.Input((2,))]
net2 = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Concatenate()(inputs)))
net2.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
history3 = net2.fit(to_keras(two), epochs=3, verbose=0)
print(json.dumps({
    "backend": keras.backend.backend(), "before": first,
    "val_loss": [float(v) for v in history.history["val_loss"]],
    "loss": [float(v) for v in history2.history["loss"]],
    "evaluate": net.evaluate(to_keras(unknown), verbose=0),
    "predict": bool(np.allclose(predicted, net.predict(x, batch_size=32, verbose=0),
                                atol=1e-5)),
    "reads": {name: dict(Counter(counter.values())) for name, counter in reads.items()},
    "two_inputs": [float(v) for v in history3.history["loss"]],
}))
"""


@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_fit_evaluate_predict_on_the_other_backends(backend: str) -> None:
    found = on_backend(backend, OTHER_BACKEND)
    assert found["backend"] == backend
    assert len(found["val_loss"]) == 3
    assert found["val_loss"][-1] < 0.2 * found["before"]
    assert found["loss"][-1] < found["loss"][0]
    assert found["evaluate"] < 0.2 * found["before"]
    assert found["predict"] is True
    # Every run reads each row once: 3 epochs of training and of validation, then 2;
    # nothing reads rows on the side (the signature of a tf.data dataset comes from
    # the first run itself).
    assert found["reads"] == {"train": {"3": 256}, "val": {"3": 256}, "train2": {"2": 256}}
    assert found["two_inputs"][-1] < 0.5 * found["two_inputs"][0]
