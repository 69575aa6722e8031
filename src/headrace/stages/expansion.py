"""The state of a stage that expands each input element into several outputs.

``flat_map`` and ``unbatch`` hand out the outputs of one input element at a time. To
resume, such a stage needs the input as it stood before that element (so the element
is taken again), and how many of its outputs were handed out (so those are passed
over); ``flat_map`` also keeps the state of a pipeline its function returned, which
then goes on from there instead of running again up to that point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from headrace.engine.chain import Chain
from headrace.engine.stage import StageContext
from headrace.engine.state import Entries, Entry

__all__ = ["ExpansionState"]


@dataclass(slots=True)
class ExpansionState:
    """Where an expanding stage stands; its entry is
    ``{"upstream": ..., "start": taken, "offset": handed_out[, "inner": ...]}``."""

    #: Input elements taken before the one being expanded.
    taken: int
    #: The input's state right then (:meth:`StageContext.input_state`).
    below: int | Entries | None
    #: Outputs of that element handed out.
    handed_out: int
    #: The pipeline the element gave, when the stage opened one (``flat_map``).
    inner: Chain | None = None

    @classmethod
    def opened(cls, ctx: StageContext) -> ExpansionState:
        """The state of a stage starting at its context's position (fresh or resumed)."""
        return cls(ctx.start, ctx.input_state(ctx.start), ctx.saved_count("offset"))

    def next_element(self, ctx: StageContext, taken: int) -> None:
        """The element before input count ``taken`` is done: the next one starts."""
        self.taken = taken
        self.below = ctx.input_state(taken)
        self.handed_out = 0
        self.inner = None

    def entry(self, ctx: StageContext) -> Entry:
        """The stage's entry for :meth:`headrace.Run.state`, or ``None`` (replay)."""
        below = ctx.upstream_entries(self.below)
        if below is None:
            return None
        found: dict[str, Any] = {
            "upstream": below,
            "start": self.taken,
            "offset": self.handed_out,
        }
        inner = None if self.inner is None else self.inner.entries(self.handed_out)
        if inner is not None:
            found["inner"] = inner
        return found
