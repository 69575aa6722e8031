"""The thread backend of parallel ``map``: for functions that release the GIL.

The consumer's thread pulls elements from the upstream and submits them; the pool
only runs the function. Upstream generators therefore never run on two threads, and the
number of elements in flight (taken from upstream, not yet yielded) is at most
``buffer_size``, however slow the consumer is.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, Final

from headrace._checks import check_bool, check_int, check_optional_int
from headrace.errors import annotate
from headrace.stages._guard import close_iterator
from headrace.stats import PoolCounters

__all__ = ["BACKENDS", "check_backend", "pool_options", "run_threads"]

#: The ``backend=`` values of parallel stages.
BACKENDS: Final = ("thread", "process")

_POOLS = itertools.count()


def pool_options(
    workers: object, ordered: object, buffer_size: object, *, minimum_workers: int
) -> tuple[int, bool, int]:
    """Check the worker-pool arguments every parallel stage takes; fill in the default.

    Returns ``(workers, ordered, buffer_size)``, the buffer defaulting to twice the
    workers (at least 2), enough to keep every worker busy while one result waits.
    """
    count = check_int("workers", workers, minimum=minimum_workers)
    in_order = check_bool("ordered", ordered)
    size = check_optional_int("buffer_size", buffer_size, minimum=1)
    return count, in_order, 2 * max(count, 1) if size is None else size


def check_backend(backend: object) -> str:
    """``backend`` if it names a backend; otherwise a ValueError naming the choices."""
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ValueError(f"backend must be 'thread' or 'process', got {backend!r}")
    return backend


def _pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(workers, thread_name_prefix=f"headrace-map-{next(_POOLS)}")


def run_threads(
    upstream: Iterator[Any],
    call: Callable[[int, Any], Any],
    workers: int,
    size: int,
    label: str,
    *,
    ordered: bool,
    counters: PoolCounters,
) -> Iterator[Any]:
    """Yield ``call(index, element)`` for the upstream's elements, on ``workers`` threads.

    At most ``size`` elements are in flight. ``ordered`` yields in input order;
    otherwise each result comes as soon as it is ready (the earliest input first
    when several are).
    """
    clock = time.perf_counter

    def timed(index: int, item: Any) -> tuple[Any, float]:
        start = clock()
        result = call(index, item)
        return result, clock() - start

    pool = _pool(workers)
    # Submission order is input order, and a dict keeps it: the first key is the
    # oldest element in flight.
    pending: dict[Future[Any], int] = {}
    taken = 0
    more = True
    try:
        while True:
            while more and len(pending) < size:
                start = clock()
                try:
                    item = next(upstream)
                except StopIteration:
                    more = False
                    break
                finally:
                    counters.wait_input_s += clock() - start
                pending[pool.submit(timed, taken, item)] = taken
                taken += 1
            if not pending:
                return
            start = clock()
            if ordered:
                future = next(iter(pending))
            else:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                future = min(done, key=pending.__getitem__)
            index = pending.pop(future)
            try:
                result, busy = future.result()
            except Exception as error:
                annotate(error, label, index)
                raise
            finally:
                counters.wait_workers_s += clock() - start
            counters.busy_s += busy
            counters.items += 1
            start = clock()
            yield result
            counters.wait_output_s += clock() - start
    finally:
        _stop(pool, list(pending))
        close_iterator(upstream)


def _stop(pool: ThreadPoolExecutor, pending: list[Future[Any]]) -> None:
    """Cancel work not yet started and wait for the calls already running."""
    for future in pending:
        future.cancel()
    pool.shutdown(wait=True, cancel_futures=True)
