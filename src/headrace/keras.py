"""Keras 3: ``fit``, ``evaluate`` and ``predict`` straight from a pipeline.

:func:`to_keras` turns a pipeline of batches into data that Keras 3 takes wherever it
takes a dataset, on each of its backends (torch, jax, tensorflow)::

    import keras
    import headrace as hr
    from headrace.keras import to_keras

    def xy(path):
        return hr.read_csv(path, dtype="float32", batch_size=250).map(
            lambda b: (b["x"][:, None], b["y"][:, None]))

    model.fit(to_keras(xy("train.csv")), epochs=10, validation_data=to_keras(xy("val.csv")))
    model.evaluate(to_keras(xy("test.csv")))
    predictions = model.predict(to_keras(xy("test.csv")))

Each element of the pipeline is one batch in a form Keras takes: ``x``, ``(x,)``,
``(x, y)`` or ``(x, y, sample_weight)``, where ``x`` (and ``y``) is an array or a tuple,
list or dict of arrays, all with the same first (batch) dimension. ``.batch(n)`` makes
such batches from ``(x, y)`` examples.

- Every epoch is a fresh run of the pipeline, which takes the pipeline's next epoch
  number (a seeded shuffle reshuffles). There is no endless generator to write and no
  ``steps_per_epoch`` to compute; validation runs its own pipeline.
- When the pipeline's length is known (``len(pipeline)``), Keras knows the number of
  steps from the start. When it is not (after ``filter``, or with ``read_csv``), Keras
  counts the batches of the first epoch and uses that count for the later epochs of the
  same ``fit``. Keras 3 warns "Your input ran out of data" when an input of unknown
  length ends, although that end is how such an epoch ends: for pipelines of unknown
  length only, the adapter keeps that one warning quiet at the end of its own runs.
  Keras still warns when ``steps_per_epoch`` asks for more batches than a run of a
  pipeline of known length has.
- ``steps_per_epoch`` still works (an endless pipeline needs it): Keras then takes that
  many batches per epoch, going on with the same run in the next epoch and starting a
  new run when one ends.
- A run that Keras leaves unfinished (the batch it reads to build a model, the rest of
  a run cut by ``steps_per_epoch``) is closed, workers included, as soon as Keras lets
  go of it. Keras holds on to it longer when ``fit`` stops in the middle of an epoch
  (``model.stop_training`` set by a batch callback, an exception): then the garbage
  collector frees it, or :meth:`PipelineAdapter.close` (also the end of a ``with
  to_keras(pipeline) as data:`` block) closes every run still open at once.
- Checkpoints: :class:`DataCheckpoint` saves the weights, the epoch and the data's
  position together, so that ``fit`` restarted after a kill goes on with the next
  batch of the interrupted epoch.
- Text: on the torch and jax backends, whose tensors hold only numbers, a first batch
  with text in it (``str`` or ``object`` arrays: a CSV column read as text) is
  refused with an error that names where it is in the batch and how to type it; on
  the tensorflow backend text passes, for models that take strings
  (``TextVectorization``).
- Order is the pipeline's: ``fit(shuffle=...)`` does not apply (shuffle in the
  pipeline), and neither do ``batch_size``, ``y``, ``sample_weight`` and
  ``class_weight`` (put weights in the batches).

The adapter is a subclass of Keras' ``DataAdapter``, the class ``fit`` accepts as its
own kind of input (``keras.src.trainers.data_adapters``). Keras is imported on the
first call to :func:`to_keras`, not by ``import headrace.keras``; Keras 3.7 or later
is needed (earlier versions of ``fit`` do not take data adapters from outside).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import itertools
import json
import os
import sys
import threading
import warnings
import weakref
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from headrace._checks import check_bool
from headrace.engine.plan import Plan
from headrace.run import Run, start
from headrace.sources.basic import as_plan
from headrace.sources.csv.infer import infer

__all__ = ["DataCheckpoint", "PipelineAdapter", "to_keras"]

#: Where Keras 3 defines the class that ``fit`` takes as a data adapter of its own.
_DATA_ADAPTER = "keras.src.trainers.data_adapters.data_adapter"

#: The start of the warning Keras gives when an input ends (``EpochIterator``).
_RAN_OUT = r"Your input ran out of data"


def to_keras(pipeline: Plan[Any] | Iterable[Any]) -> PipelineAdapter:
    """``pipeline`` as Keras 3 input for ``fit``, ``validation_data``, ``evaluate``, ``predict``.

    Args:
        pipeline: a pipeline whose elements are batches (``(x, y)`` tuples of arrays,
            say); another re-iterable (a list of batches) is wrapped in a plan of one
            source, which iterates it again on every pass.

    Returns:
        A Keras data adapter that runs the pipeline afresh for every epoch. Raises
        ``ImportError`` when Keras is not installed, or is a version whose ``fit`` does
        not take data adapters of their own (Keras 3.7 and later do).
    """
    return PipelineAdapter(pipeline)


@functools.cache
def _keras_class() -> type[PipelineAdapter]:
    """The subclass of both :class:`PipelineAdapter` and Keras' ``DataAdapter``."""
    try:
        import keras
    except ImportError as error:
        raise ImportError("headrace.keras needs Keras 3: pip install 'headrace[keras]'") from error
    version = getattr(keras, "__version__", "?")
    try:
        from keras.src.trainers import data_adapters
        from keras.src.trainers.data_adapters.data_adapter import (
            DataAdapter,
        )
    except ImportError as error:
        raise ImportError(
            f"headrace.keras feeds Keras through {_DATA_ADAPTER}.DataAdapter, which "
            f"Keras {version} does not have"
        ) from error
    namespace = {"__module__": __name__, "__doc__": PipelineAdapter.__doc__}
    keras_class: type[PipelineAdapter] = type(
        "PipelineAdapter", (PipelineAdapter, DataAdapter), namespace
    )
    # fit() must take such an adapter as it is (Keras 3.7 and later do).
    probe: PipelineAdapter = object.__new__(keras_class)
    probe.__init__(())  # type: ignore[misc]
    try:
        taken = data_adapters.get_data_adapter(probe) is probe
    except ValueError:
        taken = False
    if not taken:
        raise ImportError(
            f"Keras {version} does not take data adapters of its own in fit(); "
            "headrace.keras needs a Keras 3 that does (3.7 or later)"
        )
    return keras_class


