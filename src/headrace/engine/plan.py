"""A plan: the stages of a pipeline and its seed, as the engine and the stages see it.

:class:`headrace.Pipeline` is a plan with the builder methods (``map``, ``batch``, ...)
and ``iter()``. Below the pipeline layer, code handles plans: a stage that reads other
pipelines (``zip``, ``concat``) holds them as plans and opens them through its
context (:meth:`~headrace.engine.stage.StageContext.open_inner`), and the training
adapters and sharding take a plan and give one back through :meth:`Plan.with_stages`,
so none of them imports the pipeline module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from headrace._checks import check_seed
from headrace.engine.stage import INFINITE, RUN_LOCK, Length, Stage
from headrace.errors import quoted

__all__ = ["EpochCounter", "Plan"]

T = TypeVar("T")


class EpochCounter:
    """The next epoch number of a plan; pickles with its position.

    A copy continues the count of the plan it was pickled from. A copy that is
    iterated where the original is not (a process that receives the pipeline anew
    every epoch) sees the same epoch each time: such callers pass ``iter(epoch=n)``.
    """

    __slots__ = ("_next",)

    def __init__(self, start: int = 0) -> None:
        self._next = start

    def take(self) -> int:
        """The next epoch number, counted as taken."""
        with RUN_LOCK:
            number = self._next
            self._next += 1
        return number

    def move_past(self, number: int) -> None:
        """Make ``number + 1`` the next epoch: a run resumed in epoch ``number``."""
        with RUN_LOCK:
            self._next = number + 1

    def __reduce__(self) -> tuple[type[EpochCounter], tuple[int]]:
        return (EpochCounter, (self._next,))


class Plan(Generic[T]):
    """A source and the stages after it, with the seed stages without their own derive
    theirs from; immutable but for the epoch counter (each run takes the next epoch).
    """

    __slots__ = ("_epochs", "_seed", "_stages")

    def __init__(self, stages: Sequence[Stage], *, seed: int | None = None) -> None:
        stages = tuple(stages)
        if not stages or not stages[0].is_source:
            raise ValueError("a pipeline starts with a source stage")
        if any(stage.is_source for stage in stages[1:]):
            raise ValueError("only the first stage of a pipeline may be a source")
        self._stages = stages
        self._seed = check_seed(seed)
        # Each run is the next epoch: a seeded shuffle reshuffles every epoch,
        # reproducibly. Runs change a description only through this counter and
        # stages' once-per-run records (a filled cache, a spent one-shot source).
        self._epochs = EpochCounter()

    @property
    def stages(self) -> tuple[Stage, ...]:
        """The source and stages, in order."""
        return self._stages

    @property
    def seed(self) -> int | None:
        """The seed of the whole pipeline (``Pipeline.with_seed``), or ``None``."""
        return self._seed

    @property
    def epochs(self) -> EpochCounter:
        """The epoch counter plain runs take their number from."""
        return self._epochs

    def with_stages(self, stages: Sequence[Stage]) -> Plan[Any]:
        """A plan of the same kind with other ``stages`` and the same seed."""
        return Plan(stages, seed=self._seed)

    def _unknown(self) -> str:
        """Which stage makes the length unknown, and how to count instead."""
        length: Length = None
        culprit = ""
        for position, stage in enumerate(self._stages):
            before, length = length, stage.length(length)
            if length is None and (before is not None or position == 0):
                what = (
                    "is a source that does not count its elements before reading them"
                    if stage.is_source
                    else "yields a number of elements that depends on the data"
                )
                culprit = f"stage {position} {quoted(stage.name)} {what}"
        return f"{culprit} (count a run instead: sum(1 for _ in pipeline))"

    def known_length(self) -> Length:
        """The number of elements if it can be known without running, else ``None``.

        ``math.inf`` stands for an endless pipeline.
        """
        length: Length = None
        for stage in self._stages:
            length = stage.length(length)
        return length

    def __len__(self) -> int:
        length = self.known_length()
        if length is None:
            raise TypeError(
                f"the length of {self!r} is not known before running it: {self._unknown()}"
            )
        if length == INFINITE:
            raise TypeError(f"{self!r} is endless")
        return int(length)

    def __bool__(self) -> bool:
        # Without this, ``if pipeline:`` would call __len__, which raises for pipelines
        # whose length is unknown. A description is always something.
        return True

    def __repr__(self) -> str:
        seed = "" if self._seed is None else f", seed={self._seed}"
        return f"Pipeline({' -> '.join(stage.name for stage in self._stages)}{seed})"
