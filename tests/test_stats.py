"""Per-stage statistics: on by default, ``Run.stats()``, ``report()`` and the bottleneck.

The bottleneck tests plant one slow part (a stage that sleeps or spins per element, a
consumer that sleeps per batch) that takes far more time than everything else, so the
sampled shares cannot mistake it; no test asserts a time.
"""

from __future__ import annotations

import gc
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import headrace as hr
from headrace.stats import diagnose, format_report, format_table


def by_name(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in rows}


def test_stats_count_items_in_and_out_and_drops_of_every_stage() -> None:
    pipeline = hr.range(100).filter(lambda x: x % 3 == 0).map(lambda x: x * 2).batch(10)

    with pipeline.iter() as run:
        batches = list(run)
        rows = run.stats()

    assert len(batches) == 4
    assert [row["stage"] for row in rows] == [0, 1, 2, 3]
    assert [row["name"] for row in rows] == [stage.name for stage in pipeline.stages]
    assert [(row["items_in"], row["items_out"], row["dropped"]) for row in rows] == [
        (0, 100, 0),  # a source has no input
        (100, 34, 66),  # filter keeps 0, 3, ..., 99
        (34, 34, 0),
        (34, 4, 0),  # batches of 10, 10, 10, 4
    ]


@pytest.mark.parametrize("stats_kind", ["fused", "unfused"])
def test_counts_through_stages_that_fuse_and_those_that_do_not(stats_kind: str) -> None:
    # Consecutive map/filter/tap stages run as one generator that counts its input
    # and drops; a shuffle between them splits the run in two.
    middle = (lambda p: p) if stats_kind == "fused" else (lambda p: p.shuffle(4, seed=1))
    pipeline = middle(hr.range(60).map(abs).filter(lambda x: x % 2)).filter(lambda x: x % 3)
    with pipeline.iter() as run:
        out = list(run)
        rows = run.stats()
    assert len(out) == 20
    counts = [(row["items_in"], row["items_out"], row["dropped"]) for row in rows]
    assert counts[:3] == [(0, 60, 0), (60, 60, 0), (60, 30, 30)]
    assert counts[-1] == (30, 20, 10)


def test_stats_count_what_a_partial_run_produced() -> None:
    pipeline = hr.range(1_000).map(lambda x: x + 1).batch(10)

    with pipeline.iter() as run:
        next(run)
        next(run)
        rows = run.stats()

    assert [row["items_out"] for row in rows] == [20, 20, 2]


def test_a_repeated_stage_adds_up_its_repetitions() -> None:
    with hr.range(7).map(abs).filter(bool).shuffle(3, seed=0).repeat(300).iter() as run:
        assert len(list(run)) == 1800
        rows = run.stats()
    assert [row["items_out"] for row in rows] == [2100, 2100, 1800, 1800, 1800]
    assert rows[2]["dropped"] == 300


def test_stats_rows_are_plain_data_with_every_field() -> None:
    with hr.range(10).map(str, workers=2).iter() as run:
        list(run)
        rows = run.stats()
        summary = run.summary()

    common = {"stage", "name", "items_in", "items_out", "dropped", "seconds", "share"}
    for row in rows:
        assert common | {"per_second"} <= set(row)
        assert row["seconds"] >= 0
        assert 0 <= row["share"] <= 1
    pool = by_name(rows)["map(str, workers=2)"]
    assert pool["workers"] == 2
    assert 0 <= pool["utilization"] <= 1
    assert pool["capacity"] >= 2
    assert 0 <= pool["occupancy"] <= pool["capacity"]
    for key in ("busy_s", "wait_input_s", "wait_workers_s", "wait_output_s"):
        assert pool[key] >= 0
    assert set(summary) == {"wall_s", "samples", "consumer_share", "waiting_share"}


def test_an_error_policy_reports_its_rejects_as_dropped() -> None:
    def picky(x: int) -> int:
        if x % 4 == 0:
            raise hr.ParseError(f"no good: {x}")
        return x

    with hr.range(20).map(picky, on_error="skip").iter() as run:
        assert len(list(run)) == 15
        row = run.stats()[1]
    assert (row["read"], row["rejected"], row["dropped"]) == (20, 5, 5)


