"""``map(fn, workers=N)`` on a thread pool: it equals ``map(fn)`` and owns its threads.

Every test here touches threads, so every test has a timeout and a fixture checks,
after each one, that no ``headrace-`` thread is left running. No test asserts a
wall-clock time: concurrency is checked structurally, by counting the calls of ``fn``
that run at once and by a barrier that only overlapping calls can pass (with a
timeout of its own, so serialised calls make a test fail instead of hang).
"""

from __future__ import annotations

import math
import os
import pickle
import re
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import headrace as hr

pytestmark = pytest.mark.timeout(30)

PREFIX = "headrace-"  # the name prefix of every thread headrace starts

# The autouse fixture below is function-scoped; it only checks for leftover threads
# once the whole test is over, which is what Hypothesis' health check warns about.
PROPERTY = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# -- user functions (module level, so that stage names are their plain names) ---------


def double(x: int) -> int:
    return 2 * x


def jittery(x: int) -> int:
    """Sleeps 0, 1 or 2 ms by ``x``, so calls finish in an order other than the input's."""
    time.sleep((x % 3) * 0.001)
    return 3 * x + 1


def slow(x: int) -> int:
    time.sleep(0.001)
    return x


def keep_even(x: int) -> bool:
    return x % 2 == 0


class ParseError(Exception):
    """A user exception type headrace knows nothing about."""


def parse(x: int) -> int:
    if x == 7:
        raise ParseError(f"cannot parse {x}")
    time.sleep((x % 3) * 0.001)
    return x


def fail_on_six(x: int) -> int:
    if x == 6:
        raise ParseError("six")
    return x


def three_then_fail() -> Iterator[int]:
    yield from range(3)
    raise ParseError("source broke")


def stage_notes(error: BaseException) -> list[str]:
    """The notes headrace attached naming a stage."""
    return [n for n in getattr(error, "__notes__", []) if n.startswith("headrace: raised in")]


def frames(error: BaseException) -> list[str]:
    return [frame.name for frame in traceback.extract_tb(error.__traceback__)]


class Overlap:
    """``fn`` that records how many of its calls run at the same time.

    The calls for the first ``parties`` elements wait at a barrier: they can only
    return once ``parties`` calls overlap, and break it after 5 s otherwise.
    """

    def __init__(self, parties: int = 0) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.peak = 0
        self.parties = parties
        self.barrier = threading.Barrier(parties, timeout=5) if parties else None

    def __call__(self, x: int) -> int:
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            if self.barrier is not None and x < self.parties:
                self.barrier.wait()
            else:
                time.sleep(0.001)
            return x
        finally:
            with self.lock:
                self.running -= 1