class PipelineAdapter:
    """A pipeline as a Keras data adapter; made by :func:`to_keras`.

    Keras calls ``get_numpy_iterator``, ``get_torch_dataloader``, ``get_jax_iterator``
    or ``get_tf_dataset`` (by backend) whenever it needs a pass over the data; each
    returns an iterable whose every iteration starts a new run when it takes its
    first batch.
    """

    def __new__(cls, pipeline: Plan[Any] | Iterable[Any]) -> PipelineAdapter:
        keras_class = _keras_class()
        return super().__new__(cls if issubclass(cls, keras_class) else keras_class)

    def __init__(self, pipeline: Plan[Any] | Iterable[Any]) -> None:
        self._pipeline = as_plan(pipeline)
        length = self._pipeline.known_length()
        # Endless (math.inf) counts as unknown: Keras then needs steps_per_epoch.
        self._num_batches = length if isinstance(length, int) else None
        self._streams: weakref.WeakSet[Generator[Any, None, None]] = weakref.WeakSet()
        #: The sources of get_tf_dataset's datasets, each holding a run until it is used.
        self._sources: weakref.WeakSet[_TfSource] = weakref.WeakSet()
        self._quiet = False
        #: The run started last: after ``fit``, its last epoch's.
        self._run: Run[Any] | None = None
        #: The state the next run starts from (set by :class:`DataCheckpoint`), or the
        #: run started from it already, with its first batch, its position and the
        #: state after that batch.
        self._resume: Mapping[str, Any] | None = None
        self._primed: tuple[Run[Any], list[Any], int, dict[str, Any]] | None = None
        #: While :class:`DataCheckpoint` is on: the batches handed out and not yet
        #: trained, in order, each with the run's state after it when that was due
        #: (``_due(n)`` for the ``n``-th batch handed out since; None otherwise); and
        #: the state after the current run's end, once seen.
        self._noting = False
        self._due: Callable[[int], bool] | None = None
        self._handed: collections.deque[dict[str, Any] | None] = collections.deque()
        self._handed_count = 0
        self._end_state: dict[str, Any] | None = None
        #: The batches of its epoch before the current run began (a resumed run), and
        #: the epoch's length once a resumed run has ended (see :meth:`on_epoch_end`).
        self._before = 0
        self._epoch_length: int | None = None
        #: The batches of the last epoch a run was seen to the end of.
        self._length_seen: int | None = None

    # -- what Keras calls ---------------------------------------------------------------

    def get_numpy_iterator(self) -> Iterator[Any]:
        """Batches with every array as a numpy array (Keras' own conversion)."""
        from keras.src.trainers.data_adapters import (
            data_adapter_utils,
        )

        iterator: Iterator[Any] = data_adapter_utils.get_numpy_iterator(_Batches(self))
        return iterator

    def get_jax_iterator(self) -> Iterator[Any]:
        """Batches as arrays JAX takes (numpy arrays stay numpy)."""
        from keras.src.trainers.data_adapters import (
            data_adapter_utils,
        )

        iterator: Iterator[Any] = data_adapter_utils.get_jax_iterator(_Batches(self))
        return iterator

    def get_torch_dataloader(self) -> Iterable[Any]:
        """A torch ``DataLoader`` that passes the batches on as tensors, unbatched again."""
        from keras.src.trainers.data_adapters import (
            data_adapter_utils,
        )

        loader: Iterable[Any] = data_adapter_utils.get_torch_dataloader(_Batches(self))
        return loader

    def get_tf_dataset(self) -> Any:
        """A ``tf.data.Dataset`` over the batches; every iteration is a new run.

        Its signature (see :func:`headrace.tf.infer_signature`) comes from the first two
        batches of a run started here: the batch dimension is left open, and so is any
        other that differs between them. That run is the dataset's first iteration,
        which goes on from its first batch, so no batch is read twice.
        """
        import tensorflow as tf

        from headrace.tf import infer_signature

        run, taken, _ = self._begin()
        try:
            first = taken + list(itertools.islice(run, 2 - len(taken)))
            if not first:
                raise ValueError(f"{self._pipeline!r} has no batches for Keras")
            _check_batch(first[0], self._pipeline)
            # Lists of inputs are structure to Keras, and tuples to tf.data.
            signature = infer_signature([_tuples(batch) for batch in first], batched="batch")
        except BaseException:
            run.close()
            raise
        source = _TfSource(self, run, first)
        self._sources.add(source)
        dataset = tf.data.Dataset.from_generator(source, output_signature=signature)
        # A dataset that is never iterated releases the run its signature came from.
        weakref.finalize(dataset, source.release)
        return dataset.prefetch(tf.data.AUTOTUNE)

    @property
    def num_batches(self) -> int | None:
        """The number of batches per epoch when the pipeline's length is known."""
        return self._num_batches

    @property
    def batch_size(self) -> int | None:
        """Not known ahead: batches are what the pipeline makes them."""
        return None

    @property
    def has_partial_batch(self) -> bool | None:
        """Not known ahead."""
        return None

    @property
    def partial_batch_size(self) -> int | None:
        """Not known ahead."""
        return None

    def on_epoch_begin(self) -> None:
        """Keras' hook before each pass."""
        self._hush(False)

    def on_epoch_end(self) -> None:
        """Keras' hook after each pass (it follows the warning at the end of an input).

        After a run resumed mid-epoch, Keras has counted only that run's batches as the
        epoch's (when the pipeline's length is unknown, it takes the first epoch's count
        as every epoch's): its epoch iterator, the caller, is told the whole epoch's.
        """
        self._hush(False)
        length, self._epoch_length = self._epoch_length, None
        if length is not None and self._num_batches is None:
            caller: Any = sys._getframe(1).f_locals.get("self")
            if getattr(caller, "data_adapter", None) is self and hasattr(caller, "_num_batches"):
                caller._num_batches = length

    # -- statistics -------------------------------------------------------------------

    def stats(self) -> list[dict[str, Any]]:
        """The per-stage figures of the run Keras started last (after ``fit``, its last
        epoch's; see :meth:`headrace.Run.stats`)."""
        return self._last_run().stats()

    def report(self) -> str:
        """The statistics of the run Keras started last, as text."""
        return self._last_run().report()

    def _last_run(self) -> Run[Any]:
        if self._run is None:
            raise RuntimeError("no run yet: Keras has not read from this adapter")
        return self._run

    # -- runs ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close every run of this adapter that is still open (and stop its workers).

        Like :meth:`headrace.Run.close`, raises ``ValueError`` for a run that is making
        a batch in another thread at that moment.
        """
        primed, self._primed = self._primed, None
        if primed is not None:
            primed[0].close()
        for source in list(self._sources):
            source.release()
        for stream in list(self._streams):
            stream.close()
        self._hush(False)

    def __enter__(self) -> PipelineAdapter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _stream(self, source: _TfSource | None = None) -> Generator[Any, None, None]:
        """One run of the pipeline, started when its first batch is asked for; or the
        run that ``source`` still holds then, going on after the batches taken from it."""
        self._hush(False)
        held = None if source is None else source.take()
        if held is not None and (self._resume is not None or self._primed is not None):
            # The run the signature came from started before a checkpoint was restored
            # (Keras asks for the dataset before fit's callbacks begin).
            held[0].close()
            held = None
        if held is not None:
            run, taken = held
            known: list[dict[str, Any] | None] = [None] * len(taken)
        else:
            run, taken, known = self._begin()
        self._run = run
        noting, handed, due = self._noting, self._handed, self._due
        if noting:
            # Keras trains a run's batches before it starts the next run: what is left
            # of the last run was handed out and never trained.
            handed.clear()
            self._end_state = None
        count = 0
        with run:
            for count, batch in enumerate(itertools.chain(taken, run), 1):
                if count == 1:
                    _check_batch(batch, self._pipeline)
                    if source is None:  # tensorflow's datasets take text; the others not
                        _refuse_text(batch, self._pipeline)
                if noting:
                    state = known[count - 1] if count <= len(taken) else None
                    if state is None and count > len(taken) and due and due(self._handed_count):
                        state = run.state()  # after this batch: a checkpoint falls on it
                    handed.append(state)
                    self._handed_count += 1
                yield batch
            if noting:
                self._end_state = run.state()  # the next epoch's start
        self._length_seen = self._before + count
        if self._before:
            self._epoch_length, self._before = self._before + count, 0
        if self._num_batches is None or self._epoch_length is not None:
            # Keras learns the length of an input of unknown length from this end,
            # and warns about it as if data were missing; so it does at the end of a
            # resumed run, which is short of the epoch. on_epoch_end follows.
            self._hush(True)

    def _begin(self) -> tuple[Run[Any], list[Any], list[dict[str, Any] | None]]:
        """A new run, the batches taken from it already and the states after them: the
        run a checkpoint's restore started, once, or the pipeline's next epoch."""
        primed, self._primed = self._primed, None
        if primed is not None:
            run, taken, self._before, after = primed
            return run, taken, [after]
        state, self._resume = self._resume, None
        self._before = 0 if state is None else int(state["position"])
        return start(self._pipeline, state=state), [], []

    def _restore(self, state: Mapping[str, Any]) -> bool:
        """Have the next run go on from ``state``: True when the rest of its epoch has
        batches; False when it has none (the state was saved after the epoch's last
        batch, before its end was seen), and the next run is the next epoch."""
        run = start(self._pipeline, state=state)
        try:
            first = next(run)
        except StopIteration:
            self._resume = run.state()  # the start of the next epoch
            run.close()
            return False
        except BaseException:
            run.close()
            raise
        self._primed = (run, [first], int(state["position"]), run.state())
        return True

    def _run_state(self) -> dict[str, Any] | None:
        """The current run's state now (where it stands when nothing is read ahead)."""
        return None if self._run is None else self._run.state()

    def _trained(self, batches: int) -> dict[str, Any] | None:
        """Take ``batches`` handed-out batches as trained: the state after the last of
        them, or None when it cannot be told (not noted, and the run has gone on)."""
        handed = self._handed
        state = None
        for _ in range(batches):
            state = handed.popleft() if handed else None
        if handed:
            return state
        # Every batch handed out is trained: the run stands right after the last one.
        if self._end_state is not None:
            return self._end_state
        return state if state is not None else self._run_state()

    def _hush(self, on: bool) -> None:
        """Keep Keras' "ran out of data" warning quiet, or stop doing so."""
        with _quiet_lock:
            if on != self._quiet:
                self._quiet = on
                _quiet_filter(+1 if on else -1)

    def __del__(self) -> None:
        if getattr(self, "_quiet", False):
            self._hush(False)

    def __repr__(self) -> str:
        return f"<headrace.keras.PipelineAdapter of {self._pipeline!r}>"


