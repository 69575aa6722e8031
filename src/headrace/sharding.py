"""``shard``: one share of a pipeline, so that several workers or ranks split its data.

Together the shares of a pipeline yield each of its elements exactly once; each share
does as little of the others' work as the pipeline allows. ``Pipeline.shard`` and the
PyTorch integration's DataLoader workers use it.

Without ``num_shards`` and ``index``, :func:`shard` takes this process's share, read
at every run: one per rank of a distributed job times one per DataLoader worker. With
``equal=``, every share yields as many elements (or batches) as every other, so
that ranks which must take the same number of steps never wait on each other.
"""

from __future__ import annotations

import builtins
import itertools
import os
import sys
from collections.abc import Iterator
from typing import Any, TypeVar, cast

from headrace._checks import check_int
from headrace.engine.guard import close_iterator
from headrace.engine.opening import open_chain
from headrace.engine.plan import Plan
from headrace.engine.stage import INFINITE, Length, Stage, StageContext, first_unfixed
from headrace.engine.state import Entry
from headrace.errors import quoted
from headrace.stages.combine import unfixed_in

__all__ = ["current_share", "shard"]

P = TypeVar("P", bound=Plan[Any])
#: What ``equal=`` accepts besides ``None``.
_EQUAL_MODES = ("drop", "pad")


def shard(
    pipeline: P,
    num_shards: int | None = None,
    index: int | None = None,
    *,
    equal: str | None = None,
) -> P:
    """Share ``index`` of ``num_shards`` (by default this process's share): together the
    shares yield every element of ``pipeline`` exactly once, and each does as little of
    the others' work as it can.

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

    **This process's share.** Without ``num_shards`` and ``index``, every run of the
    returned pipeline picks its share from what the process is at that moment:

    - its rank among ``R`` processes: from ``torch.distributed`` when its default
      process group is initialized (looked up only where torch is already imported;
      headrace never imports it), else from Ray Train's context inside a Ray Train
      worker (``ray.train.get_context()``), else from the environment variables ``RANK`` and
      ``WORLD_SIZE`` that ``torchrun`` and most launchers set, else rank 0 of 1.
      ``LOCAL_RANK`` is never read as the rank: it counts the processes of one machine
      only. A variable without the other, a value that is not an integer, a
      ``RANK`` not below ``WORLD_SIZE``, or ``LOCAL_RANK`` set without them, raise
      ``ValueError`` naming the variable;
    - inside a PyTorch DataLoader worker process, its worker id among ``W`` workers
      (``torch.utils.data.get_worker_info()``), else worker 0 of 1.

    Rank ``r``, worker ``w`` runs share ``r * W + w`` of ``R * W``: together, all
    workers of all ranks yield every element once. Picking at run time, not when the
    pipeline is built, lets one pipeline built before ``init_process_group``, or sent
    to worker processes, run the right share wherever it runs. A DataLoader worker
    started by ``spawn`` or ``forkserver`` has no process group of its own: it takes
    the rank of the process that pickled the pipeline, if that process had one.
    :func:`current_share` says which share a process runs now, and ``len()`` of the
    returned pipeline is that share's length. Sharing the returned pipeline again with
    numbers (``.shard(n, i)``, as the PyTorch integration does in each DataLoader
    worker) splits each rank's share ``n`` ways in place of the DataLoader workers.

    **Equal shares.** ``equal="drop"`` or ``"pad"`` makes every share yield the same
    number of elements, counted at the end of the pipeline: a pipeline that batches
    after the share point yields the same number of batches in every share, so ranks
    that must take the same number of steps (``DistributedDataParallel``) never wait
    for one that ran out. ``"drop"`` stops every share at the shortest share's count:
    the elements past it are left out of the epoch. ``"pad"`` makes every shorter
    share yield its own first elements again (the same objects) up to the longest
    share's count: every element comes, a few twice. Shared element by element, the
    shares differ by one element at most (one batch, after ``batch``), so each share
    drops or repeats at most one (unless a ``repeat`` follows the share point). Both
    need every share's length before running: a pipeline whose length is unknown
    (``filter``, ``flat_map``, and every file source, whether shared by file or by
    element) raises ``ValueError``. A share with no element cannot be padded (more
    shares than elements): use ``"drop"``. ``equal=None``, the default, leaves the
    shares as they fall.

    >>> import headrace as hr
    >>> [list(shard(hr.range(7), 3, i)) for i in range(3)]
    [[0, 3, 6], [1, 4], [2, 5]]
    >>> list(shard(hr.range(10).take(5).map(str), 2, 1))
    ['1', '3']
    >>> [list(shard(hr.range(7), 3, i, equal="drop")) for i in range(3)]
    [[0, 3], [1, 4], [2, 5]]
    >>> [list(shard(hr.range(7), 3, i, equal="pad")) for i in range(3)]
    [[0, 3, 6], [1, 4, 1], [2, 5, 2]]
    """
    if equal is not None and equal not in _EQUAL_MODES:
        raise ValueError(f"equal must be 'drop', 'pad' or None, got {equal!r}")
    source = pipeline.stages[0]
    if num_shards is None and index is None:
        if isinstance(source, _ProcessShare):
            raise ValueError(f"{pipeline!r} is this process's share already")
        _check_process_share(pipeline, equal)
        return cast(P, pipeline.with_stages((_ProcessShare(pipeline, equal),)))
    if num_shards is None or index is None:
        raise ValueError(
            "pass num_shards and index together, or neither for this process's share "
            f"(by rank and DataLoader worker); got num_shards={num_shards!r}, index={index!r}"
        )
    num_shards = check_int("num_shards", num_shards, minimum=1)
    index = check_int("index", index, minimum=0)
    if index >= num_shards:
        raise ValueError(f"index must be below num_shards ({num_shards}), got {index}")
    if isinstance(source, _ProcessShare):
        if equal is not None:
            raise ValueError(
                f"{pipeline!r} is this process's share already: give equal= to the "
                "shard() that made it, which sees every share"
            )
        rest = (_own_share(stage, pipeline) for stage in pipeline.stages[1:])
        return cast(P, pipeline.with_stages((source.within(num_shards, index), *rest)))
    share = _share(pipeline, num_shards, index)
    if equal is None or num_shards == 1:
        return cast(P, share)
    return cast(P, _equalised(pipeline, share, num_shards, index, equal))


