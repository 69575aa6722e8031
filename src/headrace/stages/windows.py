"""Sliding and tumbling windows over a stream.

>>> from headrace import stages
>>> list(stages.window(range(5), 2, shift=1, drop_remainder=True))
[(0, 1), (1, 2), (2, 3), (3, 4)]
"""

from __future__ import annotations

import collections
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from headrace._checks import check_bool, check_int, check_optional_int
from headrace.engine.guard import close_iterator
from headrace.engine.opening import apply
from headrace.engine.stage import INFINITE, Length, Stage, StageContext
from headrace.engine.state import Entries, Entry

__all__ = ["window"]


class Window(Stage):
    __slots__ = ("_drop_remainder", "_shift", "_size")

    def __init__(
        self, size: int, *, shift: int | None = None, drop_remainder: bool = False
    ) -> None:
        self._size = check_int("size", size, minimum=1)
        self._shift = check_optional_int("shift", shift, minimum=1) or self._size
        self._drop_remainder = check_bool("drop_remainder", drop_remainder)

    @property
    def name(self) -> str:
        extra = "" if self._shift == self._size else f", shift={self._shift}"
        if self._drop_remainder:
            extra += ", drop_remainder=True"
        return f"window({self._size}{extra})"

    def open(self, upstream: Iterator[Any], ctx: StageContext) -> Iterator[Any]:
        state = WindowState(ctx.start, ctx.input_state(ctx.start), ctx.saved_count("drop"))
        ctx.track_state(lambda position: state.entry(ctx))
        return _window(upstream, self._size, self._shift, self._drop_remainder, ctx, state)

    def length(self, upstream: Length) -> Length:
        if upstream is None or upstream == INFINITE:
            return upstream
        n = int(upstream)
        if self._drop_remainder:
            return 0 if n < self._size else (n - self._size) // self._shift + 1
        return math.ceil(n / self._shift)


@dataclass(slots=True)
class WindowState:
    """Where a ``window`` stands: the input as it stood where the last window handed
    out began, and how many windows to drop first (a resumed run builds that window
    again, and drops it)."""

    #: Input elements before the last window handed out.
    start: int
    #: The input's state right then (:meth:`StageContext.input_state`).
    below: int | Entries | None
    #: Windows to drop: 1 once a window went out, the saved count when resumed.
    drop: int

    def entry(self, ctx: StageContext) -> Entry:
        """The stage's entry for :meth:`headrace.Run.state`, or ``None`` (replay)."""
        below = ctx.upstream_entries(self.below)
        if below is None:
            return None
        return {"upstream": below, "start": self.start, "drop": self.drop}


def _window(
    upstream: Iterator[Any],
    size: int,
    shift: int,
    drop_remainder: bool,
    ctx: StageContext,
    state: WindowState,
) -> Iterator[tuple[Any, ...]]:
    # Windows begin every ``shift`` elements from where this run began (0, or a window
    # start when resumed); ``begun`` notes the input's state at each begun window.
    drop = state.drop
    first = count = ctx.start

    def handing_out(start: int, noted: Any) -> bool:
        """Whether the window begun at ``start`` goes out (a resumed run drops the one
        it builds again); if so, it becomes where the state points."""
        nonlocal drop
        if drop:
            drop -= 1
            return False
        state.start, state.below, state.drop = start, noted, 1
        return True

    begun: collections.deque[tuple[int, Any]] = collections.deque()
    try:
        buffer: collections.deque[Any] = collections.deque()
        skipping = 0  # elements between windows when shift > size
        while True:
            if not (count - first) % shift:
                begun.append((count, ctx.input_state(count)))
            try:
                item = next(upstream)
            except StopIteration:
                break
            count += 1
            if skipping:
                skipping -= 1
                continue
            buffer.append(item)
            if len(buffer) == size:
                if handing_out(*begun.popleft()):
                    yield tuple(buffer)
                if shift >= size:
                    buffer.clear()
                    skipping = shift - size
                else:
                    for _ in range(shift):
                        buffer.popleft()
        if drop_remainder:
            return
        while buffer:
            if handing_out(*begun.popleft()):
                yield tuple(buffer)
            for _ in range(min(shift, len(buffer))):
                buffer.popleft()
    finally:
        close_iterator(upstream)


def window(
    iterable: Iterable[Any], size: int, *, shift: int | None = None, drop_remainder: bool = False
) -> Iterator[tuple[Any, ...]]:
    """Tuples of ``size`` elements, starting every ``shift`` elements (tf.data's rule).

    Windows start at elements 0, ``shift``, ``2 * shift``, ...; without
    ``drop_remainder`` the windows that start near the end are shorter than ``size``.

    Args:
        size: elements per window (at least 1).
        shift: distance between window starts (default ``size``: tumbling windows).
        drop_remainder: yield only full windows.

    >>> list(window(range(7), 3, shift=2))
    [(0, 1, 2), (2, 3, 4), (4, 5, 6), (6,)]
    """
    stage = Window(size, shift=shift, drop_remainder=drop_remainder)
    return apply(stage, iterable)