@functools.cache
def _callback_class() -> type[DataCheckpoint]:
    """The subclass of both :class:`DataCheckpoint` and Keras' ``Callback``."""
    _keras_class()  # Keras 3, and one that takes our adapters
    import keras

    namespace = {"__module__": __name__, "__doc__": DataCheckpoint.__doc__}
    return type("DataCheckpoint", (DataCheckpoint, keras.callbacks.Callback), namespace)


class DataCheckpoint:
    """A Keras callback that saves the data's position with the model, so that ``fit``
    restarted after a kill goes on mid-epoch with the next batch.

    ::

        data = to_keras(pipeline)
        model.fit(data, epochs=10, callbacks=[DataCheckpoint("ckpt", data, save_freq=100)])

    Every ``save_freq`` batches and at the end of every epoch it writes, into
    ``directory``, the model's weights (``model.save_weights``: with the optimizer's
    variables) and ``checkpoint.json``: the Keras epoch to go on with, and whether the
    one before it was complete, the batches trained since the first ``fit`` (``"step"``;
    with ``steps_per_execution``, batches, not executions) and the state of the data
    after the last batch trained (see :meth:`headrace.Run.state`): the batches Keras has
    read ahead (tf.data's prefetch) do not move it, and a run that goes on over several
    epochs (``steps_per_epoch``) is followed across them. When ``fit`` starts and a
    checkpoint is there, it loads the weights and has ``fit`` go on from the saved
    epoch, with ``data``'s next run taking up from the saved state: the rest of the
    interrupted epoch, then the epochs after it, in the order the uninterrupted training
    would have had. What Keras' ``BackupAndRestore`` does, with the data's place inside
    the epoch too (``BackupAndRestore`` restarts the epoch, so its first batches are
    trained twice).

    The weights go to two files in turn and ``checkpoint.json`` is replaced only once
    the new one is complete: a kill while saving leaves the previous checkpoint whole.
    The model must be built before ``fit`` (as for ``BackupAndRestore``).

    Args:
        directory: where the checkpoint lives (made when needed).
        data: the adapter ``fit`` trains on (what :func:`to_keras` returned).
        save_freq: save after every this many batches (and at each epoch's end), or
            ``"epoch"``: at each epoch's end only.
        delete_on_end: delete the checkpoint when ``fit`` ends without error (the
            default, as ``BackupAndRestore`` does), so the next ``fit`` starts afresh.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> DataCheckpoint:
        keras_class = _callback_class()
        return super().__new__(cls if issubclass(cls, keras_class) else keras_class)

    def __init__(
        self,
        directory: str | os.PathLike[str],
        data: PipelineAdapter,
        *,
        save_freq: int | str = 100,
        delete_on_end: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(data, PipelineAdapter):
            raise TypeError(
                f"data must be the adapter fit trains on (what to_keras returned), got {data!r}"
            )
        if save_freq != "epoch" and (
            isinstance(save_freq, bool) or not isinstance(save_freq, int) or save_freq < 1
        ):
            raise ValueError(f"save_freq must be a positive int or 'epoch', got {save_freq!r}")
        self.directory = os.fspath(directory)
        self.data = data
        self.save_freq = save_freq
        self.delete_on_end = check_bool("delete_on_end", delete_on_end)
        self._epoch = 0
        self._step = 0
        self._in_epoch = 0
        self._offset = 0
        self._keras_batches = 0
        self._saves = 0

    @property
    def path(self) -> str:
        """The checkpoint file: ``directory/checkpoint.json``."""
        return os.path.join(self.directory, "checkpoint.json")

    def on_train_begin(self, logs: Any = None) -> None:
        data = self.data
        self._step, self._offset = 0, 0
        try:
            with open(self.path) as file:
                saved = json.load(file)
        except FileNotFoundError:
            saved = None
        if saved is not None:
            self._load(saved)
        data._noting, data._end_state = True, None
        data._handed.clear()
        data._handed_count = 0
        base, every = self._step, self.save_freq
        # The states a save will ask for, noted as their batches are handed out (the
        # n-th since now is the (base + n + 1)-th trained); the others are not taken.
        data._due = None if every == "epoch" else (lambda n: (base + n + 1) % int(every) == 0)

    def _load(self, saved: Any) -> None:
        model: Any = getattr(self, "model", None)  # Keras' Callback sets it
        if not model.built:
            raise ValueError(
                f"DataCheckpoint restores {self.path} into the model, which must be built "
                "before fit() (call it on a batch of data, or build it)"
            )
        try:
            weights, epoch, step, state = (
                saved["weights"],
                saved["epoch"],
                saved["step"],
                saved["data"],
            )
            complete, in_epoch = bool(saved["complete"]), int(saved["in_epoch"])
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{self.path} is not a DataCheckpoint file ({error!r})") from None
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        model.load_weights(os.path.join(self.directory, weights))
        rest = self.data._restore(state)
        if not rest and not complete:
            epoch += 1  # saved after its epoch's last batch, before the end was seen
        model._initial_epoch = epoch  # as BackupAndRestore does
        self._offset = in_epoch if rest and not complete else 0
        self._step = step
        self._saves = int(saved.get("saves", 0))

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self._epoch = epoch
        # Batches of this epoch trained before the restart, and Keras' count of those
        # trained since (it numbers an execution of several by its last).
        self._in_epoch, self._offset = self._offset, 0
        self._keras_batches = 0

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        done = batch + 1 - self._keras_batches  # more than 1 with steps_per_execution
        self._keras_batches = batch + 1
        state = self.data._trained(done)
        before, self._step = self._step, self._step + done
        self._in_epoch += done
        every = self.save_freq
        if every != "epoch" and self._step // int(every) > before // int(every) and state:
            self._save(state, complete=self._complete())

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        data = self.data
        if data._handed:  # batches read ahead and not trained: the run's place is past
            return
        state = data._end_state if data._end_state is not None else data._run_state()
        if state is not None:
            model: Any = getattr(self, "model", None)
            stopped = bool(getattr(model, "stop_training", False))
            ended = data._end_state is not None
            self._save(state, complete=ended or not stopped or self._complete())

    def _complete(self) -> bool:
        """Whether this Keras epoch has trained all its batches."""
        steps = (getattr(self, "params", None) or {}).get("steps") or self.data._length_seen
        return steps is not None and self._in_epoch >= steps

    def on_train_end(self, logs: Any = None) -> None:
        data = self.data
        data._noting, data._due = False, None
        data._handed.clear()
        if self.delete_on_end:
            for name in ("checkpoint.json", *(_weights_file(n) for n in (0, 1))):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(os.path.join(self.directory, name))

    def _save(self, state: dict[str, Any], *, complete: bool) -> None:
        """Save the model and ``state``, the data's place after the last batch trained;
        ``complete``: this Keras epoch has trained all its batches, and a restart goes on
        with the next one."""
        os.makedirs(self.directory, exist_ok=True)
        self._saves += 1
        weights = _weights_file(self._saves % 2)
        model: Any = getattr(self, "model", None)
        model.save_weights(os.path.join(self.directory, weights), overwrite=True)
        saved = {
            "epoch": self._epoch + 1 if complete else self._epoch,
            "complete": complete,
            "in_epoch": 0 if complete else self._in_epoch,
            "step": self._step,
            "weights": weights,
            "saves": self._saves,
            "data": state,
        }
        temporary = self.path + ".tmp"
        with open(temporary, "w") as file:
            json.dump(saved, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self.path)


def _weights_file(number: int) -> str:
    return f"weights-{number}.weights.h5"


class _Batches:
    """The re-iterable that Keras' converters wrap: each iteration is a new run."""

    __slots__ = ("_adapter",)

    def __init__(self, adapter: PipelineAdapter) -> None:
        self._adapter = adapter

    def __iter__(self) -> Iterator[Any]:
        adapter = self._adapter
        stream = adapter._stream()
        adapter._streams.add(stream)
        return stream


