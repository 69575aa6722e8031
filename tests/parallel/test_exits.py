"""Every way a run can end stops the threads of parallel maps and prefetches.

The folder's check after each test (``nothing_left_running``) also finds worker
processes and Ray actors left behind, so the maps on processes and on Ray actors
(a local cluster for the module) go through the same exits. The same exits for every
kind of stage: exhaustion, ``break`` then ``del``,
``close()``, leaving a ``with`` block early, an exception or ``KeyboardInterrupt`` in
the consumer, garbage collection of an unclosed run, and ``take`` ending an endless
stream. No test asserts a wall-clock time; each has a timeout.
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable

import cloudpickle
import pytest

import headrace as hr

pytestmark = pytest.mark.timeout(30)
cloudpickle.register_pickle_by_value(sys.modules[__name__])  # for the workers and actors


def double(x: int) -> int:
    return 2 * x


def slow(x: int) -> int:
    time.sleep(0.001)
    return x


def stage_notes(error: BaseException) -> list[str]:
    """The notes headrace attached naming a stage."""
    return [n for n in getattr(error, "__notes__", []) if n.startswith("headrace: raised in")]


LIVE: dict[str, Callable[[hr.Pipeline[int]], hr.Pipeline[int]]] = {
    "map ordered": lambda p: p.map(slow, workers=3),
    "map unordered": lambda p: p.map(slow, workers=3, ordered=False),
    "map one worker, no buffer": lambda p: p.map(slow, workers=1, buffer_size=1),
    "map stacked": lambda p: p.map(slow, workers=2).map(double, workers=4, ordered=False),
    "prefetch buffer 1": lambda p: p.prefetch(1),
    "prefetch buffer 4": lambda p: p.prefetch(4),
    "prefetch slow upstream": lambda p: p.map(slow).prefetch(2),
    "prefetch after a parallel map": lambda p: p.map(slow, workers=3).prefetch(3),
    "prefetch twice": lambda p: p.prefetch(2).map(double).prefetch(2),
    "map on processes": lambda p: p.map(slow, workers=2, backend="process"),
    "map on ray": lambda p: p.map(slow, workers=2, backend="ray"),
}
live = pytest.mark.parametrize("build", list(LIVE.values()), ids=list(LIVE))


def endless() -> hr.Pipeline[int]:
    return hr.range(10**12)


@live
def test_no_thread_is_left_after_the_run_is_exhausted(build, threads_left):
    run = build(hr.range(25)).iter()

    assert len(list(run)) == 25
    assert run.closed
    assert threads_left() == []


@live
def test_no_thread_is_left_after_break_and_del(build, threads_left):
    run = build(endless()).iter()
    for i, _ in enumerate(run):
        if i == 5:
            break

    del run
    gc.collect()

    assert threads_left() == []


@live
@pytest.mark.parametrize("advanced", [0, 3])
def test_no_thread_is_left_after_close(build, advanced, threads_left):
    run = build(endless()).iter()
    for _ in range(advanced):
        next(run)

    run.close()

    assert run.closed
    assert threads_left() == []
    run.close()  # idempotent
    assert list(run) == []


@live
def test_no_thread_is_left_after_leaving_a_with_block_early(build, threads_left):
    with build(endless()).iter() as run:
        next(run)
        next(run)

    assert run.closed
    assert threads_left() == []


@live
def test_no_thread_is_left_after_the_consumer_raises_in_a_with_block(build, threads_left):
    def consume() -> None:
        with build(endless()).iter() as run:
            for i, _ in enumerate(run):
                if i == 3:
                    raise RuntimeError("consumer")

    with pytest.raises(RuntimeError) as info:
        consume()

    assert str(info.value) == "consumer"
    assert stage_notes(info.value) == []  # the consumer's error, untouched by cleanup
    assert threads_left() == []


@live
def test_no_thread_is_left_after_an_unclosed_run_is_collected(build, threads_left):
    run = build(endless()).iter()
    for _ in range(3):
        next(run)

    del run
    gc.collect()

    assert threads_left() == []


@live
def test_no_thread_is_left_after_keyboard_interrupt_in_a_with_block(build, threads_left):
    def consume() -> None:
        with build(endless()).iter() as run:
            for i, _ in enumerate(run):
                if i == 3:
                    raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        consume()

    assert threads_left() == []


@live
def test_no_thread_is_left_after_keyboard_interrupt_in_a_plain_for_loop(build, threads_left):
    def consume() -> None:
        # No name holds the run: only the loop does, and the interrupt unwinds it.
        for i, _ in enumerate(build(endless())):
            if i == 3:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        consume()
    gc.collect()

    assert threads_left() == []


@live
def test_no_thread_is_left_after_take_ends_an_endless_run(build, threads_left):
    run = build(endless()).take(10).iter()

    assert len(list(run)) == 10
    assert threads_left() == []
