"""Turning a pipeline description into a running chain of iterators, and owning it."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from headrace.stages._base import Stage, StageContext
from headrace.stages.fusion import fuse
from headrace.stats import StageStats

if TYPE_CHECKING:
    from types import TracebackType

    from headrace.pipeline import Pipeline

__all__ = ["Chain", "Run", "open_chain"]


def label(index: int, stage: Stage) -> str:
    """How error notes and reports name a stage."""
    return f"stage {index} {stage.name!r}"


class Chain:
    """The iterators of one opened chain of stages, closed together."""

    __slots__ = ("iterator", "nodes")

    def __init__(self, iterator: Iterator[Any], nodes: list[Any]) -> None:
        self.iterator = iterator
        self.nodes = nodes

    def close(self) -> None:
        """Close every node that can be closed, downstream first."""
        nodes, self.nodes = self.nodes, []
        errors: list[BaseException] = []
        for node in reversed(nodes):
            try:
                node.close()
            except Exception as error:  # close the rest before reporting
                errors.append(error)
        if errors:
            raise errors[0]


def open_chain(stages: Sequence[Stage], epoch: tuple[int, ...], stats: StageStats | None) -> Chain:
    """Open ``stages`` (a source first) for one run of the given epoch path."""
    nodes: list[Any] = []
    iterator = _open(stages, len(stages), epoch, stats, nodes)
    return Chain(iterator, nodes)


def _open(
    stages: Sequence[Stage],
    end: int,
    epoch: tuple[int, ...],
    stats: StageStats | None,
    nodes: list[Any],
) -> Iterator[Any]:
    """The iterator of ``stages[:end]``, registering closeable nodes in ``nodes``."""
    stage = stages[end - 1]
    index = end - 1
    if stage.fuse_kind is not None and stats is None:
        start = index
        while start > 0 and stages[start - 1].fuse_kind is not None:
            start -= 1
        run = stages[start:end]
        upstream = _open(stages, start, epoch, stats, nodes)
        iterator = fuse(
            upstream,
            [s.fuse_kind or "" for s in run],
            [s.fn for s in run],
            [label(start + k, s) for k, s in enumerate(run)],
        )
    else:
        ctx = StageContext(index, label(index, stage), epoch, stats)
        if stage.is_source:
            iterator = stage.open(iter(()), ctx)
        elif stage.lazy_upstream:

            def open_upstream(epoch: tuple[int, ...]) -> Iterator[Any]:
                return _closing(open_chain(stages[:index], epoch, stats))

            iterator = stage.open_lazy(open_upstream, ctx)
        else:
            iterator = stage.open(_open(stages, index, epoch, stats, nodes), ctx)
        if stats is not None:
            iterator = stats.wrap(index, stage.name, iterator)
    if hasattr(iterator, "close"):
        nodes.append(iterator)
    return iterator


def _closing(chain: Chain) -> Iterator[Any]:
    """Yield from ``chain`` and close all of it however the consumer stops."""
    try:
        yield from chain.iterator
    finally:
        chain.close()


T = TypeVar("T")


class Run(itertools.chain[T], Generic[T]):
    """One running epoch of a pipeline: an iterator that owns everything it started.

    Iterating is as cheap as iterating the chain itself (``itertools.chain`` does the
    per-element work in C). Use it as a context manager, or call :meth:`close`, to end
    a run early; ending the loop by exhaustion, ``break`` plus garbage collection, or an
    exception all release what the run holds.

    >>> import headrace as hr
    >>> with hr.range(10).iter() as run:
    ...     first = next(run)
    >>> first, run.closed
    (0, True)
    """

    __slots__ = ("_chain", "_closed", "_description", "_stats")

    _chain: Chain
    _closed: bool
    _description: str
    _stats: StageStats | None

    def __new__(cls, pipeline: Pipeline[T], *, epoch: int, stats: bool = False) -> Run[T]:
        collector = StageStats() if stats else None
        chain = open_chain(pipeline.stages, (epoch,), collector)
        if not hasattr(chain.iterator, "close"):
            # A C iterator (range, islice, ...) cannot be told to stop, and the chain
            # would go on yielding from it after close(); a generator can.
            chain.iterator = _closing(Chain(chain.iterator, chain.nodes))
            chain.nodes = [chain.iterator]
        self = super().__new__(cls, chain.iterator)
        self._chain = chain
        self._closed = False
        self._description = repr(pipeline)
        self._stats = collector
        return self

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has run."""
        return self._closed

    def close(self) -> None:
        """Stop the run and release what it holds. Safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        self._chain.close()

    def stats(self) -> list[dict[str, Any]]:
        """Per-stage figures as plain dicts (requires ``iter(stats=True)``)."""
        if self._stats is None:
            raise RuntimeError("this run collects no statistics: start it with iter(stats=True)")
        return self._stats.as_dicts()

    def __enter__(self) -> Run[T]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        # A backstop only: runs that start threads or processes are closed explicitly.
        if not getattr(self, "_closed", True):
            with contextlib.suppress(Exception):  # a finalizer cannot raise
                self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<headrace.Run ({state}) of {self._description}>"
