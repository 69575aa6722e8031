"""Resuming without replay: a seekable source and stages that map output counts to input
counts open where the saved run stood, computing nothing it had already handed out."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

import headrace as hr

pytestmark = pytest.mark.usefixtures("nothing_left_running")


class Pulls:
    """Counts the elements taken from the source (a tap right after it)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, _: Any) -> None:
        self.count += 1


def same(a: Any, b: Any) -> bool:
    if isinstance(a, tuple | list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, np.ndarray | np.generic):
        return bool(np.array_equal(a, b))
    return bool(a == b)


def noisy(x: int, rng: np.random.Generator) -> tuple[int, int]:
    return x, int(rng.integers(1_000))


SOURCES = {
    "range": lambda: hr.range(3, 200, 2),
    "list": lambda: hr.from_iterable([f"item {i}" for i in range(97)]),
    "array": lambda: hr.from_iterable(np.arange(240).reshape(80, 3)),
    "global_shuffle": lambda: hr.range(150).global_shuffle(seed=4),
}
STAGES = {
    "map": lambda p: p.map(repr),
    "random_map": lambda p: p.random_map(noisy, seed=2),
    "random_map on threads": lambda p: p.random_map(noisy, seed=2, workers=2),
    "map on threads": lambda p: p.map(repr, workers=2),
    "batch": lambda p: p.batch(7),
    "padded_batch": lambda p: p.map(lambda x: np.zeros(len(repr(x)))).padded_batch(4),
    "take, skip, enumerate": lambda p: p.skip(5).take(60).enumerate(start=10),
    "prefetch": lambda p: p.map(repr).batch(3).prefetch(2),
}


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("stage", STAGES)
def test_a_seekable_pipeline_resumes_without_replaying(source: str, stage: str) -> None:
    pulls = Pulls()
    pipeline = STAGES[stage](SOURCES[source]().tap(pulls))
    full = list(pipeline.iter(epoch=2))
    whole_epoch = pulls.count
    for position in (1, len(full) // 2, len(full)):
        run = pipeline.iter(epoch=2)
        taken = [next(run) for _ in range(position)]
        state = json.loads(json.dumps(run.state()))
        run.close()
        pulls.count = 0
        rest = list(pipeline.iter(state=state))
        assert same(taken + rest, full), (source, stage, position)
        # A replay reads the whole epoch again; a seek reads only what comes after.
        assert pulls.count < whole_epoch, (pulls.count, whole_epoch, position)
        if position == len(full):
            assert rest == []


def test_a_filter_falls_back_to_replay_and_stays_exact() -> None:
    pulls = Pulls()
    pipeline = hr.range(100).tap(pulls).filter(lambda x: x % 3).batch(4)
    run = pipeline.iter(epoch=0)
    taken = [next(run) for _ in range(10)]
    state = run.state()
    run.close()
    pulls.count = 0
    rest = list(pipeline.iter(state=state))
    assert pulls.count == 100  # the epoch was read again from its start
    assert same(taken + rest, list(pipeline.iter(epoch=0)))


def test_a_position_past_the_end_of_a_known_length_is_refused() -> None:
    pipeline = hr.range(10).map(str)
    run = pipeline.iter(epoch=0)
    next(run)
    state = {**run.state(), "position": 11}
    with pytest.raises(ValueError, match="at element 11 of epoch 0: it yields only 10"):
        pipeline.iter(state=state)


def test_resuming_deep_into_a_long_epoch_starts_at_once() -> None:
    pulls = Pulls()
    pipeline = hr.range(10**12).tap(pulls).map(lambda x: x * 2).batch(1000)
    run = pipeline.iter(epoch=0)
    next(run)
    state = {**run.state(), "position": 10**8}
    run.close()
    pulls.count = 0
    resumed = pipeline.iter(state=state)
    assert next(resumed)[0] == 2 * 10**11
    resumed.close()
    assert pulls.count == 1000  # one batch, not 10**11 elements replayed


@pytest.mark.parametrize("seekable", [True, False], ids=["seek", "replay"])
def test_a_state_resumes_the_same_pipeline_on_other_workers(seekable: bool) -> None:
    def build(**pool: Any) -> hr.Pipeline[Any]:
        source = hr.range(60) if seekable else hr.range(60).shuffle(9)
        return (
            source.map(abs, **pool)
            .random_map(noisy, **pool)
            .batch(4)
            .prefetch(pool.get("workers", 1) + 1)
            .with_seed(5)
        )

    saved = build(workers=3)
    run = saved.iter(epoch=1)
    taken = [next(run) for _ in range(6)]
    state = json.loads(json.dumps(run.state()))
    run.close()
    full = list(build().iter(epoch=1))
    for pool in ({}, {"workers": 2}, {"workers": 2, "backend": "process"}):
        assert same(taken + list(build(**pool).iter(state=state)), full), pool
    # What the stages compute is still checked: another function is another pipeline.
    other = hr.range(60).map(abs).random_map(noisy, seed=1).batch(4).prefetch(2).with_seed(5)
    with pytest.raises(ValueError, match="taken from another pipeline"):
        other.iter(state=state)
