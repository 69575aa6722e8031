"""Tasks of many elements: a parallel map groups consecutive elements into one task.

``chunk_size=None`` (the default) adapts the group to the measured work; a number
fixes it. Whatever the size, on either backend: the output equals the inline map
(a permutation of it unordered), ``buffer_size`` still bounds the elements in flight,
an error names its exact element after every element before it was yielded,
``on_error`` counts the same rejects, ``random_map`` draws the same values and a
saved state resumes exactly.

The module's functions go to worker processes by value (see test_process_map.py).
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import headrace as hr

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.timeout(120)

BACKENDS = ("thread", "process", "ray")


# Process runs start two interpreters each: few examples, each checking many sizes.
PROPERTY = settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def triple(x: int) -> int:
    return 3 * x + 1


def picky(x: int) -> int:
    """Rejects multiples of 7 as bad data."""
    if x % 7 == 0:
        raise hr.ParseError(f"{x} is a multiple of 7")
    return x


def jitter(x: int, rng: np.random.Generator) -> tuple[int, float]:
    return x, float(rng.random())


def fails_at(bad: int) -> Any:
    def checked(x: int) -> int:
        if x == bad:
            raise ValueError(f"cannot take {x}")
        return x

    return checked


def stage_notes(error: BaseException) -> list[str]:
    return [n for n in getattr(error, "__notes__", []) if n.startswith("headrace: raised in")]


class Counted:
    """A source function that counts the elements taken from it."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.taken = 0

    def __call__(self) -> Iterator[int]:
        for i in range(self.n):
            self.taken += 1
            yield i


# -- the laws, for every chunk size and worker count ---------------------------------


@PROPERTY
@given(
    xs=st.lists(st.integers(-1000, 1000), max_size=80),
    workers=st.integers(1, 3),
    chunks=st.lists(st.one_of(st.none(), st.integers(1, 40)), min_size=1, max_size=3),
    backend=st.sampled_from(BACKENDS[:2]),  # the ray backend: the tests below
)
def test_results_are_identical_for_every_chunk_size_and_worker_count(
    xs: list[int], workers: int, chunks: list[int | None], backend: str
) -> None:
    expected = [triple(x) for x in xs]
    rejects = [x for x in xs if x % 7 != 0]
    drawn = list(hr.from_iterable(xs).random_map(jitter, seed=3).iter(epoch=1))
    tripled = hr.from_iterable(xs).map(triple).random_map(jitter, seed=3)
    drawn_after = list(tripled.iter(epoch=1))
    for chunk in chunks:
        source = hr.from_iterable(xs)
        options: dict[str, Any] = {"workers": workers, "backend": backend, "chunk_size": chunk}
        assert list(source.map(triple, **options)) == expected, chunk
        assert sorted(source.map(triple, ordered=False, **options)) == sorted(expected)
        assert list(source.map(picky, on_error="skip", **options)) == rejects
        noisy = source.random_map(jitter, seed=3, **options)
        assert list(noisy.iter(epoch=1)) == drawn
        joined = source.map(triple, **options).random_map(jitter, seed=3, **options)
        assert list(joined.iter(epoch=1)) == drawn_after  # one trip for both stages


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_cheap_function_gets_tasks_of_many_elements_and_a_slow_one_of_one(backend):
    with hr.range(200_000).map(triple, workers=2, backend=backend).iter(stats=True) as run:
        assert sum(run) == sum(map(triple, range(200_000)))
        cheap = run.stats()[1]
    assert cheap["chunk"] > 50, cheap

    def slow(x: int) -> int:
        # 20 ms: a task would have to cost 1 ms besides its calls to be grown, which
        # even a loaded machine does not make it (4 ms was grown once under CI load).
        time.sleep(0.02)
        return x

    with hr.range(30).map(slow, workers=2, backend=backend).iter(stats=True) as run:
        assert list(run) == list(range(30))
        chunk = run.stats()[1]["chunk"]
    assert chunk == 1


def big_array(x: int) -> np.ndarray:
    return np.full(40_000, x, dtype=np.float32)  # 160 KB, made in microseconds


