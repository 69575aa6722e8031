"""batch, padded_batch and unbatch: collation rules, padding and error messages."""

from __future__ import annotations

import math
from collections import namedtuple
from typing import Any

import numpy as np
import pytest

import headrace as hr
from headrace import stages

Pair = namedtuple("Pair", ["image", "label"])


class Thing:
    """An object collate knows nothing about."""


def first_batch(elements: list[Any], size: int | None = None, **options: Any) -> Any:
    return next(stages.batch(elements, size or len(elements), **options))


# -- collation ------------------------------------------------------------------------


def test_numbers_stack_into_one_array() -> None:
    ints = first_batch([1, 2, 3])
    assert isinstance(ints, np.ndarray)
    assert ints.dtype.kind == "i"
    assert ints.tolist() == [1, 2, 3]
    floats = first_batch([1.5, 2, np.float32(3)])
    assert floats.dtype.kind == "f"
    assert floats.tolist() == [1.5, 2.0, 3.0]
    assert first_batch([True, False]).dtype == np.bool_


def test_arrays_and_lists_of_numbers_gain_a_leading_batch_axis() -> None:
    arrays = first_batch([np.zeros((2, 3)), np.ones((2, 3))])
    assert arrays.shape == (2, 2, 3)
    assert arrays[1].sum() == 6
    lists = first_batch([[1, 2], [3, 4], [5, 6]])
    assert isinstance(lists, np.ndarray)
    assert lists.tolist() == [[1, 2], [3, 4], [5, 6]]


def test_strings_and_bytes_become_object_arrays_of_the_exact_values() -> None:
    text = first_batch(["a", "bcd", "nul\x00"])
    assert text.dtype == object
    assert text.tolist() == ["a", "bcd", "nul\x00"]
    raw = first_batch([b"x", b"\x00yz\x00"])  # binary payloads keep their NUL bytes
    assert raw.dtype == object
    assert raw.tolist() == [b"x", b"\x00yz\x00"]
    tokens = first_batch([["a", "b"], ["c", "d\x00"]])
    assert tokens.dtype == object
    assert tokens.shape == (2, 2)
    assert tokens.tolist() == [["a", "b"], ["c", "d\x00"]]


def test_a_list_mixing_text_and_numbers_is_refused() -> None:
    with pytest.raises(TypeError, match="element 0 mixes text with other values"):
        first_batch([[1, "a"], [2, "b"]])


@pytest.mark.parametrize("empty", [(), {}])
def test_empty_tuples_and_mappings_are_refused(empty: Any) -> None:
    # Batching them would drop the batch axis, and unbatch could not restore the rows.
    with pytest.raises(ValueError, match="element 0 is an empty"):
        first_batch([empty, empty])


def test_tuples_and_dicts_keep_their_structure_recursively() -> None:
    elements = [({"a": 1, "b": (2.0, "p")}, [1, 2]), ({"a": 3, "b": (4.0, "q")}, [3, 4])]
    features, lists = first_batch(elements)
    assert list(features) == ["a", "b"]
    assert features["a"].tolist() == [1, 3]
    assert isinstance(features["b"], tuple)
    assert features["b"][0].tolist() == [2.0, 4.0]
    assert features["b"][1].tolist() == ["p", "q"]
    assert lists.tolist() == [[1, 2], [3, 4]]


def test_named_tuples_keep_their_type() -> None:
    out = first_batch([Pair(np.zeros(2), 0), Pair(np.ones(2), 1)])
    assert type(out) is Pair
    assert out.image.shape == (2, 2)
    assert out.label.tolist() == [0, 1]
    rows = list(stages.unbatch([out]))
    assert [type(row) for row in rows] == [Pair, Pair]
    assert [int(row.label) for row in rows] == [0, 1]


def test_other_objects_are_kept_as_lists() -> None:
    things = [Thing(), Thing()]
    out = first_batch(things)
    assert type(out) is list
    assert out == things
    assert first_batch([None, None]) == [None, None]
    labelled = first_batch([(things[0], 1), (things[1], 2)])
    assert labelled[0] == things
    assert labelled[1].tolist() == [1, 2]


def test_collate_none_yields_plain_lists() -> None:
    elements = [(1, "a"), (2, "b"), (3, "c")]
    assert list(hr.from_iterable(elements).batch(2, collate=None)) == [elements[:2], elements[2:]]


def test_custom_collate_receives_each_list() -> None:
    assert list(hr.range(5).batch(2, collate=sum)) == [1, 5, 4]


