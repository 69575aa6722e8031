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

import functools
import itertools
import threading
import warnings
import weakref
from collections.abc import Generator, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from headrace.engine.plan import Plan
from headrace.run import Run, start
from headrace.sources.basic import as_plan
from headrace.sources.csv.infer import infer

if TYPE_CHECKING:
    from headrace.run import Run

__all__ = ["PipelineAdapter", "to_keras"]

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

        run = start(self._pipeline)
        try:
            first = list(itertools.islice(run, 2))
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
        """Keras' hook after each pass (it follows the warning at the end of an input)."""
        self._hush(False)

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
        run, taken = held if held is not None else (start(self._pipeline), [])
        self._run = run
        with run:
            checked = False
            for batch in itertools.chain(taken, run):
                if not checked:
                    _check_batch(batch, self._pipeline)
                    if source is None:  # tensorflow's datasets take text; the others not
                        _refuse_text(batch, self._pipeline)
                    checked = True
                yield batch
        if self._num_batches is None:
            # Keras learns the length of an input of unknown length from this end,
            # and warns about it as if data were missing; on_epoch_end follows.
            self._hush(True)

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
    if isinstance(batch, tuple | list):
        for item in batch:
            yield from _leaves(item)
    elif isinstance(batch, dict):
        for item in batch.values():
            yield from _leaves(item)
    elif batch is not None:
        yield batch


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
