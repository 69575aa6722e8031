"""zip, concat, interleave and repeat against builtins and a reference of tf.data."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import headrace as hr

LAWS = settings(max_examples=150, deadline=None)

LISTS = st.lists(st.integers(), max_size=20)

# -- zip ------------------------------------------------------------------------------


@LAWS
@given(st.lists(LISTS, min_size=1, max_size=4))
def test_zip_equals_builtin_zip(parts: list[list[int]]) -> None:
    expected = list(zip(*parts, strict=False))
    assert list(hr.zip(*parts)) == expected
    assert list(hr.from_iterable(parts[0]).zip(*parts[1:])) == expected
    pipelines = [hr.from_iterable(part) for part in parts]
    assert list(hr.zip(*pipelines)) == expected
    assert len(hr.zip(*pipelines)) == len(expected)


@LAWS
@given(st.lists(LISTS, min_size=2, max_size=4))
def test_strict_zip_raises_when_lengths_differ(parts: list[list[int]]) -> None:
    zipped = hr.zip(*parts, strict=True)
    if len({len(part) for part in parts}) == 1:
        assert list(zipped) == list(zip(*parts, strict=True))
        return
    with pytest.raises(ValueError, match=r"zip\(\) argument") as caught:
        list(zipped)
    assert any(
        note.startswith("headrace: raised in stage 0 'zip(") for note in caught.value.__notes__
    )


def test_strict_zip_as_a_method() -> None:
    with pytest.raises(ValueError, match="shorter"):
        list(hr.range(3).zip([1, 2], strict=True))
    with pytest.raises(ValueError, match="longer"):
        list(hr.range(3).zip([1, 2, 3, 4], strict=True))
    assert list(hr.range(2).zip("ab", strict=True)) == [(0, "a"), (1, "b")]


def test_zip_with_an_endless_pipeline_stops_at_the_finite_one() -> None:
    zipped = hr.range(3).zip(hr.range(10).repeat())
    assert list(zipped) == [(0, 0), (1, 1), (2, 2)]
    assert len(zipped) == 3


def test_zip_reruns_its_parts_every_epoch() -> None:
    zipped = hr.zip(hr.range(3), hr.from_generator(lambda: iter("abc")))
    assert list(zipped) == list(zipped) == [(0, "a"), (1, "b"), (2, "c")]


# -- concat ---------------------------------------------------------------------------


@LAWS
@given(st.lists(LISTS, min_size=1, max_size=4))
def test_concat_equals_chain(parts: list[list[int]]) -> None:
    expected = list(itertools.chain(*parts))
    assert list(hr.concat(*parts)) == expected
    joined = hr.from_iterable(parts[0]).concat(*(hr.from_iterable(p) for p in parts[1:]))
    assert list(joined) == expected
    assert len(joined) == len(expected)


def test_concat_length_is_unknown_or_endless_when_a_part_is() -> None:
    with pytest.raises(TypeError, match="not known"):
        len(hr.range(3).concat(hr.range(3).filter(bool)))
    with pytest.raises(TypeError, match="endless"):
        len(hr.range(3).concat(hr.range(3).repeat()))
    assert list(hr.range(2).concat(hr.range(5).repeat()).take(5)) == [0, 1, 0, 1, 2]


# -- interleave -----------------------------------------------------------------------


def reference_interleave(
    elements: Iterable[Any],
    fn: Callable[[Any], Iterable[Any]],
    cycle_length: int,
    block_length: int,
) -> list[Any]:
    """A transcription of tf.data's InterleaveDataset iterator loop."""
    inputs = iter(elements)
    current: list[Iterator[Any] | None] = [None] * cycle_length
    cycle_index = block_index = open_count = 0
    end_of_input = False
    out: list[Any] = []

    def advance() -> None:
        nonlocal cycle_index, block_index
        block_index = 0
        cycle_index = (cycle_index + 1) % cycle_length

    while not end_of_input or open_count > 0:
        slot = current[cycle_index]
        if slot is not None:
            if block_index < block_length:
                item = next(slot, _END)
                if item is not _END:
                    block_index += 1
                    out.append(item)
                    continue
                current[cycle_index] = None
                open_count -= 1
            advance()
        elif not end_of_input:
            element = next(inputs, _END)
            if element is _END:
                end_of_input = True
            else:
                current[cycle_index] = iter(fn(element))
                open_count += 1
        else:
            advance()
    return out


_END = object()


def test_interleave_matches_the_tf_data_documentation() -> None:
    out = list(hr.range(1, 6).interleave(lambda x: [x] * 6, cycle_length=2, block_length=4))
    documented = [1, 1, 1, 1, 2, 2, 2, 2, 1, 1, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 3, 3, 4, 4]
    documented += [5, 5, 5, 5, 5, 5]
    assert out == documented
    assert reference_interleave(range(1, 6), lambda x: [x] * 6, 2, 4) == documented