@pytest.mark.parametrize("backend", BACKENDS)
def test_big_elements_go_one_a_task_however_cheap_their_work(backend):
    pipeline = hr.range(300).map(big_array, workers=2, backend=backend)
    with pipeline.iter(stats=True) as run:
        assert [int(a[0]) for a in run] == list(range(300))
        assert run.stats()[1]["chunk"] == 1
    with (
        hr.range(300).map(big_array).map(np.sum, workers=2, backend=backend).iter(stats=True) as run
    ):  # big elements in, small results out
        assert len(list(run)) == 300
        assert run.stats()[2]["chunk"] == 1


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("ordered", [True, False])
def test_a_given_buffer_size_bounds_elements_in_flight_whatever_the_chunk(backend, ordered):
    source = Counted(50_000)
    pipeline = hr.from_generator(source).map(
        triple, workers=2, backend=backend, buffer_size=64, ordered=ordered
    )
    peak = 0
    with pipeline.iter(stats=True) as run:
        for yielded, _ in enumerate(run, start=1):
            peak = max(peak, source.taken - yielded)
            assert source.taken - yielded <= 64
        row = run.stats()[1]
    assert source.taken == 50_000
    assert 1 < row["chunk"] <= 16, row  # at most a quarter of the buffer: 2 tasks a worker
    assert peak > 16


