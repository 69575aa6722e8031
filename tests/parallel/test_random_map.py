"""random_map: per-element generators make random functions independent of workers.

The draws and the errors are checked on every backend (the ray one on a local
cluster for the module).
"""

from __future__ import annotations

import sys
import time
import traceback

import cloudpickle
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import headrace as hr
from headrace.parallel import element_rng

pytestmark = pytest.mark.timeout(60)
cloudpickle.register_pickle_by_value(sys.modules[__name__])  # for the workers and actors

BACKENDS = ("thread", "process", "ray")


def jitter(x: int, rng: np.random.Generator) -> tuple[int, float]:
    # Finish out of order on purpose: later elements are sometimes quicker.
    time.sleep((x % 3) * 0.0005)
    return x, float(rng.random())


# The fixtures are stateless functions, safe to share between generated examples.
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    items=st.lists(st.integers(0, 1000), max_size=25),
    workers=st.integers(0, 4),
    seed=st.integers(0, 2**32),
    epoch=st.integers(0, 5),
)
def test_the_draws_are_the_same_with_any_number_of_workers(
    items: list[int], workers: int, seed: int, epoch: int, threads_left
) -> None:
    inline = list(hr.from_iterable(items).random_map(jitter, seed=seed).iter(epoch=epoch))
    parallel = hr.from_iterable(items).random_map(jitter, seed=seed, workers=workers)
    assert list(parallel.iter(epoch=epoch)) == inline
    if workers:
        unordered = hr.from_iterable(items).random_map(
            jitter, seed=seed, workers=workers, ordered=False
        )
        # Completion order may differ, but each element keeps the value it drew.
        assert sorted(unordered.iter(epoch=epoch)) == sorted(inline)
    assert threads_left() == []


def test_each_element_draws_from_its_own_generator_seeded_by_position() -> None:
    out = list(hr.range(5).random_map(lambda x, rng: rng.random(), seed=11).iter(epoch=2))
    assert out == [element_rng(11, (2,), i).random() for i in range(5)]
    assert len(set(out)) == 5


def test_epochs_and_repetitions_draw_anew_and_replay_exactly() -> None:
    noisy = hr.range(8).random_map(lambda x, rng: rng.integers(1_000_000), seed=5)
    first, second = list(noisy), list(noisy)
    assert first != second
    assert list(noisy.iter(epoch=0)) == first
    repeated = list(noisy.repeat(2).iter(epoch=0))
    assert repeated[:8] != repeated[8:]


def test_a_different_seed_gives_different_draws() -> None:
    def draw(seed: int) -> list[float]:
        return list(hr.range(6).random_map(lambda x, rng: rng.random(), seed=seed).iter(epoch=0))

    assert draw(1) != draw(2)


def explode(x: int, rng: np.random.Generator) -> int:
    if x == 4:
        raise KeyError("four")
    return x


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_draws_are_the_same_on_every_backend(backend: str) -> None:
    items = [x * x % 97 for x in range(40)]
    inline = list(hr.from_iterable(items).random_map(jitter, seed=7).iter(epoch=3))
    for ordered in (True, False):
        parallel = hr.from_iterable(items).random_map(
            jitter, seed=7, workers=2, backend=backend, ordered=ordered
        )
        got = list(parallel.iter(epoch=3))
        # Unordered, completion order may differ, but each element keeps its draw.
        assert got == inline if ordered else sorted(got) == sorted(inline)


@pytest.mark.parametrize(
    ("workers", "backend"), [(0, "thread"), (2, "thread"), (2, "process"), (2, "ray")]
)
def test_an_error_keeps_its_type_and_names_the_element(
    workers: int, backend: str, threads_left
) -> None:
    with pytest.raises(KeyError) as caught:
        list(hr.range(9).random_map(explode, seed=0, workers=workers, backend=backend))
    error = caught.value
    notes = [n for n in error.__notes__ if n.startswith("headrace: raised in")]
    assert len(notes) == 1
    assert "random_map(explode, seed=0" in notes[0]
    assert "on its input element 4" in notes[0]
    if backend == "thread":
        assert "explode" in [frame.name for frame in traceback.extract_tb(error.__traceback__)]
    else:  # raised in another process: its traceback comes as a note
        (remote,) = [n for n in error.__notes__ if n.startswith("headrace: traceback in")]
        assert 'raise KeyError("four")' in remote
    assert threads_left() == []


def test_arguments_are_checked_when_the_pipeline_is_built() -> None:
    with pytest.raises(ValueError, match="seed"):
        hr.range(3).random_map(jitter, seed=-1)
    with pytest.raises(TypeError, match="seed"):
        hr.range(3).random_map(jitter, seed=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="fn"):
        hr.range(3).random_map(3, seed=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="workers"):
        hr.range(3).random_map(jitter, seed=1, workers=-1)
    with pytest.raises(TypeError, match="ordered"):
        hr.range(3).random_map(jitter, seed=1, workers=2, ordered="no")  # type: ignore[arg-type]


def test_the_length_passes_through_and_early_close_leaves_no_thread(threads_left) -> None:
    pipeline = hr.range(50).random_map(jitter, seed=3, workers=2)
    assert len(pipeline) == 50
    with pipeline.iter() as run:
        next(run)
    assert threads_left() == []
