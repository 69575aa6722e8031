"""``workers="auto"``: the stage measures which worker count pays and uses it.

The tuner's choices are tested on a clock the test moves (no wall-clock assertion);
the stages are tested with windows short enough that a run tries every count, for
what must not change: the elements, their order, the draws, the notes, the shutdown.

The module's functions go to worker processes by value (see test_process_map.py).
"""

from __future__ import annotations

import itertools
import sys
import threading
from typing import Any

import cloudpickle
import numpy as np
import pytest

import headrace as hr
from headrace.parallel._drive import Tuner
from headrace.parallel.threads import usable_cores

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.timeout(60)

BACKENDS = ["thread", "process"]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def measure(tuner: Tuner, clock: Clock, rate: float) -> int | None:
    """One window at ``rate`` elements a second: the tuner's answer at its end."""
    assert tuner.handed(0) is None  # the first result at this count opens the window
    clock.now += 1.01 * Tuner.PROBE_S
    return tuner.handed(round(rate * 1.01 * Tuner.PROBE_S))


def test_the_tuner_measures_each_candidate_and_keeps_the_fewest_that_are_as_fast():
    clock = Clock()
    tuner = Tuner(8, clock=clock)
    assert tuner.active == 8
    rates = {8: 1000.0, 4: 980.0, 1: 400.0, 0: 100.0}
    assert measure(tuner, clock, 1.0) is None  # the run's first window: not counted
    assert tuner.rates == {}
    seen = [8]
    for _ in range(4):
        changed = measure(tuner, clock, rates[tuner.active])
        if changed is not None:
            seen.append(changed)
    assert seen == [8, 4, 1, 0, 4]  # 4 is within 5% of 8: fewer workers, as fast
    assert tuner.rates == pytest.approx(rates, rel=0.02)
    assert tuner.describe() == "auto: 4 of 8 (0: 99/s, 1: 403/s, 4: 977/s, 8: 1,003/s)"


def test_the_tuner_holds_its_choice_then_measures_the_neighbours():
    clock = Clock()
    tuner = Tuner(2, clock=clock)
    rates = {2: 500.0, 1: 900.0, 0: 300.0}
    while not tuner.rates.keys() >= rates.keys():
        measure(tuner, clock, rates[tuner.active])
    assert tuner.active == 1
    for _ in range(Tuner.HOLD - 1):
        assert measure(tuner, clock, rates[1]) is None  # held
    rates[2] = 2000.0  # the work changed: two workers pay now
    tried = {measure(tuner, clock, rates[tuner.active]) for _ in range(4)}
    assert 2 in tried
    assert tuner.active == 2


def test_the_tuner_never_runs_inline_when_told_not_to():
    clock = Clock()
    tuner = Tuner(2, inline=False, clock=clock)
    for _ in range(6):
        measure(tuner, clock, 10.0 if tuner.active else 1e9)
        assert tuner.active >= 1


def test_a_later_run_goes_on_from_the_earlier_choice():
    clock = Clock()
    tuner = Tuner(4, clock=clock)
    rates = {4: 100.0, 2: 100.0, 1: 100.0, 0: 10.0}
    while not tuner.rates.keys() >= rates.keys():
        measure(tuner, clock, rates[tuner.active])
    assert tuner.active == 1  # the fewest as fast
    tuner.restart()  # the stage's next run (epoch)
    assert tuner.active == 1
    before = dict(tuner.rates)
    assert measure(tuner, clock, 1.0) is None  # its first window: not counted
    assert tuner.rates == before
    answers = [measure(tuner, clock, 100.0) for _ in range(Tuner.HOLD + 1)]
    assert answers[: Tuner.HOLD - 2] == [None] * (Tuner.HOLD - 2)  # still held
    assert 2 in answers[Tuner.HOLD - 2 :]  # then its neighbours, up first


def test_a_choice_each_look_confirms_is_kept_twice_as_long():
    clock = Clock()
    tuner = Tuner(2, clock=clock)
    rates = {0: 1000.0, 1: 500.0, 2: 400.0}
    while not tuner.rates.keys() >= rates.keys():
        measure(tuner, clock, rates[tuner.active])
    assert tuner.active == 0
    gaps, windows = [], 0
    for _ in range(400):
        windows += 1
        if measure(tuner, clock, rates[tuner.active]) == 1:  # a look at the neighbour
            gaps.append(windows)
            windows = 0
    assert len(gaps) >= 3
    assert all(later > 1.8 * earlier for earlier, later in itertools.pairwise(gaps))
    assert tuner.active == 0


