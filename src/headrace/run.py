"""Turning a pipeline description into a running chain of iterators, and owning it.

Who closes what: every stage generator closes its upstream when it ends (exhausted,
failed or closed), so an ending anywhere releases everything upstream of it. On top
of that a :class:`Chain` remembers every closeable node it opened, so closing a run
from outside reaches them all, downstream first, even nodes that never started.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import operator
import types
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Generic, NoReturn, TypeVar

from headrace._seeds import derive_seed
from headrace.errors import StageLabel
from headrace.stages._base import Stage, StageContext, first_unfixed
from headrace.stages.fusion import fuse
from headrace.stats import StageStats

if TYPE_CHECKING:
    from types import TracebackType

    from headrace.pipeline import Pipeline

__all__ = ["STATE_FORMAT", "Chain", "Run", "fingerprint", "open_chain"]

#: The ``"format"`` of the states :meth:`Run.state` gives.
STATE_FORMAT = "headrace.run-state/1"


class Chain:
    """The iterators of one opened chain of stages, closed together."""

    __slots__ = ("closed", "iterator", "nodes")

    def __init__(self, iterator: Iterator[Any], nodes: list[Any]) -> None:
        self.iterator = iterator
        self.nodes = nodes
        self.closed = False

    def close(self) -> None:
        """Close every node that can be closed, downstream first.

        A node that cannot be closed now (a generator that another thread, or the
        caller itself, is running) stays on the list, so ``close`` can be retried;
        the first such error is raised after the other nodes are closed.
        """
        if self.nodes and getattr(self.nodes[-1], "gi_running", False):
            # Every element passes through the last node: while it runs, closing
            # anything would pull the stages out from under the element in progress.
            raise ValueError(
                "cannot close a run while it is producing an element (from one of its "
                "own stages or from another thread); close it once next() has returned"
            )
        errors: list[BaseException] = []
        kept: list[Any] = []
        for node in reversed(self.nodes):
            try:
                node.close()
            except Exception as error:
                errors.append(error)
                kept.append(node)
        self.nodes = kept[::-1]
        if errors:
            raise errors[0]
        self.closed = True


def open_chain(
    stages: Sequence[Stage],
    epoch: tuple[int, ...],
    stats: StageStats | None,
    path: str = "",
    seed: int | None = None,
    starts: Sequence[int] | None = None,
) -> Chain:
    """Open ``stages`` (a source first) for one run of the given epoch path.

    ``path`` prefixes every stage label, naming where a nested pipeline sits inside
    the stage that opened it. If a stage fails to open, what was opened is closed.
    """
    nodes: list[Any] = []
    scope = object()  # tells this chain's error notes from those of nested chains
    try:
        iterator = _open(stages, len(stages), epoch, stats, nodes, path, scope, seed, starts)
    except BaseException:
        Chain(iter(()), nodes).close()
        raise
    return Chain(iterator, nodes)


def _open(
    stages: Sequence[Stage],
    end: int,
    epoch: tuple[int, ...],
    stats: StageStats | None,
    nodes: list[Any],
    path: str,
    scope: object,
    seed: int | None,
    starts: Sequence[int] | None = None,
) -> Iterator[Any]:
    """The iterator of ``stages[:end]``, registering closeable nodes in ``nodes``."""
    index = end - 1
    stage = stages[index]

    def label(position: int) -> StageLabel:
        return StageLabel(f"{path}stage {position} {stages[position].name!r}", scope)

    if stage.fuse_kind is not None and stats is None:
        start = index
        while stages[start - 1].fuse_kind is not None:  # a source never fuses: stops at 1
            start -= 1
        run = stages[start:end]
        upstream = _open(stages, start, epoch, stats, nodes, path, scope, seed, starts)
        iterator = fuse(
            upstream,
            [s.fuse_kind or "" for s in run],
            [s.fn for s in run],
            [label(start + k) for k in range(len(run))],
        )
    else:
        own = None if seed is None else derive_seed(seed, f"{path}{index}")
        skip = 0 if starts is None else starts[index]
        ctx = StageContext(index, label(index), epoch, stats, path, stage.name, own, skip)
        if stage.is_source:
            iterator = stage.open(iter(()), ctx)
        elif stage.lazy_upstream:

            def open_upstream(epoch: tuple[int, ...]) -> Iterator[Any]:
                return _closing(open_chain(stages[:index], epoch, stats, path, seed))

            iterator = stage.open_lazy(open_upstream, ctx)
        else:
            upstream = _open(stages, index, epoch, stats, nodes, path, scope, seed, starts)
            iterator = stage.open(upstream, ctx)
        if stats is not None:
            iterator = stats.wrap(index, stage.name, iterator)
    if hasattr(iterator, "close"):
        nodes.append(iterator)
    return iterator


def _seek_points(stages: Sequence[Stage], position: int) -> list[int] | None:
    """What each stage skips for the run to resume after ``position`` outputs without
    replay, or ``None`` when some stage cannot tell (then the epoch is replayed).

    Entry ``i`` is ``ctx.start`` for stage ``i``: the count of its input passed over
    (for the source, of its own elements).
    """
    if not stages[0].seekable:
        return None
    points = [0] * len(stages)
    for index in range(len(stages) - 1, 0, -1):
        upstream = stages[index].resume_upstream(position)
        if upstream is None:
            return None
        points[index] = position = upstream
    points[0] = position
    return points


def _skip(iterator: Iterator[Any], count: int, pipeline: Pipeline[Any], epoch: int) -> None:
    """Take ``count`` elements from ``iterator`` and drop them: a resumed run's replay."""
    skipped = sum(1 for _ in itertools.islice(iterator, count))
    if skipped < count:
        raise ValueError(
            f"cannot resume {pipeline!r} at element {count} of epoch {epoch}: this run "
            f"of it yields only {skipped} (was the state taken from another pipeline, "
            "or have its files changed?)"
        )


