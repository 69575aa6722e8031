"""Per-stage figures for a run: what each stage did, where the time went, and which
stage holds the run back.

Runs collect them unless started with ``iter(stats=False)``. Collecting costs almost
nothing per element:

- counts: a fused run of ``map``/``filter``/``tap`` stages counts its input and its
  drops in the generator it already is, read when asked; other stages are counted in
  C (``zip`` with ``itertools.count``); parallel stages keep their own counters;
- time: the consumer's waiting for elements is measured (on a random sample of
  about one element in 16 once elements come faster than one per 20 us); within
  the pipeline, a
  CPU-time timer signal (every 5 ms of CPU) notes the stage the consumer's thread is
  in, and a thread (once the run has gone on for 50 ms) checks every 5 ms how long
  that thread was blocked (reading, sleeping) and where other threads (a
  prefetch's) are, every 40 ms at most while it finds neither. A run on another
  thread than the main one takes its CPU samples from that thread instead, which lean
  towards code that releases the interpreter lock.

>>> import headrace as hr
>>> with hr.range(1000).filter(lambda x: x % 2).batch(100).iter() as run:
...     batches = list(run)
>>> [(s["name"], s["items_in"], s["items_out"]) for s in run.stats()]
[('range(0, 1000)', 0, 1000), ('filter(<lambda>)', 1000, 500), ('batch(100)', 500, 5)]
"""

from __future__ import annotations

import itertools
import random
import signal
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from headrace import _lifecycle
from headrace.engine.state import count_of, counting
from headrace.errors import quoted

if TYPE_CHECKING:
    from types import FrameType

    from headrace.engine.stage import StageContext
    from headrace.policy import Tally

__all__ = ["PoolCounters", "StageRecord", "StageStats", "diagnose", "format_report", "format_table"]

#: Seconds between two looks at the threads' stacks (of CPU time, for the signal).
SAMPLE_EVERY_S = 0.005
#: The longest the sampling thread waits between looks while it finds nothing to
#: attribute (the consumer's thread runs without blocking and no other thread is in a
#: stage): each look takes the interpreter lock from the consumer, which costs a
#: CPU-bound run a few percent at one look every 5 ms.
IDLE_EVERY_S = 0.04
#: A run shorter than this is too short to name its slowest stage.
SHORTEST_S = 0.05
#: Elements that come faster than this are timed on a sample (:meth:`StageStats.timed`).
TIME_EVERY_S = 20e-6
#: When elements come fast, each timed element is followed by 0 to 31 untimed ones,
#: uniformly drawn: one element in 16.5 is timed, on average.
_GAP_BITS = 5
_RATE_OVER = 256
#: Below this much work an element, a stage is not worth workers: on the process
#: backend, records of 2 us of work ran no faster on 2 workers than inline (see
#: BENCHMARKS.md, the log pipeline); the bottleneck report suggests batching first.
CHEAP_S = 10e-6

_SAMPLERS = itertools.count()


_V = TypeVar("_V")


@dataclass(slots=True)
class PoolCounters:
    """What a parallel stage (a worker pool or a prefetch thread) did with its time.

    Parallel stages keep these whether or not the run collects statistics: a few
    clock reads per element are nothing next to handing the element to a worker.
    """

    #: Elements yielded.
    items: int = 0
    #: Seconds the workers spent in the stage's function, summed over workers.
    busy_s: float = 0.0
    #: Seconds spent taking elements from the upstream (input too slow if large).
    wait_input_s: float = 0.0
    #: Seconds the consumer waited for a worker's result (workers too slow if large).
    wait_workers_s: float = 0.0
    #: Seconds between handing a result on and being asked for the next (the
    #: consumer is the bottleneck if large).
    wait_output_s: float = 0.0
    #: Workers (1 for a prefetch thread) and how many elements may be in flight.
    workers: int = 0
    capacity: int = 0
    #: Tasks handed to the workers (a task carries one element or a run of them).
    tasks: int = 0
    #: Seconds spent moving elements to the workers and results back, besides the
    #: calls: handing tasks over and collecting them on the consumer's thread, and a
    #: worker process's unpacking and packing.
    transport_s: float = 0.0
    #: Sum, over the elements handed out, of how many others were in flight or ready
    #: then: divided by ``items``, the mean occupancy of the stage's queue.
    occupancy_sum: float = 0.0
    #: With ``workers="auto"``, what chooses the workers used (its ``describe()``
    #: says what it chose and from what).
    tuner: Any = None

    @classmethod
    def of(cls, ctx: StageContext) -> PoolCounters:
        """The counters of a stage, reported in ``run.stats()`` when it collects.

        A stage opened again in the same run (inside ``repeat``) adds to the same ones.
        """
        if ctx.stats is None:
            return cls()
        return ctx.stats.shared(ctx.index, ctx.name, "pool", cls())


