"""``prefetch(buffer_size)``: a background thread keeps elements ready.

The thread owns the upstream: it is the only thread that advances it, and it closes
it when it stops. It takes a free slot before it advances the upstream, and the
consumer frees one as it receives each element, so at most ``buffer_size`` elements
are ever taken from the upstream and not yet received: a slow consumer never makes
memory grow, and a closed run makes the thread pull nothing more.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any, Final

from headrace._checks import check_int
from headrace.engine.guard import close_iterator
from headrace.engine.readahead import ReadAhead
from headrace.engine.stage import Length, Stage, StageContext
from headrace.parallel import _stop
from headrace.stats import PoolCounters

__all__ = ["Prefetch"]

logger = logging.getLogger("headrace")

_THREADS = itertools.count()
_ITEM: Final = 0
_END: Final = 1
_ERROR: Final = 2

#: How long closing waits for the thread to leave an upstream call before giving up
#: (the thread is a daemon, so it never blocks interpreter exit).
CLOSE_TIMEOUT_S: Final = 10.0


class Prefetch(Stage):
    """Keeps up to ``buffer_size`` upstream elements ready on a background thread."""

    __slots__ = ("_buffer_size",)
    per_element = True

    def __init__(self, buffer_size: int = 2) -> None:
        self._buffer_size = check_int("buffer_size", buffer_size, minimum=1)

    @property
    def name(self) -> str:
        return f"prefetch({self._buffer_size})"

    @property
    def identity(self) -> str:
        return "prefetch()"

    def open(self, upstream: Iterator[Any], ctx: StageContext) -> Iterator[Any]:
        upstream, ahead = ReadAhead.watch(upstream, ctx, self.read_ahead)
        if ahead is not None:
            ctx.track_state(ahead.getter())
        counters = PoolCounters.of(ctx)
        counters.workers, counters.capacity = 1, self._buffer_size
        return _prefetch(upstream, self._buffer_size, ctx.label, counters)

    def resume_upstream(self, position: int) -> int | None:
        return position

    @property
    def read_ahead(self) -> int:
        return self._buffer_size + 1

    def length(self, upstream: Length) -> Length:
        return upstream


def _prefetch(
    upstream: Iterator[Any], buffer_size: int, label: str, counters: PoolCounters
) -> Iterator[Any]:
    """Yield the upstream's elements, produced ahead on a thread.

    ``counters``: the thread adds its time inside the upstream (``busy_s``) and its
    time waiting for a free slot (``wait_output_s``); the consumer adds its time
    waiting for an element (``wait_workers_s``). Each field has one writer.
    """
    # Everything starts on the first next(): opening a run starts no thread.
    # Unbounded queue: the slots bound it, so the producer's put never blocks.
    ready: queue.SimpleQueue[tuple[int, Any]] = queue.SimpleQueue()
    slots = threading.Semaphore(buffer_size)
    stop = threading.Event()
    thread = threading.Thread(
        target=_produce,
        args=(upstream, ready, slots, stop, counters),
        name=f"headrace-prefetch-{next(_THREADS)}",
        daemon=True,
    )
    thread.start()
    clock = time.perf_counter
    # Set when this prefetch itself runs on another prefetch's thread that must stop.
    outer = _stop.current()
    try:
        while True:
            start = clock()
            kind, value = _get(ready, outer, label)
            counters.wait_workers_s += clock() - start
            if kind == _ITEM:
                slots.release()  # this element is the consumer's now
                counters.items += 1
                counters.occupancy_sum += ready.qsize()
                yield value
            elif kind == _END:
                return
            else:
                raise value
    finally:
        stop.set()
        _join(thread, slots, label)


def _get(
    ready: queue.SimpleQueue[tuple[int, Any]], outer: threading.Event | None, label: str
) -> tuple[int, Any]:
    if outer is None:
        return ready.get()
    while True:
        try:
            return ready.get(timeout=_stop.SLICE_S)
        except queue.Empty:
            if outer.is_set():
                raise _stop.Stopped(f"{label}: stopped while waiting for its thread") from None


def _produce(
    upstream: Iterator[Any],
    ready: queue.SimpleQueue[tuple[int, Any]],
    slots: threading.Semaphore,
    stop: threading.Event,
    counters: PoolCounters,
) -> None:
    clock = time.perf_counter
    _stop.serve(stop)
    try:
        while True:
            start = clock()
            slots.acquire()
            counters.wait_output_s += clock() - start
            if stop.is_set():
                return
            start = clock()
            try:
                item = next(upstream)
            except StopIteration:
                break
            finally:
                counters.busy_s += clock() - start
            ready.put((_ITEM, item))
            del item  # hold no reference to what the consumer may have dropped
        ready.put((_END, None))
    except BaseException as error:  # SystemExit too: the consumer must always hear
        ready.put((_ERROR, error))
    finally:
        close_iterator(upstream)


def _join(thread: threading.Thread, slots: threading.Semaphore, label: str) -> None:
    """Wake the producer so that it sees the stop flag, and wait until it has ended."""
    deadline = time.monotonic() + CLOSE_TIMEOUT_S
    slots.release()  # in case it waits for a slot
    while thread.is_alive():
        thread.join(0.05)
        if time.monotonic() > deadline:
            logger.warning(
                "%s: the prefetch thread is still inside its upstream after %.0f s; it "
                "will end when that call returns",
                label,
                CLOSE_TIMEOUT_S,
            )
            return
