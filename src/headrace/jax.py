"""Feeding JAX from a pipeline: batches put on a device, the next ones already on their way.

:func:`to_jax` wraps a pipeline of numpy batches (tuples, dicts, any JAX pytree of
arrays) in an iterable whose batches have their array leaves placed on a device with
``jax.device_put``. The transfer is dispatched asynchronously, so keeping the next
``prefetch`` batches already put overlaps moving data with the step that computes on the
current one::

    import jax
    import headrace as hr
    import headrace.jax as hrj

    pipeline = hr.from_iterable(examples).shuffle(1024, seed=0).batch(128)
    for epoch in range(3):
        for x, y in hrj.to_jax(pipeline, prefetch=2):
            params = train_step(params, x, y)

Every ``iter()`` of the result is a fresh run of the pipeline (the next epoch), and that
run is closed when the loop ends, breaks or fails: workers of parallel stages stop.
An error while taking a batch ahead (from the pipeline, or from ``jax.device_put``)
closes the run at once, but reaches the loop only after the batches already put ahead
of it: the loop sees every batch that came before the error, as it would iterating the
pipeline itself, then the error, notes and all.

Leaves that are numbers (numpy arrays of a numeric or bool dtype, numpy scalars, Python
``bool``, ``int``, ``float`` and ``complex``, JAX arrays) are put on the device; others
(strings, bytes, ``None``, arrays of strings or objects) are passed through as they are,
so a batch can carry file names or ids next to its arrays. Dtypes follow JAX's rules:
unless 64-bit mode is on (``jax_enable_x64``), ``int64`` and ``float64`` arrays arrive as
``int32`` and ``float32``.

Checkpoints: an iterator's :meth:`JaxIterator.state` is where the loop stands, after
the last batch it returned (not the ones put ahead of it, with ``resumable=True``), and
``iterable.iter(state=saved)`` goes on from there with the next batch. With Orbax,
the state saves beside the train state, as Grain's iterators do
(:class:`CheckpointHandler`, with the arguments ``CheckpointSave(iterator)`` and
``CheckpointRestore(iterable)``, whose restore gives the iterator that goes on)::

    import orbax.checkpoint as ocp

    data = hrj.to_jax(pipeline, prefetch=2, resumable=True)
    batches = iter(data)
    ...
    manager.save(step, args=ocp.args.Composite(
        train=ocp.args.StandardSave(train_state), data=hrj.CheckpointSave(batches)))
    # after a restart:
    restored = manager.restore(step, args=ocp.args.Composite(
        train=ocp.args.StandardRestore(train_state), data=hrj.CheckpointRestore(data)))
    batches = restored["data"]  # the batch after the last one trained on

``stats()`` and ``report()`` of an iterator give its run's figures.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeAlias

import jax
import numpy as np

from headrace._checks import check_bool, check_int
from headrace.engine.plan import Plan
from headrace.run import start
from headrace.sources.basic import as_plan
from headrace.stages.batching import NUMERIC_KINDS

if TYPE_CHECKING:
    from types import TracebackType

    from headrace.run import Run

# CheckpointSave and CheckpointRestore are here too, made when first used: they
# subclass Orbax's argument class, and Orbax is imported only then.
__all__ = [
    "CheckpointHandler",
    "JaxIterable",
    "JaxIterator",
    "Placement",
    "put",
    "to_jax",
]

#: What ``device=`` accepts: a device, a sharding, or ``None`` for JAX's default device.
Placement: TypeAlias = jax.Device | jax.sharding.Sharding | None


def to_jax(
    pipeline: Iterable[Any],
    *,
    prefetch: int = 1,
    device: Placement = None,
    resumable: bool = False,
) -> JaxIterable:
    """An iterable of ``pipeline``'s batches with their array leaves on a JAX device.

    Args:
        pipeline: a :class:`headrace.Pipeline` (any other iterable is wrapped in a plan
            of one source, which iterates it again on every pass).
        prefetch: how many batches beyond the one just returned are already put on the
            device (and so taken from the pipeline ahead of need); ``0`` puts each
            batch when it is asked for, with nothing taken ahead.
        device: a ``jax.Device`` or ``jax.sharding.Sharding`` to place leaves on;
            ``None`` uses JAX's default device (the leaves stay uncommitted, free to
            follow the computation that uses them).
        resumable: with ``prefetch`` above 0, note the run's state as each batch is
            taken, so that :meth:`JaxIterator.state` can say where the loop stands
            although the run has gone on (each note costs a ``run.state()``: a shuffle
            buffer of 50,000 elements makes it milliseconds). Without it, ``state()``
            works with ``prefetch=0`` only.

    >>> import jax
    >>> import headrace as hr
    >>> import headrace.jax as hrj
    >>> x, y = next(iter(hrj.to_jax(hr.range(6).map(lambda i: (i, 2 * i)).batch(3))))
    >>> isinstance(x, jax.Array), y.tolist()
    (True, [0, 2, 4])
    """
    check_int("prefetch", prefetch, minimum=0)
    placement: object = device  # checked at run time too: callers may be untyped
    if placement is not None and not isinstance(placement, jax.Device | jax.sharding.Sharding):
        raise TypeError(
            f"device must be a jax.Device, a jax.sharding.Sharding or None, not {device!r}"
        )
    return JaxIterable(as_plan(pipeline), prefetch, device, check_bool("resumable", resumable))


class JaxIterable:
    """A pipeline seen through :func:`to_jax`: every ``iter()`` starts a fresh run."""

    __slots__ = ("_device", "_pipeline", "_prefetch", "_resumable")

    def __init__(
        self, pipeline: Plan[Any], prefetch: int, device: Placement, resumable: bool = False
    ) -> None:
        self._pipeline = pipeline
        self._prefetch = prefetch
        self._device = device
        self._resumable = resumable

    @property
    def pipeline(self) -> Plan[Any]:
        """The pipeline whose runs feed the iterators."""
        return self._pipeline

    def iter(
        self, *, epoch: int | None = None, state: Mapping[str, Any] | None = None
    ) -> JaxIterator:
        """Start a run (see :meth:`headrace.Pipeline.iter` for ``epoch`` and ``state``:
        a :meth:`JaxIterator.state` makes the run go on after the batch it names)."""
        run = start(self._pipeline, epoch=epoch, state=state)
        return JaxIterator(run, self._prefetch, self._device, self._resumable)

    def __iter__(self) -> JaxIterator:
        return self.iter()

    def __len__(self) -> int:
        """The number of batches, where the pipeline's length is known."""
        return len(self._pipeline)

    def __repr__(self) -> str:
        return f"to_jax({self._pipeline!r}, prefetch={self._prefetch}, device={self._device!r})"


