"""Where the input of a stage that holds elements stood before the oldest of them.

A stage that holds elements it took earlier (a shuffle buffer, buckets) saves them as
places in its input, and a resumed run reads its input again from before the oldest
(see ``headrace.engine.state``). When the stages below keep live state (a file
reader, a filter), that state cannot be worked out afterwards for an earlier place:
:class:`InputNotes` notes it every so often, and keeps the notes from the last one
before the oldest held element on.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any, Final

from headrace.engine.stage import StageContext
from headrace.engine.state import Entries

__all__ = ["InputNotes"]

#: The most notes kept: past them, every other one goes (see :meth:`InputNotes.note`).
MOST_NOTES: Final = 64


class InputNotes:
    """The input's state at places ``every`` elements apart, for one run of a stage."""

    __slots__ = ("ctx", "every", "notes")

    def __init__(self, ctx: StageContext, every: int) -> None:
        self.ctx = ctx
        self.every = every
        #: ``(input elements taken, the input's state then)``; None when nothing below
        #: keeps live state (the place alone then says where the input stands).
        self.notes: collections.deque[tuple[int, Any]] | None = None
        if ctx.tracker is not None and ctx.tracker.live_below(ctx.index):
            self.notes = collections.deque([(ctx.start, ctx.input_state(ctx.start))])

    def before(self, oldest: int) -> tuple[Entries | None, int]:
        """The input's entries from at or before input element ``oldest``, and the
        place they stand at (``None`` entries: the input cannot say)."""
        if self.notes is None:
            return self.ctx.upstream_entries(oldest), oldest
        start, noted = next((n for n in reversed(self.notes) if n[0] <= oldest), (0, None))
        return self.ctx.upstream_entries(noted), start

    def note(self, pulled: int, oldest: Callable[[], int]) -> None:
        """After ``pulled`` input elements were taken: note the input's state if it is
        time, and drop the notes before the last one at or before ``oldest()``.

        An element held long (a bucket of lengths that seldom come) would keep many
        notes: past :data:`MOST_NOTES`, every other one goes and notes are taken half
        as often, so they stay few; a resumed run reads a little more input again.
        """
        notes = self.notes
        if notes is None or pulled - notes[-1][0] < self.every:
            return
        notes.append((pulled, self.ctx.input_state(pulled)))
        first = oldest()
        while len(notes) > 1 and notes[1][0] <= first:
            notes.popleft()
        if len(notes) > MOST_NOTES:
            kept = [notes[0], *list(notes)[2::2]]
            notes.clear()
            notes.extend(kept)
            self.every *= 2