@dataclass(slots=True)
class StageRecord:
    """What is known of one stage while the run goes on."""

    index: int
    name: str
    #: Reads the elements the stage handed out, or ``None`` when the next stage
    #: counts them (a fused run counts its input).
    items_out: Callable[[], int] | None = None
    #: Reads the elements the stage dropped (a filter), when the stage counts them.
    dropped: Callable[[], int] | None = None
    #: The counters of a parallel stage.
    pool: PoolCounters | None = None
    #: What a stage with an ``on_error=`` policy read and rejected.
    tally: Tally | None = None
    #: How many CPU-time samples found the consumer's thread working in this stage.
    samples: int = 0
    #: Seconds the consumer's thread was blocked in this stage (reading, sleeping), and
    #: seconds other threads (a prefetch's) spent in it.
    blocked_s: float = 0.0
    elsewhere_s: float = 0.0


@dataclass(slots=True)
class _Fused:
    """A fused run of stages ``first`` to ``first + len(kinds) - 1`` and how to count it
    (with what earlier openings of it, inside ``repeat``, counted)."""

    first: int
    kinds: list[str]
    counts: Callable[[], tuple[int, list[int]]]  # (inputs taken, drops of each filter)
    taken: int = 0
    drops: list[int] = field(default_factory=list)

    def total(self) -> tuple[int, list[int]]:
        taken, drops = self.counts()
        summed = [a + b for a, b in itertools.zip_longest(self.drops, drops, fillvalue=0)]
        return self.taken + taken, summed


