"""Stopping a stage that waits on another thread: how a prefetch thread is told to end.

A ``prefetch`` thread runs everything upstream of it. When the run is closed, the
consumer sets the thread's stop flag, but the thread may be deep inside an upstream
stage that waits for its own workers (a process pool whose calls take minutes). Such
waits ask :func:`current` for the flag of the thread they run on, once, when they
start, and then wait in short slices, checking it: a set flag makes them raise
:class:`Stopped`, and the thread unwinds, closing every stage on its way out.

On the consumer's own thread there is no flag: its waits block outright, and Ctrl-C
(or the run's end) stops them.
"""

from __future__ import annotations

import threading
from typing import Final

from headrace.errors import HeadraceError

__all__ = ["SLICE_S", "Stopped", "current", "serve"]

#: How long a stoppable wait blocks before it looks at its flag again.
SLICE_S: Final = 0.05

_local = threading.local()


class Stopped(HeadraceError):
    """The thread a stage runs on was told to stop while the stage was waiting."""


def serve(flag: threading.Event) -> None:
    """Make ``flag`` the stop flag of the calling thread."""
    _local.flag = flag


def current() -> threading.Event | None:
    """The stop flag of the calling thread, if it has one."""
    flag: threading.Event | None = getattr(_local, "flag", None)
    return flag