def test_collate_function_equals_a_batch_of_the_whole_list() -> None:
    elements = [(i, {"x": [i, i]}) for i in range(4)]
    direct = stages.collate(elements)
    batched = first_batch(elements)
    assert direct[0].tolist() == batched[0].tolist() == [0, 1, 2, 3]
    assert direct[1]["x"].tolist() == batched[1]["x"].tolist()


# -- collation errors -----------------------------------------------------------------


def test_ragged_arrays_point_to_padded_batch_and_the_element() -> None:
    elements = [np.zeros(2), np.zeros(2), np.zeros(3)]
    with pytest.raises(ValueError, match="padded_batch") as caught:
        first_batch(elements)
    message = str(caught.value)
    assert "element 2 has shape (3,)" in message
    assert "element 0 has shape (2,)" in message


def test_ragged_field_names_its_path() -> None:
    with pytest.raises(ValueError, match=r"at \['tokens'\]: element 1 has shape \(1,\)"):
        first_batch([{"tokens": [1, 2]}, {"tokens": [3]}])
    with pytest.raises(ValueError, match=r"at \[1\]: element 1 .*padded_batch"):
        first_batch([(0, np.zeros(2)), (1, np.zeros(3))])


def test_mixed_types_raise_type_error_naming_the_element() -> None:
    with pytest.raises(TypeError, match=r"element 1 is str 'a'.*element 0 \(int\)"):
        first_batch([1, "a"])
    with pytest.raises(TypeError, match=r"at \['y'\]: element 2 is NoneType None"):
        first_batch([{"y": 1.0}, {"y": 2.0}, {"y": None}])
    with pytest.raises(TypeError, match="element 1 is int but element 0 is str"):
        first_batch(["a", 1])


def test_mismatched_tuple_lengths_raise_value_error() -> None:
    with pytest.raises(
        ValueError, match="element 1 is a tuple of length 3 but element 0 is a tuple of length 2"
    ):
        first_batch([(1, 2), (1, 2, 3)])
    with pytest.raises(ValueError, match="element 1 is a int but element 0 is a tuple"):
        first_batch([(1, 2), 3])


def test_mismatched_dict_keys_raise_value_error() -> None:
    with pytest.raises(ValueError, match=r"element 1 is a mapping with keys \['a', 'c'\]"):
        first_batch([{"a": 1, "b": 2}, {"a": 1, "c": 2}])


def test_collation_errors_note_the_stage_and_the_batch() -> None:
    elements = [np.zeros(2)] * 5 + [np.zeros(3)]
    with pytest.raises(ValueError, match="padded_batch") as caught:
        list(hr.from_iterable(elements).batch(2))
    notes = caught.value.__notes__
    assert any("stage 1 'batch(2)'" in note for note in notes)
    assert any("collating batch 2 (its input elements 4 to 5, 0-based)" in n for n in notes)


# -- padded_batch ---------------------------------------------------------------------


def test_padded_batch_pads_to_the_longest_in_each_batch() -> None:
    elements = [[1], [2, 3], [4, 5, 6], [7]]
    batches = [b.tolist() for b in hr.from_iterable(elements).padded_batch(2)]
    assert batches == [[[1, 0], [2, 3]], [[4, 5, 6], [7, 0, 0]]]


def test_padded_batch_pads_every_dimension() -> None:
    out = next(stages.padded_batch([np.ones((1, 2)), np.ones((2, 1))], 2))
    assert out.shape == (2, 2, 2)
    assert out.tolist() == [[[1, 1], [0, 0]], [[1, 0], [1, 0]]]


def test_padded_batch_to_explicit_shapes() -> None:
    out = next(stages.padded_batch([[1], [2, 3]], 2, padded_shapes=(4,), padding_value=-1))
    assert out.tolist() == [[1, -1, -1, -1], [2, 3, -1, -1]]
    out = next(stages.padded_batch([np.ones((1, 2)), np.ones((2, 1))], 2, padded_shapes=[3, None]))
    assert out.shape == (2, 3, 2)


def test_padded_batch_per_field_shapes_and_values() -> None:
    elements = [{"a": [1], "b": [1, 2, 3], "n": 5}, {"a": [1, 2], "b": [4], "n": 6}]
    out = next(
        stages.padded_batch(
            elements,
            2,
            padded_shapes={"a": (4,), "b": (None,), "n": ()},
            padding_value={"a": -1, "b": 9, "n": 0},
        )
    )
    assert out["a"].tolist() == [[1, -1, -1, -1], [1, 2, -1, -1]]
    assert out["b"].tolist() == [[1, 2, 3], [4, 9, 9]]
    assert out["n"].tolist() == [5, 6]