def _closing(chain: Chain) -> Iterator[Any]:
    """Yield from ``chain`` and close all of it however the consumer stops."""
    try:
        yield from chain.iterator
    finally:
        chain.close()


class _EndOfRun:
    """The second iterable of a :class:`Run`'s ``itertools.chain``.

    ``itertools.chain`` asks for it only once the pipeline is exhausted, which makes it
    a free end-of-run hook: closing there costs nothing per element.
    """

    __slots__ = ("_chain", "reached")

    def __init__(self, chain: Chain) -> None:
        self._chain = chain
        self.reached = False

    def __iter__(self) -> Iterator[Any]:
        self.reached = True
        self._chain.close()
        return iter(())


def fingerprint(pipeline: Pipeline[Any]) -> str:
    """A short digest of the pipeline's stages, to tell a state from another pipeline's.

    It covers what the stages compute (:attr:`Stage.identity`) and the seed, not how
    they run: a state saved with ``map(f, workers=8)`` resumes ``map(f)`` inline, or on
    processes, since both give the same elements.
    """
    stages = " -> ".join(stage.identity for stage in pipeline.stages)
    described = f"{stages} seed={pipeline.seed}"
    return hashlib.sha256(described.encode()).hexdigest()[:16]


def _replay_problem(pipeline: Pipeline[Any]) -> str | None:
    """Why replaying an epoch of ``pipeline`` may not give the same elements, if so."""
    found = first_unfixed(pipeline.stages, seeded=pipeline.seed is not None)
    if found is None:
        return None
    index, stage, problem = found
    return f"stage {index} {stage.name!r} has {problem}"


T = TypeVar("T")


