"""Per-stage figures for a run: what each stage produced and where the time went.

Statistics are off unless a run asks for them (``pipeline.iter(stats=True)``): a run
without them executes no counting or timing code at all.

>>> import headrace as hr
>>> with hr.range(1000).filter(lambda x: x % 2).batch(100).iter(stats=True) as run:
...     batches = list(run)
>>> [(s["name"], s["items_in"], s["items_out"]) for s in run.stats()]
[('range(0, 1000)', 0, 1000), ('filter(<lambda>)', 1000, 500), ('batch(100)', 500, 5)]
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from headrace.stages._guard import close_iterator

if TYPE_CHECKING:
    from headrace.policy import Tally
    from headrace.stages._base import StageContext

__all__ = ["PoolCounters", "StageRecord", "StageStats", "format_table"]


@dataclass(slots=True)
class PoolCounters:
    """What a parallel stage (a worker pool or a prefetch thread) did with its time.

    Parallel stages keep these whether or not the run collects statistics: a few
    clock reads per element are nothing next to handing the element to a worker.
    """

    #: Elements yielded.
    items: int = 0
    #: Seconds the workers spent in the stage's function, summed over workers.
    busy_s: float = 0.0
    #: Seconds spent taking elements from the upstream (input too slow if large).
    wait_input_s: float = 0.0
    #: Seconds the consumer waited for a worker's result (workers too slow if large).
    wait_workers_s: float = 0.0
    #: Seconds between handing a result on and being asked for the next (the
    #: consumer is the bottleneck if large).
    wait_output_s: float = 0.0

    @classmethod
    def of(cls, ctx: StageContext) -> PoolCounters:
        """The counters of a stage, reported in ``run.stats()`` when it collects.

        A stage opened again in the same run (inside ``repeat``) adds to the same ones.
        """
        if ctx.stats is None:
            return cls()
        record = ctx.stats.record(ctx.index, ctx.name)
        if record.pool is None:
            record.pool = cls()
        return record.pool


@dataclass(slots=True)
class StageRecord:
    """Running totals for one stage."""

    index: int
    name: str
    items_out: int = 0
    #: Seconds spent producing this stage's elements, including its upstream's time.
    seconds: float = 0.0
    #: The counters of a parallel stage.
    pool: PoolCounters | None = None
    #: What a reader with an ``on_error=`` policy read and rejected.
    tally: Tally | None = None


@dataclass(slots=True)
class StageStats:
    """The records of every stage of one run, keyed by stage position."""

    records: dict[int, StageRecord] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    def record(self, index: int, name: str) -> StageRecord:
        """The record for stage ``index``, created on first use (``repeat`` reuses it)."""
        found = self.records.get(index)
        if found is None:
            found = self.records[index] = StageRecord(index, name)
        return found

    def wrap(self, index: int, name: str, iterator: Iterator[Any]) -> Iterator[Any]:
        """Count and time the elements ``iterator`` produces."""
        return _timed(iterator, self.record(index, name))

    def as_dicts(self) -> list[dict[str, Any]]:
        """Plain-data report: one dict per stage, in chain order."""
        wall = time.perf_counter() - self.started
        rows: list[dict[str, Any]] = []
        previous: StageRecord | None = None
        for index in sorted(self.records):
            record = self.records[index]
            upstream_seconds = previous.seconds if previous else 0.0
            self_seconds = max(record.seconds - upstream_seconds, 0.0)
            row: dict[str, Any] = {
                "stage": index,
                "name": record.name,
                "items_in": previous.items_out if previous else 0,
                "items_out": record.items_out,
                "seconds": self_seconds,
                "share": self_seconds / wall if wall > 0 else 0.0,
            }
            if record.pool is not None:
                pool = record.pool
                row.update(
                    busy_s=pool.busy_s,
                    wait_input_s=pool.wait_input_s,
                    wait_workers_s=pool.wait_workers_s,
                    wait_output_s=pool.wait_output_s,
                )
            if record.tally is not None:
                row.update(record.tally.as_dict())
            rows.append(row)
            previous = record
        return rows


def _timed(iterator: Iterator[Any], record: StageRecord) -> Iterator[Any]:
    clock = time.perf_counter
    try:
        while True:
            start = clock()
            try:
                item = next(iterator)
            except StopIteration:
                record.seconds += clock() - start
                return
            record.seconds += clock() - start
            record.items_out += 1
            yield item
    finally:
        close_iterator(iterator)


def format_table(rows: list[dict[str, Any]]) -> str:
    """Render :meth:`StageStats.as_dicts` rows as an aligned text table.

    >>> print(format_table([{"stage": 0, "name": "range(0, 3)", "items_in": 0,
    ...                      "items_out": 3, "seconds": 0.5, "share": 0.25}]))
    stage  name         in  out  self s  share
        0  range(0, 3)   0    3   0.500  25.0%
    """
    header = ("stage", "name", "in", "out", "self s", "share")
    body = [
        (
            str(r["stage"]),
            str(r["name"]),
            str(r["items_in"]),
            str(r["items_out"]),
            f"{r['seconds']:.3f}",
            f"{100 * r['share']:.1f}%",
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in (header, *body)) for i in range(len(header))]
    lines = []
    for row in (header, *body):
        cells = [
            cell.ljust(width) if i == 1 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