@dataclass(slots=True, weakref_slot=True, eq=False)
class StageStats:
    """The figures of every stage of one run, keyed by stage position."""

    records: dict[int, StageRecord] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    ended: float | None = None
    fused: dict[int, _Fused] = field(default_factory=dict)
    #: Frames of the stages' generators (by ``id``, and the one of each stage), and
    #: the code of the user functions of fused stages, each with the stage it belongs
    #: to (for the sampler).
    frames: dict[int, tuple[Any, int]] = field(default_factory=dict)
    stage_frames: dict[int, Any] = field(default_factory=dict)
    codes: dict[Any, tuple[int, int]] = field(default_factory=dict)
    #: The consumer's thread and its CPU time when the run started; how many CPU-time
    #: samples were taken of it, and how many found it outside the pipeline.
    consumer: int = field(default_factory=threading.get_ident)
    cpu_started: float = field(default_factory=time.thread_time)
    cpu_ended: float | None = None
    samples: int = 0
    outside: int = 0
    #: Seconds the consumer spent waiting for the run's next element (measured, on
    #: a random sample of the elements when they come fast: :meth:`timed`).
    waiting_s: float = 0.0
    sampler: _Sampler | None = None
    #: What the sampling thread needs, until it starts: the run's nodes, and whether
    #: it takes the CPU samples too.
    pending: tuple[list[Any], bool] | None = None

    def record(self, index: int, name: str) -> StageRecord:
        """The record for stage ``index``, created on first use (``repeat`` reuses it)."""
        found = self.records.get(index)
        if found is None:
            found = self.records[index] = StageRecord(index, name)
        return found

    def shared(self, index: int, name: str, kind: str, value: _V) -> _V:
        """The ``pool`` or ``tally`` of stage ``index``: ``value`` when it has none yet,
        else the one an earlier opening in this run gave (inside ``repeat``)."""
        record = self.record(index, name)
        found = getattr(record, kind)
        if found is None:
            setattr(record, kind, value)
            return value
        return found  # type: ignore[no-any-return]

    def count(self, index: int, name: str, iterator: Iterator[Any]) -> Iterator[Any]:
        """``iterator`` (what stage ``index`` hands out) counted in C."""
        counted, counter = counting(iterator, 0)
        record = self.record(index, name)
        # Opened again (inside repeat): what the earlier openings handed out, plus this.
        base = 0 if record.items_out is None else record.items_out()
        record.items_out = lambda: base + count_of(counter)
        self.watch(index, iterator)
        return counted

    def watch(self, index: int, iterator: Any, codes: list[Any] | None = None) -> None:
        """Let the sampler tell when a thread runs ``iterator`` (stage ``index``)."""
        frame = getattr(iterator, "gi_frame", None)
        if frame is not None:
            old = self.stage_frames.get(index)  # an earlier opening's, done with
            if old is not None:
                self.frames.pop(id(old), None)
            self.stage_frames[index] = frame
            self.frames[id(frame)] = (frame, index)
        for position, code in enumerate(codes or ()):
            if code is not None:
                self.codes[code] = (index + position, index)

    def fused_run(self, first: int, names: list[str], kinds: list[str], counts: Any) -> None:
        """Register a fused run of stages starting at ``first``."""
        for position, name in enumerate(names):
            self.record(first + position, name)
        earlier = self.fused.get(first)
        taken, drops = (0, []) if earlier is None else earlier.total()
        self.fused[first] = _Fused(first, list(kinds), counts, taken, drops)

    def start_sampling(self, nodes: list[Any]) -> None:
        """Start sampling: by a timer signal when the run is on the main thread and
        the signal is free, else by a thread (which stops with :meth:`stop` or when
        every generator in ``nodes`` has finished)."""
        signals = _SIGNALS.available()
        if signals:
            _SIGNALS.add(self)
        self.pending = (nodes, not signals)

    def timed(self, iterator: Iterator[Any]) -> Iterator[Any]:
        """``iterator`` (the run's output), timing how long the consumer waits for
        its elements.

        Every element is timed until 256 in a row come faster than one per
        :data:`TIME_EVERY_S`. From then on about one element in 16 is
        timed, drawn at random (so that a period in the pipeline, a batch boundary,
        cannot line up with the timed ones), and
        the elements between are handed out by ``islice`` in C: on a fast pipeline
        the two clock reads and the generator step of every element would cost more
        than the stages. The wait of a timed element stands for the elements after it.

        The sampling thread starts once the run has gone on for :data:`SHORTEST_S`
        (a shorter run is too short to diagnose): short runs start no thread.
        """
        return itertools.chain.from_iterable(self._segments(iterator))

    def _segments(self, iterator: Iterator[Any]) -> Iterator[Iterable[Any]]:
        clock = time.perf_counter
        take = iterator.__next__
        draw: Callable[[int], int] | None = None
        seen, mark = 0, 0.0
        try:
            while True:
                start = clock()
                if self.pending is not None and start - self.started > SHORTEST_S:
                    nodes, cpu = self.pending
                    self.pending = None
                    if self.ended is None:
                        self.sampler = _Sampler(self, nodes, cpu=cpu)
                try:
                    item = take()
                finally:
                    wait = clock() - start
                    self.waiting_s += wait
                yield (item,)
                if draw is not None:
                    gap = draw(_GAP_BITS)
                    if gap:
                        self.waiting_s += wait * gap
                        yield itertools.islice(iterator, gap)
                    continue
                # How fast elements come, over each _RATE_OVER elements after the
                # first (which may have waited for the stages to start).
                seen += 1
                if seen % _RATE_OVER == 1:
                    now = clock()
                    if seen > 1 and now - mark < _RATE_OVER * TIME_EVERY_S:
                        # Seeded by the run's start: the draws vary between runs but
                        # cost no system entropy.
                        draw = random.Random(self.started).getrandbits
                    mark = now
        except StopIteration:
            return

    def stop(self) -> None:
        """Stop sampling and fix the run's wall time (the run ended)."""
        if self.ended is None:
            self.ended = time.perf_counter()
            if threading.get_ident() == self.consumer:
                self.cpu_ended = time.thread_time()
        # Frames keep their locals (the last elements) alive: not needed any more.
        self.frames.clear()
        self.stage_frames.clear()
        self.codes.clear()
        _SIGNALS.discard(self)
        self.pending = None
        if self.sampler is not None:
            self.sampler.stop()

    def restart_clock(self) -> None:
        """Start the run's clocks now (after a resumed run replayed its epoch)."""
        self.started = time.perf_counter()
        self.cpu_started = time.thread_time()

    def wall(self) -> float:
        return (self.ended or time.perf_counter()) - self.started

    def _counts(self) -> dict[int, tuple[int, int | None, int]]:
        """``index -> (items in, items out or None, dropped)`` of the fused stages."""
        found: dict[int, tuple[int, int | None, int]] = {}
        for run in self.fused.values():
            taken, drops = run.total()
            drop_iter = iter(drops)
            received = taken
            for position, kind in enumerate(run.kinds):
                dropped = next(drop_iter, 0) if kind == "filter" else 0
                found[run.first + position] = (received, received - dropped, dropped)
                received -= dropped
        return found

    def as_dicts(self) -> list[dict[str, Any]]:
        """Plain-data report: one dict per stage, in chain order."""
        wall = self.wall()
        fused = self._counts()
        # What each stage handed out; a stage the next one counts takes its count.
        outs: dict[int, int] = {}
        for index in sorted(self.records):
            record = self.records[index]
            if index in fused:
                outs[index] = fused[index][1] or 0
            elif record.items_out is not None:
                outs[index] = record.items_out()
            elif record.pool is not None:
                outs[index] = record.pool.items
        for index in sorted(self.records):
            if index not in outs and index + 1 in fused:
                outs[index] = fused[index + 1][0]
        # The consumer's CPU time, spread over the stages by the samples that found it
        # in each (and outside the pipeline), plus the time it was blocked in each
        # and the time other threads spent in each.
        cpu = (self.cpu_ended or time.thread_time()) - self.cpu_started
        counted = self.outside + sum(r.samples for r in self.records.values())
        per_sample = cpu / counted if counted else 0.0
        rows: list[dict[str, Any]] = []
        for index in sorted(self.records):
            record = self.records[index]
            items_out = outs.get(index, 0)
            items_in = outs.get(index - 1, 0) if index else 0
            dropped = fused[index][2] if index in fused else 0
            seconds = record.samples * per_sample + record.blocked_s + record.elsewhere_s
            share = min(seconds / wall, 1.0) if wall > 0 else 0.0
            row: dict[str, Any] = {
                "stage": index,
                "name": record.name,
                "items_in": items_in,
                "items_out": items_out,
                "dropped": dropped,
                "seconds": seconds,
                "share": share,
                "per_second": items_out / wall if wall > 0 else 0.0,
            }
            if record.pool is not None:
                pool = record.pool
                workers = max(pool.workers, 1)
                row.update(
                    workers=pool.workers,
                    busy_s=pool.busy_s,
                    utilization=min(pool.busy_s / (workers * wall), 1.0) if wall > 0 else 0.0,
                    wait_input_s=pool.wait_input_s,
                    wait_workers_s=pool.wait_workers_s,
                    wait_output_s=pool.wait_output_s,
                    occupancy=pool.occupancy_sum / pool.items if pool.items else 0.0,
                    capacity=pool.capacity,
                )
                if pool.tasks:
                    row["chunk"] = pool.items / pool.tasks
                    row["transport_s"] = pool.transport_s
                if pool.tuner is not None:
                    row["auto"] = pool.tuner.describe()
            if record.tally is not None:
                row.update(record.tally.as_dict())
                row["dropped"] = row.get("rejected", 0)
            rows.append(row)
        return rows

    def summary(self) -> dict[str, Any]:
        """The run as a whole: wall time, samples, and the consumer's time split
        between its own work (outside the pipeline) and waiting for elements (both
        measured by the clock, on a random sample of the elements when they come
        fast: :meth:`timed`)."""
        wall = self.wall()
        waiting = min(self.waiting_s / wall, 1.0) if wall > 0 else 0.0
        return {
            "wall_s": wall,
            "samples": self.samples,
            "consumer_share": 1.0 - waiting if wall > 0 else 0.0,
            "waiting_share": waiting,
        }


