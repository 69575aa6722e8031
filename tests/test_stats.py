"""Per-stage statistics: ``iter(stats=True)``, ``Run.stats()`` and ``format_table``."""

from __future__ import annotations

import time

import pytest

import headrace as hr
from headrace.stats import format_table


def by_name(rows):
    return {row["name"]: row for row in rows}


def test_stats_count_items_in_and_out_of_every_stage():
    pipeline = hr.range(100).filter(lambda x: x % 3 == 0).map(lambda x: x * 2).batch(10)

    with pipeline.iter(stats=True) as run:
        batches = list(run)
        rows = run.stats()

    assert len(batches) == 4
    assert [row["stage"] for row in rows] == [0, 1, 2, 3]
    assert [row["name"] for row in rows] == [stage.name for stage in pipeline.stages]
    assert [(row["items_in"], row["items_out"]) for row in rows] == [
        (0, 100),  # a source has no input
        (100, 34),  # filter keeps 0, 3, ..., 99
        (34, 34),
        (34, 4),  # batches of 10, 10, 10, 4
    ]


def test_stats_count_what_a_partial_run_produced():
    pipeline = hr.range(1_000).map(lambda x: x + 1).batch(10)

    with pipeline.iter(stats=True) as run:
        next(run)
        next(run)
        rows = run.stats()

    assert [row["items_out"] for row in rows] == [20, 20, 2]


def test_stats_rows_are_plain_data_with_every_field():
    with hr.range(10).map(str).iter(stats=True) as run:
        list(run)
        rows = run.stats()

    for row in rows:
        assert set(row) == {"stage", "name", "items_in", "items_out", "seconds", "share"}
        assert row["seconds"] >= 0
        assert 0 <= row["share"] <= 1


def test_stats_do_not_change_the_output():
    pipeline = hr.range(50).map(lambda x: x * x).filter(lambda x: x % 2).shuffle(8, seed=1)

    with pipeline.iter(epoch=3, stats=True) as run:
        with_stats = list(run)

    assert with_stats == list(pipeline.iter(epoch=3))


def test_stats_without_asking_for_them_raise():
    with hr.range(3).iter() as run, pytest.raises(RuntimeError, match="stats=True"):
        run.stats()


def test_format_table_names_every_stage():
    pipeline = hr.range(20).map(str).filter(bool).batch(5, collate=None).unbatch()

    with pipeline.iter(stats=True) as run:
        list(run)
        table = format_table(run.stats())

    lines = table.splitlines()
    assert len(lines) == 1 + len(pipeline.stages)  # a header and one line per stage
    for stage, line in zip(pipeline.stages, lines[1:], strict=True):
        assert stage.name in line
    assert lines[0].split() == ["stage", "name", "in", "out", "self", "s", "share"]


def test_format_table_is_reachable_as_headrace_stats():
    assert hr.stats.format_table is format_table


def _quick(x):
    return x + 1


def _slow(x):
    time.sleep(0.002)
    return x


def test_the_slow_stage_has_the_most_seconds():
    pipeline = hr.range(30).map(_quick).map(_slow).map(_quick).filter(bool).batch(4)

    with pipeline.iter(stats=True) as run:
        list(run)
        rows = run.stats()

    slowest = max(rows, key=lambda row: row["seconds"])
    assert slowest["name"] == "map(_slow)"
    assert slowest["stage"] == 2
    # Self time: the stage after the slow one does not inherit its sleep.
    assert by_name(rows)["filter(bool)"]["seconds"] < slowest["seconds"]
    assert slowest["share"] == max(row["share"] for row in rows)