class JaxIterator(Iterator[Any]):
    """One run of a pipeline, its batches put on a device ``prefetch`` batches ahead.

    A context manager: leaving the ``with`` block, :meth:`close`, exhausting it, an error
    (from the pipeline or from putting a batch on the device) or (as a backstop) garbage
    collection closes the run. An error met while taking batches ahead is raised once the
    batches put before it have been returned.
    """

    __slots__ = ("_device", "_error", "_noting", "_prefetch", "_queue", "_run", "_state", "_states")

    def __init__(
        self, run: Run[Any], prefetch: int, device: Placement, resumable: bool = False
    ) -> None:
        self._run = run
        self._prefetch = prefetch
        self._device = device
        self._queue: collections.deque[Any] = collections.deque()
        #: An error met while topping the queue up, raised once the queue is empty.
        self._error: Exception | None = None
        #: With batches put ahead and ``resumable``, the run's state after each (the
        #: states of the batches in the queue, and after the last one returned): the
        #: run itself has gone on. Not noted for a pipeline whose state is refused (an
        #: unseeded shuffle, which the first state shows): :meth:`state` then says why.
        self._noting = prefetch > 0 and resumable
        self._states: collections.deque[dict[str, Any]] = collections.deque()
        self._state: dict[str, Any] | None = None
        if self._noting:
            try:
                self._state = run.state()  # before the first batch
            except ValueError:
                self._noting = False

    @property
    def closed(self) -> bool:
        """Whether the underlying run has released what it holds."""
        return self._run.closed

    def __iter__(self) -> JaxIterator:
        return self

    def __next__(self) -> Any:
        # Top the queue up to the batch to return plus ``prefetch`` more, so those are
        # in flight to the device while the caller computes on this one.
        while len(self._queue) <= self._prefetch and self._error is None and not self._run.closed:
            try:
                batch = next(self._run)
                self._queue.append(put(batch, self._device))
                if self._noting:
                    self._states.append(self._run.state())
            except StopIteration:
                if self._noting:
                    self._states.append(self._run.state())  # the next epoch's start
                break
            except Exception as error:
                # The batches before it are good: the loop gets them first.
                self._error = error
                self._run.close()
            except BaseException:  # KeyboardInterrupt and the like: at once
                self.close()
                raise
        if self._queue:
            if self._noting:
                self._state = self._states.popleft()
            return self._queue.popleft()
        if self._noting and self._states:
            self._state = self._states.popleft()
        failure, self._error = self._error, None
        self.close()
        if failure is not None:
            raise failure
        raise StopIteration

    def state(self) -> dict[str, Any]:
        """Where the loop stands: the run's state after the last batch returned, however
        many were put on the device ahead of it (see :meth:`headrace.Run.state`).
        After the last batch, the next epoch's start.

        Raises:
            ValueError: batches are put ahead (``prefetch`` above 0) and the iterable
                is not ``resumable``; or the pipeline cannot say where it stands.
        """
        if self._noting and self._state is not None:
            return self._state
        if self._prefetch and not self._noting and self._queue:
            self._run.state()  # the pipeline's own refusal (an unseeded shuffle) first
            raise ValueError(
                f"the run has taken {len(self._queue)} batch(es) ahead of the loop "
                "(prefetch), so its state is not where the loop stands: make it with "
                "to_jax(..., resumable=True), which notes the state of each batch"
            )
        return self._run.state()

    def stats(self) -> list[dict[str, Any]]:
        """The run's per-stage figures (see :meth:`headrace.Run.stats`)."""
        return self._run.stats()

    def report(self) -> str:
        """The run's statistics, as text."""
        return self._run.report()

    def close(self) -> None:
        """Stop the run and drop the batches put ahead (and an error met after them).

        Safe to call more than once.
        """
        self._queue.clear()
        self._error = None
        self._run.close()

    def __enter__(self) -> JaxIterator:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<headrace.jax iterator ({state}), prefetch={self._prefetch}>"


