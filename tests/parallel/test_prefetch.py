"""``prefetch(buffer_size)``: a background thread keeps elements ready, and nothing else.

A prefetched pipeline yields exactly what it would without the prefetch, errors
included (same type, same note, after the same elements), holds at most
``buffer_size`` elements taken from upstream and not yet yielded, and stops its thread
however the run ends. Every test has a timeout, and a fixture checks after each one
that no ``headrace-`` thread is left running; no test asserts a wall-clock time.
"""

from __future__ import annotations

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
    if x == 4:
        raise ParseError(f"cannot parse {x}")
    return x


def three_then_fail() -> Iterator[int]:
    yield from range(3)
    raise ParseError("source broke")


def stage_notes(error: BaseException) -> list[str]:
    """The notes headrace attached naming a stage."""
    return [n for n in getattr(error, "__notes__", []) if n.startswith("headrace: raised in")]


def frames(error: BaseException) -> list[str]:
    return [frame.name for frame in traceback.extract_tb(error.__traceback__)]


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


@pytest.mark.parametrize("buffer_size", [0, -1, -10])
def test_a_buffer_size_below_one_is_refused(buffer_size):
    with pytest.raises(ValueError, match=r"\bbuffer_size\b"):
        hr.range(3).prefetch(buffer_size)


@pytest.mark.parametrize("buffer_size", [1.5, "2", None, True])
def test_a_buffer_size_that_is_not_an_int_is_refused(buffer_size):
    with pytest.raises(TypeError, match=r"\bbuffer_size\b"):
        hr.range(3).prefetch(buffer_size)


def test_the_buffer_size_can_be_given_by_keyword_and_defaults_to_two():
    assert list(hr.range(5).prefetch(buffer_size=3)) == list(range(5))
    assert list(hr.range(5).prefetch()) == list(range(5))


# -- what prefetch yields and where the upstream runs -----------------------------------


def test_describing_a_prefetch_starts_no_thread(live_threads):
    pipeline = hr.range(10).prefetch(4).map(double).prefetch()

    assert live_threads() == []
    assert list(pipeline) == [2 * x for x in range(10)]


@PROPERTY
@given(xs=st.lists(st.integers(-50, 50), max_size=30), buffer_size=st.integers(1, 8))
def test_prefetch_yields_exactly_its_upstream(xs, buffer_size, threads_left):
    pipeline = hr.from_iterable(xs).map(jittery)

    assert list(pipeline.prefetch(buffer_size)) == list(pipeline)
    assert threads_left() == []


@PROPERTY
@given(
    xs=st.lists(st.integers(-50, 50), max_size=30),
    workers=st.integers(1, 4),
    buffer_size=st.integers(1, 8),
)
def test_prefetch_after_a_parallel_map_equals_map(xs, workers, buffer_size, threads_left):
    pipeline = hr.from_iterable(xs)

    parallel = pipeline.map(jittery, workers=workers).prefetch(buffer_size)

    assert list(parallel) == list(pipeline.map(jittery))
    assert threads_left() == []


def test_the_upstream_runs_on_one_background_thread_named_headrace():
    names: list[str] = []

    def record(x: int) -> int:
        names.append(threading.current_thread().name)
        return x

    assert list(hr.range(20).map(record).prefetch(3)) == list(range(20))
    assert len(names) == 20
    assert len(set(names)) == 1, set(names)
    assert names[0].startswith(PREFIX)


def test_an_empty_upstream_gives_an_empty_output():
    assert list(hr.from_iterable([]).prefetch(3)) == []


# -- bounded memory --------------------------------------------------------------------


@pytest.mark.parametrize("buffer_size", [1, 2, 5])
def test_prefetch_fills_its_buffer_while_the_consumer_waits_and_no_further(buffer_size, eventually):
    source = Counted(100)

    with hr.from_generator(source).prefetch(buffer_size).iter() as run:
        assert next(run) == 0
        # Elements ready: taken from the source, not yet yielded (one has been).
        assert eventually(lambda: source.taken - 1 == buffer_size), source.taken
        time.sleep(0.02)  # room to overshoot, if the thread were going to
        assert source.taken - 1 == buffer_size


