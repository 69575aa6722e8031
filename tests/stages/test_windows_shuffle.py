"""window against a reference of tf.data's rule; shuffle's permutation and seeding laws."""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import headrace as hr
from headrace import stages

LAWS = settings(max_examples=150, deadline=None)

# -- window ---------------------------------------------------------------------------


def reference_windows(
    elements: list[Any], size: int, shift: int | None, drop_remainder: bool
) -> list[tuple[Any, ...]]:
    """tf.data's windows: start at 0, shift, 2*shift, ...; short ones at the end."""
    step = size if shift is None else shift
    windows = [tuple(elements[start : start + size]) for start in range(0, len(elements), step)]
    if drop_remainder:
        windows = [w for w in windows if len(w) == size]
    return windows


@LAWS
@given(
    st.lists(st.integers(), max_size=30),
    st.integers(1, 8),
    st.none() | st.integers(1, 10),
    st.booleans(),
)
def test_window_equals_reference(
    elements: list[int], size: int, shift: int | None, drop_remainder: bool
) -> None:
    expected = reference_windows(elements, size, shift, drop_remainder)
    p = hr.from_iterable(elements).window(size, shift=shift, drop_remainder=drop_remainder)
    assert list(p) == expected
    assert len(p) == len(expected)
    assert (
        list(stages.window(elements, size, shift=shift, drop_remainder=drop_remainder)) == expected
    )


def test_window_examples() -> None:
    assert list(hr.range(7).window(3, shift=2)) == [(0, 1, 2), (2, 3, 4), (4, 5, 6), (6,)]
    assert list(hr.range(5).window(3, shift=1)) == [(0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4), (4,)]
    assert list(hr.range(7).window(2, shift=5)) == [(0, 1), (5, 6)]
    assert list(hr.range(6).window(2)) == [(0, 1), (2, 3), (4, 5)]
    assert list(hr.range(2).window(3, drop_remainder=True)) == []


def test_window_on_an_endless_source_is_lazy() -> None:
    assert list(hr.range(3).repeat().window(2, shift=1).take(3)) == [(0, 1), (1, 2), (2, 0)]
    with pytest.raises(TypeError, match="endless"):
        len(hr.range(3).repeat().window(2))


@pytest.mark.parametrize(
    ("size", "shift", "name"), [(0, None, "size"), (2, 0, "shift"), (2, -1, "shift")]
)
def test_window_arguments_are_checked(size: int, shift: int | None, name: str) -> None:
    with pytest.raises(ValueError, match=f"{name} must be at least 1"):
        hr.range(3).window(size, shift=shift)


@pytest.mark.parametrize("value", ["no", "False", 1, 0, None])
def test_window_drop_remainder_must_be_a_bool(value: Any) -> None:
    with pytest.raises(TypeError, match="drop_remainder must be a bool"):
        hr.range(3).window(2, drop_remainder=value)
    with pytest.raises(TypeError, match="drop_remainder must be a bool"):
        stages.window(range(3), 2, drop_remainder=value)


def test_window_drop_remainder_accepts_numpy_bools() -> None:
    import numpy as np

    assert list(hr.range(3).window(2, drop_remainder=np.bool_(True))) == [(0, 1)]
    assert list(hr.range(3).window(2, drop_remainder=np.bool_(False))) == [(0, 1), (2,)]


# -- shuffle --------------------------------------------------------------------------

ELEMENTS = st.lists(st.integers(0, 20), max_size=60)
BUFFERS = st.integers(1, 70)
SEEDS = st.none() | st.integers(0, 2**32)


@LAWS
@given(ELEMENTS, BUFFERS, SEEDS)
def test_shuffle_is_a_permutation(elements: list[int], buffer_size: int, seed: int | None) -> None:
    p = hr.from_iterable(elements).shuffle(buffer_size, seed=seed)
    out = list(p)
    assert Counter(out) == Counter(elements)
    assert len(p) == len(elements)


@LAWS
@given(ELEMENTS, BUFFERS, st.integers(0, 2**32), st.integers(0, 5))
def test_shuffle_is_deterministic_per_seed_and_epoch(
    elements: list[int], buffer_size: int, seed: int, epoch: int
) -> None:
    p = hr.from_iterable(elements).shuffle(buffer_size, seed=seed)
    again = hr.from_iterable(elements).shuffle(buffer_size, seed=seed)
    first = list(p.iter(epoch=epoch))
    assert list(p.iter(epoch=epoch)) == first
    assert list(again.iter(epoch=epoch)) == first
    assert list(stages.shuffle(elements, buffer_size, seed=seed, epoch=epoch)) == first