class _Sampler:
    """The thread that looks at the stacks every few milliseconds.

    It measures what CPU-time samples cannot see: the time the consumer's thread is
    blocked inside a stage (reading a socket, sleeping), from the thread's CPU clock,
    and the time other threads (a prefetch's) spend in stages. Where no timer signal
    can be used (a run on another thread than the main one), it also takes the CPU
    samples, which then lean towards code that releases the interpreter lock.
    """

    def __init__(self, stats: StageStats, nodes: list[Any], *, cpu: bool) -> None:
        self._stats = weakref.ref(stats)
        # Weakly: a run dropped by its user (even in a reference cycle) must be freed,
        # and closed by its finalizer, not kept alive by the thread that watches it.
        self._nodes = [weakref.ref(n) for n in nodes if hasattr(n, "gi_frame")]
        self._cpu = cpu
        self._consumer = stats.consumer
        try:
            self._clock: int | None = time.pthread_getcpuclockid(stats.consumer)
        except (AttributeError, OSError):  # no per-thread CPU clocks here
            self._clock = None
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name=f"headrace-stats-{next(_SAMPLERS)}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(1.0)

    def _loop(self) -> None:
        own = threading.get_ident()
        wall, cpu = time.perf_counter(), self._cpu_time()
        every = SAMPLE_EVERY_S
        while not self._stop.wait(every):
            stats = self._stats()
            if stats is None or not any(_running(node) for node in self._nodes):
                return  # the run is gone, or every generator of it has finished
            now, used = time.perf_counter(), self._cpu_time()
            blocked = max(now - wall - (used - cpu), 0.0)
            found = self._look(stats, own, now - wall, blocked)
            # Blocked time is measured whatever the spacing (from the thread's CPU
            # clock), only its attribution to a stage needs frequent looks: while the
            # consumer runs unblocked and no other thread works in a stage, look less
            # often, back to every 5 ms as soon as there is something to see.
            if self._cpu or found or blocked > (now - wall) / 4:
                every = SAMPLE_EVERY_S
            else:
                every = min(every * 2, IDLE_EVERY_S)
            wall, cpu = now, used
            del stats

    def _cpu_time(self) -> float:
        if self._clock is None:
            return 0.0
        try:
            return time.clock_gettime(self._clock)
        except OSError:  # the consumer's thread has ended
            return 0.0

    def _look(self, stats: StageStats, own: int, elapsed: float, blocked: float) -> bool:
        """Attribute a look's time; whether a thread other than the consumer's was
        found working in a stage."""
        others = False
        if self._cpu:
            stats.samples += 1
        for ident, frame in sys._current_frames().items():
            if ident == own:
                continue
            if ident == self._consumer:
                if self._cpu:
                    _note(stats, frame)
                if self._clock is not None and blocked > 0:
                    record = _record_of(stats, frame)
                    if record is not None:
                        record.blocked_s += blocked
            else:
                record = _record_of(stats, frame)
                if record is not None:
                    record.elsewhere_s += elapsed
                    others = True
        return others