def put(batch: Any, device: Placement = None) -> Any:
    """``batch`` with its numeric leaves put on ``device`` (one ``jax.device_put`` call).

    The structure (tuples, lists, dicts, named tuples, any registered pytree) is kept;
    leaves that JAX cannot hold (strings, bytes, ``None``, object arrays) are kept as
    they are.

    >>> import jax
    >>> import numpy as np
    >>> batch = put({"x": np.arange(3), "name": "a"})
    >>> isinstance(batch["x"], jax.Array), batch["name"]
    (True, 'a')
    """
    leaves, treedef = jax.tree_util.tree_flatten(batch)
    chosen = [index for index, leaf in enumerate(leaves) if _puttable(leaf)]
    if chosen:
        placed = jax.device_put([leaves[index] for index in chosen], device)
        for index, value in zip(chosen, placed, strict=True):
            leaves[index] = value
    return jax.tree_util.tree_unflatten(treedef, leaves)


def _puttable(leaf: Any) -> bool:
    if isinstance(leaf, np.ndarray | np.generic):
        return leaf.dtype.kind in NUMERIC_KINDS
    return isinstance(leaf, bool | int | float | complex | jax.Array)


class CheckpointHandler:
    """Orbax's ``CheckpointHandler`` for the iterators of :func:`to_jax`: saves an
    iterator's :meth:`JaxIterator.state` as JSON (a file per JAX process), and
    restores it as the iterator that goes on from there.

    Used through its arguments ``CheckpointSave(iterator)`` and
    ``CheckpointRestore(iterable)`` (``iterable``: what :func:`to_jax` returned), in
    ``ocp.args.Composite`` beside the train state (see the module documentation).
    """

    def save(self, directory: Any, item: JaxIterator | None = None, args: Any = None) -> None:
        """Write the state of ``item`` (or ``args.item``) into ``directory``."""
        iterator = item if item is not None else args.item
        if not isinstance(iterator, JaxIterator):
            raise TypeError(
                f"CheckpointSave takes the iterator the loop takes batches from "
                f"(iter(to_jax(...))), got {iterator!r}"
            )
        # The state CheckpointSave took when it was made, else the iterator's now.
        state = getattr(args, "state", None) if item is None else None
        (directory / _state_file()).write_text(json.dumps(state or iterator.state()))

    def restore(
        self, directory: Any, item: JaxIterable | None = None, args: Any = None
    ) -> JaxIterator:
        """The iterator of ``item`` (or ``args.item``) that goes on from the saved state."""
        iterable = item if item is not None else args.item
        if not isinstance(iterable, JaxIterable):
            raise TypeError(
                f"CheckpointRestore takes what to_jax() returned, to start the iterator "
                f"that goes on from the saved state, got {iterable!r}"
            )
        path = directory / _state_file()
        if not path.exists():
            raise FileNotFoundError(f"{path}: no headrace state saved for this JAX process")
        return iterable.iter(state=json.loads(path.read_text()))

    def metadata(self, directory: Any) -> None:
        """Orbax's interface: no metadata."""

    def structure(self, directory: Any) -> None:
        """Orbax's interface: no structure."""

    def finalize(self, directory: Any) -> None:
        """Orbax's interface: nothing to finish."""

    def close(self) -> None:
        """Orbax's interface: nothing to release."""

    @classmethod
    def typestr(cls) -> str:
        return f"{cls.__module__}.{cls.__qualname__}"