@LAWS
@given(st.lists(st.integers(), max_size=60), SEEDS)
def test_shuffle_with_buffer_of_one_is_identity(elements: list[int], seed: int | None) -> None:
    assert list(hr.from_iterable(elements).shuffle(1, seed=seed)) == elements


@LAWS
@given(st.integers(0, 60), BUFFERS, SEEDS)
def test_shuffle_only_reaches_buffer_size_ahead(n: int, buffer_size: int, seed: int | None) -> None:
    # Output i is chosen after reading at most input i + buffer_size - 1.
    out = list(hr.range(n).shuffle(buffer_size, seed=seed))
    assert all(x <= i + buffer_size - 1 for i, x in enumerate(out))


@pytest.mark.parametrize("seed", [0, 1, 7, 2**31])
def test_seeded_shuffle_reshuffles_every_epoch(seed: int) -> None:
    p = hr.range(100).shuffle(100, seed=seed)
    first, second, third = list(p), list(p), list(p)
    assert sorted(first) == sorted(second) == list(range(100))
    assert first != list(range(100))
    assert first != second != third != first
    # Successive runs are epochs 0, 1, 2, ... of the same reproducible sequence.
    assert [list(p.iter(epoch=k)) for k in range(3)] == [first, second, third]
    fresh = hr.range(100).shuffle(100, seed=seed)
    assert list(fresh) == first


def test_every_buffered_element_can_come_out_first() -> None:
    # The first output is drawn uniformly from the first buffer_size elements: over
    # 200 seeds each of 10 is missed with probability 0.9 ** 200 (and seeds are fixed).
    firsts = {next(iter(stages.shuffle(range(100), 10, seed=seed))) for seed in range(200)}
    assert firsts == set(range(10))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_small_buffer_still_mixes_the_stream(seed: int) -> None:
    out = list(hr.range(1000).shuffle(50, seed=seed))
    ascending = sum(a < b for a, b in itertools.pairwise(out))
    # About half of neighbouring pairs ascend in a mixed stream; almost all in an
    # unmixed one.
    assert 350 < ascending < 650


def test_different_seeds_give_different_orders() -> None:
    orders = {tuple(hr.range(50).shuffle(50, seed=seed).iter(epoch=0)) for seed in range(5)}
    assert len(orders) == 5


def test_unseeded_shuffle_draws_a_new_order_every_run() -> None:
    p = hr.range(200).shuffle(200)
    # Two equal orders of 200 elements from fresh entropy: chance 1 / 200!.
    assert list(p.iter(epoch=0)) != list(p.iter(epoch=0))


def test_shuffle_before_repeat_reshuffles_every_repetition() -> None:
    p = hr.range(30).shuffle(30, seed=3).repeat(3)
    out = list(p)
    rounds = [out[0:30], out[30:60], out[60:90]]
    assert all(sorted(r) == list(range(30)) for r in rounds)
    assert len({tuple(r) for r in rounds}) == 3
    assert list(p.iter(epoch=0)) == out


def test_shuffle_after_repeat_mixes_across_repetitions() -> None:
    out = list(hr.range(10).repeat(3).shuffle(30, seed=0))
    assert Counter(out) == Counter(list(range(10)) * 3)
    assert out[:10] != list(range(10))


def test_shuffle_of_an_endless_source_is_lazy() -> None:
    out = list(hr.range(5).repeat().shuffle(8, seed=0).take(12))
    assert len(out) == 12
    assert set(out) <= set(range(5))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"buffer_size": 0}, ValueError, "buffer_size must be at least 1"),
        ({"buffer_size": 2.5}, TypeError, "buffer_size must be an int"),
        ({"buffer_size": 4, "seed": -1}, ValueError, "seed must be at least 0"),
        ({"buffer_size": 4, "seed": "a"}, TypeError, "seed must be an int"),
    ],
)
def test_shuffle_arguments_are_checked(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        hr.range(3).shuffle(**kwargs)