def _running(node: weakref.ref[Any]) -> bool:
    found = node()
    return found is not None and found.gi_frame is not None


def _record_of(stats: StageStats, frame: FrameType | None) -> StageRecord | None:
    """The record of the (non-parallel) stage ``frame`` is in, if any."""
    stage = _stage_of(frame, stats.frames, stats.codes)
    record = None if stage is None else stats.records.get(stage)
    return None if record is None or record.pool is not None else record


def _note(stats: StageStats, frame: FrameType | None) -> None:
    """Count a CPU-time sample of the consumer's thread, now at ``frame``.

    A thread in a parallel stage's own generator (a prefetch, a pool's driver) only
    waits there for its thread or workers, whose time the stage's counters measure.
    """
    stage = _stage_of(frame, stats.frames, stats.codes)
    if stage is None:
        stats.outside += 1
        return
    record = stats.records.get(stage)
    if record is not None and record.pool is None:
        record.samples += 1


class _SignalSampler:
    """Samples the main thread from a CPU-time timer signal (``SIGVTALRM``): the
    handler runs where the main thread is, so time in code that releases the
    interpreter lock (reading, decompressing) is not over-counted, as a thread that
    must take the lock to look would. One timer serves every run that samples."""

    def __init__(self) -> None:
        # Replaced whole, never changed in place: the handler may run at any moment.
        self._runs: tuple[weakref.ref[StageStats], ...] = ()
        # Reentrant: allocating inside may run the garbage collector, which may stop
        # (discard) a dropped run on this very thread.
        self._lock = threading.RLock()
        self._closed = False

    def available(self) -> bool:
        """Whether this thread can sample by signal: the main thread, a platform
        with ``setitimer``, and ``SIGVTALRM`` not handled by someone else."""
        if self._closed or _lifecycle.exiting:
            return False
        if threading.current_thread() is not threading.main_thread():
            return False
        number = getattr(signal, "SIGVTALRM", None)
        if number is None or not hasattr(signal, "setitimer"):
            return False
        return signal.getsignal(number) in (signal.SIG_DFL, signal.SIG_IGN, self._handle)

    def add(self, stats: StageStats) -> None:
        with self._lock:
            first = not self._runs
            self._runs = (*self._runs, weakref.ref(stats))
            if first:
                if signal.getsignal(signal.SIGVTALRM) != self._handle:
                    signal.signal(signal.SIGVTALRM, self._handle)
                    signal.siginterrupt(signal.SIGVTALRM, False)  # system calls go on
                signal.setitimer(signal.ITIMER_VIRTUAL, SAMPLE_EVERY_S, SAMPLE_EVERY_S)

    def discard(self, stats: StageStats) -> None:
        with self._lock:
            if not self._runs:
                return
            self._runs = tuple(r for r in self._runs if r() is not None and r() is not stats)
            if not self._runs:
                self._off()

    def _off(self) -> None:
        """Stop the timer. The handler stays: a signal still on its way must not find
        the default action (which ends the process); with no run it does nothing, and
        programs started later get the default action back, as for every handler."""
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)

    def _handle(self, number: int, frame: FrameType | None) -> None:
        found = False
        for ref in self._runs:
            stats = ref()
            if stats is not None:
                found = True
                stats.samples += 1
                _note(stats, frame)
        if not found:  # every run was dropped without being stopped
            signal.setitimer(signal.ITIMER_VIRTUAL, 0)

    def shutdown(self) -> None:
        """At exit: no timer may outlive the interpreter's handlers."""
        with self._lock:
            self._closed = True
            self._runs = ()
            self._off()