class Counted:
    """A source function that counts the elements taken from it."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.taken = 0

    def __call__(self) -> Iterator[int]:
        for i in range(self.count):
            # Counted before the yield: a suspended generator has handed this one out.
            self.taken += 1
            yield i


# -- bad arguments are refused when the pipeline is built ------------------------------


@pytest.mark.parametrize("backend", ["processes", "threads", "Thread", "asyncio", "", None])
def test_an_unknown_backend_is_refused_at_construction(backend):
    with pytest.raises(ValueError, match=r"\bbackend\b"):
        hr.range(3).map(double, workers=2, backend=backend)


def test_the_thread_backend_can_be_named():
    assert list(hr.range(4).map(double, workers=2, backend="thread")) == [0, 2, 4, 6]


@pytest.mark.parametrize(
    ("workers", "error"),
    [
        (-1, ValueError),
        (-8, ValueError),
        (1.5, TypeError),
        (2.0, TypeError),
        ("2", TypeError),
        (None, TypeError),
        (True, TypeError),
    ],
)
def test_workers_must_be_an_int_of_at_least_zero(workers, error):
    with pytest.raises(error, match=r"\bworkers\b"):
        hr.range(3).map(double, workers=workers)


@pytest.mark.parametrize("buffer_size", [0, -1])
def test_a_buffer_size_below_one_is_refused(buffer_size):
    with pytest.raises(ValueError, match=r"\bbuffer_size\b"):
        hr.range(3).map(double, workers=2, buffer_size=buffer_size)


@pytest.mark.parametrize("buffer_size", [1.5, "4", True])
def test_a_buffer_size_that_is_not_an_int_is_refused(buffer_size):
    # The contract names only ValueError for buffer_size; house style (check_int) would
    # raise TypeError for a wrong type. Either is fine as long as it names the argument.
    with pytest.raises((TypeError, ValueError), match=r"\bbuffer_size\b"):
        hr.range(3).map(double, workers=2, buffer_size=buffer_size)


@pytest.mark.parametrize("ordered", ["yes", 1, 0, None])
def test_ordered_must_be_a_bool(ordered):
    with pytest.raises(TypeError, match=r"\bordered\b"):
        hr.range(3).map(double, workers=2, ordered=ordered)


@pytest.mark.parametrize("fn", [3, "len", None])
def test_a_non_callable_fn_is_refused_with_workers_too(fn):
    with pytest.raises(TypeError, match=r"\bfn\b"):
        hr.range(3).map(fn, workers=2)


# -- where fn runs ---------------------------------------------------------------------


def test_describing_a_parallel_map_starts_no_thread(live_threads):
    pipeline = hr.range(10).map(double, workers=4).map(double, workers=2, ordered=False)

    assert live_threads() == []
    assert sorted(pipeline) == [4 * x for x in range(10)]


def test_workers_zero_calls_fn_inline_on_the_consumers_thread(live_threads):
    calls: list[tuple[threading.Thread, list[str]]] = []

    def record(x: int) -> int:
        calls.append((threading.current_thread(), live_threads()))
        return x

    assert list(hr.range(5).map(record, workers=0).iter(stats=False)) == list(range(5))
    assert len(calls) == 5
    for thread, alive in calls:
        assert thread is threading.current_thread()
        assert alive == []
    calls.clear()
    assert list(hr.range(5).map(record, workers=0)) == list(range(5))
    for thread, alive in calls:  # statistics start no thread for a run this short
        assert thread is threading.current_thread()
        assert alive == []


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_workers_call_fn_on_at_most_that_many_threads_named_headrace(workers):
    names: list[str] = []

    def record(x: int) -> int:
        names.append(threading.current_thread().name)  # list.append is atomic
        time.sleep(0.001)
        return x

    assert list(hr.range(30).map(record, workers=workers)) == list(range(30))
    assert len(names) == 30
    assert all(name.startswith(PREFIX) for name in names), set(names)
    assert 1 <= len(set(names)) <= workers


@pytest.mark.parametrize("ordered", [True, False])
@pytest.mark.parametrize("workers", [2, 3, 4])
def test_workers_calls_of_fn_really_overlap(workers, ordered):
    # The first `workers` calls wait for each other at a barrier: serialised calls
    # would break it (BrokenBarrierError after 5 s) instead of hanging the test.
    overlap = Overlap(parties=workers)
    pipeline = hr.range(4 * workers).map(overlap, workers=workers, ordered=ordered)

    result = list(pipeline)

    assert sorted(result) == list(range(4 * workers))
    assert overlap.peak == workers  # all of them at once, and never more


def test_one_worker_runs_one_call_at_a_time():
    overlap = Overlap()

    assert list(hr.range(20).map(overlap, workers=1)) == list(range(20))
    assert overlap.peak == 1


@pytest.mark.parametrize(("workers", "buffer_size"), [(4, 1), (4, 2), (3, 2)])
def test_no_more_calls_run_at_once_than_elements_may_be_in_flight(workers, buffer_size):
    overlap = Overlap()
    pipeline = hr.range(30).map(overlap, workers=workers, buffer_size=buffer_size)

    assert list(pipeline) == list(range(30))
    assert overlap.peak <= buffer_size


@pytest.mark.parametrize("workers", [2, 3])
def test_a_buffer_as_large_as_the_pool_keeps_every_worker_busy(workers):
    overlap = Overlap(parties=workers)
    pipeline = hr.range(3 * workers).map(overlap, workers=workers, buffer_size=workers)

    assert list(pipeline) == list(range(3 * workers))
    assert overlap.peak == workers


# -- order -----------------------------------------------------------------------------


def test_ordered_results_keep_input_order_when_later_elements_finish_first():
    later_done = threading.Event()
    waited: list[bool] = []

    def fn(x: int) -> int:
        if x == 0:
            # With two workers the other one has finished elements 1 and 2 by the
            # time it starts element 3: element 0 finishes after all three.
            waited.append(later_done.wait(timeout=5))
        elif x == 3:
            later_done.set()
        return 10 * x

    pipeline = hr.range(8).map(fn, workers=2, buffer_size=4)

    assert list(pipeline) == [10 * x for x in range(8)]
    assert waited == [True]  # the completion order really differed from the input's


def test_unordered_results_come_as_they_complete():
    release = threading.Event()

    def fn(x: int) -> int:
        if x == 0:
            release.wait(timeout=5)
        return x

    with hr.range(6).map(fn, workers=2, ordered=False).iter() as run:
        first = next(run)  # element 0 is still stuck: another one must come first
        release.set()
        rest = list(run)

    assert first != 0
    assert sorted([first, *rest]) == list(range(6))


@PROPERTY
@given(
    xs=st.lists(st.integers(-50, 50), max_size=30),
    workers=st.integers(1, 4),
    buffer_size=st.none() | st.integers(1, 8),
)
def test_ordered_parallel_map_equals_map(xs, workers, buffer_size, threads_left):
    pipeline = hr.from_iterable(xs)

    parallel = pipeline.map(jittery, workers=workers, buffer_size=buffer_size)

    assert list(parallel) == list(pipeline.map(jittery))
    assert threads_left() == []


@PROPERTY
@given(
    xs=st.lists(st.integers(-50, 50), max_size=30),
    workers=st.integers(1, 4),
    buffer_size=st.none() | st.integers(1, 8),
)
def test_unordered_parallel_map_is_a_permutation_of_map(xs, workers, buffer_size, threads_left):
    pipeline = hr.from_iterable(xs)

    parallel = pipeline.map(jittery, workers=workers, buffer_size=buffer_size, ordered=False)

    assert sorted(parallel) == sorted(pipeline.map(jittery))
    assert threads_left() == []


@PROPERTY
@given(
    xs=st.lists(st.integers(0, 50), max_size=30),
    workers=st.integers(1, 4),
    buffer_size=st.none() | st.integers(1, 8),
)
def test_parallel_map_between_other_stages_equals_map(xs, workers, buffer_size):
    def build(**options: Any) -> hr.Pipeline[Any]:
        return (
            hr.from_iterable(xs)
            .filter(keep_even)
            .map(jittery, **options)
            .map(double)
            .batch(3, collate=None)
        )

    assert list(build(workers=workers, buffer_size=buffer_size)) == list(build())


def test_an_empty_input_gives_an_empty_output():
    assert list(hr.from_iterable([]).map(double, workers=3)) == []
    assert list(hr.from_iterable([]).map(double, workers=3, ordered=False)) == []


# -- bounded memory --------------------------------------------------------------------


@pytest.mark.parametrize("ordered", [True, False])
@pytest.mark.parametrize(
    ("workers", "buffer_size"), [(1, 1), (2, 1), (2, None), (3, 2), (4, 8), (4, None)]
)
def test_elements_in_flight_never_exceed_buffer_size(workers, buffer_size, ordered):
    # In flight: taken from the source but not yet yielded to this loop. No tolerance:
    # an element that a feeder has pulled while it waits for a free slot is in flight
    # too, so an implementation must wait for the slot before pulling.
    # Without a buffer_size the bound is two tasks per worker: tasks of one element
    # here, fixed (the 1 ms calls would otherwise get two elements a task whenever a
    # loaded machine makes a task's hand-over look dear, and the bound with them).
    bound = 2 * workers if buffer_size is None else buffer_size
    chunk = 1 if buffer_size is None else None
    source = Counted(60)
    pipeline = hr.from_generator(source).map(
        slow, workers=workers, buffer_size=buffer_size, ordered=ordered, chunk_size=chunk
    )

    peak = 0
    with pipeline.iter() as run:
        for yielded, _ in enumerate(run, start=1):
            in_flight = source.taken - yielded
            assert in_flight <= bound, f"{in_flight} in flight after {yielded} yielded"
            if yielded % 4 == 0:
                # A slow consumer now and then: the pool may run ahead, up to the bound.
                time.sleep(0.01)
                in_flight = source.taken - yielded
                assert in_flight <= bound, f"{in_flight} in flight after {yielded} yielded"
            peak = max(peak, in_flight)

    assert source.taken == 60
    # Not vacuous: the pool did read ahead, as far as its workers could use.
    assert peak >= min(bound - 1, workers)


def sleepy(x: int) -> int:
    time.sleep(0.005)
    return x


def test_the_default_buffer_is_twice_the_workers_for_work_of_milliseconds():
    source = Counted(40)
    with hr.from_generator(source).map(sleepy, workers=2).iter(stats=True) as run:
        for yielded, _ in enumerate(run, start=1):
            time.sleep(0.005)
            assert source.taken - yielded <= 4
        assert run.stats()[1]["chunk"] == 1


@pytest.mark.parametrize("ordered", [True, False])
def test_the_default_buffer_is_two_tasks_per_worker(ordered):
    source = Counted(200)
    pipeline = hr.from_generator(source).map(double, workers=2, chunk_size=5, ordered=ordered)
    peak = 0
    with pipeline.iter(stats=True) as run:
        for yielded, _ in enumerate(run, start=1):
            if yielded % 7 == 0:
                time.sleep(0.002)
            peak = max(peak, source.taken - yielded)
            assert source.taken - yielded <= 20
        assert run.stats()[1]["chunk"] == 5
    assert peak > 10  # more than one task per worker was in flight


# -- errors ----------------------------------------------------------------------------


def endless() -> hr.Pipeline[int]:
    return hr.range(10**12)


def run_to_error(
    pipeline: hr.Pipeline[Any], threads_left: Callable[..., list[str]]
) -> tuple[ParseError, list[Any]]:
    """Iterate a run until it raises ``ParseError``; the error and what came before."""
    run = pipeline.iter()
    seen: list[Any] = []
    with pytest.raises(ParseError) as info:
        seen.extend(run)
    assert type(info.value) is ParseError  # the user's type, not a wrapper
    # The run is still referenced here: the error itself must have stopped the pool.
    assert threads_left() == []
    return info.value, seen


def assert_noted(error: BaseException, stage: str, detail: str) -> None:
    notes = stage_notes(error)
    assert len(notes) == 1, notes
    assert re.search(stage, notes[0]), notes
    assert re.search(detail, notes[0]), notes


@pytest.mark.parametrize("ordered", [True, False])
@pytest.mark.parametrize("workers", [1, 3])
def test_a_worker_error_keeps_type_and_traceback_and_is_noted_with_its_index(
    workers, ordered, threads_left
):
    error, seen = run_to_error(
        hr.range(20).map(parse, workers=workers, ordered=ordered), threads_left
    )

    assert str(error) == "cannot parse 7"
    assert "parse" in frames(error)  # the traceback reaches the user's own line
    assert_noted(error, r"stage 1 '[^']*\bparse\b", r"on its input element 7\b")
    assert 7 not in seen
    if ordered:
        assert seen == list(range(len(seen)))  # whatever came first came in order


def test_a_worker_error_index_counts_the_stages_own_input(threads_left):
    # The map sees 0, 2, 4, 6: the failing element is its input element 3, not 6.
    pipeline = hr.range(20).filter(keep_even).map(fail_on_six, workers=2)

    error, _ = run_to_error(pipeline, threads_left)

    assert "fail_on_six" in frames(error)
    assert_noted(error, r"stage 2 '[^']*\bfail_on_six\b", r"on its input element 3\b")


def test_a_worker_error_passing_through_later_stages_keeps_one_note(threads_left):
    pipeline = hr.range(20).map(parse, workers=3).map(double).batch(2).unbatch()

    error, _ = run_to_error(pipeline, threads_left)

    assert_noted(error, r"stage 1 '[^']*\bparse\b", r"on its input element 7\b")


@pytest.mark.parametrize("ordered", [True, False])
def test_an_upstream_error_passes_through_a_parallel_map_with_its_note(ordered, threads_left):
    pipeline = hr.from_generator(three_then_fail).map(double, workers=2, ordered=ordered)

    error, seen = run_to_error(pipeline, threads_left)

    assert str(error) == "source broke"
    assert "three_then_fail" in frames(error)
    assert_noted(error, r"stage 0 'from_generator\(three_then_fail\)'", "after producing 3")
    if ordered:
        assert seen == [0, 2, 4][: len(seen)]
    else:
        assert set(seen) <= {0, 2, 4}


def test_an_error_in_a_parallel_map_inside_a_zipped_pipeline_names_its_place(threads_left):
    pipeline = hr.range(10).zip(hr.range(10).map(parse, workers=2))

    error, _ = run_to_error(pipeline, threads_left)

    assert_noted(error, r"stage 0 \(zip\) input 1 > stage 1 '[^']*\bparse\b", r"element 7\b")


# -- lifecycle: every way a run can end stops its threads -------------------------------


@pytest.mark.skipif(not hasattr(signal, "SIGINT") or os.name != "posix", reason="POSIX signals")
def test_no_thread_is_left_after_ctrl_c_while_the_consumer_waits_for_a_worker(threads_left):
    # A real SIGINT, not a raise: it lands while the consumer is blocked waiting for a
    # result, so the KeyboardInterrupt starts inside the parallel map itself.
    sent = threading.Event()

    def interrupting(x: int) -> int:
        if x == 5 and not sent.is_set():
            sent.set()
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.3)  # the consumer is waiting for this result
        return x

    def consume() -> None:
        with endless().map(interrupting, workers=2).iter() as run:
            for _ in run:
                pass

    with pytest.raises(KeyboardInterrupt):
        consume()

    assert sent.is_set()
    assert threads_left() == []


def test_close_releases_the_upstream_generator_that_workers_pull_from(threads_left, eventually):
    events: list[str] = []

    def source() -> Iterator[int]:
        try:
            yield from range(10**12)
        finally:
            events.append("source finally")

    run = hr.from_generator(source).map(slow, workers=3).iter()
    for _ in range(5):
        next(run)

    run.close()

    assert eventually(lambda: events == ["source finally"]), events
    assert threads_left() == []


def test_close_stops_calling_fn(threads_left):
    calls = 0
    lock = threading.Lock()

    def sluggish(x: int) -> int:
        nonlocal calls
        with lock:
            calls += 1
        time.sleep(0.05)
        return x

    run = hr.range(10**12).map(sluggish, workers=2, buffer_size=6).iter()
    next(run)
    run.close()
    calls_at_close = calls

    assert threads_left() == []
    # The elements still queued are dropped, not computed. A close() that returns
    # before its workers stop may see each of them start the call it was picking up.
    assert calls - calls_at_close <= 2


def test_threads_are_stopped_after_a_worker_error_in_an_endless_stream(threads_left):
    def fail_late(x: int) -> int:
        if x == 20:
            raise ParseError("late")
        return x

    error, seen = run_to_error(endless().map(fail_late, workers=4, buffer_size=8), threads_left)

    assert seen == list(range(20))
    assert_noted(error, r"stage 1 '[^']*\bfail_late\b", r"on its input element 20\b")


# -- composition with the other stages -------------------------------------------------


def test_parallel_map_inside_repeat_equals_map():
    def build(**options: Any) -> hr.Pipeline[int]:
        return hr.range(7).map(jittery, **options).repeat(3)

    assert list(build(workers=3)) == list(build())
    assert sorted(build(workers=3, ordered=False)) == sorted(build())


def test_parallel_map_after_shuffle_equals_map():
    shuffled = hr.range(40).shuffle(16, seed=7)
    for epoch in (0, 1):
        expected = list(shuffled.map(jittery).iter(epoch=epoch))
        assert list(shuffled.map(jittery, workers=3).iter(epoch=epoch)) == expected


def test_parallel_map_before_batch_equals_map():
    def build(**options: Any) -> hr.Pipeline[Any]:
        return hr.range(23).map(jittery, **options).batch(4)

    assert [b.tolist() for b in build(workers=3)] == [b.tolist() for b in build()]


def test_parallel_map_inside_zipped_pipelines_equals_map():
    def build(**options: Any) -> hr.Pipeline[Any]:
        return hr.range(12).map(jittery, **options).zip(hr.range(12).map(double, **options))

    assert list(build(workers=2)) == list(build())
    assert list(build(workers=3, buffer_size=1)) == list(build())


def test_parallel_map_inside_interleaved_pipelines_equals_map():
    def build(**options: Any) -> hr.Pipeline[int]:
        def chunk(i: int) -> hr.Pipeline[int]:
            return hr.range(10 * i, 10 * i + 6).map(jittery, **options)

        return hr.range(5).interleave(chunk, cycle_length=3)

    assert list(build(workers=2)) == list(build())
    assert sorted(build(workers=2, ordered=False)) == sorted(build())


def test_parallel_maps_in_a_row_equal_maps():
    def build(**options: Any) -> hr.Pipeline[int]:
        return hr.range(30).map(jittery, **options).map(double, **options).map(jittery, **options)

    assert list(build(workers=3)) == list(build())
    assert list(build(workers=1, buffer_size=1)) == list(build())


@pytest.mark.parametrize("ordered", [True, False])
def test_len_is_that_of_the_inline_map(ordered):
    assert len(hr.range(17).map(double, workers=3, ordered=ordered)) == 17
    assert len(hr.range(17).map(double, workers=2, ordered=ordered).batch(5)) == 4
    assert hr.range(3).repeat().map(double, workers=2, ordered=ordered).known_length() == math.inf
    assert hr.range(9).filter(keep_even).map(double, workers=2).known_length() is None


def test_stats_runs_see_the_same_elements():
    pipeline = hr.range(15).map(jittery, workers=3).map(double)

    with pipeline.iter(stats=True) as run:
        assert list(run) == list(hr.range(15).map(jittery).map(double))


def test_a_parallel_map_pickles_and_the_copy_runs_like_the_original():
    # House rule (tests/test_pickling.py): every stage built from picklable functions
    # survives pickling, so the description must hold no lock, pool or thread.
    pipeline = hr.range(12).map(jittery, workers=3, ordered=True, buffer_size=5)

    copy = pickle.loads(pickle.dumps(pipeline))

    assert list(copy) == list(pipeline) == list(hr.range(12).map(jittery))


# -- Ctrl-C while calls run --------------------------------------------------------

INTERRUPTED = """
import time
import headrace as hr

