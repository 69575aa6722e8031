"""``map(fn, workers=N)`` on a pool of threads: for functions that release the GIL.

The consumer's thread pulls elements from the upstream and submits them; the pool
only runs ``fn``. Upstream generators therefore never run on two threads, and the
number of elements in flight (taken from upstream, not yet yielded) is at most
``buffer_size``, however slow the consumer is.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from headrace._checks import check_bool, check_callable, check_int, check_optional_int
from headrace.errors import annotate, describe_callable
from headrace.stages._base import Length, Stage, StageContext
from headrace.stages._guard import close_iterator

__all__ = ["ThreadMap", "pool_options", "run_threads"]

_POOLS = itertools.count()


class ThreadMap(Stage):
    """Applies ``fn`` to every element on ``workers`` threads.

    Args:
        fn: the function; it runs on pool threads, so it must be thread-safe.
        workers: threads in the pool (at least 1).
        ordered: yield results in input order (default); ``False`` yields each as
            soon as it is ready.
        buffer_size: elements in flight at most (default ``2 * workers``).
    """

    __slots__ = ("_buffer_size", "_fn", "_ordered", "_workers")

    def __init__(
        self,
        fn: Callable[[Any], Any],
        *,
        workers: int,
        ordered: bool = True,
        buffer_size: int | None = None,
    ) -> None:
        self._fn = check_callable("fn", fn)
        self._workers, self._ordered, self._buffer_size = pool_options(
            workers, ordered, buffer_size, minimum_workers=1
        )

    @property
    def name(self) -> str:
        extra = "" if self._ordered else ", ordered=False"
        return f"map({describe_callable(self._fn)}, workers={self._workers}{extra})"

    def open(self, upstream: Iterator[Any], ctx: StageContext) -> Iterator[Any]:
        return run_threads(
            upstream, self._fn, self._workers, self._buffer_size, ctx.label, ordered=self._ordered
        )

    def length(self, upstream: Length) -> Length:
        return upstream


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


def _pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(workers, thread_name_prefix=f"headrace-map-{next(_POOLS)}")


def run_threads(
    upstream: Iterator[Any],
    fn: Callable[[Any], Any],
    workers: int,
    size: int,
    label: str,
    *,
    ordered: bool,
) -> Iterator[Any]:
    """Yield ``fn(x)`` for the upstream's elements, computed on ``workers`` threads.

    At most ``size`` elements are in flight. ``ordered`` yields in input order;
    otherwise each result comes as soon as it is ready (the earliest input first
    when several are).
    """
    pool = _pool(workers)
    # Submission order is input order, and a dict keeps it: the first key is the
    # oldest element in flight.
    pending: dict[Future[Any], int] = {}
    taken = 0
    more = True
    try:
        while True:
            while more and len(pending) < size:
                try:
                    item = next(upstream)
                except StopIteration:
                    more = False
                    break
                pending[pool.submit(fn, item)] = taken
                taken += 1
            if not pending:
                return
            if ordered:
                future = next(iter(pending))
            else:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                future = min(done, key=pending.__getitem__)
            index = pending.pop(future)
            try:
                result = future.result()
            except Exception as error:
                annotate(error, label, index)
                raise
            yield result
    finally:
        _stop(pool, list(pending))
        close_iterator(upstream)


def _stop(pool: ThreadPoolExecutor, pending: list[Future[Any]]) -> None:
    """Cancel work not yet started and wait for the calls already running."""
    for future in pending:
        future.cancel()
    pool.shutdown(wait=True, cancel_futures=True)
