"""Turning a pipeline description into a running chain of iterators, and owning it.

Who closes what: every stage generator closes its upstream when it ends (exhausted,
failed or closed), so an ending anywhere releases everything upstream of it. On top
of that a :class:`Chain` remembers every closeable node it opened, so closing a run
from outside reaches them all, downstream first, even nodes that never started.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import hashlib
import itertools
import operator
import types
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Generic, NoReturn, TextIO, TypeVar

from headrace._seeds import derive_seed
from headrace.errors import StageLabel
from headrace.progress import Progress
from headrace.stages._base import OpenUpstream, Stage, StageContext, first_unfixed
from headrace.stages._guard import close_iterator
from headrace.stages._state import (
    Entries,
    Entry,
    Getter,
    Tracker,
    count_of,
    passing_over,
    saved_count,
)
from headrace.stages.fusion import fuse, fused_counts, inputs_taken
from headrace.stats import StageStats, diagnose, format_report

if TYPE_CHECKING:
    from types import TracebackType

    from headrace.pipeline import Pipeline

__all__ = ["STATE_FORMAT", "Chain", "Run", "fingerprint", "open_chain"]

#: The ``"format"`` of the states :meth:`Run.state` gives.
STATE_FORMAT = "headrace.run-state/2"


class Chain:
    """The iterators of one opened chain of stages, closed together."""

    __slots__ = ("closed", "iterator", "nodes", "tracker")

    def __init__(
        self, iterator: Iterator[Any], nodes: list[Any], tracker: Tracker | None = None
    ) -> None:
        self.iterator = iterator
        self.nodes = nodes
        self.closed = False
        self.tracker = tracker

    def entries(self, position: int) -> Entries | None:
        """The chain's state after it handed out ``position`` elements of its epoch (see
        ``headrace.stages._state``), or ``None`` when only replaying can resume it."""
        return None if self.tracker is None else self.tracker.entries(position)

    def closing(self) -> Iterator[Any]:
        """Yield from the chain and close all of it however the consumer stops."""
        try:
            yield from self.iterator
        finally:
            self.close()

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
    entries: Entries | None = None,
) -> Chain:
    """Open ``stages`` (a source first) for one run of the given epoch path.

    ``path`` prefixes every stage label, naming where a nested pipeline sits inside
    the stage that opened it. ``entries``: a saved state to go on from (what
    :meth:`Chain.entries` gave). If a stage fails to open, what was opened is closed.
    """
    if entries is not None and not (isinstance(entries, list) and len(entries) == len(stages)):
        where = path.rstrip(" >") or "the pipeline"
        raise ValueError(
            f"{where}: the saved state does not fit its {len(stages)} stages: {entries!r:.80}"
        )
    nodes: list[Any] = []
    tracker = Tracker(stages)
    opening = _Opening(stages, epoch, stats, nodes, path, seed, tracker)
    try:
        iterator = opening.open(len(stages), entries)
    except BaseException:
        Chain(iter(()), nodes).close()
        raise
    return Chain(iterator, nodes, tracker)


class _Opening:
    """What every stage of one chain is opened with."""

    __slots__ = ("epoch", "nodes", "path", "scope", "seed", "stages", "stats", "tracker")

    def __init__(
        self,
        stages: Sequence[Stage],
        epoch: tuple[int, ...],
        stats: StageStats | None,
        nodes: list[Any],
        path: str,
        seed: int | None,
        tracker: Tracker,
    ) -> None:
        self.stages = stages
        self.epoch = epoch
        self.stats = stats
        self.nodes = nodes
        self.path = path
        self.scope = object()  # tells this chain's error notes from those of nested chains
        self.seed = seed
        self.tracker = tracker

    def label(self, position: int) -> StageLabel:
        name = self.stages[position].name
        return StageLabel(f"{self.path}stage {position} {name!r}", self.scope)

    def open(self, end: int, entries: Entries | None, *, counted: bool = True) -> Iterator[Any]:
        """The iterator of ``stages[:end]``, registering closeable nodes in ``nodes``;
        ``counted=False`` when the caller counts what it takes (a fused run)."""
        index = end - 1
        stage = self.stages[index]
        entry = _entry(entries, index, self.label)
        if stage.fuse_kind is not None and self._fusible(index, entries):
            iterator = self._open_fused(index, entries)
        else:
            own = None if self.seed is None else derive_seed(self.seed, f"{self.path}{index}")
            ctx = StageContext(
                index,
                self.label(index),
                self.epoch,
                self.stats,
                self.path,
                stage.name,
                own,
                saved_count(entry, "start", self.label(index)),
                entry,
                self.tracker,
            )
            if stage.is_source:
                iterator = stage.open(iter(()), ctx)
            elif stage.lazy_upstream:
                iterator = stage.open_lazy(self._lazy(index), ctx)
            else:
                below = entries
                if entry is not None and "upstream" in entry:
                    below = entry["upstream"]
                    if not isinstance(below, list):
                        raise ValueError(f"{ctx.label}: its saved input is not a list")
                upstream = self.open(index, below)
                skip = saved_count(entry, "skip", ctx.label)
                if skip > ctx.start:
                    raise ValueError(f"{ctx.label}: its saved skip is past its position")
                ahead = None
                if stage.read_ahead:
                    # Noted from where the stages below stand now, before the skip.
                    upstream, ahead = self._reading_ahead(stage, upstream, ctx, ctx.start - skip)
                if skip:  # a state noted before this stage's position (see _reading_ahead)
                    upstream = passing_over(upstream, skip)
                iterator = stage.open(upstream, ctx)
                if ahead is not None:
                    # After open: the stage's own getter (if any) counts its inputs.
                    self.tracker.getters[index] = ahead(self.tracker.getters.get(index))
            if self.stats is not None:
                if counted:
                    iterator = self.stats.count(index, stage.name, iterator)
                else:  # the fused run after it counts what it takes
                    self.stats.record(index, stage.name)
                    self.stats.watch(index, iterator)
        if hasattr(iterator, "close"):
            self.nodes.append(iterator)
        return iterator

    def _fusible(self, index: int, entries: Entries | None) -> bool:
        """Whether the fusible stages ending at ``index`` can run as one generator: not
        when one resumes from a state of its own input (saved by a parallel ``map``)."""
        if entries is None:
            return True
        while index > 0 and self.stages[index].fuse_kind is not None:
            entry = _entry(entries, index, self.label)
            if entry is not None and ("upstream" in entry or "skip" in entry):
                return False
            index -= 1
        return True

    def _open_fused(self, index: int, entries: Entries | None) -> Iterator[Any]:
        stages = self.stages
        start = index
        while stages[start - 1].fuse_kind is not None:  # a source never fuses: stops at 1
            start -= 1
        run = stages[start : index + 1]
        kinds = [s.fuse_kind or "" for s in run]
        upstream = self.open(start, entries, counted=self.stats is None)
        labels = [self.label(start + k) for k in range(len(run))]
        fns = [s.fn for s in run]
        # The generator counts its inputs (and each filter its drops): read from its
        # frame when a state or the statistics are asked for.
        ends: list[tuple[int, list[int]]] = []
        begin = 0
        if "filter" in kinds:
            # The group's input count is its first filter's (the stages before it give
            # one output per input); the later filters' counts do not matter.
            first = start + kinds.index("filter")
            begin = saved_count(_entry(entries, first, self.label), "start", self.label(first))
        fused = fuse(upstream, kinds, fns, labels, begin, ends)
        if "filter" in kinds:
            self.tracker.getters[first] = lambda _: {"start": inputs_taken(fused, ends)}
            for later in range(first + 1, index + 1):
                if kinds[later - start] == "filter":
                    self.tracker.getters[later] = _passing
        if self.stats is not None:

            def counts() -> tuple[int, list[int]]:
                taken, drops = fused_counts(fused, ends)
                return max(taken - begin, 0), drops  # 0 for one closed before it began

            self.stats.fused_run(start, [s.name for s in run], kinds, counts)
            self.stats.watch(start, fused, [getattr(fn, "__code__", None) for fn in fns])
        return fused

    def _lazy(self, index: int) -> OpenUpstream:
        stages, stats, path, seed = self.stages, self.stats, self.path, self.seed

        def open_upstream(epoch: tuple[int, ...], entries: Entries | None = None) -> Chain:
            return open_chain(stages[:index], epoch, stats, path, seed, entries)

        return open_upstream

    def _reading_ahead(
        self, stage: Stage, upstream: Iterator[Any], ctx: StageContext, first: int
    ) -> tuple[Iterator[Any], Callable[[Getter | None], Getter] | None]:
        """``upstream`` for a stage that reads ahead of what it hands out.

        When the stages below keep live state, they have moved on by the time the
        consumer asks for the state; so the thread that reads them notes their state
        every few elements, and the stage's entry is the last note at or before its
        position plus how many elements to pass over after it. ``first``: the input
        count the stages below stand at now. Returns the input and, in that case, what
        makes the stage's getter from its own (if it has one).
        """
        if not self.tracker.live_below(ctx.index):
            return upstream, None
        # A note is a walk over the stages below (microseconds): one every 16 elements
        # or more keeps that small per element, and what a resumed run reads again is
        # at most a note's spacing plus what the stage had read ahead.
        every = max(16, stage.read_ahead // 2)
        notes: collections.deque[tuple[int, Entries | None]] = collections.deque(maxlen=40)
        notes.append((first, self.tracker.entries(first, ctx.index)))

        def ahead(own: Getter | None) -> Getter:
            def getter(position: int) -> Entry:
                inputs = position
                if own is not None:  # the stage's outputs are not its inputs (rejects)
                    found = own(position)
                    if found is None:
                        return None
                    inputs = found.get("start", position)
                for count, noted in reversed(list(notes)):  # list(): one step in C
                    if count <= inputs:
                        if noted is None:
                            return None
                        return {"upstream": noted, "start": inputs, "skip": inputs - count}
                return None  # it read further ahead than the notes reach: replay

            return getter

        noted = _noting(upstream, first, every, notes, self.tracker, ctx.index)
        return noted, ahead


def _entry(entries: Entries | None, index: int, label: Callable[[int], str]) -> Entry:
    entry = entries[index] if entries is not None and index < len(entries) else None
    if entry is not None and not isinstance(entry, dict):
        raise ValueError(f"{label(index)}: its saved state is not a dict: {entry!r:.80}")
    return entry


def _passing(position: int) -> Entry:
    return {}


def _noting(
    upstream: Iterator[Any],
    first: int,
    every: int,
    notes: collections.deque[tuple[int, Entries | None]],
    tracker: Tracker,
    end: int,
) -> Iterator[Any]:
    count = first
    try:
        for item in upstream:
            count += 1
            if not count % every:
                # Here the stages below stand right after their element ``count``.
                notes.append((count, tracker.entries(count, end)))
            yield item
    finally:
        close_iterator(upstream)


def _skip(iterator: Iterator[Any], count: int, pipeline: Pipeline[Any], epoch: int) -> None:
    """Take ``count`` elements from ``iterator`` and drop them: a resumed run's replay."""
    skipped = sum(1 for _ in itertools.islice(iterator, count))
    if skipped < count:
        raise ValueError(
            f"cannot resume {pipeline!r} at element {count} of epoch {epoch}: this run "
            f"of it yields only {skipped} (was the state taken from another pipeline, "
            "or have its files changed?)"
        )