# -- stages ----------------------------------------------------------------------------


@pytest.fixture
def short_windows(monkeypatch):
    """Windows of half a millisecond: every run tries every count, many times."""
    monkeypatch.setattr(Tuner, "PROBE_S", 0.0005)
    monkeypatch.setattr(Tuner, "HOLD", 2)


def noisy(x: int, rng: np.random.Generator) -> tuple[int, float]:
    return x * 3, float(rng.random())


@pytest.mark.parametrize("backend", BACKENDS)
def test_auto_gives_the_elements_and_draws_of_the_inline_run(backend, short_windows):
    pipeline = hr.range(3000).random_map(noisy, seed=3, workers="auto", backend=backend)
    inline = hr.range(3000).random_map(noisy, seed=3)
    try:
        for epoch in range(2):  # the second run starts from the first one's choice
            with pipeline.iter(epoch=epoch, stats=True) as run:
                assert list(run) == list(inline.iter(epoch=epoch))
                row = run.stats()[1]
            assert row["auto"].startswith(f"auto: {row['workers']} of {usable_cores()} (")
    finally:
        pipeline.close()
    assert "workers='auto'" in pipeline.stages[1].name


def fails_at(x: int) -> int:
    if x == 2500:
        raise ValueError("bad element")
    return x


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_error_names_its_element_whichever_count_ran_it(backend, short_windows):
    pipeline = hr.range(4000).map(fails_at, workers="auto", backend=backend)
    got: list[int] = []
    with pytest.raises(ValueError, match="bad element") as caught:
        got.extend(pipeline)
    assert got == list(range(2500))
    assert any("input element 2500 (0-based)" in note for note in caught.value.__notes__)


LOCAL = threading.local()


def ready() -> None:
    LOCAL.ready = True


def was_set_up(x: int) -> tuple[int, bool]:
    return x, getattr(LOCAL, "ready", False)


def test_with_worker_init_every_call_runs_on_a_worker(short_windows):
    # The consumer's thread never ran worker_init: auto does not run calls there.
    pipeline = hr.range(3000).map(was_set_up, workers="auto", worker_init=ready)
    assert all(done for _, done in pipeline)


@pytest.mark.parametrize("bad", ["many", "AUTO", ""])
def test_workers_takes_an_int_or_auto(bad):
    with pytest.raises(TypeError, match="'auto'"):
        hr.range(3).map(abs, workers=bad)


def held_at_none(pipeline: hr.Pipeline[Any]) -> hr.Pipeline[Any]:
    """``pipeline`` after one run, its last stage's tuner held at no workers."""
    list(pipeline.take(1))
    tuner = pipeline.stages[-1]._tuner  # type: ignore[attr-defined]
    tuner.active, tuner._plan, tuner._until = 0, [], float("inf")
    return pipeline


def picky(x: int) -> int:
    if x % 7 == 3:
        raise hr.ParseError(f"{x} is not wanted")
    return x


@pytest.mark.parametrize("backend", BACKENDS)
def test_with_no_workers_the_calls_run_as_the_consumer_takes_them(backend):
    plain = held_at_none(hr.range(5000).map(fails_at, workers="auto", backend=backend))
    got: list[int] = []
    with pytest.raises(ValueError, match="bad element") as caught:
        got.extend(plain)
    assert got == list(range(2500))
    assert any("input element 2500 (0-based)" in note for note in caught.value.__notes__)

    drawn = held_at_none(hr.range(3000).random_map(noisy, seed=3, workers="auto"))
    assert list(drawn.iter(epoch=4)) == list(hr.range(3000).random_map(noisy, seed=3).iter(epoch=4))

    skipping = held_at_none(
        hr.range(3000).map(picky, workers="auto", backend=backend, on_error="skip")
    )
    with skipping.iter(stats=True) as run:
        assert list(run) == [x for x in range(3000) if x % 7 != 3]
        row = run.stats()[1]
    assert (row["read"], row["rejected"]) == (3000, 429)
    assert row["auto"].startswith("auto: 0 of ")
    for pipeline in (plain, drawn, skipping):
        pipeline.close()
