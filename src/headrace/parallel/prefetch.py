"""``prefetch(buffer_size)``: a background thread keeps elements ready.

The thread owns the upstream: it is the only thread that advances it, and it closes
it when it stops. The queue between the thread and the consumer holds at most
``buffer_size`` elements, so a slow consumer never makes memory grow.
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
from headrace.stages._base import Length, Stage, StageContext
from headrace.stages._guard import close_iterator

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

    def __init__(self, buffer_size: int = 2) -> None:
        self._buffer_size = check_int("buffer_size", buffer_size, minimum=1)

    @property
    def name(self) -> str:
        return f"prefetch({self._buffer_size})"

    def open(self, upstream: Iterator[Any], ctx: StageContext) -> Iterator[Any]:
        return _prefetch(upstream, self._buffer_size, ctx.label)

    def length(self, upstream: Length) -> Length:
        return upstream


def _prefetch(upstream: Iterator[Any], buffer_size: int, label: str) -> Iterator[Any]:
    # Everything starts on the first next(): opening a run starts no thread.
    ready: queue.Queue[tuple[int, Any]] = queue.Queue(maxsize=buffer_size)
    stop = threading.Event()
    thread = threading.Thread(
        target=_produce,
        args=(upstream, ready, stop),
        name=f"headrace-prefetch-{next(_THREADS)}",
        daemon=True,
    )
    thread.start()
    try:
        while True:
            kind, value = ready.get()
            if kind == _ITEM:
                yield value
            elif kind == _END:
                return
            else:
                raise value
    finally:
        stop.set()
        _join(thread, ready, label)


def _produce(
    upstream: Iterator[Any], ready: queue.Queue[tuple[int, Any]], stop: threading.Event
) -> None:
    try:
        for item in upstream:
            if stop.is_set():
                return
            ready.put((_ITEM, item))
            item = None  # hold no reference to what the consumer may have dropped
        ready.put((_END, None))
    except BaseException as error:  # SystemExit too: the consumer must always hear
        ready.put((_ERROR, error))
    finally:
        close_iterator(upstream)


def _join(thread: threading.Thread, ready: queue.Queue[tuple[int, Any]], label: str) -> None:
    """Let the producer see the stop flag: empty the queue until it has ended."""
    deadline = time.monotonic() + CLOSE_TIMEOUT_S
    while thread.is_alive():
        try:
            while True:
                ready.get_nowait()  # room for the put the producer may be blocked in
        except queue.Empty:
            pass
        thread.join(0.01)
        if time.monotonic() > deadline:
            logger.warning(
                "%s: the prefetch thread is still inside its upstream after %.0f s; it "
                "will end when that call returns",
                label,
                CLOSE_TIMEOUT_S,
            )
            return