class Run(itertools.chain[T], Generic[T]):
    """One running epoch of a pipeline: an iterator that owns everything it started.

    Iterating is as cheap as iterating the chain itself (``itertools.chain`` does the
    per-element work in C). A run releases what it holds when it is exhausted, when a
    stage raises, when :meth:`close` is called or its ``with`` block ends, and, as a
    backstop, when it is garbage-collected (after a ``break``, say).

    >>> import headrace as hr
    >>> with hr.range(10).iter() as run:
    ...     first = next(run)
    >>> first, run.closed
    (0, True)
    >>> run = hr.range(3).iter()
    >>> list(run), run.closed
    ([0, 1, 2], True)
    """

    __slots__ = ("_chain", "_counter", "_description", "_end", "_epoch", "_pipeline", "_stats")

    _chain: Chain
    _counter: itertools.count[int]
    _description: str
    _end: _EndOfRun
    _epoch: int
    _pipeline: Pipeline[T]
    _stats: StageStats | None

    def __new__(
        cls, pipeline: Pipeline[T], *, epoch: int, stats: bool = False, start: int = 0
    ) -> Run[T]:
        collector = StageStats() if stats else None
        starts = None
        if start:
            length = pipeline.known_length()
            if isinstance(length, int) and start > length:
                raise ValueError(
                    f"cannot resume {pipeline!r} at element {start} of epoch {epoch}: it "
                    f"yields only {length} (was the state taken from another pipeline?)"
                )
            starts = _seek_points(pipeline.stages, start)
        chain = open_chain(pipeline.stages, (epoch,), collector, seed=pipeline.seed, starts=starts)
        if not isinstance(chain.iterator, types.GeneratorType):
            # Only a generator stops cleanly once closed: a C iterator (range, a list's
            # iterator) would go on yielding, and a file would raise on its next read.
            chain.iterator = _closing(Chain(chain.iterator, []))
            chain.nodes.append(chain.iterator)
        if start and starts is None:
            try:
                _skip(chain.iterator, start, pipeline, epoch)
            except BaseException:
                chain.close()
                raise
        # Counting in C (zip with a count), so that state() knows how many elements
        # the consumer has received, for some tens of nanoseconds an element. The
        # count comes second, so an element that fails or never comes is not counted.
        counter = itertools.count(start)
        counted = map(operator.itemgetter(0), zip(chain.iterator, counter, strict=False))
        end = _EndOfRun(chain)
        self = super().__new__(cls, counted, end)
        self._chain = chain
        self._counter = counter
        self._description = repr(pipeline)
        self._end = end
        self._epoch = epoch
        self._pipeline = pipeline
        self._stats = collector
        return self

    @property
    def epoch(self) -> int:
        """The epoch number this run was started with."""
        return self._epoch

    def state(self) -> dict[str, Any]:
        """Where this run stands, as plain JSON-safe data for :meth:`Pipeline.iter`.

        ``pipeline.iter(state=run.state())`` goes on right after the last element this
        run handed out: the rest is what this run would have yielded. A state taken
        once the run is exhausted resumes at the start of the next epoch. A pipeline
        whose source can start at any element (``range``, ``from_iterable`` of a
        sequence or array, ``global_shuffle``) and whose stages each tell their input
        count from their output count (maps, ``random_map`` and ordered parallel maps,
        ``tap``, ``batch``, ``padded_batch``, ``take``, ``skip``, ``enumerate``,
        ``prefetch``) resumes at once, at any depth into the epoch. Any other resumes
        by replaying its epoch up to that element (computed again and dropped), so a
        pipeline whose stages give another order on another run (an unseeded shuffle,
        a parallel map with ``ordered=False``) has no state: this raises
        ``ValueError`` naming the stage. What the stages cannot see stays
        the caller's to keep fixed: user functions, generators, and the pipelines an
        ``interleave`` or ``flat_map`` function builds (seed their shuffles). The
        state names its pipeline by a digest of what its stages compute (their names
        and arguments, not workers, backend or buffer sizes: a state resumes on
        another worker count), which tells a changed stage, argument or seed, not a
        changed function body or list.

        >>> import headrace as hr
        >>> pipeline = hr.range(6).shuffle(4, seed=1)
        >>> run = pipeline.iter()
        >>> first = [next(run), next(run)]
        >>> saved = run.state()
        >>> rest = list(pipeline.iter(state=saved))
        >>> first + rest == list(pipeline.iter(epoch=0))
        True
        """
        problem = _replay_problem(self._pipeline)
        if problem is not None:
            raise ValueError(
                f"cannot take the state of a run of {self._description}: {problem}, so "
                "a resumed run would not replay the same elements; "
                + ("make it ordered" if "ordered=False" in problem else "give it a seed")
                + " (or seed the whole pipeline with with_seed)"
            )
        if self._end.reached:
            epoch, position = self._epoch + 1, 0
        else:
            # repr, not __reduce__: the count's value, without the pickling API that
            # Python 3.12 deprecates for itertools.
            epoch, position = self._epoch, int(repr(self._counter)[6:-1])
        return {
            "format": STATE_FORMAT,
            "pipeline": fingerprint(self._pipeline),
            "epoch": epoch,
            "position": position,
        }

    @classmethod
    def from_iterable(cls, iterables: Any) -> NoReturn:
        """Not available: runs are started by :meth:`Pipeline.iter`."""
        raise TypeError("a Run is started by Pipeline.iter(), not Run.from_iterable()")

    @property
    def closed(self) -> bool:
        """Whether the run has released what it holds (closed or exhausted)."""
        return self._chain.closed

    def close(self) -> None:
        """Stop the run and release what it holds. Safe to call more than once.

        Raises ``ValueError`` if called while the run is producing an element (from
        one of its own stages, or from another thread); the call can be repeated once
        that element is done.
        """
        if not self._chain.closed:
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

    def __reduce__(self) -> NoReturn:
        raise TypeError("a running pipeline cannot be pickled; pickle the Pipeline instead")

    def __del__(self) -> None:
        # A backstop only: closing is explicit, by exhaustion, error, close() or `with`.
        chain = getattr(self, "_chain", None)
        if chain is not None and not chain.closed:
            with contextlib.suppress(Exception):  # a finalizer cannot raise
                chain.close()

    def __repr__(self) -> str:
        state = "closed" if self._chain.closed else "open"
        return f"<headrace.Run ({state}) of {self._description}>"
