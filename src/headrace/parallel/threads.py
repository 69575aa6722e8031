"""The thread backend of parallel ``map``: for functions that release the GIL.

The consumer's thread pulls elements from the upstream and submits them; the pool
only runs the function. Upstream generators therefore never run on two threads, and the
number of elements in flight (taken from upstream, not yet yielded) is at most
``buffer_size``, however slow the consumer is.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, Final

from headrace._checks import check_bool, check_int, check_optional_int
from headrace.errors import annotate
from headrace.parallel._drive import Failed

__all__ = ["BACKENDS", "ThreadPool", "check_backend", "pool_options"]

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


class ThreadPool:
    """Calls on a pool of threads, as :func:`~headrace.parallel._drive.drive` uses them."""

    def __init__(self, call: Callable[[int, Any], Any], workers: int, label: str) -> None:
        self._call = call
        self._label = label
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix=f"headrace-map-{next(_POOLS)}")
        self._pending: dict[Future[tuple[Any, float]], int] = {}

    def _timed(self, index: int, item: Any) -> tuple[Any, float]:
        start = time.perf_counter()
        result = self._call(index, item)
        return result, time.perf_counter() - start

    def send(self, index: int, item: Any) -> None:
        self._pending[self._pool.submit(self._timed, index, item)] = index

    def receive(self) -> list[tuple[int, Any, float]]:
        done, _ = wait(self._pending, return_when=FIRST_COMPLETED)
        results: list[tuple[int, Any, float]] = []
        for future in done:
            index = self._pending.pop(future)
            try:
                result, busy = future.result()
            except Exception as error:
                annotate(error, self._label, index)
                results.append((index, Failed(error), 0.0))
            except BaseException as error:  # raised as it is, like an inline call's
                results.append((index, Failed(error), 0.0))
            else:
                results.append((index, result, busy))
        return results

    def close(self) -> None:
        """Cancel work not yet started and wait for the calls already running."""
        for future in self._pending:
            future.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)