def slow(x):
    if x == 1:
        print("running", flush=True)
    time.sleep(60)
    return x

try:
    for _ in hr.range(4).map(slow, workers=2):
        pass
except KeyboardInterrupt:
    print("interrupted", flush=True)
    raise
"""


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
def test_ctrl_c_abandons_running_calls_and_the_program_ends_without_them() -> None:
    import subprocess
    import sys

    process = subprocess.Popen(
        [sys.executable, "-c", INTERRUPTED],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "running"  # both calls sleep now
        time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        # The calls sleep for 60 s: a run that waited for them, or an interpreter that
        # joined their threads at exit, would still be here long after this.
        out, err = process.communicate(timeout=15)
    finally:
        process.kill()
        process.wait()
    assert "interrupted" in out
    assert "KeyboardInterrupt" in err
    assert "abandoned 2 task(s) still running" in err
    assert "(input elements 0, 1)" in err


def test_ctrl_c_in_the_consumer_abandons_the_calls_running_then(
    threads_left: Callable[..., list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    started, release = threading.Event(), threading.Event()

    def held(x: int) -> int:
        if x:
            started.set()
            release.wait(30)
        return x

    def consume() -> None:
        # buffer_size=2: elements 0 and 1 are in flight until the consumer asks again.
        with hr.range(4).map(held, workers=2, buffer_size=2).iter() as run:
            assert next(run) == 0
            assert started.wait(10)  # element 1's call is running now
            raise KeyboardInterrupt

    try:
        with pytest.raises(KeyboardInterrupt):
            consume()
        # Closing the run did not wait for the held call: it is still running.
        assert not release.is_set()
        assert "abandoned 1 task(s) still running" in caplog.text
        assert "(input elements 1)" in caplog.text
    finally:
        release.set()
    assert threads_left() == []  # the abandoned call ends, and its thread with it
