"""The loop both worker pools share: feed elements in, yield results out, bounded.

A pool (threads or processes) knows how to start a task (a run of consecutive
elements) and how to wait for tasks to finish; this loop does the rest the same way
for both: it takes elements from the upstream on the consumer's thread, groups them
into tasks of the size :class:`Chunking` chooses, keeps at most its limit of elements
in flight (taken and not yet yielded), yields in input order or as tasks finish,
raises a call's exception at that element's turn, keeps the pool's counters, and
closes the pool and the upstream however the run ends.
"""

from __future__ import annotations

import collections
import itertools
import sys
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any, Final, Protocol

from headrace.engine.guard import close_iterator
from headrace.errors import annotate
from headrace.stats import PoolCounters

__all__ = [
    "Chunking",
    "Done",
    "Failed",
    "Flat",
    "Tuner",
    "WorkerPool",
    "approx_bytes",
    "drive",
    "settle",
]

#: A finished task: the index of its first element, one value per element (a
#: :class:`Failed` where the call raised), whether any did, the seconds the calls
#: took, what the task cost besides the calls (seconds, measured where it can be),
#: and the bytes its result was packed into (0 where nothing is packed).
Done = tuple[int, list[Any], bool, float, float, int]


class Failed:
    """A call's exception, held until its element's turn comes."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


def settle(values: list[Any], failed: dict[int, BaseException], label: str, first: int) -> None:
    """Put each call's exception in ``values`` as a :class:`Failed`, an ``Exception``
    noted with the stage (``label``) and its element (``first`` + its offset); others
    (``KeyboardInterrupt``) are raised as they are when their turn comes."""
    for offset, error in failed.items():
        if isinstance(error, Exception):
            annotate(error, label, first + offset)
        values[offset] = Failed(error)


class WorkerPool(Protocol):
    """What :func:`drive` needs of a pool."""

    def send(self, first: int, items: list[Any]) -> int:
        """Start one task: the calls for elements ``first``, ``first + 1``, ...;
        return the bytes it was packed into (0 where nothing is packed)."""

    def receive(self) -> list[Done]:
        """Wait until tasks finish, and return them."""

    def activate(self, count: int) -> None:
        """Give new tasks to the first ``count`` workers only (``workers="auto"``)."""

    def close(self) -> None:
        """Stop the workers; safe to repeat."""


#: Transport and scheduling should cost at most 1/RATIO of a task's work.
RATIO: Final = 20
#: A task's work is kept under this, so that results come steadily and every worker
#: gets a share at the end of the input; the time the upstream takes to fill a task
#: too, so that a slow upstream does not hold elements back to fill one.
MAX_TASK_S: Final = 0.05
#: At most this many elements in one task, and about this many bytes (elements or
#: results, whichever is bigger: as pickled on the process backend, as
#: :func:`approx_bytes` finds the first of each task on both).
MAX_CHUNK: Final = 16384
MAX_CHUNK_BYTES: Final = 4 << 20
#: Elements (or results) this big go one a task. Grouping pays for small elements,
#: whose cost is per task (a write, a wake-up, a pickle frame); a big element's cost
#: is in its bytes, which a group does not share, and holding several at once only
#: costs memory (and, for arrays, made a worker's allocator give back and fault in
#: its pages again: 373 us an element in tasks of 6 against 98 us one at a time).
BIG_ELEMENT: Final = 64 << 10
#: With no workers in use (``workers="auto"``), about how long a run of calls on the
#: consumer's thread lasts before the loop looks up again.
SEGMENT_S: Final = 0.01
#: Weight of the newest task in the running means.
_NEW: Final = 0.25


def approx_bytes(obj: object) -> int:
    """About how much memory ``obj`` holds: its own size, an array's data, and the
    same for the first items of a tuple, list or dict (a record), one level deep.

    >>> import numpy as np
    >>> approx_bytes(np.zeros(1000)) >= 8000
    True
    >>> approx_bytes((np.zeros(1000), 1)) >= 8000
    True
    """
    size = _own_bytes(obj)
    if isinstance(obj, tuple | list):
        size += sum(_own_bytes(item) for item in obj[:16])
    elif isinstance(obj, dict):
        size += sum(_own_bytes(item) for item in itertools.islice(obj.values(), 16))
    return size


def _own_bytes(obj: object) -> int:
    nbytes = getattr(obj, "nbytes", None)
    own = sys.getsizeof(obj, 64)
    return max(own, nbytes) if type(nbytes) is int else own


class Chunking:
    """How many elements one task carries, and how many may be in flight.

    With ``chunk_size=None`` the size adapts as the run goes, from what the tasks
    measured: the seconds a call takes per element, against what a task costs
    besides its calls (handing it over, pickling, waking a worker, collecting the
    result). Tasks start with one element; once results come back, a task carries
    enough elements that its cost is at most ``1/RATIO`` of its work, within the
    caps above. Work of milliseconds an element stays one element a task; a cheap
    function gets thousands.

    ``buffer_size`` bounds the elements in flight; then a task carries at most a
    ``2 * workers``-th of it, so that every worker has one task running and one
    waiting. Without it the bound follows the chunk: ``2 * workers`` tasks.

    Args:
        workers: the pool's workers.
        buffer_size: the most elements in flight, or ``None``.
        chunk_size: a fixed size, or ``None`` to adapt.
        floor_s: what every task costs that cannot be measured from either end
            (a thread or process waking up), in seconds.
    """

    __slots__ = (
        "_bytes",
        "_cap",
        "_collect",
        "_floor",
        "_hand",
        "_input",
        "_listener",
        "_work",
        "buffer_size",
        "chunk",
        "fixed",
        "limit",
        "workers",
    )

    def __init__(
        self,
        workers: int,
        buffer_size: int | None,
        chunk_size: int | None,
        *,
        floor_s: float = 0.0,
    ) -> None:
        self.workers = workers
        self.buffer_size = buffer_size
        self.fixed = chunk_size
        self._floor = floor_s
        self._cap = MAX_CHUNK if buffer_size is None else max(1, buffer_size // (2 * workers))
        self._work: float | None = None  # seconds of calls per element
        self._input = 0.0  # seconds the upstream takes per element
        self._hand = 0.0  # seconds handing a task over
        self._collect = 0.0  # seconds a task costs from there on, besides its calls
        self._bytes = 0.0  # bytes per element, where the pool measures them
        self._listener: Callable[[int], None] | None = None
        self.chunk = 1
        self.limit = 1
        self._set(chunk_size or 1)

    def use(self, workers: int) -> None:
        """The pool now runs tasks on ``workers`` workers (``workers="auto"``; 0 for
        the consumer's thread, which holds one task at a time)."""
        self.workers = max(workers, 1)
        self.limit = -1  # recomputed, and the listener told
        self._set(self.chunk)

    def listen(self, listener: Callable[[int], None]) -> None:
        """Call ``listener(limit)`` now and whenever the bound on elements in flight changes."""
        self._listener = listener
        listener(self.limit)

    def took(self, elements: int, seconds: float) -> None:
        """The upstream gave ``elements`` in ``seconds``."""
        self._input += _NEW * (seconds / elements - self._input)

    def sent(self, seconds: float, size: int, elements: int) -> None:
        """Handing a task to the pool took ``seconds`` (``size`` bytes, if known)."""
        self._hand += _NEW * (seconds - self._hand)
        if size:
            self._bytes = max(self._bytes, size / elements)

    def finished(self, elements: int, busy: float, cost: float, size: int) -> None:
        """A task of ``elements`` finished: ``busy`` seconds of calls, ``cost`` besides,
        its result ``size`` bytes (0 if unknown)."""
        if size:
            self._bytes = max(self._bytes, size / elements)
        work = busy / elements
        self._work = work if self._work is None else self._work + _NEW * (work - self._work)
        self._collect += _NEW * (cost - self._collect)
        if self.fixed is None:
            self._set(self._choose())

    def _choose(self) -> int:
        assert self._work is not None
        work = max(self._work, 1e-9)
        wanted = int(RATIO * (self._floor + self._hand + self._collect) / work)
        if self._bytes >= BIG_ELEMENT:
            return 1
        steady = MAX_TASK_S / max(work, self._input, 1e-9)
        heavy = MAX_CHUNK_BYTES / self._bytes if self._bytes else MAX_CHUNK
        return max(1, min(wanted, int(steady), int(heavy), self._cap))

    def _set(self, chunk: int) -> None:
        self.chunk = chunk
        limit = 2 * self.workers * chunk if self.buffer_size is None else self.buffer_size
        if limit != self.limit:
            self.limit = limit
            if self._listener is not None:
                self._listener(limit)


class Tuner:
    """``workers="auto"``: how many of the pool's workers to use, chosen by measuring.

    Each candidate count is used for a window of :data:`PROBE_S` seconds while the
    run goes on (a run's first window, slowed by its start, is not counted), and its
    throughput is measured: elements handed to the consumer per
    second, so that the consumer's own work counts (workers the consumer cannot keep
    up with only take CPU from it). The candidates are every worker, half of them,
    one, and none (the calls made on the consumer's thread, for work too cheap to
    send anywhere; not when a ``worker_init`` must run first). The fewest workers
    within :data:`CLOSE_ENOUGH` of the best rate are kept, for :data:`HOLD`
    windows; then the counts next to it are measured again, so that the choice
    follows a run whose work changes. Each time that confirms the choice, it is
    kept twice as long before the next look (up to 64 times :data:`HOLD`).
    """

    __slots__ = (
        "_clock",
        "_held",
        "_hold",
        "_items",
        "_lowest",
        "_plan",
        "_settling",
        "_start",
        "_until",
        "active",
        "limit",
        "rates",
    )

    #: Seconds one count is measured for.
    PROBE_S: Final = 0.15
    #: Windows the chosen count is kept before its neighbours are measured again.
    HOLD: Final = 20
    #: A count this close to the best rate is as good (and fewer workers are cheaper).
    CLOSE_ENOUGH: Final = 0.95

    def __init__(
        self,
        limit: int,
        *,
        inline: bool = True,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.limit = limit
        self._clock = clock
        #: Windows the chosen count is kept for (it grows while looks confirm it).
        self._hold = self.HOLD
        self._held: int | None = None  # the count held before a look at its neighbours
        #: Elements a second each count gave, as last measured.
        self.rates: dict[int, float] = {}
        lowest = 0 if inline else 1
        self._lowest = lowest
        self._start: float | None = None
        self._items = 0
        self._until: float | None = None  # the chosen count is held until then
        #: The next window is a run's first: its start (workers starting, the first
        #: tasks, caches filling) is not what the count gives.
        self._settling = True
        self.active = limit
        candidates = {limit, max(limit // 2, lowest), min(1, limit), lowest}
        self._plan = sorted(candidates - {limit}, reverse=True)

    def handed(self, elements: int) -> int | None:
        """``elements`` results went to the consumer; the new count, when it changes."""
        now = self._clock()
        if self._start is None:  # the window starts with the first result at this count
            self._start, self._items = now, 0
            return None
        self._items += elements
        elapsed = now - self._start
        if elapsed < self.PROBE_S:
            return None
        if self._settling:  # a run's first window: its start is slower than the rest
            self._settling = False
            self._start, self._items = now, 0
            return None
        self.rates[self.active] = self._items / elapsed
        self._start, self._items = now, 0
        if self._until is not None and now < self._until:
            return None  # holding: the rate of the chosen count stays current
        if self._until is not None:  # held long enough: measure the neighbours again
            self._until = None
            lowest = self._lowest
            self._plan = [
                n for n in (self.active + 1, self.active - 1) if lowest <= n <= self.limit
            ]
            self._held = self.active
        if self._plan:
            return self._switch(self._plan.pop(0))
        best = max(self.rates.values())
        chosen = min(n for n, rate in self.rates.items() if rate >= self.CLOSE_ENOUGH * best)
        if self._held is not None:  # a look after a hold: confirmed, or not
            confirmed = chosen == self._held
            self._hold = min(2 * self._hold, 64 * self.HOLD) if confirmed else self.HOLD
            self._held = None
        self._until = now + self._hold * self.PROBE_S
        return self._switch(chosen)

    def _switch(self, count: int) -> int | None:
        if count == self.active:
            return None
        self.active = count
        self._start = None  # results in flight were made at the old count
        return count

    def restart(self) -> None:
        """A new run (epoch) starts with the count this tuner had chosen: its first
        window opens with that run's first result, and is not counted."""
        self._start = None
        self._settling = True

    def describe(self) -> str:
        """The choice and what it was made from, for the statistics."""
        rates = ", ".join(f"{n}: {rate:,.0f}/s" for n, rate in sorted(self.rates.items()))
        return f"auto: {self.active} of {self.limit}" + (f" ({rates})" if rates else "")


def _failing() -> bool:
    """Whether an exception other than the ``GeneratorExit`` being handled is on its
    way out (the consumer's loop raised, and a ``with`` block closes the run)."""
    error = sys.exc_info()[1]
    error = error.__context__ if isinstance(error, GeneratorExit) else error
    while error is not None:
        if not isinstance(error, GeneratorExit | StopIteration):
            return True
        error = error.__context__
    return False


class Flat(itertools.chain):  # type: ignore[type-arg]
    """The elements of a generator's lists, one after the other, in C (no Python
    frame per element); closing it closes the generator."""

    __slots__ = ("_source",)
    _source: Generator[Iterable[Any], None, None]

    def __new__(cls, source: Generator[Iterable[Any], None, None]) -> Flat:
        self = super().from_iterable(source)
        assert isinstance(self, Flat)
        self._source = source
        return self

    def close(self) -> None:
        self._source.close()


def drive(
    upstream: Iterator[Any],
    start: Callable[[], WorkerPool],
    chunking: Chunking,
    *,
    ordered: bool,
    counters: PoolCounters,
    first: int = 0,
    taken: Callable[[int], None] | None = None,
    finish: Callable[[Any], None] | None = None,
    tuner: Tuner | None = None,
    inline: Callable[[int, list[Any]], Done] | None = None,
    stream: Callable[[Iterator[Any], int, list[int]], Iterator[Any]] | None = None,
) -> Generator[Iterable[Any], None, None]:
    """The results of the pool ``start()`` makes for the upstream's elements, a task
    at a time, in lists (:class:`Flat` hands them out one by one).

    The pool starts on the first ``next()``. ``ordered`` yields in input order;
    otherwise each task's results as soon as it is done (the earliest input first
    when several are). Elements are numbered from ``first``: the stage's input
    position of the first one (a run resumed mid-epoch). An exception the upstream
    raises comes after the results of every element taken before it, as it would
    inline. ``taken(count)`` is called after each task's elements are taken, with
    the count taken since the start of the epoch. ``finish(pool)`` ends the pool's
    part in the run (default: ``pool.close()``). ``tuner`` (``workers="auto"``)
    chooses how many workers get tasks; at 0, the calls run on the consumer's
    thread: ``stream(elements, first, counts)`` makes them as the consumer asks,
    handing out results without lists (and setting ``counts[0]`` to the elements
    taken), or, while workers still hold tasks that come
    first, ``inline(first, items)`` runs a task.
    """
    clock = time.perf_counter
    islice = itertools.islice
    pool: WorkerPool | None = None
    counters.capacity = chunking.limit
    clean = False  # the run ended without an error: its pool may serve another
    try:
        pool = start()

        def use(workers: int) -> None:
            """Give tasks to ``workers`` of the pool (0: run them on this thread)."""
            if workers:
                pool.activate(workers)
            chunking.use(workers)
            counters.workers = workers

        if tuner is not None:  # the count the tuner stands at (an earlier run's choice)
            use(tuner.active)
        done: dict[int, tuple[list[Any], bool]] = {}
        # (first index, elements) of the tasks not yet yielded, in input order.
        tasks: collections.deque[tuple[int, int]] = collections.deque()
        in_flight = 0  # taken from the upstream and not yet yielded
        segment = chunking.chunk  # elements a run of calls on this thread takes
        count = first
        more = True
        broken: Exception | None = None
        while True:
            if stream is not None and tuner is not None and not tuner.active and not tasks:
                if not more:
                    clean = True
                    return
                # No workers: the calls are made as the consumer takes the results,
                # in runs of about SEGMENT_S (the tuner looks between them).
                counts = [0]
                begin = clock()
                yield stream(islice(upstream, segment), count, counts)
                spent = clock() - begin
                # One result an element taken (the last may have raised instead).
                took = counts[0]
                count += took
                counters.items += took
                counters.tasks += 1
                if took and taken is not None:
                    taken(count)
                if took < segment:
                    more = False
                segment = max(1, min(MAX_CHUNK, int(segment * min(4.0, SEGMENT_S / spent))))
                changed = tuner.handed(took)
                if changed is not None:
                    use(changed)
                continue
            while more and (not in_flight or in_flight + chunking.chunk <= chunking.limit):
                wanted = chunking.chunk
                items: list[Any] = []
                begin = clock()
                try:
                    items.extend(islice(upstream, wanted))  # keeps those before an error
                except Exception as error:
                    broken = error
                    more = False
                waited = clock() - begin
                counters.wait_input_s += waited
                if len(items) < wanted:
                    more = False
                if not items:
                    break
                chunking.took(len(items), waited)
                if tuner is not None and tuner.active == 0 and inline is not None:
                    index, values, failed, busy, _, _ = inline(count, items)
                    done[index] = (values, failed)
                    counters.busy_s += busy
                    chunking.finished(len(values), busy, 0.0, 0)
                    del values
                else:
                    begin = clock()
                    size = pool.send(count, items)
                    # Pickled bytes miss arrays sent through shared memory: the probe
                    # sees them.
                    size = max(size, approx_bytes(items[0]) * len(items))
                    handed = clock() - begin
                    counters.transport_s += handed
                    chunking.sent(handed, size, len(items))
                tasks.append((count, len(items)))
                count += len(items)
                in_flight += len(items)
                if taken is not None:
                    taken(count)
                counters.tasks += 1
            if not tasks:
                if broken is not None:
                    raise broken
                clean = True
                return
            begin = clock()
            key = tasks[0][0]
            while key not in done if ordered else not done:
                for index, values, failed, busy, cost, size in pool.receive():
                    done[index] = (values, failed)
                    counters.busy_s += busy
                    counters.transport_s += cost
                    if values:
                        size = max(size, approx_bytes(values[0]) * len(values))
                    chunking.finished(len(values), busy, cost, size)
            counters.wait_workers_s += clock() - begin
            if ordered:
                task = tasks.popleft()
            else:
                key = min(done)
                task = next(task for task in tasks if task[0] == key)
                tasks.remove(task)
            values, failed = done.pop(key)
            size = len(values)
            if size != task[1]:  # every element must have its outcome, or the run stops
                raise RuntimeError(
                    f"headrace: a task of input elements {task[0]}-{task[0] + task[1] - 1} "
                    f"came back with {size} results"
                )
            counters.capacity = chunking.limit
            counters.occupancy_sum += size * in_flight - size * (size - 1) / 2
            begin = clock()
            if failed:
                broken_at = next(k for k, value in enumerate(values) if type(value) is Failed)
                counters.items += broken_at
                if broken_at:
                    yield values[:broken_at]
                raise values[broken_at].error
            counters.items += size
            yield values
            counters.wait_output_s += clock() - begin
            in_flight -= size
            del values
            if tuner is not None:
                changed = tuner.handed(size)
                if changed is not None:
                    use(changed)
    except GeneratorExit:
        # Closed by the consumer: cleanly, unless an exception is on its way out.
        clean = not _failing()
        raise
    finally:
        try:
            if pool is not None:
                if finish is None or not clean:
                    pool.close()
                else:
                    try:
                        finish(pool)
                    except BaseException:  # Ctrl-C while the workers finish, say
                        pool.close()
                        raise
        finally:
            close_iterator(upstream)
