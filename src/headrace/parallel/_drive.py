"""The loop both worker pools share: feed elements in, yield results out, bounded.

A pool (threads or processes) knows how to start a call and how to wait for calls to
finish; this loop does the rest the same way for both: it takes elements from the
upstream on the consumer's thread, keeps at most ``size`` of them in flight (taken
and not yet yielded), yields in input order or as results come, raises a call's
exception at that element's turn, keeps the pool's counters, and closes the pool
and the upstream however the run ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from headrace.engine.guard import close_iterator
from headrace.stats import PoolCounters

__all__ = ["Failed", "WorkerPool", "drive"]


class Failed:
    """A call's exception, held until its element's turn comes."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class WorkerPool(Protocol):
    """What :func:`drive` needs of a pool."""

    def send(self, index: int, item: Any) -> None:
        """Start the call for element ``index``."""

    def receive(self) -> list[tuple[int, Any, float]]:
        """Wait until calls finish: ``(index, result or Failed, busy seconds)`` each."""

    def close(self) -> None:
        """Stop the workers; safe to repeat."""


def drive(
    upstream: Iterator[Any],
    start: Callable[[], WorkerPool],
    size: int,
    *,
    ordered: bool,
    counters: PoolCounters,
    first: int = 0,
) -> Iterator[Any]:
    """Yield the results of the pool ``start()`` makes for the upstream's elements.

    The pool starts on the first ``next()``. ``ordered`` yields in input order;
    otherwise each result as soon as it is there (the earliest input first when
    several are). Elements are numbered from ``first``: the stage's input position of
    the first one (a run resumed mid-epoch).
    """
    clock = time.perf_counter
    pool: WorkerPool | None = None
    counters.capacity = size
    try:
        pool = start()
        done: dict[int, Any] = {}
        running = 0
        taken = first
        turn = first  # the next index to yield, in ordered mode
        more = True
        while True:
            while more and running + len(done) < size:
                begin = clock()
                try:
                    item = next(upstream)
                except StopIteration:
                    more = False
                    break
                finally:
                    counters.wait_input_s += clock() - begin
                pool.send(taken, item)
                taken += 1
                running += 1
            if not running and not done:
                return
            begin = clock()
            while turn not in done if ordered else not done:
                for index, value, busy in pool.receive():
                    done[index] = value
                    running -= 1
                    counters.busy_s += busy
            counters.wait_workers_s += clock() - begin
            index = turn if ordered else min(done)
            turn += 1
            value = done.pop(index)
            if isinstance(value, Failed):
                raise value.error
            counters.items += 1
            counters.occupancy_sum += running + len(done)
            begin = clock()
            yield value
            counters.wait_output_s += clock() - begin
    finally:
        if pool is not None:
            pool.close()
        close_iterator(upstream)