def test_padded_batch_per_field_for_tuples() -> None:
    elements = [([1], "x"), ([1, 2], "yz")]
    tokens, names = next(
        stages.padded_batch(elements, 2, padded_shapes=((3,), ()), padding_value=(-1, ""))
    )
    assert tokens.tolist() == [[1, -1, -1], [1, 2, -1]]
    assert names.tolist() == ["x", "yz"]


def test_padded_batch_keeps_float_dtype() -> None:
    out = next(stages.padded_batch([[1.5], [2, 3]], 2))
    assert out.dtype.kind == "f"
    assert out.tolist() == [[1.5, 0.0], [2.0, 3.0]]


def test_padded_shapes_too_small_raise() -> None:
    with pytest.raises(
        ValueError, match=r"size 3 in dimension 0, larger than padded_shapes allows \(2\)"
    ):
        next(stages.padded_batch([[1], [1, 2, 3]], 2, padded_shapes=(2,)))


def test_padded_shapes_of_the_wrong_rank_raise() -> None:
    with pytest.raises(ValueError, match=r"padded_shapes \(2, 3\) has 2 dimensions"):
        next(stages.padded_batch([[1, 2]], 1, padded_shapes=(2, 3)))


def test_padded_batch_elements_of_different_rank_raise() -> None:
    with pytest.raises(ValueError, match="element 1 has 2 dimensions but element 0 has 1"):
        next(stages.padded_batch([np.zeros(2), np.zeros((2, 2))], 2))


def test_padded_shapes_of_the_wrong_type_raise_at_construction() -> None:
    with pytest.raises(TypeError, match="padded_shapes"):
        hr.range(3).padded_batch(2, padded_shapes=3)


def test_padded_batch_unbatches_to_padded_rows() -> None:
    rows = list(hr.from_iterable([[1], [2, 3]]).padded_batch(2).unbatch())
    assert [row.tolist() for row in rows] == [[1, 0], [2, 3]]


# -- sizes, remainders, lengths -------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 5, 6, 7, 12])
@pytest.mark.parametrize("size", [1, 3, 6])
@pytest.mark.parametrize("drop_remainder", [False, True])
def test_batch_sizes_and_length(n: int, size: int, drop_remainder: bool) -> None:
    p = hr.range(n).batch(size, drop_remainder=drop_remainder)
    sizes = [len(b) for b in p]
    whole, rest = divmod(n, size)
    expected = [size] * whole + ([rest] if rest and not drop_remainder else [])
    assert sizes == expected
    assert len(p) == len(expected)
    expected_count = n // size if drop_remainder else math.ceil(n / size)
    assert len(p) == expected_count


@pytest.mark.parametrize("drop_remainder", [False, True])
def test_padded_batch_length_and_remainder(drop_remainder: bool) -> None:
    p = hr.range(5).map(lambda i: [i] * i).padded_batch(2, drop_remainder=drop_remainder)
    assert len(p) == len(list(p)) == (2 if drop_remainder else 3)


def test_batch_length_unknown_after_filter_and_endless_after_repeat() -> None:
    with pytest.raises(TypeError, match="not known"):
        len(hr.range(10).filter(bool).batch(2))
    with pytest.raises(TypeError, match="endless"):
        len(hr.range(10).repeat().batch(2))


def test_batch_is_lazy_on_an_endless_source() -> None:
    batches = list(hr.range(3).repeat().batch(4).take(2))
    assert [b.tolist() for b in batches] == [[0, 1, 2, 0], [1, 2, 0, 1]]


@pytest.mark.parametrize("size", [0, -1])
def test_batch_size_must_be_positive(size: int) -> None:
    with pytest.raises(ValueError, match="size must be at least 1"):
        hr.range(3).batch(size)


def test_batch_collate_must_be_callable() -> None:
    with pytest.raises(TypeError, match="collate must be callable"):
        hr.range(3).batch(2, collate="stack")  # type: ignore[arg-type]


# -- unbatch --------------------------------------------------------------------------


def test_unbatch_splits_nested_structures() -> None:
    rows = list(
        stages.unbatch([{"x": np.arange(4).reshape(2, 2), "y": (np.array([7, 8]), ["a", "b"])}])
    )
    assert len(rows) == 2
    assert rows[1]["x"].tolist() == [2, 3]
    assert (int(rows[1]["y"][0]), rows[1]["y"][1]) == (8, "b")


def test_unbatch_rejects_what_is_not_a_batch() -> None:
    with pytest.raises(TypeError, match="a int is not a batch"):
        list(stages.unbatch([3]))
    with pytest.raises(ValueError, match="0-dimensional"):
        list(stages.unbatch([np.array(3)]))
    with pytest.raises(ValueError, match="fields have different lengths"):
        list(stages.unbatch([(np.zeros(2), np.zeros(3))]))


