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
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import Any, Final

from headrace._checks import check_bool, check_int, check_optional_int
from headrace.parallel._drive import Done, settle
from headrace.parallel._protocol import call_many

__all__ = [
    "BACKENDS",
    "TASK_FLOOR_S",
    "ThreadPool",
    "check_backend",
    "interrupted",
    "pool_options",
    "spans",
]

#: The ``backend=`` values of parallel stages.
BACKENDS: Final = ("thread", "process", "ray")

_POOLS = itertools.count()

logger = logging.getLogger("headrace")

#: A task for a worker: its future, the first element's index and the elements.
_Task = tuple["Future[_Outcome]", int, list[Any]]
#: What a task gives: values, exceptions by offset, seconds in the calls.
_Outcome = tuple[list[Any], "dict[int, BaseException] | None", float]

#: What a task costs on this backend that neither end can time: a worker thread
#: waking up and the consumer waking up for the result (seconds).
TASK_FLOOR_S: Final = 30e-6


def pool_options(
    workers: object,
    ordered: object,
    buffer_size: object,
    chunk_size: object = None,
    *,
    minimum_workers: int,
) -> tuple[int, bool, int | None, int | None]:
    """Check the worker-pool arguments every parallel stage takes.

    Returns ``(workers, ordered, buffer_size, chunk_size)``; ``None`` leaves the
    buffer and the chunk to :class:`~headrace.parallel._drive.Chunking`. A fixed chunk
    must fit in the buffer, with one task per worker.
    """
    count = check_int("workers", workers, minimum=minimum_workers)
    in_order = check_bool("ordered", ordered)
    size = check_optional_int("buffer_size", buffer_size, minimum=1)
    chunk = check_optional_int("chunk_size", chunk_size, minimum=1)
    if chunk is not None and size is not None and chunk * max(count, 1) > size:
        raise ValueError(
            f"chunk_size={chunk} with workers={count} needs buffer_size >= "
            f"{chunk * max(count, 1)} (each worker's task is in flight), got {size}"
        )
    return count, in_order, size, chunk


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system says)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def check_backend(backend: object) -> str:
    """``backend`` if it names a backend; otherwise a ValueError naming the choices."""
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ValueError(f"backend must be 'thread', 'process' or 'ray', got {backend!r}")
    return backend


class ThreadPool:
    """Calls on a pool of threads, as :func:`~headrace.parallel._drive.drive` uses them."""

    def __init__(
        self,
        call: Callable[[int, Any], Any],
        workers: int,
        label: str,
        init: Callable[[], object] | None = None,
    ) -> None:
        self._call = call
        self._label = label
        self._init = init
        #: What each thread's ``init`` did: ``None``, or the exception it raised.
        self._started: queue.SimpleQueue[BaseException | None] = queue.SimpleQueue()
        self._tasks: queue.SimpleQueue[_Task | None] = queue.SimpleQueue()
        #: Tasks not yet received: their first element's index and element count.
        self._pending: dict[Future[_Outcome], tuple[int, int]] = {}
        prefix = f"headrace-map-{next(_POOLS)}"
        #: Threads numbered from this one on wait instead of taking tasks
        #: (``workers="auto"`` using fewer of them).
        self._active = workers
        self._gate = threading.Condition()
        self._threads = [
            threading.Thread(target=self._work, args=(k,), name=f"{prefix}_{k}", daemon=True)
            for k in range(workers)
        ]
        for thread in self._threads:
            thread.start()
        if init is not None:
            try:
                errors = [self._started.get() for _ in self._threads]
            except BaseException:  # Ctrl-C while the threads start
                self.close()
                raise
            failed = next((error for error in errors if error is not None), None)
            if failed is not None:
                self.close()
                failed.add_note(f"headrace: {label}: its worker_init function failed in a thread")
                raise failed

    def _work(self, number: int) -> None:
        if self._init is not None:
            try:
                self._init()
            except BaseException as error:
                self._started.put(error)
                return
            self._started.put(None)
        while True:
            if number >= self._active:
                with self._gate:
                    while number >= self._active:
                        self._gate.wait()
            task = self._tasks.get()
            if task is None:
                return
            future, first, items = task
            if not future.set_running_or_notify_cancel():
                continue  # cancelled before it started
            start = time.perf_counter()
            values, failed = call_many(self._call, first, items)
            future.set_result((values, failed, time.perf_counter() - start))
            del task, future, items, values, failed  # hold nothing while waiting

    def send(self, first: int, items: list[Any]) -> int:
        future: Future[_Outcome] = Future()
        self._pending[future] = (first, len(items))
        self._tasks.put((future, first, items))
        return 0

    def activate(self, count: int) -> None:
        with self._gate:
            self._active = min(max(count, 1), len(self._threads))
            self._gate.notify_all()

    def receive(self) -> list[Done]:
        finished, _ = wait(self._pending, return_when=FIRST_COMPLETED)
        results: list[Done] = []
        for future in finished:
            first, _ = self._pending.pop(future)
            values, failed, busy = future.result()
            if failed:
                settle(values, failed, self._label, first)
            results.append((first, values, bool(failed), busy, 0.0, 0))
        return results

    def close(self) -> None:
        """Cancel work not yet started and wait for the calls already running; on
        Ctrl-C, abandon them instead (named in a warning) and return at once."""
        for future in self._pending:
            future.cancel()
        for _ in self._threads:
            self._tasks.put(None)
        self.activate(len(self._threads))  # every thread takes its None
        if interrupted() or sys.is_finalizing():
            running = sorted(task for future, task in self._pending.items() if future.running())
            if running:
                logger.warning(
                    "%s: interrupted; abandoned %d task(s) still running on its threads "
                    "(input elements %s); they finish, or end with the program, unseen",
                    self._label,
                    len(running),
                    spans(running),
                )
                return
        for thread in self._threads:
            thread.join()


def spans(tasks: list[tuple[int, int]], most: int = 10) -> str:
    """Tasks as the element indices they hold: ``"3, 8-15"``.

    >>> spans([(3, 1), (8, 8)])
    '3, 8-15'
    """
    shown = [str(a) if n == 1 else f"{a}-{a + n - 1}" for a, n in tasks[:most]]
    return ", ".join(shown) + (", ..." if len(tasks) > most else "")


def interrupted() -> bool:
    """Whether the run is closing because of Ctrl-C: a ``KeyboardInterrupt`` being
    handled, or behind the ``GeneratorExit`` that closes a stage suspended when the
    interrupt came (a ``with`` block around the run, say)."""
    error: BaseException | None = sys.exc_info()[1]
    while error is not None:
        if isinstance(error, KeyboardInterrupt):
            return True
        error = error.__context__
    return False