def test_stats_do_not_change_the_output() -> None:
    pipeline = hr.range(50).map(lambda x: x * x).filter(lambda x: x % 2).shuffle(8, seed=1)

    with pipeline.iter(epoch=3) as run:
        with_stats = list(run)

    assert with_stats == list(pipeline.iter(epoch=3, stats=False))


def test_stats_off_start_no_thread_and_refuse_to_report(live_threads: Any) -> None:
    with hr.range(3).iter(stats=False) as run:
        assert live_threads() == []
        with pytest.raises(RuntimeError, match="stats=False"):
            run.stats()
        with pytest.raises(RuntimeError, match="stats=False"):
            run.report()


# -- the sampling thread stops with the run -----------------------------------------------


def _stats_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("headrace-stats")]


def test_the_sampler_stops_at_the_end_close_error_and_garbage(threads_left: Any) -> None:
    endings: dict[str, Callable[[], None]] = {}

    def exhausted() -> None:
        list(hr.range(5).iter())

    def closed() -> None:
        run = hr.range(5).iter()
        next(run)
        run.close()

    def failed() -> None:
        def boom(x: int) -> int:
            raise ValueError("boom")

        with pytest.raises(ValueError, match="boom"):
            list(hr.range(5).map(boom).iter())

    def dropped() -> None:
        run = hr.range(5).map(str).iter()
        next(run)
        del run
        gc.collect()

    endings.update(exhausted=exhausted, closed=closed, failed=failed, dropped=dropped)
    for name, ending in endings.items():
        ending()
        assert threads_left() == [], name


# -- the bottleneck ---------------------------------------------------------------------


def _sleepy(x: int) -> int:
    time.sleep(0.004)
    return x


def _spin(x: int) -> int:
    end = time.perf_counter() + 0.004
    while time.perf_counter() < end:
        pass
    return x


def _quick(x: int) -> int:
    return x + 1


def _trickle(n: int) -> Iterator[int]:
    for i in range(n):
        time.sleep(0.004)
        yield i


@pytest.mark.parametrize("slow", [_sleepy, _spin], ids=["sleeps", "spins"])
def test_a_slow_stage_is_named_the_bottleneck(slow: Callable[[int], int]) -> None:
    pipeline = hr.range(120).map(_quick).map(slow).map(_quick).filter(bool).batch(4)

    with pipeline.iter() as run:
        list(run)
        rows = run.stats()
        verdict = run.bottleneck()

    slowest = max(rows, key=lambda row: row["share"])
    assert slowest["name"] == f"map({slow.__name__})"
    # Its own time: the stages after it do not inherit it.
    assert by_name(rows)["filter(bool)"]["share"] < slowest["share"]
    assert (verdict["limit"], verdict["stage"]) == ("stage", 2)
    assert "give it workers" in verdict["hint"]
    assert f"map({slow.__name__})" in run.report()


def test_a_slow_source_is_named_the_bottleneck() -> None:
    pipeline = hr.from_generator(_trickle, 150).map(_quick).batch(5)
    with pipeline.iter() as run:
        list(run)
        verdict = run.bottleneck()
    assert (verdict["limit"], verdict["stage"]) == ("stage", 0)


def test_a_slow_consumer_is_named_and_the_input_cleared() -> None:
    with hr.range(400).map(_quick).batch(8).iter() as run:
        for _ in run:
            time.sleep(0.01)
        verdict = run.bottleneck()
        summary = run.summary()
    assert verdict["limit"] == "consumer"
    assert "input is not the problem" in verdict["hint"]
    assert summary["consumer_share"] > summary["waiting_share"]


class _Slow:
    """Every ``every``-th element sleeps ``pause`` seconds; the total is measured."""

    def __init__(self, every: int, pause: float) -> None:
        self.every, self.pause, self.slept = every, pause, 0.0

    def __call__(self, x: int) -> int:
        if x % self.every == 0:
            start = time.perf_counter()
            time.sleep(self.pause)
            self.slept += time.perf_counter() - start
        return x


