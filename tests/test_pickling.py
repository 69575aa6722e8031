"""Pipelines are plain data: they pickle, and a copy runs like the original.

Worker processes and PyTorch DataLoader workers receive pipelines by pickling, so
every stage built from picklable functions must survive the trip.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import headrace as hr
from headrace import stages


def double(x: int) -> int:
    return 2 * x


def odd(x: int) -> bool:
    return x % 2 == 1


def pair(x: int) -> tuple[int, int]:
    return (x, x + 1)


def add(a: int, b: int) -> int:
    return a + b


def spread(x: int) -> list[int]:
    return [x] * (x % 3)


def negate() -> Any:
    while True:
        x = yield
        yield -x


def passthrough(items: Any, factor: int) -> Any:
    for item in items:
        yield item * factor


def lines_of(n: int) -> hr.Pipeline[int]:
    return hr.range(n)


EVERY_STAGE = [
    lambda: hr.range(20).map(double).filter(odd),
    lambda: hr.range(20).map(pair).starmap(add).tap(print),
    lambda: hr.range(20).flat_map(spread).enumerate(1),
    lambda: hr.range(20).scan(add, 0).take(7).skip(2),
    lambda: hr.range(20).take_while(odd).drop_while(odd),
    lambda: hr.range(20).batch(3, drop_remainder=True).unbatch(),
    lambda: hr.from_iterable([[1], [2, 3]]).padded_batch(2, padding_value=-1),
    lambda: hr.range(20).window(4, shift=2).shuffle(5, seed=3),
    lambda: hr.range(5).repeat(2).zip(hr.range(100, 110)).concat([(0, 0)]),
    lambda: hr.range(6).interleave(lines_of, cycle_length=2, block_length=2),
    lambda: hr.range(5).pipe(passthrough, 3).coroutine(negate).cache(),
    lambda: hr.from_generator(range, 4).concat(hr.from_iterable((9, 8))),
]


def as_plain(items: list[Any]) -> list[Any]:
    return [x.tolist() if isinstance(x, np.ndarray) else x for x in items]


@pytest.mark.parametrize("build", EVERY_STAGE)
def test_a_pickled_pipeline_runs_like_the_original(build: Any) -> None:
    original = build()
    copy = pickle.loads(pickle.dumps(original))
    assert repr(copy).replace("<lambda>", "") == repr(original).replace("<lambda>", "")
    assert as_plain(list(copy.iter(epoch=0))) == as_plain(list(original.iter(epoch=0)))


def test_a_lambda_stage_fails_to_pickle_with_pickles_own_error() -> None:
    # Plain pickle cannot send lambdas; the process backend will use cloudpickle.
    with pytest.raises((pickle.PicklingError, AttributeError)):
        pickle.dumps(hr.range(3).map(lambda x: x))


def test_the_epoch_count_travels_with_the_copy() -> None:
    shuffled = hr.range(50).shuffle(50, seed=1)
    first = list(shuffled)  # epoch 0
    copy = pickle.loads(pickle.dumps(shuffled))
    # The copy goes on with epoch 1: a worker that receives the pipeline anew every
    # epoch must not replay epoch 0's order.
    assert list(copy) == list(shuffled.iter(epoch=1)) != first


CALLS: list[int] = []


def record(x: int) -> None:
    CALLS.append(x)


def test_a_memory_cache_is_not_shipped_but_a_file_cache_is_shared(tmp_path: Path) -> None:
    CALLS.clear()
    in_memory = hr.range(3).tap(record).cache()
    assert list(in_memory) == [0, 1, 2]
    assert list(in_memory) == [0, 1, 2]
    assert CALLS == [0, 1, 2]
    copy = pickle.loads(pickle.dumps(in_memory))
    assert list(copy) == [0, 1, 2]
    assert CALLS == [0, 1, 2, 0, 1, 2]  # the copy filled a cache of its own

    on_disk = hr.range(3).map(double).cache(tmp_path / "cache.pkl")
    assert list(on_disk) == [0, 2, 4]
    assert list(pickle.loads(pickle.dumps(on_disk))) == [0, 2, 4]


def test_standalone_stage_functions_are_lazy_iterators() -> None:
    # Like toolz: a stage function returns an iterator, never a materialised list.
    for result in (stages.map([1], double), stages.batch([1], 1), stages.shuffle([1], 1)):
        assert type(result) is not list
        assert iter(result) is result


def test_kept_objects_travel_as_references_one_by_one() -> None:
    from headrace._pickling import dumps, loads

    def first(x: int) -> int:
        return x + 1

    def second(x: int) -> int:
        return x * 2

    # The receiver's own objects stand in for the sender's, each by its position.
    payload = dumps([second, first, 3, (first,)], kept=(first, second))
    assert loads(payload, kept=(len, abs)) == [abs, len, 3, (len,)]
    assert loads(dumps([first], kept=first), kept=abs) == [abs]
    with pytest.raises(pickle.UnpicklingError, match="unknown reference"):
        loads(dumps([first, second], kept=(first, second)), kept=(len,))


def test_an_error_noted_in_a_worker_keeps_the_scope_of_its_chain() -> None:
    from headrace.errors import Scope, StageLabel, annotate

    scope = Scope()
    label = StageLabel("stage 1 'map(f)'", scope)
    copy = pickle.loads(pickle.dumps(label))  # as a joined call takes it to a worker
    assert copy == label
    assert copy.scope is scope  # within this process: the same object

    error = ValueError("bad")
    annotate(error, copy, 3)
    back = pickle.loads(pickle.dumps(error))  # the error coming back
    annotate(back, StageLabel("stage 2 'map(g)'", scope), 3)  # noted already: kept
    assert back.__notes__ == [
        "headrace: raised in stage 1 'map(f)' on its input element 3 (0-based)"
    ]