def current_share() -> tuple[int, int]:
    """``(num_shards, index)``: the share that :func:`shard` without numbers runs in this
    process now, from its rank and DataLoader worker (see :func:`shard`).

    Raises ``ValueError`` naming the environment variable that is missing or wrong.
    """
    world, rank = _rank(None)
    workers, worker = _dataloader_worker()
    return world * workers, rank * workers + worker


def _share_point(stages: tuple[Stage, ...]) -> int:
    """Where the shares part: after the last stage that needs the whole stream."""
    return 1 + max(
        (i for i, stage in enumerate(stages[1:], 1) if not stage.per_element),
        default=0,
    )


def _check_order(pipeline: Plan[Any], point: int, among: str) -> None:
    """Refuse a stage before ``point`` whose order may differ from run to run."""
    stages = pipeline.stages
    found = first_unfixed(stages[:point], seeded=pipeline.seed is not None)
    if found is not None:
        position, stage, problem = found
        after = f", or after {quoted(stages[point - 1].name)}" if point > 1 else ""
        raise ValueError(
            f"cannot share {pipeline!r} among {among}: every worker runs "
            f"stage {position} {quoted(stage.name)} in full, and {problem} gives each a "
            f"different order (fix the order{after}, so that the elements can be "
            "shared out)"
        )


def _share(pipeline: Plan[Any], num_shards: int, index: int) -> Plan[Any]:
    """Share ``index`` of ``num_shards``, its length left as it falls."""
    if num_shards == 1:
        return pipeline
    stages = pipeline.stages
    point = _share_point(stages)
    _check_order(pipeline, point, f"{num_shards} workers")
    rest = tuple(_own_share(stage, pipeline) for stage in stages[point:])
    source = stages[0]
    if point == 1 and source.shards_itself:
        twin = source.shard_itself(num_shards, index)
        if twin is not None:  # else too few files for the shares: share the elements
            return pipeline.with_stages((twin, *rest))
    return pipeline.with_stages((*stages[:point], _Share(num_shards, index), *rest))