# -- array subclasses, datetimes, key order, drop_remainder ---------------------------


def test_ndarray_subclasses_stack_like_arrays(tmp_path: Any) -> None:
    path = tmp_path / "data.bin"
    mapped = np.memmap(path, dtype=np.float32, mode="w+", shape=(2, 3))
    mapped[:] = np.arange(6).reshape(2, 3)
    out = first_batch([mapped[0], mapped[1]])
    assert type(out) is np.ndarray
    assert out.shape == (2, 3)
    assert out.tolist() == [[0, 1, 2], [3, 4, 5]]
    del mapped


def test_masked_arrays_stack_keeping_their_masks() -> None:
    masked = np.ma.array([1, 2], mask=[False, True])
    out = first_batch([masked, np.array([3, 4])])
    assert isinstance(out, np.ma.MaskedArray)
    assert out.shape == (2, 2)
    assert out.mask.tolist() == [[False, True], [False, False]]
    assert out.data[1].tolist() == [3, 4]
    out = first_batch([np.array([3, 4]), masked])  # a masked array after a plain one
    assert out.mask.tolist() == [[False, False], [False, True]]


def test_datetimes_and_timedeltas_stack() -> None:
    days = first_batch([np.datetime64("2024-01-01"), np.datetime64("2024-01-02")])
    assert days.dtype == np.dtype("datetime64[D]")
    assert days[1] == np.datetime64("2024-01-02")
    spans = first_batch([np.timedelta64(1, "s"), np.timedelta64(2, "m")])
    assert spans.dtype.kind == "m"
    assert spans.tolist() == [np.timedelta64(1, "s").item(), np.timedelta64(120, "s").item()]
    nested = first_batch([{"t": [np.datetime64("2024")]}, {"t": [np.datetime64("2025")]}])
    assert nested["t"].shape == (2, 1)
    assert nested["t"].dtype.kind == "M"


@pytest.mark.parametrize(
    "elements",
    [
        [np.timedelta64(1, "s"), 5],
        [5, np.timedelta64(1, "s")],
        [np.datetime64("2024"), np.timedelta64(1, "s")],
        [1.5, np.datetime64("2024")],
    ],
)
def test_datetimes_do_not_mix_with_numbers_or_timedeltas(elements: list[Any]) -> None:
    with pytest.raises(TypeError, match=r"element 1 is .*does not batch with element 0"):
        first_batch(elements)


def test_an_element_0_that_cannot_stack_is_named_sensibly() -> None:
    with pytest.raises(TypeError) as caught:
        first_batch([np.void(b"ab"), np.void(b"cd")])
    message = str(caught.value)
    assert "element 0 is void" in message
    assert "with element 0" not in message
    assert "collate=None" in message


def test_dicts_with_keys_in_another_order_batch_in_the_first_order() -> None:
    out = first_batch([{"a": 1, "b": "x"}, {"b": "y", "a": 2}])
    assert list(out) == ["a", "b"]
    assert out["a"].tolist() == [1, 2]
    assert out["b"].tolist() == ["x", "y"]
    rows = list(stages.unbatch([out]))
    assert [(int(r["a"]), r["b"]) for r in rows] == [(1, "x"), (2, "y")]


def test_dicts_with_other_keys_are_still_refused_naming_element_and_keys() -> None:
    with pytest.raises(ValueError, match=r"element 2 is a mapping with keys \['a'\]"):
        first_batch([{"a": 1, "b": 2}, {"b": 2, "a": 1}, {"a": 1}])
    with pytest.raises(ValueError, match=r"element 1 .*keys \['b', 'a', 'c'\].*\['a', 'b'\]"):
        first_batch([{"a": 1, "b": 2}, {"b": 2, "a": 1, "c": 3}])


@pytest.mark.parametrize("value", ["no", 1, 0, None, [True]])
def test_drop_remainder_must_be_a_bool(value: Any) -> None:
    with pytest.raises(TypeError, match="drop_remainder must be a bool"):
        hr.range(5).batch(2, drop_remainder=value)
    with pytest.raises(TypeError, match="drop_remainder must be a bool"):
        hr.range(5).padded_batch(2, drop_remainder=value)
    with pytest.raises(TypeError, match="drop_remainder must be a bool"):
        stages.batch(range(5), 2, drop_remainder=value)


def test_drop_remainder_accepts_numpy_bools() -> None:
    assert len(hr.range(5).batch(2, drop_remainder=np.bool_(True))) == 2
    assert len(hr.range(5).batch(2, drop_remainder=np.bool_(False))) == 3
