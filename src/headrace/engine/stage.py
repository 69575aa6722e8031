"""The contract every stage and source of a pipeline description follows."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Final, Protocol, TypeVar

from headrace.engine.state import Entries, Entry, Getter, saved_count

if TYPE_CHECKING:
    from headrace.engine.chain import Chain

__all__ = [
    "INFINITE",
    "RUN_LOCK",
    "STREAM_ONLY",
    "Length",
    "OpenUpstream",
    "Stage",
    "StageContext",
    "StatsSink",
    "Tracker",
    "first_unfixed",
]

#: Guards the few once-per-run updates stages make to themselves (marking a one-shot
#: source spent, storing a finished cache). One lock shared by all stages keeps stage
#: objects free of locks, so descriptions pickle; it is taken once per run, never per
#: element, so sharing it costs nothing measurable.
RUN_LOCK: Final = threading.Lock()

_V = TypeVar("_V")


class StatsSink(Protocol):
    """What the engine and the stages tell a run's statistics (``headrace.stats``
    implements it); ``None`` in a context when the run collects none."""

    def count(self, index: int, name: str, iterator: Iterator[Any]) -> Iterator[Any]:
        """``iterator`` (what stage ``index`` hands out), counted."""
        ...

    def record(self, index: int, name: str) -> object:
        """Make sure stage ``index`` has a row, even when another stage counts it."""
        ...

    def watch(self, index: int, iterator: Any, codes: list[Any] | None = None) -> None:
        """Let the sampler tell when a thread runs ``iterator`` (stage ``index``)."""
        ...

    def fused_run(
        self, first: int, names: list[str], kinds: list[str], counts: Callable[[], Any]
    ) -> None:
        """A fused run of stages from ``first``; ``counts()`` gives (inputs, drops)."""
        ...

    def shared(self, index: int, name: str, kind: str, value: _V) -> _V:
        """The ``kind`` of figures (``"pool"``, ``"tally"``) stage ``index`` reports:
        ``value`` on its first opening in the run, what that opening gave later on
        (inside ``repeat``), so every opening adds to the same figures."""
        ...


#: The end of the refusals of sources that cannot be read by index.
STREAM_ONLY: Final = "; use shuffle(buffer_size) for sources that can only be streamed"

#: The length of an endless stream (``repeat()`` of a non-empty pipeline).
INFINITE: Final = math.inf

#: ``int`` when known, ``INFINITE`` when endless, ``None`` when it cannot be known
#: without running the pipeline (after ``filter``, for example).
Length = int | float | None

#: Opens a pipeline nested in a stage (``stages``, a source first) for an epoch path,
#: with a label prefix, a seed and a saved state (or ``None``): what
#: :func:`headrace.engine.opening.open_chain` does, handed to stages through their
#: context so that no stage reaches up to the code that opens it.
Opener = Callable[
    [Sequence["Stage"], tuple[int, ...], str, "int | None", "Entries | None"], "Chain"
]

#: Opens the stages before a ``lazy_upstream`` stage for an epoch path, from a saved
#: state of theirs if one is given, as a chain the stage closes.
OpenUpstream = Callable[[tuple[int, ...], "Entries | None"], "Chain"]


@dataclass(frozen=True, slots=True)
class StageContext:
    """What a stage learns about the run it is opened in."""

    #: Position in the chain; the source is stage 0.
    index: int
    #: ``"stage 3 'map(parse)'"``: used in error notes and reports.
    label: str
    #: Epoch path: ``(epoch,)`` for a plain run, ``(epoch, repetition, ...)`` inside
    #: ``repeat()``, so every repetition of a shuffled upstream draws a new order.
    epoch: tuple[int, ...]
    #: Collects per-stage figures when the run was started with ``stats=True``.
    stats: StatsSink | None = None
    #: Where this stage's chain sits when it is a nested pipeline (inside ``zip``,
    #: ``concat`` or ``interleave``): a prefix of its label, empty at the top level.
    path: str = ""
    #: The stage's own name, as in ``repr`` (``"zip(...)"``).
    name: str = ""
    #: The seed this stage takes when it was given none, derived from the pipeline's
    #: seed (``Pipeline.with_seed``) and the stage's place; ``None`` if it has none.
    seed: int | None = None
    #: How many elements of its input (a source: of its own elements) this opening
    #: passes over unseen: a run resumed without replay (see ``resume_upstream``).
    start: int = 0
    #: This stage's entry in the state the run resumes from (see ARCHITECTURE.md,
    #: "Where state lives"), or ``None``: a fresh run, or a stage that needs nothing.
    resume: Entry = None
    #: Where a live stage registers its state getter (``None`` outside a run).
    tracker: Tracker | None = None
    #: Opens the pipelines nested in this stage (see :meth:`open_inner`).
    opener: Opener | None = None

    def open_inner(
        self,
        stages: Sequence[Stage],
        seed: int | None,
        what: str,
        entries: Entries | None = None,
    ) -> Chain:
        """Open a pipeline nested in this stage: an input of ``zip``, a pipeline that a
        ``flat_map`` function returned. It runs in this run's epoch path, so a replay
        gives the same elements; with its own ``seed``, or else this stage's; from its
        saved ``entries`` when given. ``what`` names it in labels (``"input 0"``).
        """
        if self.opener is None:
            raise RuntimeError(f"{self.label}: opened outside a run, it cannot open {what}")
        own = seed if seed is not None else self.seed
        return self.opener(stages, self.epoch, self.inner_path(what), own, entries)

    def track_state(self, getter: Getter) -> None:
        """Register ``getter`` as this stage's state for :meth:`Run.state`.

        ``getter(position)`` is called on the consumer's thread while the run stands
        between two elements, with how many elements this stage has handed out in the
        epoch; it returns the stage's entry (with ``"start"``: its input count), or
        ``None`` when it cannot tell.
        """
        if self.tracker is not None:
            self.tracker.getters[self.index] = getter

    def input_state(self, count: int) -> int | Entries | None:
        """The state of this stage's input after it handed out ``count`` elements.

        Call it right then, on the thread that reads the input: when a stage below
        keeps live state, it is read now (a list); otherwise the count is all that is
        needed, and :meth:`upstream_entries` works the entries out when asked.
        """
        if self.tracker is None:
            return None
        if self.tracker.live_below(self.index):
            return self.tracker.entries(count, self.index)
        return count

    def saved_count(self, name: str) -> int:
        """A count from this stage's saved entry (0 when there is none), checked."""
        return saved_count(self.resume, name, self.label)

    def upstream_entries(self, noted: int | Entries | None) -> Entries | None:
        """The entries of what :meth:`input_state` gave, for an ``"upstream"`` field."""
        if isinstance(noted, int) and self.tracker is not None:
            return self.tracker.entries(noted, self.index)
        return noted if isinstance(noted, list) else None

    def inner_path(self, what: str) -> str:
        """The path for a pipeline this stage opens inside itself, such as an input."""
        kind = self.name.split("(", 1)[0]
        return f"{self.path}stage {self.index} ({kind}) {what} > "