_SIGNALS = _SignalSampler()


def stop_signals() -> None:
    """Stop the timer for good (the interpreter is exiting)."""
    _SIGNALS.shutdown()


def _stage_of(
    frame: FrameType | None,
    frames: dict[int, tuple[Any, int]],
    codes: dict[Any, tuple[int, int]],
) -> int | None:
    """The stage a thread is in: the innermost stage generator on its stack or, when
    that is a fused run's, the stage of the fused run whose function is running (a
    function counts only when this run's fused generator called it: the same
    function called by the training loop or another run is not this stage's work)."""
    member = None
    while frame is not None:
        if member is None:
            member = codes.get(frame.f_code)
        found = frames.get(id(frame))
        if found is not None and found[0] is frame:
            stage = found[1]
            if member is not None and member[1] == stage:  # called by its fused run
                return member[0]
            return stage
        frame = frame.f_back
    return None


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:.2g} us" if seconds < 1e-3 else f"{seconds * 1e3:.3g} ms"


def diagnose(rows: list[dict[str, Any]], summary: dict[str, Any]) -> dict[str, Any]:
    """Name what limits a run's throughput, with a hint: a stage, the consumer (the
    training loop), or nothing clear (too few samples).

    Returns ``{"limit": "stage" | "consumer" | "unknown", "stage": index or None,
    "name": ..., "hint": text}``.
    """
    consumer = summary["consumer_share"]
    waiting = summary["waiting_share"]
    if consumer >= 0.5:
        return {
            "limit": "consumer",
            "stage": None,
            "name": "the consumer",
            "hint": (
                f"the consumer (the training loop) is the bottleneck: it works "
                f"{consumer:.0%} of the time and waits for data {waiting:.0%}; input is "
                "not the problem"
            ),
        }
    scored: list[tuple[float, dict[str, Any], str]] = []
    for row in rows:
        if "workers" in row:
            workers = row["workers"]
            busy = row["utilization"]
            if row["name"].startswith("prefetch"):
                continue  # a prefetch only moves elements: what it waits for is upstream
            hint = (
                f"stage {row['stage']} {quoted(row['name'])} is the bottleneck: its {workers} "
                f"worker(s) are busy {busy:.0%} of the time and the consumer waits for "
                f"data {waiting:.0%}: raise workers"
            )
            if row.get("auto"):
                hint = hint.replace(": raise workers", f" ({row['auto']}): it needs more cores")
            if not row["name"].startswith("random_map") and "process" not in row["name"]:
                hint += ", or use backend='process' if its function holds the GIL"
            count = max(row["items_in"], 1)
            work, moving = row["busy_s"] / count, row.get("transport_s", 0.0) / count
            if moving > work:
                hint = (
                    f"stage {row['stage']} {quoted(row['name'])} is the bottleneck: its function "
                    f"takes {_us(work)} an element and moving an element to a worker and "
                    f"back {_us(moving)}, so workers cannot pay: give each call more work "
                    "(batch first and map a function over batches), or run it inline"
                )
            scored.append((busy, row, hint))
        elif summary.get("wall_s", 0.0) >= SHORTEST_S:  # a shorter run tells nothing
            share = row["share"]
            each = row["seconds"] / max(row["items_in"], row["items_out"], 1)
            if row["stage"] == 0:  # a source takes no workers
                advice = (
                    "it is the source: put prefetch(n) after it, so that reading runs "
                    "on a thread of its own beside the rest (which pays where reading "
                    "waits on storage or decompresses), or move work out of it into a "
                    "parallel map"
                )
            elif each >= CHEAP_S:
                advice = (
                    "give it workers (map(fn, workers=N)), or move its work into a parallel map"
                )
            else:
                advice = (
                    f"it takes {_us(each)} an element, too little for workers to pay back "
                    "moving elements to them: batch first and map a function over batches, "
                    "or make the work cheaper"
                )
            hint = (
                f"stage {row['stage']} {quoted(row['name'])} is the bottleneck: it takes "
                f"{share:.0%} of the time on one thread while the consumer waits "
                f"{waiting:.0%}: {advice}"
            )
            scored.append((share, row, hint))
    if not scored:
        return {
            "limit": "unknown",
            "stage": None,
            "name": None,
            "hint": f"the run was too short to tell (under {SHORTEST_S:.2f} s)",
        }
    busy, row, hint = max(scored, key=lambda entry: entry[0])
    if busy < 0.2:
        return {
            "limit": "unknown",
            "stage": None,
            "name": None,
            "hint": f"no stage is busy much (the busiest, {row['name']!r}, {busy:.0%})",
        }
    return {"limit": "stage", "stage": row["stage"], "name": row["name"], "hint": hint}


