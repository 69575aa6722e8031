"""``shard``: one share of a pipeline, so that several workers or ranks split its data.

Together the shares of a pipeline yield each of its elements exactly once; each share
does as little of the others' work as the pipeline allows. ``Pipeline.shard`` and the
PyTorch integration's DataLoader workers use it.
"""

from __future__ import annotations

import builtins
import itertools
from collections.abc import Iterator
from typing import Any

from headrace._checks import check_int
from headrace.parallel import ParallelMap, Prefetch, RandomMap
from headrace.parallel.pool import GuardedMap
from headrace.pipeline import Pipeline
from headrace.sources._files import FileSource
from headrace.stages._base import INFINITE, Length, Stage, StageContext
from headrace.stages._guard import close_iterator
from headrace.stages.basic import FlatMap, FusedStage
from headrace.stages.batching import Batch, Unbatch
from headrace.stages.caching import Cache
from headrace.stages.combine import Interleave, Repeat
from headrace.stages.parsing import Parse
from headrace.stages.shuffling import Shuffle

__all__ = ["shard"]

#: Stages whose output for an element does not depend on the elements around it (or,
#: for shuffle and batch, only regroups them): a worker can run them on its share
#: alone. Any other stage (take, skip, enumerate, scan, window, pipe, coroutine, and
#: stages this list does not know) needs the whole stream, so sharing comes after it.
_PER_ELEMENT: tuple[type[Stage], ...] = (
    FusedStage,  # map, starmap, filter, tap
    FlatMap,
    GuardedMap,
    ParallelMap,
    RandomMap,
    Parse,
    Prefetch,
    Shuffle,
    Batch,  # batch and padded_batch: each worker batches its share
    Unbatch,
    Repeat,
    Cache,
    Interleave,
)


def shard(pipeline: Pipeline[Any], num_shards: int, index: int) -> Pipeline[Any]:
    """Share ``index`` of ``num_shards``: together the shares yield every element of
    ``pipeline`` exactly once, and each does as little of the others' work as it can.

    The share is taken as close to the source as the pipeline allows: right after the
    last stage that needs the whole stream (``take``, ``skip``, ``take_while``,
    ``drop_while``, ``enumerate``, ``scan``, ``window``, ``pipe``, ``coroutine``), or
    right after the source when there is none. Stages after that point run on the
    share only. There, a file source with at least ``num_shards`` files reads only
    every ``num_shards``-th file (its ``num_shards``/``shard_index``); any other
    source keeps every ``num_shards``-th element, from the ``index``-th, so it is read
    in full by every share. Everything before that point runs in full in every share
    and must yield the same elements in the same order each time: a ``shuffle``
    without a seed, or a parallel ``map`` with ``ordered=False``, there (or inside the
    pipelines of a ``zip`` or ``concat`` source) raises ``ValueError``, and a source
    that draws its own randomness (a generator) would break the partition unseen.

    A memory ``cache()`` after that point caches its own share; a file cache there
    raises ``ValueError`` (all shares would write one file).

    >>> import headrace as hr
    >>> [list(shard(hr.range(7), 3, i)) for i in range(3)]
    [[0, 3, 6], [1, 4], [2, 5]]
    >>> list(shard(hr.range(10).take(5).map(str), 2, 1))
    ['1', '3']
    """
    num_shards = check_int("num_shards", num_shards, minimum=1)
    index = check_int("index", index, minimum=0)
    if index >= num_shards:
        raise ValueError(f"index must be below num_shards ({num_shards}), got {index}")
    if num_shards == 1:
        return pipeline
    stages = pipeline.stages
    point = 1 + max(
        (i for i, stage in enumerate(stages[1:], 1) if not isinstance(stage, _PER_ELEMENT)),
        default=0,
    )
    for position, stage in enumerate(stages[:point]):
        problem = stage.unfixed_order(seeded=pipeline.seed is not None)
        if problem is not None:
            after = f", or after {stages[point - 1].name!r}" if point > 1 else ""
            raise ValueError(
                f"cannot share {pipeline!r} among {num_shards} workers: every worker runs "
                f"stage {position} {stage.name!r} in full, and {problem} gives each a "
                f"different order (fix the order{after}, so that the elements can be "
                "shared out)"
            )
    rest = tuple(_own_share(stage, pipeline) for stage in stages[point:])
    source = stages[0]
    if point == 1 and isinstance(source, FileSource):
        twin = source.sharded(num_shards, index)
        try:
            twin.paths()
        except ValueError:  # fewer files than shares: share the elements instead
            pass
        else:
            return Pipeline((twin, *rest), seed=pipeline.seed)
    return Pipeline((*stages[:point], _Share(num_shards, index), *rest), seed=pipeline.seed)


def _own_share(stage: Stage, pipeline: Pipeline[Any]) -> Stage:
    """``stage`` for a share; a memory cache starts empty, to hold that share alone."""
    if not isinstance(stage, Cache):
        return stage
    if stage._path is not None:
        raise ValueError(
            f"cannot share {pipeline!r} among workers: every share would write its part "
            f"to the one file of {stage.name!r}; use a memory cache (each share keeps its "
            "own part), or cache the whole pipeline where it is not shared"
        )
    return Cache()


class _Share(Stage):
    """Every ``count``-th element of the upstream, from the ``index``-th."""

    __slots__ = ("_count", "_index")

    def __init__(self, count: int, index: int) -> None:
        self._count = count
        self._index = index

    @property
    def name(self) -> str:
        return f"share({self._index} of {self._count})"

    def open(self, upstream: Iterator[Any], ctx: StageContext) -> Iterator[Any]:
        return _every(upstream, self._count, self._index)

    def length(self, upstream: Length) -> Length:
        if upstream is None or upstream == INFINITE:
            return upstream
        return builtins.max(0, (int(upstream) - self._index + self._count - 1) // self._count)


def _every(upstream: Iterator[Any], count: int, index: int) -> Iterator[Any]:
    try:
        yield from itertools.islice(upstream, index, None, count)
    finally:
        close_iterator(upstream)