class _TfSource:
    """The generator function of :meth:`PipelineAdapter.get_tf_dataset`'s dataset: its
    first call goes on with the run the signature came from, later calls start runs."""

    __slots__ = ("__weakref__", "_adapter", "_held", "_lock")

    def __init__(self, adapter: PipelineAdapter, run: Run[Any], taken: list[Any]) -> None:
        self._adapter = adapter
        self._held: tuple[Run[Any], list[Any]] | None = (run, taken)
        self._lock = threading.Lock()

    def take(self) -> tuple[Run[Any], list[Any]] | None:
        """The held run and the batches taken from it, or ``None`` once taken."""
        with self._lock:
            held, self._held = self._held, None
        return held

    def __call__(self) -> Iterator[Any]:
        adapter = self._adapter
        # The run is taken when the stream starts: until then release() can close it.
        stream = adapter._stream(self)
        adapter._streams.add(stream)
        return map(_tuples, stream)

    def release(self) -> None:
        """Close the held run, if no iteration has taken it."""
        held = self.take()
        if held is not None:
            held[0].close()


def _tuples(batch: Any) -> Any:
    """``batch`` with its lists as tuples: tf.data takes a list for one tensor."""
    if isinstance(batch, list | tuple):
        items = [_tuples(item) for item in batch]
        return type(batch)(*items) if hasattr(batch, "_fields") else tuple(items)
    if type(batch) is dict:
        return {key: _tuples(item) for key, item in batch.items()}
    return batch


