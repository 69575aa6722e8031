"""A run: one epoch of a pipeline as an iterator that owns what it started.

The chain of stages is opened by :func:`headrace.engine.opening.open_chain`; a
:class:`Run` adds what the consumer sees: the count of elements handed out (for
:meth:`Run.state`), statistics, a progress line, and closing on exhaustion, error,
``close()`` or garbage collection.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import json
import operator
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, NoReturn, TextIO, TypeVar

from headrace._checks import check_int
from headrace.engine.chain import Chain
from headrace.engine.opening import open_chain
from headrace.engine.plan import Plan
from headrace.engine.stage import Stage, first_unfixed
from headrace.engine.state import Entries, count_of, stops_once_closed
from headrace.progress import Progress
from headrace.stats import StageStats, diagnose, format_report

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["STATE_FORMAT", "Run", "fingerprint", "start", "state_check"]

#: The ``"format"`` of the states :meth:`Run.state` gives.
STATE_FORMAT = "headrace.run-state/3"


def state_check(state: Mapping[str, Any]) -> str:
    """The ``"check"`` of a state: a digest of everything else in it.

    :meth:`Pipeline.iter` refuses a state whose check does not match, so a state
    edited by hand, or damaged in storage, is never trusted to say where to go on.
    """
    content = {key: value for key, value in state.items() if key != "check"}
    try:
        text = json.dumps(content, sort_keys=True, separators=(",", ":"), default=_plain)
    except (TypeError, ValueError) as error:
        raise ValueError(f"the state holds a value that is not plain data ({error})") from None
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _plain(value: Any) -> Any:
    """A numpy scalar as its Python number (a framework may store ints so)."""
    item = getattr(value, "item", None)
    if item is None:
        raise TypeError(f"{type(value).__name__} is not JSON data")
    return item()


def _skip(iterator: Iterator[Any], count: int, pipeline: Plan[Any], epoch: int) -> None:
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


def fingerprint(pipeline: Plan[Any]) -> str:
    """A short digest of the pipeline's stages, to tell a state from another pipeline's.

    It covers what the stages compute (:attr:`Stage.identity`) and the seed, not how
    they run: a state saved with ``map(f, workers=8)`` resumes ``map(f)`` inline, or on
    processes, since both give the same elements.
    """
    stages = " -> ".join(stage.identity for stage in pipeline.stages)
    described = f"{stages} seed={pipeline.seed}"
    return hashlib.sha256(described.encode()).hexdigest()[:16]


def _replay_problem(pipeline: Plan[Any]) -> str | None:
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
    _pipeline: Plan[T]
    _stats: StageStats | None

    def __new__(
        cls,
        pipeline: Plan[T],
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
        if not stops_once_closed(chain.iterator):
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
        state = {
            "format": STATE_FORMAT,
            "pipeline": fingerprint(self._pipeline),
            "epoch": epoch,
            "position": position,
            "stages": entries,
        }
        state["check"] = state_check(state)
        return state

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
        ``occupancy`` and ``capacity`` (of the queue of elements in flight); a
        parallel ``map`` or ``random_map`` also ``chunk`` (the mean elements a task)
        and ``transport_s`` (moving elements to the workers and back, besides the
        calls); stages with an ``on_error`` policy add ``read``, ``rejected`` and
        ``examples``.
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


def start(
    plan: Plan[T],
    *,
    epoch: int | None = None,
    stats: bool = True,
    state: Mapping[str, Any] | None = None,
    progress: bool | TextIO = False,
) -> Run[T]:
    """Start a run of ``plan``: what :meth:`headrace.Pipeline.iter` does (see there).

    ``epoch`` pins the epoch number (by default the plan's counter gives the next);
    ``state`` resumes where a :meth:`Run.state` stood, in its epoch.
    """
    if state is not None:
        if epoch is not None:
            raise ValueError("pass epoch= or state=, not both: the state has its epoch")
        number, first, entries = _resume_point(plan, state)
        plan.epochs.move_past(number)
        return Run(plan, epoch=number, stats=stats, start=first, entries=entries, progress=progress)
    number = plan.epochs.take() if epoch is None else check_int("epoch", epoch, minimum=0)
    return Run(plan, epoch=number, stats=stats, progress=progress)


def _resume_point(plan: Plan[Any], state: Mapping[str, Any]) -> tuple[int, int, list[Any] | None]:
    """The epoch and position a state names, checked against this pipeline."""
    if not isinstance(state, Mapping) or state.get("format") != STATE_FORMAT:
        raise ValueError(
            f"state must be what Run.state() returns (format {STATE_FORMAT!r}), got {state!r:.200}"
        )
    if state.get("check") != state_check(state):
        raise ValueError(
            "the state was changed after Run.state() gave it: its 'check' does not match "
            "the rest, so it cannot be trusted to say where to go on (resume from the "
            "state as saved, or start an epoch afresh with iter(epoch=n))"
        )
    if state.get("pipeline") != fingerprint(plan):
        raise ValueError(
            f"the state was taken from another pipeline than {plan!r} (its stages "
            "or their arguments differ), so it cannot say where this one stands"
        )
    numbers = []
    for name in ("epoch", "position"):
        value = state.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"state[{name!r}] must be a non-negative int, got {value!r}")
        numbers.append(value)
    entries = state.get("stages")
    if entries is not None and not (isinstance(entries, list) and len(entries) == len(plan.stages)):
        raise ValueError(
            f"state['stages'] must be a list with one entry per stage "
            f"({len(plan.stages)}), or None, got {entries!r:.200}"
        )
    return numbers[0], numbers[1], entries