@pytest.mark.parametrize("buffer_size", [None, 1, 2, 3, 8])
def test_elements_in_flight_never_exceed_buffer_size(buffer_size):
    # In flight: taken from the source but not yet yielded to this loop. No tolerance:
    # an element that the background thread has pulled while it waits for room in the
    # buffer is in flight too, so the thread must wait for room before pulling.
    bound = 2 if buffer_size is None else buffer_size
    source = Counted(60)
    pipeline = hr.from_generator(source)
    prefetched = pipeline.prefetch() if buffer_size is None else pipeline.prefetch(buffer_size)

    peak = 0
    with prefetched.iter() as run:
        for yielded, x in enumerate(run, start=1):
            assert x == yielded - 1
            in_flight = source.taken - yielded
            assert in_flight <= bound, f"{in_flight} in flight after {yielded} yielded"
            if yielded % 4 == 0:
                # A slow consumer now and then: the thread may run ahead, up to the bound.
                time.sleep(0.01)
                in_flight = source.taken - yielded
                assert in_flight <= bound, f"{in_flight} in flight after {yielded} yielded"
            peak = max(peak, in_flight)

    assert source.taken == 60
    # Not vacuous: the thread did read ahead (how far by a given moment is timing; the
    # test above checks that it fills the buffer).
    assert peak >= 1


def test_a_parallel_map_then_prefetch_hold_at_most_both_buffers():
    source = Counted(60)
    pipeline = hr.from_generator(source).map(slow, workers=2, buffer_size=3).prefetch(4)

    with pipeline.iter() as run:
        for yielded, _ in enumerate(run, start=1):
            if yielded % 5 == 0:
                time.sleep(0.01)
            assert source.taken - yielded <= 3 + 4


# -- errors ----------------------------------------------------------------------------


def run_to_error(
    pipeline: hr.Pipeline[Any], threads_left: Callable[..., list[str]]
) -> tuple[ParseError, list[Any]]:
    """Iterate a run until it raises ``ParseError``; the error and what came before."""
    run = pipeline.iter()
    seen: list[Any] = []
    with pytest.raises(ParseError) as info:
        seen.extend(run)
    assert type(info.value) is ParseError  # the user's type, not a wrapper
    # The run is still referenced here: the error itself must have stopped the thread.
    assert threads_left() == []
    return info.value, seen


def assert_noted(error: BaseException, stage: str, detail: str) -> None:
    notes = stage_notes(error)
    assert len(notes) == 1, notes  # the prefetch adds none of its own
    assert re.search(stage, notes[0]), notes
    assert re.search(detail, notes[0]), notes


@pytest.mark.parametrize("buffer_size", [1, 2, 8])
def test_an_upstream_stage_error_arrives_with_its_type_note_and_traceback(
    buffer_size, threads_left
):
    error, seen = run_to_error(hr.range(10).map(parse).prefetch(buffer_size), threads_left)

    assert str(error) == "cannot parse 4"
    assert "parse" in frames(error)
    assert_noted(error, r"stage 1 'map\(parse\)'", r"on its input element 4\b")
    assert seen == [0, 1, 2, 3]  # what the upstream made before failing still arrives


def test_a_source_error_arrives_with_its_note(threads_left):
    error, seen = run_to_error(hr.from_generator(three_then_fail).prefetch(2), threads_left)

    assert str(error) == "source broke"
    assert "three_then_fail" in frames(error)
    assert_noted(error, r"stage 0 'from_generator\(three_then_fail\)'", "after producing 3")
    assert seen == [0, 1, 2]


def test_a_parallel_map_error_arrives_through_prefetch_with_its_note(threads_left):
    error, seen = run_to_error(hr.range(10).map(parse, workers=3).prefetch(2), threads_left)

    assert "parse" in frames(error)
    assert_noted(error, r"stage 1 '[^']*\bparse\b", r"on its input element 4\b")
    assert seen == list(range(len(seen)))
    assert len(seen) <= 4


def test_an_error_after_the_prefetch_is_noted_by_its_own_stage(threads_left):
    error, seen = run_to_error(hr.range(10).prefetch(3).map(parse), threads_left)

    assert_noted(error, r"stage 2 'map\(parse\)'", r"on its input element 4\b")
    assert seen == [0, 1, 2, 3]


# -- lifecycle: every way a run can end stops the thread --------------------------------