def first_unfixed(stages: Iterable[Stage], *, seeded: bool) -> tuple[int, Stage, str] | None:
    """The first of ``stages`` whose order may change between runs of one epoch, as
    ``(position, stage, why)``, or ``None`` when every order is fixed.

    ``seeded``: the pipeline has a seed, which stages without their own take.
    """
    for position, stage in enumerate(stages):
        problem = stage.unfixed_order(seeded=seeded)
        if problem is not None:
            return position, stage, problem
    return None


class Stage:
    """One step of a pipeline: a source (no upstream) or an iterator -> iterator stage.

    Stages are immutable descriptions. :meth:`open` is called once per run and returns
    a fresh iterator; everything a run needs lives in that iterator, so one description
    can run many times, even at once.
    """

    __slots__ = ()

    #: ``"map"``, ``"filter"`` or ``"tap"`` for stages that are fused into one generator.
    fuse_kind: ClassVar[str | None] = None
    #: True for sources, which take no upstream.
    is_source: ClassVar[bool] = False
    #: True for stages that decide when (and whether) to open their upstream:
    #: ``repeat`` opens it once per repetition, ``cache`` not at all when it replays.
    #: They implement :meth:`open_lazy` instead of :meth:`open`.
    lazy_upstream: ClassVar[bool] = False
    #: True for sources that can start at any element (``ctx.start``) at once.
    seekable: ClassVar[bool] = False
    #: True for stages whose output for an element does not depend on the elements
    #: around it, or that only regroup elements (``shuffle``, ``batch``): a worker can
    #: run them on its share of the stream alone (see ``headrace.sharding``). Any other
    #: stage needs the whole stream, so sharing comes after it.
    per_element: ClassVar[bool] = False
    #: True for sources that can read only their share themselves (file readers:
    #: every ``num_shards``-th file): see :meth:`shard_itself`.
    shards_itself: ClassVar[bool] = False
    #: For sources read by index (:meth:`by_index`): whether the sequence is the same
    #: on every run (``False``: a list of files, found anew as each run starts).
    fixed_index: ClassVar[bool] = True

    @property
    def name(self) -> str:
        """Short text shown in ``repr`` and error notes, such as ``batch(32)``."""
        raise NotImplementedError

    def open(self, upstream: Iterator[Any], ctx: StageContext) -> Iterator[Any]:
        """Start this stage on ``upstream`` (sources receive an empty iterator)."""
        raise NotImplementedError

    def open_lazy(self, upstream: OpenUpstream, ctx: StageContext) -> Iterator[Any]:
        """Start a ``lazy_upstream`` stage.

        ``upstream(epoch)`` opens a fresh run of everything before this stage for the
        given epoch path and returns its iterator, which closes all of that run when it
        is closed or exhausted.
        """
        raise NotImplementedError

    @property
    def counts_output(self) -> bool:
        """Whether the stage counts what it hands out itself, for the statistics (a
        pool's counters): the engine then does not count it again."""
        return False

    def joins(self, earlier: Stage) -> bool:
        """Whether ``earlier``, the stage just before this one, can run inside this
        one's tasks (:meth:`open_joined`): consecutive parallel maps on the same
        workers, which then take one trip for both."""
        return False

    def open_joined(
        self,
        upstream: Iterator[Any],
        ctx: StageContext,
        earlier: Sequence[tuple[Stage, StageContext]],
    ) -> Iterator[Any]:
        """Start this stage with the ``earlier`` stages before it (each of which it
        :meth:`joins`, in order, with their contexts) running inside it, on the input
        of the first of them."""
        raise NotImplementedError

    def length(self, upstream: Length) -> Length:
        """Number of elements out, given the upstream's (``None`` when unknown)."""
        return None

    def shard_itself(self, num_shards: int, index: int) -> Stage | None:
        """For a source that :attr:`shards_itself`: a copy that reads only share
        ``index`` of ``num_shards``, or ``None`` when it cannot right now (fewer files
        than shares); then the elements are shared out after it."""
        return None

    def in_share(self) -> Stage:
        """This stage as it runs in one share of a sharded pipeline: itself, unless it
        keeps what it saw (a memory cache starts empty, to hold its share alone).
        ``ValueError`` saying why when it cannot run in a share (a file cache)."""
        return self

    def index_problem(self) -> str | None:
        """Why this source cannot be read by index (what ``global_shuffle`` needs), or
        ``None`` when :meth:`by_index` can give its elements."""
        return (
            f"global_shuffle cannot read {self.name} by index: it takes range(), files() "
            f"or from_iterable() of a sequence or numpy array{STREAM_ONLY}"
        )

    def by_index(self) -> Sequence[Any]:
        """The elements of one run of this source as a sequence, read by index; called
        as each run starts, and only when :meth:`index_problem` is ``None``."""
        raise ValueError(self.index_problem())

    @property
    def identity(self) -> str:
        """What this stage computes, for telling a saved state's pipeline from another:
        its name without the arguments that only say how it runs (workers, backend,
        buffer sizes), which do not change the elements."""
        return self.name

    @property
    def read_ahead(self) -> int:
        """How many input elements this stage may take ahead of those behind what it
        has handed out (a thread that reads ahead), or 0 when it reads on demand.

        A stage that reads ahead must call
        :meth:`headrace.engine.readahead.ReadAhead.watch` first thing in :meth:`open`
        and register the getter it gives (:meth:`StageContext.track_state`): the engine
        then leaves the saved ``"skip"`` to it, so that its notes are taken from where
        the stages below stand."""
        return 0

    def resume_upstream(self, position: int) -> int | None:
        """How many input elements this stage had taken when it handed out its
        ``position``-th output, when that follows from the count alone (``map``: as
        many; ``batch(n)``: ``n`` times as many), else ``None``: then the stage must
        register a state getter when it opens (:meth:`StageContext.track_state`), or a run of
        it resumes by replaying its epoch. A resumed stage is opened with
        ``ctx.start`` set to its input's count, and must honour it.
        """
        return None

    def unfixed_order(self, *, seeded: bool = False) -> str | None:
        """Why two runs of the same epoch may yield different orders (``"a shuffle
        without a seed"``), or ``None`` when the order is fixed; sharding needs it fixed.
        ``seeded``: the pipeline has a seed, which stages without their own take.
        """
        return None

    @property
    def batching(self) -> str | None:
        """How this stage leaves the first dimension of its elements' arrays: ``"batch"``
        (it makes batches, the last one maybe short), ``"fixed"`` (batches of one size),
        ``"padded"`` (every dimension may vary), ``"unbatch"`` (it takes batches apart),
        or ``None`` (it does not batch: as its upstream left them).
        """
        return None

    @property
    def fn(self) -> Callable[[Any], Any]:
        """The user function of a fusible stage."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return self.name


class Tracker:
    """The getters of the live stages of one opened chain, and the walk over them."""

    __slots__ = ("getters", "stages")

    def __init__(self, stages: Sequence[Stage]) -> None:
        self.stages = stages
        self.getters: dict[int, Getter] = {}

    def live_below(self, index: int) -> bool:
        """Whether a stage before ``index`` keeps live state (its entries must then be
        read when it stands where they are wanted, not worked out later from counts)."""
        return any(i < index for i in self.getters)

    def entries(self, position: int, end: int | None = None) -> Entries | None:
        """The state of ``stages[:end]`` (all by default) after the last of them has
        handed out ``position`` elements of the epoch; ``None`` if some stage cannot
        tell, so that resuming means replaying."""
        end = len(self.stages) if end is None else end
        entries: Entries = [None] * end
        count = position
        index = end - 1
        while index >= 0:
            stage = self.stages[index]
            getter = self.getters.get(index)
            if getter is not None:
                entry = getter(count)
                if entry is None:
                    return None
                entries[index] = entry or None
                if "upstream" in entry or stage.is_source or stage.lazy_upstream:
                    break  # the stages below are in the entry, or have nothing to add
                count = entry.get("start", count)
            elif stage.lazy_upstream:
                return None
            elif stage.is_source:
                if not stage.seekable:
                    return None
                entries[index] = {"start": count} if count else None
                break
            else:
                upstream = stage.resume_upstream(count)
                if upstream is None:
                    return None
                count = upstream
                entries[index] = {"start": count} if count else None
            index -= 1
        return entries
