"""What the source tests share: a run context for a reader, the stats row of a
reader, and the resume check."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from headrace.engine.stage import Stage, StageContext
from headrace.errors import StageLabel
from headrace.sources.files import ReadPosition


def _context(stage: Stage) -> StageContext:
    return StageContext(0, StageLabel(f"stage 0 {stage.name!r}", object()), (0,), name=stage.name)


@pytest.fixture
def context() -> Callable[[Stage], StageContext]:
    """The context of a plain run of a source stage, to call its ``reader`` with."""
    return _context


@pytest.fixture
def tally_row() -> Callable[[Any], dict[str, Any]]:
    """The stats row of the reader in a finished ``iter(stats=True)`` run."""

    def row(run: Any) -> dict[str, Any]:
        rows = [r for r in run.stats() if "rejected" in r]
        assert len(rows) == 1, run.stats()
        return rows[0]

    return row


@pytest.fixture
def resumed() -> Callable[[Any, int], tuple[list[Any], list[Any], dict[str, Any]]]:
    """Read ``cut`` records of a source that keeps a read position (the file readers,
    ``read_sql``), save its position through JSON, and start a new reader there:
    ``(before, after, saved position)``.

    ``before + after`` must equal an uninterrupted read; the caller compares.
    """

    def check(pipeline: Any, cut: int) -> tuple[list[Any], list[Any], dict[str, Any]]:
        (stage,) = pipeline.stages
        first, position = stage.reader(_context(stage))
        try:
            before = [next(first) for _ in range(cut)]
        finally:
            first.close()
        saved = json.loads(json.dumps(position.as_dict()))
        second, _ = stage.reader(_context(stage), ReadPosition.from_dict(saved))
        try:
            after = list(second)
        finally:
            second.close()
        return before, after, saved

    return check