def test_fast_elements_are_timed_on_a_sample_that_still_measures_the_wait() -> None:
    # Elements come every few microseconds on average, so the consumer's wait is
    # timed on about one element in 16, drawn at random; the wait measured must
    # still be the time the pipeline slept (2,000 pauses: the sample holds ~120).
    slow = _Slow(every=20, pause=0.0002)
    with hr.range(40_000).map(slow).iter() as run:
        assert list(run) == list(range(40_000))
        summary = run.summary()
    waited = summary["waiting_share"] * summary["wall_s"]
    assert 0.6 < waited / slow.slept < 1.7
    assert summary["waiting_share"] > summary["consumer_share"]


def test_timing_a_sample_hands_out_every_element_and_the_error_in_order() -> None:
    from headrace.stats import StageStats

    def failing() -> Iterator[int]:
        yield from range(5_000)
        raise ValueError("element 5000")

    assert list(StageStats().timed(iter(range(100_000)))) == list(range(100_000))
    seen: list[int] = []
    with pytest.raises(ValueError, match="element 5000"):
        seen.extend(StageStats().timed(failing()))
    assert seen == list(range(5_000))


def test_a_saturated_pool_is_named_with_more_workers_as_the_hint() -> None:
    with hr.range(200).map(_sleepy, workers=2).batch(8).iter() as run:
        list(run)
        rows = run.stats()
        verdict = run.bottleneck()
    assert (verdict["limit"], verdict["stage"]) == ("stage", 1)
    assert "raise workers" in verdict["hint"]
    assert by_name(rows)["map(_sleepy, workers=2)"]["utilization"] > 0.5


def test_a_prefetch_is_never_blamed_for_what_it_waits_for() -> None:
    with hr.range(150).map(_sleepy).prefetch(4).batch(5).iter() as run:
        list(run)
        verdict = run.bottleneck()
    assert (verdict["limit"], verdict["name"]) == ("stage", "map(_sleepy)")


def test_a_cheap_stage_is_told_to_batch_first_not_to_take_workers() -> None:
    summary = {"wall_s": 2.0, "samples": 400, "consumer_share": 0.05, "waiting_share": 0.95}
    cheap = {"stage": 1, "name": "map(tidy)", "items_in": 10**6, "items_out": 10**6}
    verdict = diagnose([{**cheap, "seconds": 1.5, "share": 0.75}], summary)
    assert verdict["stage"] == 1
    assert "1.5 us an element" in verdict["hint"]
    assert "batch first" in verdict["hint"]
    assert "give it workers" not in verdict["hint"]
    heavy = {**cheap, "items_in": 1000, "items_out": 1000, "seconds": 1.5, "share": 0.75}
    assert "give it workers" in diagnose([heavy], summary)["hint"]


def test_a_slow_source_is_told_to_prefetch_not_to_take_workers() -> None:
    summary = {"wall_s": 2.0, "samples": 400, "consumer_share": 0.05, "waiting_share": 0.95}
    source = {"stage": 0, "name": "text_lines('a.log')", "items_in": 0, "items_out": 10**6}
    verdict = diagnose([{**source, "seconds": 1.5, "share": 0.75}], summary)
    assert verdict["stage"] == 0
    assert "prefetch(n)" in verdict["hint"]
    assert "give it workers" not in verdict["hint"]


def test_a_pool_whose_transport_outweighs_its_work_is_told_so() -> None:
    summary = {"wall_s": 2.0, "samples": 400, "consumer_share": 0.05, "waiting_share": 0.95}
    pool = {
        "stage": 1,
        "name": "map(tidy, workers=4, backend='process')",
        "items_in": 10**6,
        "items_out": 10**6,
        "seconds": 0.0,
        "share": 0.0,
        "workers": 4,
        "utilization": 0.6,
        "chunk": 2000.0,
    }
    busy = diagnose([{**pool, "busy_s": 0.5, "transport_s": 2.0}], summary)
    assert "0.5 us an element" in busy["hint"]
    assert "2 us" in busy["hint"]
    assert "workers cannot pay" in busy["hint"]
    assert "raise workers" not in busy["hint"]
    worth = diagnose([{**pool, "busy_s": 40.0, "transport_s": 2.0}], summary)
    assert "raise workers" in worth["hint"]


def test_a_parallel_stage_reports_what_moving_its_elements_cost() -> None:
    for backend in ("thread", "process"):
        with hr.range(20_000).map(_quick, workers=2, backend=backend).iter() as run:
            list(run)
            row = run.stats()[1]
        assert row["transport_s"] > 0
        assert row["chunk"] > 1


