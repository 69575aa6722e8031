"""Opening a chain of stages for one run, and owning what it opened.

Who closes what: every stage generator closes its upstream when it ends (exhausted,
failed or closed), so an ending anywhere releases everything upstream of it. On top
of that a :class:`Chain` remembers every closeable node it opened, so closing a run
from outside reaches them all, downstream first, even nodes that never started.

:func:`open_chain` walks the stages from the consumer's end towards the source: each
stage gets a :class:`~headrace.engine.stage.StageContext` (its label, epoch path,
seed, saved entry) and the iterator of the stages before it; runs of ``map``,
``filter`` and ``tap`` are fused into one generator (:mod:`headrace.engine.fusion`);
stages that decide when to open their input (``repeat``, ``cache``) get a function
that opens it instead; a stage resuming from an entry with ``"upstream"`` gets its
input opened from that state.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from headrace._seeds import derive_seed
from headrace.engine.chain import Chain
from headrace.engine.fusion import fuse, fused_counts, inputs_taken
from headrace.engine.stage import OpenUpstream, Stage, StageContext, StatsSink, Tracker
from headrace.engine.state import (
    Entries,
    Entry,
    count_of,
    counting,
    passing_over,
    saved_count,
)
from headrace.errors import Scope, StageLabel, quoted

__all__ = ["apply", "iterate", "open_chain"]


def open_chain(
    stages: Sequence[Stage],
    epoch: tuple[int, ...],
    stats: StatsSink | None,
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
    return Chain(iterator, nodes, tracker.entries)


def apply(stage: Stage, iterable: Iterable[Any], *, epoch: int = 0) -> Iterator[Any]:
    """Run ``stage`` on its own over ``iterable``: the standalone stage functions.

    The label in error notes is the stage's name; seeded stages use ``epoch``.
    """
    label = StageLabel(stage.name, Scope())  # a scope of its own, as a chain has
    ctx = StageContext(0, label, (epoch,), name=stage.name, opener=_open_inner)
    # The caller owns its iterator (a file it goes on reading after take(), say):
    # a C wrapper without close() keeps the stage from closing it, as itertools
    # functions leave their input open.
    return stage.open(itertools.chain(iter(iterable)), ctx)


def iterate(stages: Sequence[Stage], *, epoch: int = 0, seed: int | None = None) -> Iterator[Any]:
    """The elements of one run of ``stages`` (a source first) without statistics: the
    standalone functions that take several iterables (``zip``, ``concat``, ``repeat``).
    Closing the iterator, or exhausting it, closes every stage."""
    return open_chain(stages, (epoch,), None, "", seed).closing()


def _open_inner(
    stages: Sequence[Stage],
    epoch: tuple[int, ...],
    path: str,
    seed: int | None,
    entries: Entries | None,
) -> Chain:
    # A nested pipeline reports no statistics of its own: its stage's row covers it.
    return open_chain(stages, epoch, None, path, seed, entries)


class _Opening:
    """What every stage of one chain is opened with."""

    __slots__ = ("epoch", "nodes", "path", "scope", "seed", "stages", "stats", "tracker")

    def __init__(
        self,
        stages: Sequence[Stage],
        epoch: tuple[int, ...],
        stats: StatsSink | None,
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
        self.scope = Scope()  # tells this chain's error notes from those of nested chains
        self.seed = seed
        self.tracker = tracker

    def label(self, position: int) -> StageLabel:
        name = self.stages[position].name
        return StageLabel(f"{self.path}stage {position} {quoted(name)}", self.scope)

    def open(self, end: int, entries: Entries | None, *, counted: bool = True) -> Iterator[Any]:
        """The iterator of ``stages[:end]``, registering closeable nodes in ``nodes``;
        ``counted=False`` when the caller counts what it takes (a fused run)."""
        index = end - 1
        stage = self.stages[index]
        entry = _entry(entries, index, self.label)
        first = self._joined_from(index, entries)
        if stage.fuse_kind is not None and self._fusible(index, entries):
            iterator = self._open_fused(index, entries)
        elif first < index:
            iterator = self._open_joined(first, index, entries, counted=counted)
        else:
            ctx = self._context(index, entry)
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
                if skip and not stage.read_ahead:
                    # Noted before this stage's position by a stage that read ahead (a
                    # state saved with workers); one that reads ahead passes over it
                    # itself, after noting (headrace.engine.readahead).
                    upstream = passing_over(upstream, skip)
                iterator = stage.open(upstream, ctx)
            if self.stats is not None:
                if counted and not stage.counts_output:
                    iterator = self.stats.count(index, stage.name, iterator)
                else:  # the stage, or the fused run after it, counts
                    self.stats.record(index, stage.name)
                    self.stats.watch(index, iterator)
        if hasattr(iterator, "close"):
            self.nodes.append(iterator)
        return iterator

    def _context(self, index: int, entry: Entry) -> StageContext:
        own = None if self.seed is None else derive_seed(self.seed, f"{self.path}{index}")
        return StageContext(
            index,
            self.label(index),
            self.epoch,
            self.stats,
            self.path,
            self.stages[index].name,
            own,
            saved_count(entry, "start", self.label(index)),
            entry,
            self.tracker,
            _open_inner,
        )

    def _joined_from(self, index: int, entries: Entries | None) -> int:
        """The first of the stages that run inside stage ``index``'s tasks (consecutive
        parallel maps on the same workers), or ``index`` itself. A run resuming from a
        state saved inside one of them (its own input's) runs them apart."""
        first = index
        while first > 1 and self.stages[first].joins(self.stages[first - 1]):
            first -= 1
        if entries is not None:
            for position in range(first, index + 1):
                entry = _entry(entries, position, self.label)
                if entry is not None and ("upstream" in entry or "skip" in entry):
                    return index
        return first

    def _open_joined(
        self, first: int, index: int, entries: Entries | None, *, counted: bool
    ) -> Iterator[Any]:
        """Stages ``first`` to ``index`` as one: the last one's pool runs the calls of
        all of them. Each keeps its row in the statistics (one output per input)."""
        contexts = [
            self._context(k, _entry(entries, k, self.label)) for k in range(first, index + 1)
        ]
        upstream = self.open(first, entries)
        last = self.stages[index]
        earlier = [(self.stages[k], contexts[k - first]) for k in range(first, index)]
        iterator = last.open_joined(upstream, contexts[-1], earlier)
        if self.stats is not None:
            iterator, counter = counting(iterator, 0)
            names = [self.stages[k].name for k in range(first, index)]
            self.stats.fused_run(
                first, names, ["map"] * len(names), lambda: (count_of(counter), [])
            )
            if counted and not last.counts_output:
                iterator = self.stats.count(index, last.name, iterator)
            else:  # the stage (its pool), or the fused run after it, counts
                self.stats.record(index, last.name)
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


def _entry(entries: Entries | None, index: int, label: Callable[[int], str]) -> Entry:
    entry = entries[index] if entries is not None and index < len(entries) else None
    if entry is not None and not isinstance(entry, dict):
        raise ValueError(f"{label(index)}: its saved state is not a dict: {entry!r:.80}")
    return entry


def _passing(position: int) -> Entry:
    return {}