def format_table(rows: list[dict[str, Any]]) -> str:
    """Render :meth:`StageStats.as_dicts` rows as an aligned text table.

    >>> print(format_table([{"stage": 0, "name": "range(0, 3)", "items_in": 0,
    ...                      "items_out": 3, "seconds": 0.5, "share": 0.25}]))
    stage  name         in  out  dropped  time  busy  workers
        0  range(0, 3)   0    3        0  0.50   25%
    """
    header = ("stage", "name", "in", "out", "dropped", "time", "busy", "workers")
    body = []
    for r in rows:
        workers = ""
        if "workers" in r:
            workers = f"{r['workers']} at {r['utilization']:.0%}"
            if r.get("auto"):
                workers = f"{r['auto']}, at {r['utilization']:.0%}"
            if r.get("capacity"):
                workers += f", queue {r['occupancy']:.1f}/{r['capacity']}"
            if r.get("chunk"):
                workers += f", {r['chunk']:.0f} per task"
        body.append(
            (
                str(r["stage"]),
                str(r["name"]),
                str(r["items_in"]),
                str(r["items_out"]),
                str(r.get("dropped", 0)),
                f"{r['seconds']:.2f}",
                f"{100 * r['share']:.0f}%",
                workers,
            )
        )
    widths = [max(len(row[i]) for row in (header, *body)) for i in range(len(header))]
    lines = []
    for row in (header, *body):
        cells = [
            cell.ljust(width) if i in (1, 7) else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def format_report(rows: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    """The table, the consumer's split and the diagnosis, as text for a terminal."""
    verdict = diagnose(rows, summary)
    lines = [
        format_table(rows),
        f"consumer: works {summary['consumer_share']:.0%}, waits for data "
        f"{summary['waiting_share']:.0%} ({summary['wall_s']:.2f} s, "
        f"{summary['samples']} samples)",
        f"bottleneck: {verdict['hint']}",
    ]
    return "\n".join(lines)