# -- errors ---------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("chunk", [None, 1, 7, 64])
def test_an_error_names_its_element_after_every_element_before_it(backend, chunk):
    pipeline = hr.range(3000).map(fails_at(2345), workers=2, backend=backend, chunk_size=chunk)
    seen: list[int] = []
    with pytest.raises(ValueError, match="cannot take 2345") as info:
        seen.extend(pipeline)
    assert seen == list(range(2345))
    notes = stage_notes(info.value)
    assert len(notes) == 1
    assert re.search(r"on its input element 2345 \(0-based\)", notes[0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_upstream_error_comes_after_the_elements_taken_before_it(backend):
    def source() -> Iterator[int]:
        yield from range(500)
        raise OSError("the disk went away")

    seen: list[int] = []
    pipeline = hr.from_generator(source).map(triple, workers=2, backend=backend, chunk_size=64)
    with pytest.raises(OSError, match="the disk went away"):
        seen.extend(pipeline)
    assert seen == [triple(x) for x in range(500)]


@pytest.mark.parametrize("backend", BACKENDS[1:])  # threads pickle nothing
def test_an_element_that_does_not_pickle_is_named_within_its_task(backend):
    items = [1, 2, 3, _Unpicklable(), 5]
    pipeline = hr.from_iterable(items).map(str, workers=1, backend=backend, chunk_size=5)
    with pytest.raises(TypeError, match="refuses to be pickled") as info:
        list(pipeline)
    notes = " ".join(info.value.__notes__)
    assert re.search(r"on its input element 3 \(0-based\)", notes), notes
    assert f"elements sent to the {backend} backend must be picklable" in notes


@pytest.mark.parametrize("backend", BACKENDS[1:])
def test_a_result_that_does_not_pickle_is_named_within_its_task(backend):
    def make(x: int) -> Any:
        return _Unpicklable() if x == 6 else x

    pipeline = hr.range(10).map(make, workers=1, backend=backend, chunk_size=10)
    seen: list[Any] = []
    with pytest.raises(TypeError, match="refuses to be pickled") as info:
        seen.extend(pipeline)
    notes = " ".join(info.value.__notes__)
    assert f"results of the {backend} backend must be picklable" in notes
    if backend == "process":  # pickled value by value: the very element is named
        assert seen == list(range(6))
        assert re.search(r"on its input element 6 \(0-based\)", notes), notes
    else:  # Ray pickles a task's results at once: the task's elements are named
        assert seen == []
        assert "the results of its input elements 0-9 (0-based) could not come back" in notes


class _Unpicklable:
    def __reduce__(self) -> Any:
        raise TypeError("this object refuses to be pickled")


@pytest.mark.parametrize("backend", BACKENDS[1:])  # threads do not die on their own
def test_a_dead_worker_is_reported_with_the_elements_of_its_tasks(backend):
    def die_at(x: int) -> int:
        if x == 30:
            os.kill(os.getpid(), signal.SIGKILL)
        return x

    pipeline = hr.range(100).map(die_at, workers=1, backend=backend, chunk_size=10)
    with pytest.raises(hr.WorkerError) as info:
        list(pipeline)
    message = str(info.value)
    if backend == "process":
        assert re.search(r"worker process \d+ was killed by signal 9 \(SIGKILL", message)
    else:
        assert re.search(r"Ray actor 0 \(process \d+\) died", message), message
    assert re.search(r"input elements [\d, -]*\b30-39\b", message), message


# -- arguments ------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [0, -3])
def test_a_chunk_size_below_one_is_refused(chunk):
    with pytest.raises(ValueError, match=r"\bchunk_size\b"):
        hr.range(3).map(triple, workers=2, chunk_size=chunk)


@pytest.mark.parametrize("chunk", [1.5, "4", True])
def test_a_chunk_size_that_is_not_an_int_is_refused(chunk):
    with pytest.raises(TypeError, match=r"\bchunk_size\b"):
        hr.range(3).random_map(jitter, seed=1, workers=2, chunk_size=chunk)


def test_a_chunk_that_does_not_fit_the_buffer_is_refused():
    with pytest.raises(ValueError, match=r"chunk_size=10 with workers=2 needs buffer_size >= 20"):
        hr.range(3).map(triple, workers=2, buffer_size=8, chunk_size=10)


def test_a_fixed_chunk_is_part_of_the_stage_name_but_not_of_what_it_computes():
    pipeline = hr.range(3).map(triple, workers=2, chunk_size=4)
    assert "chunk_size=4" in repr(pipeline)
    with pipeline.iter() as run:
        next(run)
        state = run.state()
    # A state saved with one chunk size resumes with another, or inline.
    assert list(hr.range(3).map(triple).iter(state=state)) == [triple(1), triple(2)]


# -- resume ---------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_run_with_large_tasks_resumes_exactly(tmp_path: Path, backend: str):
    # A file reader keeps live state below the map: the map notes it as it reads
    # ahead, and the notes must reach as far back as its tasks.
    path = tmp_path / "lines.txt"
    path.write_text("".join(f"line {i}\n" for i in range(60_000)))
    whole = [line.upper() for line in path.read_text().splitlines()]

    def pipeline() -> hr.Pipeline[str]:
        return hr.text_lines(path).map(str.upper, workers=2, backend=backend)

    with pipeline().iter(stats=True) as run:
        taken = [next(run) for _ in range(25_000)]
        state = json.loads(json.dumps(run.state()))
        assert run.stats()[1]["chunk"] > 50
    assert taken == whole[:25_000]
    assert list(pipeline().iter(state=state)) == whole[25_000:]


# -- what the review found --------------------------------------------------------------


def stops_at_three(x: int) -> int:
    if x == 3:
        raise StopIteration  # map would take it for the end of its input
    return x


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_function_raising_stop_iteration_is_an_error_of_its_element(backend):
    pipeline = hr.range(12).map(stops_at_three, workers=2, backend=backend, chunk_size=6)
    seen: list[int] = []
    with pytest.raises(RuntimeError, match="raised StopIteration") as info:
        seen.extend(pipeline)
    assert seen == [0, 1, 2]
    assert re.search(r"on its input element 3 \(0-based\)", stage_notes(info.value)[0])


def _rebuilt_only_in(parent: int) -> Any:
    if os.getpid() != parent:
        raise ValueError("this element cannot be rebuilt in a worker")
    return Unrebuildable()


class Unrebuildable:
    def __reduce__(self) -> Any:
        return _rebuilt_only_in, (os.getpid(),)


def test_an_element_a_worker_cannot_rebuild_is_named_with_its_task():
    items = [0, 1, 2, 3, 4, 5, Unrebuildable(), 7]
    pipeline = hr.from_iterable(items).map(repr, workers=1, backend="process", chunk_size=4)
    seen: list[str] = []
    with pytest.raises(ValueError, match="cannot be rebuilt in a worker") as info:
        seen.extend(pipeline)
    assert seen == [repr(x) for x in range(4)]
    assert any("input elements 4-7 (0-based)" in note for note in info.value.__notes__)
