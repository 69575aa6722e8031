"""Consecutive parallel stages on the same workers share one trip.

``map(load, workers=N).random_map(augment, workers=N)`` on one backend runs both calls
on each element in the same task, on the same worker: the element does not come back
to the consumer between them. Results, random draws, error notes, statistics and
resumed states are those of the stages run apart.

The module's functions go to worker processes by value (see test_process_map.py).
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

import cloudpickle
import numpy as np
import pytest

import headrace as hr

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.timeout(60)

BACKENDS = ["thread", "process", "ray"]

#: Counts the calls of ``setup`` (a worker_init) in each worker.
INITS = 0


def setup() -> None:
    global INITS
    INITS += 1


def where() -> tuple[int, int]:
    return os.getpid(), threading.get_ident()


def load(x: int) -> tuple[int, tuple[int, int]]:
    return x, where()


def augment(pair: tuple[int, tuple[int, int]], rng: np.random.Generator) -> dict[str, Any]:
    x, loaded = pair
    return {"x": x, "loaded": loaded, "augmented": where(), "draw": int(rng.integers(1 << 30))}


def inits(pair: tuple[int, tuple[int, int]]) -> tuple[int, int]:
    return pair[0], INITS


def fails_at_7(x: int) -> int:
    if x == 7:
        raise ValueError("seven is bad")
    return x


def pipeline(backend: str, n: int = 200, **options: Any) -> hr.Pipeline[dict[str, Any]]:
    return (
        hr.range(n)
        .map(load, workers=2, backend=backend, **options)
        .random_map(augment, seed=5, workers=2, backend=backend, **options)
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_both_calls_run_on_the_same_worker_with_the_draws_of_the_stages_apart(backend):
    joined = list(pipeline(backend))
    apart = list(hr.range(200).map(load).random_map(augment, seed=5))
    assert [r["x"] for r in joined] == list(range(200))
    assert [r["draw"] for r in joined] == [r["draw"] for r in apart]
    assert all(r["loaded"] == r["augmented"] for r in joined)
    if backend == "process":
        assert {r["loaded"][0] for r in joined} != {os.getpid()}


@pytest.mark.parametrize("chunk_size", [1, 3, 64])
def test_results_are_the_same_for_every_task_size(chunk_size):
    for backend in BACKENDS:
        got = list(pipeline(backend, n=100, chunk_size=chunk_size))
        assert [(r["x"], r["draw"]) for r in got] == [
            (r["x"], r["draw"]) for r in hr.range(100).map(load).random_map(augment, seed=5)
        ]


def fitting(backend: str) -> dict[str, Any]:
    """On ray, actors of half a CPU: two pools of two fit the tests' cluster of two CPUs."""
    return {"resources": {"num_cpus": 0.5}} if backend == "ray" else {}


@pytest.mark.parametrize("backend", BACKENDS)
def test_stages_that_differ_run_apart(backend):
    # Other worker counts, or an error policy (whose drops would shift the indices
    # of the stage after it): each stage keeps its own pool.
    fit = fitting(backend)
    for first in (
        {"workers": 1, **fit},
        {"workers": 2, "on_error": "skip", **fit},
        {"workers": 2, "ordered": False, **fit},
        *([{"workers": 2, "resources": {"num_cpus": 0.25}}] if backend == "ray" else []),
    ):
        parts = (
            hr.range(40)
            .map(load, backend=backend, **first)
            .random_map(augment, seed=5, workers=2, backend=backend, **fit)
        )
        with parts.iter() as run:
            got = sorted(run, key=lambda r: r["x"])
            rows = run.stats()
        assert [r["x"] for r in got] == list(range(40))
        assert rows[1].get("workers") == first["workers"]  # a pool of its own
        if backend != "thread":  # other processes: other process ids
            assert all(r["loaded"][0] != r["augmented"][0] for r in got)
        parts.close()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("failing", [1, 2])
def test_an_error_names_the_stage_it_was_raised_in_and_the_element(backend, failing):
    fns = [fails_at_7, str] if failing == 1 else [abs, fails_at_7]
    joined = hr.range(20).map(fns[0], workers=2, backend=backend)
    joined = joined.map(fns[1], workers=2, backend=backend)
    with pytest.raises(ValueError, match="seven is bad") as caught:
        list(joined)
    ours = [n for n in caught.value.__notes__ if n.startswith("headrace: raised")]
    assert ours == [
        f"headrace: raised in stage {failing} {joined.stages[failing].name!r} on its "
        "input element 7 (0-based)"
    ]


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_stage_keeps_its_row_and_the_pool_is_the_last_ones(backend):
    with pipeline(backend).iter() as run:
        list(run)
        rows = run.stats()
    assert [(r["items_in"], r["items_out"]) for r in rows] == [(0, 200), (200, 200), (200, 200)]
    assert "workers" not in rows[1]
    assert rows[2]["workers"] == 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_state_taken_mid_run_resumes_with_the_next_element(backend):
    # A state taken inside joined stages resumes them apart: two pools at once.
    fit = fitting(backend)
    shuffled = (
        hr.range(300)
        .shuffle(50, seed=1)
        .map(load, workers=2, backend=backend, **fit)
        .random_map(augment, seed=5, workers=2, backend=backend, **fit)
    )
    whole = [(r["x"], r["draw"]) for r in shuffled.iter(epoch=0)]
    for stop in (1, 77, 299):
        with shuffled.iter(epoch=0) as run:
            head = [next(run) for _ in range(stop)]
            state = run.state()
        with shuffled.iter(state=state) as resumed:
            rest = list(resumed)
        got = [(r["x"], r["draw"]) for r in head + rest]
        assert got == whole


def test_kept_workers_serve_the_joined_stages_and_init_runs_once():
    joined = (
        hr.range(60)
        .map(load, workers=2, backend="process", worker_init=setup)
        .map(inits, workers=2, backend="process")
    )
    try:
        first, second = list(joined), list(joined)
        assert [x for x, _ in first] == list(range(60))
        assert {count for _, count in first + second} == {1}
    finally:
        joined.close()