def _state_file() -> str:
    return f"headrace-process-{jax.process_index()}-of-{jax.process_count()}.json"


@functools.cache
def _orbax_arguments() -> dict[str, type]:
    """``CheckpointSave`` and ``CheckpointRestore``, registered with Orbax for
    :class:`CheckpointHandler` (Orbax is imported here, on first use)."""
    try:
        import orbax.checkpoint as ocp
    except ImportError as error:
        raise ImportError(
            "headrace.jax's checkpoint arguments need Orbax: pip install orbax-checkpoint"
        ) from error

    @ocp.args.register_with_handler(CheckpointHandler, for_save=True)
    @dataclasses.dataclass
    class CheckpointSave(ocp.args.CheckpointArgs):  # type: ignore[misc]
        """Save the state of ``item``, the iterator the loop takes batches from."""

        item: JaxIterator

        def __post_init__(self) -> None:
            # Taken now: an asynchronous save may write it after the loop has gone on.
            if isinstance(self.item, JaxIterator):
                self.state = self.item.state()

    @ocp.args.register_with_handler(CheckpointHandler, for_restore=True)
    @dataclasses.dataclass
    class CheckpointRestore(ocp.args.CheckpointArgs):  # type: ignore[misc]
        """Restore an iterator of ``item`` (what :func:`to_jax` returned)."""

        item: JaxIterable

    for made in (CheckpointSave, CheckpointRestore):
        made.__module__ = __name__
        made.__qualname__ = made.__name__
    return {"CheckpointSave": CheckpointSave, "CheckpointRestore": CheckpointRestore}


def __getattr__(name: str) -> Any:
    if name in ("CheckpointSave", "CheckpointRestore"):
        return _orbax_arguments()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