def _check_batch(batch: Any, pipeline: Plan[Any]) -> None:
    """Fail clearly on an element that is not a batch (a single example, say)."""
    sizes = {shape[0] if shape else None for shape in map(_shape, _leaves(batch))}
    if None in sizes or len(sizes) != 1:
        raise ValueError(
            f"Keras takes each element of {pipeline!r} as a batch: x, (x,), (x, y) or "
            "(x, y, sample_weight) of arrays that share their first dimension; got "
            f"arrays of shapes {[_shape(leaf) for leaf in _leaves(batch)]} "
            "(batch the examples first, with .batch(n))"
        )


def _refuse_text(batch: Any, pipeline: Plan[Any]) -> None:
    """Fail clearly on text in a batch for a backend whose tensors hold only numbers
    (torch, jax): Keras would fail later, deep in its conversion, naming no column."""
    for where, leaf in _named_leaves(batch, "batch"):
        array = np.asarray(leaf) if isinstance(leaf, str | bytes) else leaf
        if isinstance(array, np.ndarray) and array.dtype.kind in "OUS":
            import keras

            values = array.reshape(-1).tolist()
            odd = next((v for v in values if not _number_text(v)), values[0] if values else "")
            raise TypeError(
                f"Keras on the {keras.backend.backend()} backend takes numbers, but "
                f"{where} of the first batch of {pipeline!r} is text ({array.dtype} "
                f"array, with {odd!r} among its values): set its type where it is read "
                "(read_csv(dtype={'column': 'float32'}), which makes a value that is no "
                "number a bad row), or turn the text into numbers in a map()"
            )