@pytest.mark.skipif(not hasattr(signal, "SIGINT") or os.name != "posix", reason="POSIX signals")
def test_no_thread_is_left_after_ctrl_c_while_the_consumer_waits_for_the_thread(threads_left):
    # A real SIGINT, not a raise: it lands while the consumer is blocked waiting for the
    # next element, so the KeyboardInterrupt starts inside the prefetch itself.
    sent = threading.Event()

    def interrupting() -> Iterator[int]:
        for i in range(10**12):
            if i == 5 and not sent.is_set():
                sent.set()
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.3)  # the consumer is waiting for this element
            yield i

    def consume() -> None:
        with hr.from_generator(interrupting).prefetch(2).iter() as run:
            for _ in run:
                pass

    with pytest.raises(KeyboardInterrupt):
        consume()

    assert sent.is_set()
    assert threads_left() == []


def test_close_releases_the_upstream_generator_the_thread_pulls_from(threads_left, eventually):
    events: list[str] = []

    def source() -> Iterator[int]:
        try:
            yield from range(10**12)
        finally:
            events.append("source finally")

    run = hr.from_generator(source).prefetch(3).iter()
    for _ in range(5):
        next(run)

    run.close()

    assert eventually(lambda: events == ["source finally"]), events
    assert threads_left() == []


def test_close_while_the_thread_waits_on_a_slow_upstream(threads_left):
    pulling = threading.Event()

    def sluggish() -> Iterator[int]:
        for i in range(10**12):
            pulling.set()
            time.sleep(0.2)
            yield i

    run = hr.from_generator(sluggish).prefetch(2).iter()
    assert next(run) == 0
    assert pulling.wait(timeout=5)  # the thread is inside the upstream now

    run.close()

    assert run.closed
    assert threads_left() == []


# -- composition with the other stages -------------------------------------------------


def test_prefetch_inside_repeat_equals_no_prefetch():
    assert list(hr.range(7).map(jittery).prefetch(2).repeat(3)) == list(
        hr.range(7).map(jittery).repeat(3)
    )


def test_prefetch_after_shuffle_equals_no_prefetch():
    shuffled = hr.range(40).shuffle(16, seed=7)
    for epoch in (0, 1):
        expected = list(shuffled.iter(epoch=epoch))
        assert list(shuffled.prefetch(3).iter(epoch=epoch)) == expected


def test_prefetch_before_batch_equals_no_prefetch():
    def build(prefetch: bool) -> hr.Pipeline[Any]:
        pipeline = hr.range(23).map(jittery)
        return (pipeline.prefetch(4) if prefetch else pipeline).batch(4)

    assert [b.tolist() for b in build(True)] == [b.tolist() for b in build(False)]


def test_prefetch_inside_zipped_pipelines_equals_no_prefetch():
    zipped = hr.range(12).prefetch(2).zip(hr.range(12).map(double, workers=2).prefetch(1))

    assert list(zipped) == list(hr.range(12).zip(hr.range(12).map(double)))


def test_prefetch_inside_interleaved_pipelines_equals_no_prefetch():
    def build(prefetch: bool) -> hr.Pipeline[int]:
        def chunk(i: int) -> hr.Pipeline[int]:
            inner = hr.range(10 * i, 10 * i + 6).map(jittery)
            return inner.prefetch(2) if prefetch else inner

        return hr.range(5).interleave(chunk, cycle_length=3)

    assert list(build(True)) == list(build(False))


def test_len_is_that_of_the_upstream():
    # Not in the prefetch contract as such, but prefetch changes no element, so the
    # length it knows is the upstream's (as for every other 1:1 stage).
    assert len(hr.range(17).prefetch(3)) == 17
    assert len(hr.range(17).map(double, workers=2).prefetch().batch(5)) == 4


def test_stats_runs_see_the_same_elements():
    with hr.range(15).map(jittery).prefetch(3).iter(stats=True) as run:
        assert list(run) == list(hr.range(15).map(jittery))


def test_a_prefetch_pickles_and_the_copy_runs_like_the_original():
    # House rule (tests/test_pickling.py): every stage built from picklable functions
    # survives pickling, so the description must hold no lock, queue or thread.
    pipeline = hr.range(12).map(jittery).prefetch(3)

    copy = pickle.loads(pickle.dumps(pipeline))

    assert list(copy) == list(pipeline) == list(hr.range(12).map(jittery))
