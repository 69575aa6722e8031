"""A progress line for a run: elements, rate, elapsed time, and the total when known.

Drawn by a thread of its own a few times a second from the run's element count, so it
costs nothing per element. On a terminal it redraws one line; elsewhere (a log file,
a CI job) it writes a line every ``every_s`` seconds. Off unless a run asks for it
(``pipeline.iter(progress=True)``); the ``headrace`` commands turn it on.
"""

from __future__ import annotations

import itertools
import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["Progress", "format_progress"]

_THREADS = itertools.count()


def format_progress(
    count: int, seconds: float, total: int | None, what: str = "items", *, first: int = 0
) -> str:
    """One progress line; ``first``: where the count started (a resumed run), for the
    rate.

    >>> format_progress(2500, 2.0, None)
    '2,500 items  1,250/s  0:02'
    >>> format_progress(250, 1.0, 1000, "batches")
    ' 25% 250/1,000 batches  250/s  0:01 (0:03 left)'
    """
    rate = (count - first) / seconds if seconds > 0 else 0.0
    shown = f"{rate:,.0f}/s" if rate >= 10 else f"{rate:.1f}/s"
    elapsed = _clock(seconds)
    if total:
        left = (total - count) / rate if rate > 0 and count < total else None
        eta = "" if left is None else f" ({_clock(left)} left)"
        return f"{100 * count / total:3.0f}% {count:,}/{total:,} {what}  {shown}  {elapsed}{eta}"
    return f"{count:,} {what}  {shown}  {elapsed}"


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """Shows ``count()`` growing until :meth:`stop`; the thread ends then. ``first``:
    the count when it started (a resumed run), for the rate."""

    def __init__(
        self,
        count: Callable[[], int],
        *,
        total: int | None = None,
        what: str = "items",
        stream: TextIO | None = None,
        every_s: float | None = None,
        first: int = 0,
    ) -> None:
        self._count = count
        self._first = first
        self._total = total
        self._what = what
        self._stream = sys.stderr if stream is None else stream
        try:
            self._live = bool(self._stream.isatty())
        except (AttributeError, OSError, ValueError):  # not a file, or a closed one
            self._live = False
        self._every = every_s if every_s is not None else (0.2 if self._live else 10.0)
        self._started = time.perf_counter()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._done = False
        self._thread = threading.Thread(
            target=self._loop, name=f"headrace-progress-{next(_THREADS)}", daemon=True
        )
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._every):
            self._draw(final=False)

    def _draw(self, *, final: bool) -> None:
        with self._lock:
            if self._done:
                return
            self._done = final
            line = format_progress(
                self._count(),
                time.perf_counter() - self._started,
                self._total,
                self._what,
                first=self._first,
            )
            try:
                if self._live:
                    self._stream.write("\r" + line + ("\n" if final else ""))
                else:
                    self._stream.write(line + "\n")
                self._stream.flush()
            except (OSError, ValueError):  # a closed stream: nothing more to show
                self._done = True

    def stop(self) -> None:
        """Draw the last line and end the thread (safe to call more than once)."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(1.0)
        self._draw(final=True)