def _number_text(value: Any) -> bool:
    """Whether ``value`` is text that reads as a number."""
    dtype = infer([value]) if isinstance(value, str) and value else None
    return dtype is not None and dtype.kind in "if"


def _named_leaves(batch: Any, where: str) -> Iterator[tuple[str, Any]]:
    """The leaves of a batch, each with the expression that picks it (``batch[0]['x']``)."""
    if isinstance(batch, tuple | list):
        for index, item in enumerate(batch):
            yield from _named_leaves(item, f"{where}[{index}]")
    elif isinstance(batch, dict):
        for key, item in batch.items():
            yield from _named_leaves(item, f"{where}[{key!r}]")
    elif batch is not None:
        yield where, batch


def _leaves(batch: Any) -> Iterator[Any]:
    return (leaf for _, leaf in _named_leaves(batch, ""))


def _shape(leaf: Any) -> tuple[int, ...]:
    shape = getattr(leaf, "shape", None)
    return tuple(shape) if shape is not None else np.shape(leaf)


#: How many adapters keep the warning quiet now, and the filter that does it. Reentrant:
#: an adapter's finalizer may run (and count out) while its thread holds the lock.
_quiet_lock = threading.RLock()
_quiet_count = 0
_quiet_entry: Any = None


def _quiet_filter(change: int) -> None:
    """Count an adapter in or out (under ``_quiet_lock``); the filter is there while
    the count is above 0."""
    global _quiet_count, _quiet_entry
    _quiet_count += change
    if _quiet_count == 1 and change > 0:
        warnings.filterwarnings("ignore", message=_RAN_OUT, category=UserWarning, module=r"keras\.")
        _quiet_entry = warnings.filters[0]
    elif _quiet_count == 0 and _quiet_entry is not None:
        entry, _quiet_entry = _quiet_entry, None
        filters = warnings.filters
        # Gone already if a warnings.catch_warnings() block has restored the list.
        for index, item in enumerate(filters):
            if item is entry and isinstance(filters, list):
                del filters[index]
                break