def _check_process_share(pipeline: Plan[Any], equal: str | None) -> None:
    """What can be refused before knowing the number of shares."""
    if equal is not None and pipeline.known_length() is None:
        raise _unknown_length(pipeline, equal)
    point = _share_point(pipeline.stages)
    if point > 1 or not pipeline.stages[0].shards_itself:
        # A file source alone is shared by file when it has enough files: checked at
        # the run, when the number of shares is known.
        _check_order(pipeline, point, "workers")


def _unknown_length(pipeline: Plan[Any], equal: str) -> ValueError:
    return ValueError(
        f"equal={equal!r} needs the length of every share before running, and the length "
        f"of {pipeline!r} is not known (a file source, or a stage such as filter or "
        "flat_map, decides it by the data); share it with equal=None, or make its "
        "length known (an in-memory source, no filtering)"
    )


def _equalised(
    pipeline: Plan[Any], share: Plan[Any], num_shards: int, index: int, mode: str
) -> Plan[Any]:
    """``share`` yielding as many elements as every other share, by ``mode``."""
    if pipeline.known_length() is None:
        raise _unknown_length(pipeline, mode)
    lengths = [
        share.known_length() if k == index else _share(pipeline, num_shards, k).known_length()
        for k in range(num_shards)
    ]
    known = [n for n in lengths if n is not None]
    if len(known) < num_shards:
        raise _unknown_length(pipeline, mode)
    target = builtins.min(known) if mode == "drop" else builtins.max(known)
    own = known[index]
    if target == INFINITE:
        if own == INFINITE:
            return share  # every share is endless (pad) or the shortest is (drop)
        raise ValueError(
            f"cannot pad share {index} of {num_shards} of {pipeline!r} ({int(own)} "
            "elements) to the length of an endless share; use equal='drop'"
        )
    if mode == "pad" and own == 0 and target > 0:
        raise ValueError(
            f"cannot pad share {index} of {num_shards} of {pipeline!r}: it has no element "
            f"to repeat (the longest share has {int(target)}); use equal='drop', or fewer "
            "shares"
        )
    return share.with_stages((*share.stages, _Equal(int(target), own, mode)))