@LAWS
@given(
    st.lists(st.lists(st.integers(), max_size=7), max_size=10),
    st.integers(1, 5),
    st.integers(1, 4),
)
def test_interleave_equals_reference(
    inner: list[list[int]], cycle_length: int, block_length: int
) -> None:
    # Elements are indexes into ``inner``, so inner iterables of every length (empty too)
    # come up in every order.
    fn = inner.__getitem__
    elements = list(range(len(inner)))
    expected = reference_interleave(elements, fn, cycle_length, block_length)
    p = hr.from_iterable(elements).interleave(
        fn, cycle_length=cycle_length, block_length=block_length
    )
    assert list(p) == expected
    assert sorted(expected) == sorted(itertools.chain.from_iterable(inner))


@LAWS
@given(st.lists(st.lists(st.integers(), max_size=5), max_size=8), st.integers(1, 4))
def test_interleave_with_cycle_length_one_is_flat_map(
    inner: list[list[int]], block_length: int
) -> None:
    elements = list(range(len(inner)))
    p = hr.from_iterable(elements).interleave(
        inner.__getitem__, cycle_length=1, block_length=block_length
    )
    assert list(p) == list(hr.from_iterable(elements).flat_map(inner.__getitem__))


def test_interleave_accepts_pipelines_and_reruns_them() -> None:
    p = hr.range(1, 4).interleave(lambda n: hr.range(n).map(lambda i: (n, i)), cycle_length=3)
    expected = reference_interleave(range(1, 4), lambda n: [(n, i) for i in range(n)], 3, 1)
    assert list(p) == list(p) == expected


def test_interleave_of_endless_inner_pipelines_is_lazy() -> None:
    p = hr.from_iterable("ab").interleave(lambda c: hr.from_iterable([c]).repeat(), cycle_length=2)
    assert list(p.take(5)) == ["a", "b", "a", "b", "a"]


@pytest.mark.parametrize(("cycle_length", "block_length"), [(0, 1), (1, 0)])
def test_interleave_arguments_are_checked(cycle_length: int, block_length: int) -> None:
    with pytest.raises(ValueError, match="_length must be at least 1"):
        hr.range(3).interleave(list, cycle_length=cycle_length, block_length=block_length)


# -- repeat ---------------------------------------------------------------------------


@LAWS
@given(LISTS, st.integers(0, 5))
def test_repeat_n_equals_list_times_n(elements: list[int], count: int) -> None:
    p = hr.from_iterable(elements).repeat(count)
    assert list(p) == elements * count
    assert len(p) == len(elements) * count


@LAWS
@given(st.lists(st.integers(), min_size=1, max_size=10), st.integers(0, 50))
def test_endless_repeat_then_take(elements: list[int], count: int) -> None:
    p = hr.from_iterable(elements).repeat()
    assert list(p.take(count)) == (elements * (count // len(elements) + 1))[:count]
    assert len(p.take(count)) == count
    with pytest.raises(TypeError, match="endless"):
        len(p)


def test_repeat_restarts_the_source_every_time() -> None:
    calls: list[int] = []

    def numbers() -> Iterator[int]:
        calls.append(len(calls))
        yield from range(3)

    assert list(hr.from_generator(numbers).repeat(4)) == [0, 1, 2] * 4
    assert calls == [0, 1, 2, 3]


def test_endless_repeat_of_an_empty_pipeline_ends() -> None:
    p = hr.range(0).repeat()
    assert list(p) == []
    assert len(p) == 0
    assert list(hr.range(3).filter(lambda x: x > 5).repeat()) == []


def test_repeat_zero_is_empty_even_after_an_endless_repeat() -> None:
    p = hr.range(3).repeat().repeat(0)
    assert list(p) == []
    assert len(p) == 0


def test_nested_repeats_multiply() -> None:
    p = hr.range(2).repeat(2).repeat(3)
    assert list(p) == [0, 1] * 6
    assert len(p) == 12


def test_repeat_count_is_checked() -> None:
    with pytest.raises(ValueError, match="count must be at least 0"):
        hr.range(3).repeat(-1)


def test_repeat_with_a_count_goes_on_past_an_empty_repetition() -> None:
    batches = iter([[1], [], [3]])
    changing = hr.from_generator(lambda: next(batches))
    assert list(changing.repeat(3)) == [1, 3]  # tf.data gives the same


def test_zip_strict_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="strict"):
        hr.range(3).zip(hr.range(3), strict="yes")  # type: ignore[arg-type]