def test_a_short_run_is_too_short_to_tell() -> None:
    row = {"stage": 0, "name": "range(0, 3)", "share": 0.9}
    summary = {"wall_s": 0.001, "samples": 0, "consumer_share": 0.0, "waiting_share": 1.0}
    verdict = diagnose([row], summary)
    assert verdict["limit"] == "unknown"
    assert "too short" in verdict["hint"]


# -- text --------------------------------------------------------------------------------


def test_format_table_names_every_stage() -> None:
    pipeline = hr.range(20).map(str).filter(bool).batch(5, collate=None).unbatch()

    with pipeline.iter() as run:
        list(run)
        table = format_table(run.stats())

    lines = table.splitlines()
    assert len(lines) == 1 + len(pipeline.stages)  # a header and one line per stage
    for stage, line in zip(pipeline.stages, lines[1:], strict=True):
        assert stage.name in line
    assert lines[0].split() == ["stage", "name", "in", "out", "dropped", "time", "busy", "workers"]


def test_the_report_has_the_table_the_consumer_and_the_bottleneck() -> None:
    with hr.range(100).map(_sleepy).iter() as run:
        list(run)
        text = run.report()
        again = format_report(run.stats(), run.summary())
    assert again.splitlines()[-1] == text.splitlines()[-1]  # the same verdict
    lines = text.splitlines()
    assert lines[0].split()[:2] == ["stage", "name"]
    assert lines[-2].startswith("consumer: works ")
    assert lines[-1].startswith("bottleneck: stage 1 'map(_sleepy)'")


def test_format_table_is_reachable_as_headrace_stats() -> None:
    assert hr.stats.format_table is format_table


# -- found by review ------------------------------------------------------------------------


class _Trainer:
    """Holds its run, and one of its methods is a stage: a reference cycle."""

    def __init__(self) -> None:
        self.loader = hr.range(100).map(self.augment).iter()
        next(self.loader)

    def augment(self, x: int) -> int:
        return x


def test_runs_in_reference_cycles_are_freed_and_leave_nothing(threads_left: Any) -> None:
    import signal

    trainers = [_Trainer() for _ in range(50)]
    alive = [weakref.ref(t) for t in trainers]
    del trainers
    gc.collect()
    assert [t for t in alive if t() is not None] == []
    assert threads_left() == []
    assert signal.getitimer(signal.ITIMER_VIRTUAL) == (0.0, 0.0)


def test_a_function_the_loop_also_calls_is_not_billed_to_the_stage() -> None:
    def normalize(x: int) -> int:
        end = time.perf_counter() + 0.0005
        while time.perf_counter() < end:
            pass
        return x

    with hr.from_iterable(list(range(200))).map(abs).map(normalize).iter() as run:
        for x in run:
            for _ in range(6):
                normalize(x)  # the loop's own work, with the same function
        rows, verdict = run.stats(), run.bottleneck()
    assert verdict["limit"] == "consumer"
    assert rows[2]["share"] < 0.5


def test_a_resumed_run_closed_at_once_counts_nothing() -> None:
    pipeline = hr.range(100).filter(lambda x: x % 2).map(abs)
    run = pipeline.iter(epoch=0)
    for _ in range(20):
        next(run)
    state = run.state()
    run.close()
    with pipeline.iter(state=state) as resumed:
        rows = resumed.stats()
    assert [(row["items_in"], row["items_out"]) for row in rows] == [(0, 0)] * 3


def test_the_timer_is_off_after_runs_end_and_at_exit(tmp_path: Path) -> None:
    import signal

    for _ in range(3):
        list(hr.range(1000).map(abs).iter())
    assert signal.getitimer(signal.ITIMER_VIRTUAL) == (0.0, 0.0)
    # A run opened by an exit hook registered before headrace was imported.
    script = tmp_path / "late.py"
    script.write_text(
        "import atexit\n"
        "def late():\n"
        "    import headrace as hr\n"
        "    global run\n"
        "    run = hr.range(10**9).map(abs).iter()\n"
        "    sum(x for _, x in zip(range(200000), run))\n"
        "atexit.register(late)\n"
        "import headrace\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