def _own_share(stage: Stage, pipeline: Plan[Any]) -> Stage:
    """``stage`` for a share (a memory cache starts empty, to hold that share alone)."""
    try:
        return stage.in_share()
    except ValueError as error:
        raise ValueError(f"cannot share {pipeline!r} among workers: {error}") from None


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
        # Resumed: the next element of the share is the first at or after ctx.start.
        first = ctx.start
        skip = self._index - first if first <= self._index else (self._index - first) % self._count
        return _every(upstream, self._count, skip)

    def resume_upstream(self, position: int) -> int | None:
        # Output n - 1 is input index + (n - 1) * count: that many and one are behind it.
        return self._index + (position - 1) * self._count + 1 if position else 0

    def length(self, upstream: Length) -> Length:
        if upstream is None or upstream == INFINITE:
            return upstream
        return builtins.max(0, (int(upstream) - self._index + self._count - 1) // self._count)


def _every(upstream: Iterator[Any], count: int, index: int) -> Iterator[Any]:
    try:
        yield from itertools.islice(upstream, index, None, count)
    finally:
        close_iterator(upstream)


class _Equal(Stage):
    """The first ``count`` elements of a share of ``own``, padded with its first ones."""

    __slots__ = ("_count", "_mode", "_own")

    def __init__(self, count: int, own: int | float, mode: str) -> None:
        self._count = count
        self._own = own
        self._mode = mode

    @property
    def name(self) -> str:
        return f"equal({self._mode!r}, {self._count})"

    def open(self, upstream: Iterator[Any], ctx: StageContext) -> Iterator[Any]:
        return _equal(upstream, self._count, self._own, ctx)

    def resume_upstream(self, position: int) -> int | None:
        # Padding repeats the first elements, which a resumed run has not seen: only
        # a share that needs none resumes by count (else the epoch is replayed).
        return position if self._own >= self._count or not position else None

    def length(self, upstream: Length) -> Length:
        return self._count


def _equal(
    upstream: Iterator[Any], count: int, own: int | float, ctx: StageContext
) -> Iterator[Any]:
    expected = int(builtins.min(own, count))
    missing = count - expected
    first: list[Any] = []
    got = ctx.start
    try:
        for element in itertools.islice(upstream, builtins.max(0, count - got)):
            if got < missing:
                first.append(element)
            got += 1
            yield element
    finally:
        close_iterator(upstream)
    if got != expected:
        # Every share counts on the others' lengths: one that came out otherwise
        # would leave the shares unequal after all.
        raise ValueError(
            f"{ctx.label}: the share yielded {got} element(s) where its stages promised "
            f"{expected}, so the shares are not equal; its length must not change between "
            "building the shares and running them (a list the source reads changed?)"
        )
    yield from itertools.islice(itertools.cycle(first), missing)


class _ProcessShare(Stage):
    """Source: the share of ``pipeline`` this process runs, picked again at every run.

    ``within``: ``(count, index)`` standing in for the DataLoader worker's; ``sender``:
    ``(world size, rank)`` of the process that pickled it, for spawned workers.
    """

    __slots__ = ("_equal", "_pipeline", "_sender", "_shares", "_within")
    is_source = True

    def __init__(
        self,
        pipeline: Plan[Any],
        equal: str | None,
        within: tuple[int, int] | None = None,
        sender: tuple[int, int] | None = None,
    ) -> None:
        self._pipeline = pipeline
        self._equal = equal
        self._within = within
        self._sender = sender
        #: The share of each placement met so far (its memory caches fill once).
        self._shares: dict[tuple[int, int], Plan[Any]] = {}

    @property
    def name(self) -> str:
        if self._within is None:
            how = "by rank and worker"
        else:
            how = f"by rank, then {self._within[1]} of {self._within[0]}"
        equal = "" if self._equal is None else f", equal={self._equal!r}"
        return f"shard({self._pipeline!r}, {how}{equal})"

    def within(self, num_shards: int, index: int) -> _ProcessShare:
        """Each rank's share split ``num_shards`` ways, in place of DataLoader workers."""
        if self._within is not None:
            count, first = self._within
            num_shards, index = count * num_shards, first + index * count
        return _ProcessShare(self._pipeline, self._equal, (num_shards, index), self._sender)

    def placement(self) -> tuple[int, int]:
        """``(num_shards, index)`` for a run starting now."""
        world, rank = _rank(self._sender)
        workers, worker = _dataloader_worker() if self._within is None else self._within
        return world * workers, rank * workers + worker

    def share(self) -> Plan[Any]:
        """The share a run starting now runs."""
        placement = self.placement()
        found = self._shares.get(placement)
        if found is None:
            made = shard(self._pipeline, *placement, equal=self._equal)
            found = self._shares.setdefault(placement, made)
        return found

    def open(self, upstream: Iterator[Any], ctx: StageContext) -> Iterator[Any]:
        placement = list(self.placement())
        saved = None
        if ctx.resume is not None:
            if ctx.resume.get("placement") != placement:
                raise ValueError(
                    f"{ctx.label}: the state was saved by share {ctx.resume.get('placement')} "
                    f"(of [shares, index]); this run is share {placement}, which reads "
                    "other elements: resume every share from its own state"
                )
            saved = ctx.resume.get("inner")
        return _run_share(self.share(), ctx, placement, saved)

    def length(self, upstream: Length) -> Length:
        return self.share().known_length()

    def unfixed_order(self, *, seeded: bool = False) -> str | None:
        return unfixed_in((self._pipeline,), seeded)

    def __reduce__(self) -> tuple[Any, ...]:
        # A spawned DataLoader worker has no process group: it gets this one's rank.
        sender = _torch_rank() or self._sender
        return (_ProcessShare, (self._pipeline, self._equal, self._within, sender))


def _run_share(
    share: Plan[Any], ctx: StageContext, placement: list[int], saved: Any
) -> Iterator[Any]:
    # The share's stages take the places they have in the share itself (in error notes
    # and in the seeds they derive), so that this run is that of the share.
    seed = share.seed if share.seed is not None else ctx.seed
    chain = open_chain(share.stages, ctx.epoch, None, ctx.path, seed, saved)

    def entry(position: int) -> Entry:
        inner = chain.entries(position)
        return None if inner is None else {"placement": placement, "inner": inner}

    ctx.track_state(entry)
    return chain.closing()


# -- where this process stands ------------------------------------------------------


def _rank(sender: tuple[int, int] | None) -> tuple[int, int]:
    """``(world size, rank)`` of this process."""
    found = _torch_rank() or _ray_train_rank()
    if found is not None:
        return found
    if sender is not None and _worker_info() is not None:
        return sender
    return _environment_rank()


def _torch_rank() -> tuple[int, int] | None:
    """``(world size, rank)`` from torch.distributed, if torch is imported and it is set up."""
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return None
    return int(dist.get_world_size()), int(dist.get_rank())


def _ray_train_rank() -> tuple[int, int] | None:
    """``(world size, rank)`` of a Ray Train worker, when this process is one (looked up
    only where Ray Train is imported, as it is in its workers)."""
    train = sys.modules.get("ray.train")
    if train is None:
        return None
    try:
        context = train.get_context()
    except (RuntimeError, AttributeError, ValueError):  # not inside a training function
        return None
    return int(context.get_world_size()), int(context.get_world_rank())


def _environment_rank() -> tuple[int, int]:
    """``(world size, rank)`` from ``WORLD_SIZE`` and ``RANK``; ``(1, 0)`` without them."""
    world_text = os.environ.get("WORLD_SIZE")
    rank_text = os.environ.get("RANK")
    local = os.environ.get("LOCAL_RANK")
    if world_text is None and rank_text is None:
        if local is not None:
            raise ValueError(
                f"the environment variable LOCAL_RANK is set ({local!r}) but RANK and "
                "WORLD_SIZE are not: LOCAL_RANK counts the processes of one machine "
                "only, so it cannot tell this process's share of the data; set RANK and "
                "WORLD_SIZE (torchrun does), or pass num_shards and index"
            )
        return 1, 0
    for name, text in (("RANK", rank_text), ("WORLD_SIZE", world_text)):
        if text is None:
            other = "WORLD_SIZE" if name == "RANK" else "RANK"
            raise ValueError(
                f"the environment variable {other} is set but {name} is not: set both "
                "(torchrun does; LOCAL_RANK, the rank within one machine, is not the "
                "rank), or neither for a single process"
            )
    world = _environment_int("WORLD_SIZE", world_text, 1)
    rank = _environment_int("RANK", rank_text, 0)
    if rank >= world:
        raise ValueError(
            f"the environment variable RANK ({rank}) must be below WORLD_SIZE ({world})"
        )
    return world, rank


def _environment_int(name: str, text: str | None, minimum: int) -> int:
    try:
        value = int(text or "")
    except ValueError:
        raise ValueError(
            f"the environment variable {name} must be an integer, got {text!r}"
        ) from None
    if value < minimum:
        raise ValueError(
            f"the environment variable {name} must be at least {minimum}, got {text!r}"
        )
    return value


def _worker_info() -> Any:
    """torch's ``get_worker_info()`` if torch's data loading is imported, else ``None``."""
    data = sys.modules.get("torch.utils.data")
    return None if data is None else data.get_worker_info()


def _dataloader_worker() -> tuple[int, int]:
    """``(number of workers, worker id)`` inside a DataLoader worker, else ``(1, 0)``."""
    info = _worker_info()
    return (1, 0) if info is None else (int(info.num_workers), int(info.id))
