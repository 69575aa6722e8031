"""Feeding TensorFlow from a pipeline: a ``tf.data.Dataset`` whose signature is inferred.

:func:`to_tf_dataset` turns a pipeline into a ``tf.data.Dataset`` that ``model.fit``
takes as it is and that composes with ``tf.data`` operations (``map``, ``unbatch``,
``batch``, ``prefetch``, ...)::

    import headrace as hr
    import headrace.tf as hrtf

    pipeline = hr.read_csv("train.csv").map(to_example, workers=4).batch(64)
    dataset = hrtf.to_tf_dataset(pipeline)      # no output_signature to write
    model.fit(dataset.prefetch(2), epochs=5)

Every iteration of the dataset (every epoch of ``model.fit``) is a fresh run of the
pipeline, and abandoning an iteration (``take``, an error, a ``break``) closes the run,
so the workers of parallel stages stop.

How the signature is inferred
-----------------------------
Unless ``output_signature`` is given, the pipeline is started and its first two
elements are read (one if there is only one; an empty pipeline is an error). Those
elements are not lost: the first iteration of the dataset continues that same run,
from its first element. The signature follows the first element's structure:

* tuples (named tuples included) and dicts keep their structure, nested to any depth;
* every other value is a leaf, described as ``np.asarray(value)`` would describe it:
  numpy arrays and scalars keep their dtype and shape, Python ``bool``, ``int`` and
  ``float`` become ``bool``, ``int64`` and ``float64`` (numpy's choices: ``batch``
  makes the same arrays of them), lists become arrays; ``str``, ``bytes`` and arrays
  of them become ``tf.string``;
* a dimension is ``None`` where the first two elements differ in it (a leaf whose
  rank differs gets an unknown shape), and, when the pipeline ends in ``batch`` (not
  undone by a later ``unbatch``), the first dimension of every array leaf is ``None``,
  so that a last partial batch fits; after ``batch(..., drop_remainder=True)`` it stays
  fixed, and after ``padded_batch`` every dimension is ``None``.

Elements whose shapes vary in ways the first two do not show (variable-length
sequences, say) need ``output_signature=`` with ``None`` in those dimensions.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal, cast

import numpy as np
import tensorflow as tf

from headrace.engine.plan import Plan
from headrace.engine.stage import INFINITE
from headrace.run import Run, start
from headrace.sources.basic import as_plan
from headrace.stages.batching import NUMERIC_KINDS

__all__ = ["Batching", "Runs", "infer_signature", "to_tf_dataset"]

#: How a pipeline's batching shapes its elements (see :func:`infer_signature`).
Batching = Literal["batch", "padded", "fixed"] | None


def to_tf_dataset(
    pipeline: Iterable[Any],
    *,
    output_signature: Any = None,
    state: Mapping[str, Any] | None = None,
) -> tf.data.Dataset:
    """A ``tf.data.Dataset`` of ``pipeline``'s elements, its signature inferred.

    The dataset carries ``dataset.headrace`` (:class:`Runs`): the ``state()``,
    ``stats()`` and ``report()`` of the run its iteration started last. A state
    counts what tf.data took from the run, so tf.data's automatic read-ahead
    (``inject_prefetch``) is turned off for this dataset, and the state is where the
    loop stands as long as no ``prefetch`` follows it; for overlap that the state
    covers, put ``.prefetch(n)`` in the pipeline instead.
    ``tf.train.Checkpoint`` cannot save an iterator over this dataset (tf.data does
    not see into the Python generator behind it): save ``dataset.headrace.state()``
    beside it (plain JSON-safe data), and build the restarted program's dataset with
    ``to_tf_dataset(pipeline, state=saved)``, whose first iteration goes on from
    there. Derived datasets (``dataset.map(...)``) do not carry the attribute: keep
    the one ``to_tf_dataset`` returns.

    Args:
        pipeline: a :class:`headrace.Pipeline` (any other iterable is wrapped in a plan
            of one source, which iterates it again on every pass).
        output_signature: the ``tf.TensorSpec`` structure of the elements, as
            ``tf.data.Dataset.from_generator`` takes it. By default it is inferred
            from the first elements (see the module's documentation), which starts
            the pipeline once, here.
        state: a ``dataset.headrace.state()`` (or ``Run.state()``) to go on from in
            the dataset's first iteration; later iterations are the next epochs.

    Raises:
        ValueError: the signature is to be inferred and the pipeline has no element.
        TypeError: an element holds a value that has no ``tf`` type (``None``, an
            object array), or the first two elements differ in structure or dtype.

    >>> import headrace as hr
    >>> dataset = to_tf_dataset(hr.range(5).map(lambda i: (float(i), str(i))).batch(2))
    >>> dataset.element_spec
    (TensorSpec(shape=(None,), dtype=tf.float64, name=None),
     TensorSpec(shape=(None,), dtype=tf.string, name=None))
    >>> [x.numpy().tolist() for x, _ in dataset]
    [[0.0, 1.0], [2.0, 3.0], [4.0]]
    """
    plan = as_plan(pipeline)
    if output_signature is not None:
        source = _Source(plan, None, state)
        dataset = tf.data.Dataset.from_generator(source, output_signature=output_signature)
        return _carrying(dataset if state else _with_cardinality(dataset, plan), source)

    run = start(plan, state=state)
    try:
        peeked = _peek(run, 2)
        if not peeked:
            raise ValueError(
                f"{plan!r} yielded no element, so there is nothing to infer the "
                "dataset's output_signature from; pass output_signature= to build a "
                "dataset of it anyway"
            )
        signature = infer_signature(peeked, batched=_batching(plan))
    except BaseException:
        run.close()
        raise
    source = _Source(plan, (run, peeked))
    source.run = run
    dataset = tf.data.Dataset.from_generator(source, output_signature=signature)
    # A dataset that is never iterated releases the run it was inferred from.
    weakref.finalize(dataset, source.release)
    # A resumed first iteration is shorter than an epoch: no cardinality then.
    return _carrying(dataset if state else _with_cardinality(dataset, plan), source)


class Runs:
    """What ``dataset.headrace`` gives of the runs of a :func:`to_tf_dataset` dataset:
    the last one started, by an iteration (or to infer the signature)."""

    __slots__ = ("_source",)

    def __init__(self, source: _Source) -> None:
        self._source = source

    def state(self) -> dict[str, Any]:
        """Where the last run stands (see :meth:`headrace.Run.state`)."""
        return self._run().state()

    def stats(self) -> list[dict[str, Any]]:
        """The last run's per-stage figures (see :meth:`headrace.Run.stats`)."""
        return self._run().stats()

    def report(self) -> str:
        """The last run's statistics, as text."""
        return self._run().report()

    def _run(self) -> Run[Any]:
        run = self._source.run
        if run is None:
            raise RuntimeError("no run yet: the dataset has not been iterated")
        return run


def _carrying(dataset: tf.data.Dataset, source: _Source) -> tf.data.Dataset:
    """``dataset`` without tf.data's automatic read-ahead (so that a run's state is
    where the loop stands), carrying its runs as ``dataset.headrace``."""
    options = tf.data.Options()
    optimization = options.experimental_optimization
    if hasattr(optimization, "inject_prefetch"):
        optimization.inject_prefetch = False
    dataset = dataset.with_options(options)
    dataset.headrace = Runs(source)
    return dataset


def _with_cardinality(dataset: tf.data.Dataset, pipeline: Plan[Any]) -> tf.data.Dataset:
    """``dataset`` told the pipeline's length, when it is known: Keras then knows the
    steps of an epoch, as tf.data's own sized datasets tell it."""
    length = pipeline.known_length()
    if length is None:
        return dataset
    count = tf.data.INFINITE_CARDINALITY if length == INFINITE else int(length)
    return dataset.apply(tf.data.experimental.assert_cardinality(count))


def infer_signature(elements: Sequence[Any], *, batched: Batching = None) -> Any:
    """The ``tf.TensorSpec`` structure that fits every one of ``elements``.

    ``batched`` applies a batching rule on top: ``"batch"`` makes the first dimension
    of every array leaf ``None``, ``"padded"`` makes every dimension ``None``, and
    ``None`` (or ``"fixed"``) leaves the shapes as the elements show them.

    >>> import numpy as np
    >>> infer_signature([{"x": np.zeros((2, 3), np.float32), "id": 7}], batched="batch")
    {'x': TensorSpec(shape=(None, 3), dtype=tf.float32, name=None),
     'id': TensorSpec(shape=(), dtype=tf.int64, name=None)}
    """
    if not elements:
        raise ValueError("infer_signature needs at least one element")
    if batched not in (None, "fixed", "batch", "padded"):
        raise ValueError(f"batched must be None, 'fixed', 'batch' or 'padded', not {batched!r}")
    signature = _spec(elements[0], "element")
    for index, element in enumerate(elements[1:], start=1):
        signature = _merge(signature, _spec(element, "element"), "element", index)
    if batched in ("batch", "padded"):
        signature = tf.nest.map_structure(lambda spec: _loosen(spec, batched), signature)
    return signature


class _Source:
    """The generator function of a dataset: a fresh run per call, the first one held."""

    def __init__(
        self,
        pipeline: Plan[Any],
        held: tuple[Run[Any], list[Any]] | None,
        resume: Mapping[str, Any] | None = None,
    ) -> None:
        self._pipeline = pipeline
        self._held = held
        self._resume = resume  # where the first run goes on from, if not held
        self._lock = threading.Lock()
        #: The run started last.
        self.run: Run[Any] | None = None

    def __call__(self) -> Iterator[Any]:
        return self._generate()

    def _take_held(self) -> tuple[Run[Any], list[Any]] | None:
        with self._lock:
            held, self._held = self._held, None
        return held

    def release(self) -> None:
        """Close the held run, if no iteration has taken it."""
        held = self._take_held()
        if held is not None:
            held[0].close()

    def _generate(self) -> Iterator[Any]:
        held = self._take_held()
        with self._lock:
            resume, self._resume = self._resume, None
        if held is not None:
            run, peeked = held
        else:
            fresh = start(self._pipeline, state=resume) if resume else start(self._pipeline)
            run, peeked = fresh, []
        self.run = run
        try:
            while peeked:
                yield peeked.pop(0)
            yield from run
        finally:
            run.close()


def _peek(run: Run[Any], count: int) -> list[Any]:
    peeked: list[Any] = []
    for element in run:
        peeked.append(element)
        if len(peeked) == count:
            break
    return peeked


def _batching(pipeline: Plan[Any]) -> Batching:
    """How the pipeline's last grouping stage (a ``batch``, or a source reading in
    batches, such as ``read_csv(batch_size=...)``) shapes its elements."""
    for stage in reversed(pipeline.stages):
        batching = stage.batching
        if batching == "unbatch":
            return None
        if batching in ("batch", "fixed", "padded"):
            return cast("Batching", batching)
    return None


def _spec(value: Any, path: str) -> Any:
    if isinstance(value, tuple):
        items = [_spec(item, f"{path}[{index}]") for index, item in enumerate(value)]
        return type(value)(*items) if hasattr(value, "_fields") else tuple(items)
    if isinstance(value, Mapping):
        specs = {key: _spec(item, f"{path}[{key!r}]") for key, item in value.items()}
        return specs if type(value) is dict else _rebuild_mapping(value, specs)
    if isinstance(value, str | bytes):
        return tf.TensorSpec((), tf.string)
    if value is None:
        raise TypeError(
            f"{path} is None, which has no tf type; replace it in the pipeline "
            "(with an empty array, say) or leave it out"
        )
    try:
        array = np.asarray(value)
    except Exception as error:
        raise TypeError(f"{path} ({type(value).__name__}) cannot become a tensor") from error
    kind = array.dtype.kind
    if kind in "US" or (kind == "O" and _all_text(array)):
        return tf.TensorSpec(array.shape, tf.string)
    if kind not in NUMERIC_KINDS:
        raise TypeError(
            f"{path} ({type(value).__name__} of numpy dtype {array.dtype}) has no tf type; "
            "yield numbers, strings, or arrays of them"
        )
    return tf.TensorSpec(array.shape, tf.as_dtype(array.dtype))


def _rebuild_mapping(value: Mapping[Any, Any], specs: dict[Any, Any]) -> Any:
    kind: Any = type(value)
    try:
        return kind(specs)
    except Exception:  # a mapping type that cannot be built from a dict
        return specs


def _all_text(array: np.ndarray[Any, Any]) -> bool:
    return array.size > 0 and all(isinstance(item, str | bytes) for item in array.flat)


def _merge(first: Any, other: Any, path: str, index: int) -> Any:
    try:
        tf.nest.assert_same_structure(first, other)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"elements 0 and {index} differ in structure ({error}); a dataset's elements "
            "share one structure"
        ) from error
    return tf.nest.map_structure(lambda a, b: _merge_leaf(a, b, index), first, other)


def _merge_leaf(first: tf.TensorSpec, other: tf.TensorSpec, index: int) -> tf.TensorSpec:
    if first.dtype != other.dtype:
        raise TypeError(
            f"elements 0 and {index} hold {first.dtype.name} and {other.dtype.name} at the "
            "same place; cast them to one dtype in the pipeline, or pass output_signature="
        )
    if first.shape.rank != other.shape.rank:
        return tf.TensorSpec(None, first.dtype)
    dims = [a if a == b else None for a, b in zip(first.shape, other.shape, strict=True)]
    return tf.TensorSpec(dims, first.dtype)


def _loosen(spec: tf.TensorSpec, batched: Batching) -> tf.TensorSpec:
    rank = spec.shape.rank
    if not rank:  # a scalar, or a shape already unknown
        return spec
    if batched == "padded":
        return tf.TensorSpec([None] * rank, spec.dtype)
    return tf.TensorSpec([None, *spec.shape[1:]], spec.dtype)
