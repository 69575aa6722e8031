"""The state of a stage that reads ahead of what it hands out (a parallel ``map``, a
``prefetch``): notes of where the stages below stood.

When the stages below keep live state (a file reader's position, a shuffle buffer),
they have moved on by the time the consumer asks for the state: the stage holds
elements it took but has not handed out. So the thread that reads them notes their
state every few elements, and the stage's entry is the last note at or before its
input count plus how many elements to pass over after it::

    {"upstream": <the entries below, as noted>, "start": <inputs>, "skip": <inputs - noted>}

A resumed run reopens the stages below from ``"upstream"`` (the engine does that for
any entry that has one) and passes over ``"skip"`` elements: in
:meth:`ReadAhead.watch`, after noting, for a stage that reads ahead; in the engine for
any other (a state saved with workers resumes a ``map`` without). What a resumed run
reads again is at most a note's spacing plus what the stage had read ahead.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from typing import Any

from headrace.engine.guard import close_iterator
from headrace.engine.stage import StageContext, Tracker
from headrace.engine.state import Entries, Entry, Getter, passing_over

__all__ = ["ReadAhead"]

#: Notes kept: the getter looks back this far for one at or before the position.
NOTES = 40


class ReadAhead:
    """The notes of one opening of a stage that reads ``read_ahead`` elements ahead."""

    __slots__ = ("_end", "_every", "_notes", "_tracker")

    def __init__(self, tracker: Tracker, end: int, read_ahead: int, first: int) -> None:
        self._tracker = tracker
        self._end = end
        # A note is a walk over the stages below (microseconds): one every 16 elements
        # or more keeps that small per element.
        self._every = max(16, read_ahead // 2)
        self._notes: collections.deque[tuple[int, Entries | None]] = collections.deque(maxlen=NOTES)
        self._notes.append((first, tracker.entries(first, end)))

    @classmethod
    def watch(
        cls, upstream: Iterator[Any], ctx: StageContext, read_ahead: int, *, by_hand: bool = False
    ) -> tuple[Iterator[Any], ReadAhead | None]:
        """The input of a stage that reads ahead (``read_ahead`` > 0), noted, and its
        notes (``None`` when the stages below keep no live state: counts alone resume
        them). A resumed input then passes over the saved ``"skip"`` elements. Call it
        first thing in :meth:`~headrace.engine.stage.Stage.open`.

        With ``by_hand=True`` the input is not noted element by element: the stage
        calls :meth:`note` itself, with the count of elements it has taken, whenever
        it has taken a run of them (a parallel map, after each task's elements).
        """
        skip = ctx.saved_count("skip")
        if skip > ctx.start:
            raise ValueError(f"{ctx.label}: its saved skip is past its position")
        notes = None
        tracker = ctx.tracker
        if read_ahead and tracker is not None and tracker.live_below(ctx.index):
            # Noted from where the stages below stand now, before the skip.
            notes = cls(tracker, ctx.index, read_ahead, ctx.start - skip)
            if not by_hand:
                upstream = notes._noting(upstream, ctx.start - skip)
        if skip:
            upstream = passing_over(upstream, skip)
        return upstream, notes

    def note(self, count: int) -> None:
        """The stages below stand right after their element ``count`` (counted from
        the start of the epoch): note their state if the last note is far enough back."""
        if count - self._notes[-1][0] >= self._every:
            self._notes.append((count, self._tracker.entries(count, self._end)))

    def reading_ahead(self, read_ahead: int) -> None:
        """The stage now reads up to ``read_ahead`` elements ahead: space the notes to
        match (from the next note on), so that they reach back as far as it reads."""
        self._every = max(16, read_ahead // 2)

    def getter(self, own: Getter | None = None) -> Getter:
        """The stage's state getter. ``own``: the stage's own getter, when its outputs
        are not its inputs (rejects under ``on_error``); its ``"start"`` is the input
        count."""
        notes = self._notes

        def getter(position: int) -> Entry:
            inputs = position
            if own is not None:
                found = own(position)
                if found is None:
                    return None
                inputs = found.get("start", position)
            for count, noted in reversed(list(notes)):  # list(): one step in C
                if count <= inputs:
                    if noted is None:
                        return None
                    return {"upstream": noted, "start": inputs, "skip": inputs - count}
            return None  # it read further ahead than the notes reach: replay

        return getter

    def _noting(self, upstream: Iterator[Any], first: int) -> Iterator[Any]:
        count = first
        every, notes, entries, end = self._every, self._notes, self._tracker.entries, self._end
        try:
            for item in upstream:
                count += 1
                if not count % every:
                    # Here the stages below stand right after their element ``count``.
                    notes.append((count, entries(count, end)))
                    every = self._every
                yield item
        finally:
            close_iterator(upstream)
