"""The thread backend of parallel ``map``: for functions that release the GIL.

The consumer's thread pulls elements from the upstream and submits them; the pool
only runs the function. Upstream generators therefore never run on two threads, and the
number of elements in flight (taken from upstream, not yet yielded) is at most
``buffer_size``, however slow the consumer is.

A run that ends waits for the calls still running, so that no thread outlives it;
unless it ends by Ctrl-C (``KeyboardInterrupt``): then the calls still running are
abandoned, each named in a warning, and the interrupt reaches the program at once.
The workers are daemon threads, so the interpreter does not wait for an abandoned
call at exit either (a ``ThreadPoolExecutor``'s threads are joined at exit).
"""

from __future__ import annotations

import itertools
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import Any, Final

from headrace._checks import check_bool, check_int, check_optional_int
from headrace.errors import annotate
from headrace.parallel._drive import Failed

__all__ = ["BACKENDS", "ThreadPool", "check_backend", "pool_options"]

#: The ``backend=`` values of parallel stages.
BACKENDS: Final = ("thread", "process")

_POOLS = itertools.count()

logger = logging.getLogger("headrace")

#: A call for a worker: its future, the element's index and the element.
_Task = tuple["Future[tuple[Any, float]]", int, Any]


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
        self._tasks: queue.SimpleQueue[_Task | None] = queue.SimpleQueue()
        self._pending: dict[Future[tuple[Any, float]], int] = {}
        prefix = f"headrace-map-{next(_POOLS)}"
        self._threads = [
            threading.Thread(target=self._work, name=f"{prefix}_{k}", daemon=True)
            for k in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def _work(self) -> None:
        while True:
            task = self._tasks.get()
            if task is None:
                return
            future, index, item = task
            if not future.set_running_or_notify_cancel():
                continue  # cancelled before it started
            try:
                start = time.perf_counter()
                result = self._call(index, item)
                busy = time.perf_counter() - start
            except BaseException as error:  # the consumer raises it, with its note
                future.set_exception(error)
            else:
                future.set_result((result, busy))
            del task, future, item  # hold no element while waiting for the next

    def send(self, index: int, item: Any) -> None:
        future: Future[tuple[Any, float]] = Future()
        self._pending[future] = index
        self._tasks.put((future, index, item))

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
        """Cancel work not yet started and wait for the calls already running; on
        Ctrl-C, abandon them instead (named in a warning) and return at once."""
        for future in self._pending:
            future.cancel()
        for _ in self._threads:
            self._tasks.put(None)
        if _interrupted() or sys.is_finalizing():
            running = sorted(index for future, index in self._pending.items() if future.running())
            if running:
                logger.warning(
                    "%s: interrupted; abandoned %d call(s) still running on its threads "
                    "(input elements %s); they finish, or end with the program, unseen",
                    self._label,
                    len(running),
                    ", ".join(map(str, running[:10])) + (", ..." if len(running) > 10 else ""),
                )
                return
        for thread in self._threads:
            thread.join()


def _interrupted() -> bool:
    """Whether the run is closing because of Ctrl-C: a ``KeyboardInterrupt`` being
    handled, or behind the ``GeneratorExit`` that closes a stage suspended when the
    interrupt came (a ``with`` block around the run, say)."""
    error: BaseException | None = sys.exc_info()[1]
    while error is not None:
        if isinstance(error, KeyboardInterrupt):
            return True
        error = error.__context__
    return False