class _EndOfRun:
    """The second iterable of a :class:`Run`'s ``itertools.chain``.

    ``itertools.chain`` asks for it only once the pipeline is exhausted, which makes it
    a free end-of-run hook: closing there costs nothing per element.
    """

    __slots__ = ("_chain", "_progress", "_stats", "reached")

    def __init__(self, chain: Chain, stats: StageStats | None, progress: Progress | None) -> None:
        self._chain = chain
        self._stats = stats
        self._progress = progress
        self.reached = False

    def __iter__(self) -> Iterator[Any]:
        self.reached = True
        self.stop()
        self._chain.close()
        return iter(())

    def stop(self) -> None:
        """Stop the threads that watch the run: statistics and progress."""
        if self._stats is not None:
            self._stats.stop()
        if self._progress is not None:
            self._progress.stop()


def _unit(stages: Sequence[Stage]) -> str:
    """What a run of ``stages`` hands out, for its progress line."""
    unit = "elements"
    for stage in stages:
        if stage.batching in ("batch", "fixed", "padded"):
            unit = "batches"
        elif stage.batching == "unbatch":
            unit = "elements"
    return unit


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
        cls,
        pipeline: Pipeline[T],
        *,
        epoch: int,
        stats: bool = True,
        start: int = 0,
        entries: Entries | None = None,
        progress: bool | TextIO = False,
    ) -> Run[T]:
        collector = StageStats() if stats else None
        if start:
            length = pipeline.known_length()
            if isinstance(length, int) and start > length:
                raise ValueError(
                    f"cannot resume {pipeline!r} at element {start} of epoch {epoch}: it "
                    f"yields only {length} (was the state taken from another pipeline?)"
                )
        chain = open_chain(pipeline.stages, (epoch,), collector, "", pipeline.seed, entries)
        if not isinstance(chain.iterator, types.GeneratorType):
            # Only a generator stops cleanly once closed: a C iterator (range, a list's
            # iterator) would go on yielding, and a file would raise on its next read.
            chain.iterator = Chain(chain.iterator, []).closing()
            chain.nodes.append(chain.iterator)
        if start and entries is None:
            try:
                _skip(chain.iterator, start, pipeline, epoch)
            except BaseException:
                chain.close()
                raise
            if collector is not None:  # the replay is not this run's time
                collector.restart_clock()
        # Counting in C (zip with a count), so that state() knows how many elements
        # the consumer has received, for some tens of nanoseconds an element. The
        # count comes second, so an element that fails or never comes is not counted.
        counter = itertools.count(start)
        counted: Iterator[Any] = map(
            operator.itemgetter(0), zip(chain.iterator, counter, strict=False)
        )
        if collector is not None:
            counted = collector.timed(counted)
        if collector is not None:
            collector.start_sampling(chain.nodes)
        shown = None
        if progress:
            length = pipeline.known_length()
            shown = Progress(
                functools.partial(count_of, counter),
                total=length if isinstance(length, int) else None,
                what=_unit(pipeline.stages),
                stream=None if progress is True else progress,
                first=start,
            )
        end = _EndOfRun(chain, collector, shown)
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
        once the run is exhausted resumes at the start of the next epoch.

        Besides the epoch and the position, the state holds what each stage needs to
        go on (``"stages"``): counts for sources that start anywhere and stages whose
        input count follows from their output count, read positions for the file
        readers, input counts for filters, the buffer of a ``shuffle`` (as places in
        its input), and so on; so a resumed run starts in a time that does not grow
        with how far into the epoch this one was. A pipeline with a user generator
        (``pipe``, ``coroutine``, ``from_generator``) has ``"stages": None``: it
        resumes by replaying its epoch up to the position (computed again and
        dropped). Replaying, and reading again what a stage buffered, need the same
        elements again, so a pipeline whose stages give another order on another run
        (an unseeded shuffle, a parallel map with ``ordered=False``) has no state:
        this raises ``ValueError`` naming the stage. What the stages cannot see stays
        the caller's to keep fixed: user functions, files, and the pipelines an
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
            epoch, position, entries = self._epoch + 1, 0, None
        else:
            epoch, position = self._epoch, count_of(self._counter)
            entries = self._chain.entries(position) if position else None
        return {
            "format": STATE_FORMAT,
            "pipeline": fingerprint(self._pipeline),
            "epoch": epoch,
            "position": position,
            "stages": entries,
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
        self._end.stop()
        if not self._chain.closed:
            self._chain.close()

    def stats(self) -> list[dict[str, Any]]:
        """Per-stage figures as plain dicts, one per stage in chain order.

        Every row has ``stage``, ``name``, ``items_in``, ``items_out``, ``dropped``
        (filtered, or rejected under an error policy), ``seconds`` and ``share`` (the
        part of the run's time a thread spent working in the stage, from samples of
        the threads' stacks) and ``per_second`` (``items_out`` over the run's time).
        Parallel stages add ``workers``, ``busy_s`` (summed over workers),
        ``utilization``, ``wait_input_s``, ``wait_workers_s`` (the consumer waiting
        for results), ``wait_output_s`` (results waiting for the consumer),
        ``occupancy`` and ``capacity`` (of the queue of elements in flight); stages
        with an ``on_error`` policy add ``read``, ``rejected`` and ``examples``.
        Figures are up to now for a run still going. Raises ``RuntimeError`` for a run
        started with ``iter(stats=False)``.
        """
        return self._collector().as_dicts()

    def summary(self) -> dict[str, Any]:
        """The run as a whole: ``wall_s``, ``samples``, and the consumer's time split
        into ``consumer_share`` (its own work, outside the pipeline: the training loop)
        and ``waiting_share`` (waiting for elements)."""
        return self._collector().summary()

    def bottleneck(self) -> dict[str, Any]:
        """What limits this run's throughput, with a hint: ``{"limit": "stage",
        "stage": 2, "name": ..., "hint": ...}``, ``"consumer"`` (the training loop: the
        input is not the problem) or ``"unknown"`` (a run too short to tell)."""
        collector = self._collector()
        return diagnose(collector.as_dicts(), collector.summary())

    def report(self) -> str:
        """The statistics as text: the per-stage table, the consumer's split and the
        bottleneck with its hint."""
        collector = self._collector()
        return format_report(collector.as_dicts(), collector.summary())

    def _collector(self) -> StageStats:
        if self._stats is None:
            raise RuntimeError(
                "this run collects no statistics: it was started with iter(stats=False)"
            )
        return self._stats

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
        end = getattr(self, "_end", None)
        if end is not None:
            with contextlib.suppress(Exception):
                end.stop()
        chain = getattr(self, "_chain", None)
        if chain is not None and not chain.closed:
            with contextlib.suppress(Exception):  # a finalizer cannot raise
                chain.close()

    def __repr__(self) -> str:
        state = "closed" if self._chain.closed else "open"
        return f"<headrace.Run ({state}) of {self._description}>"
