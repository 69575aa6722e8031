"""Laws every stage obeys, checked with Hypothesis against plain-Python references.

unbatch after batch is the identity; take/skip/concat compose like list slicing; each
element-wise stage equals its ``itertools``/builtins counterpart; any run of fused
map/filter/tap stages equals applying the builtins one stage at a time, with or
without ``stats=True`` (which runs the stages unfused).
"""

from __future__ import annotations

import itertools
import math
from collections import namedtuple
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import headrace as hr
from headrace import stages

LAWS = settings(max_examples=150, deadline=None)

Point = namedtuple("Point", ["x", "y"])

# -- batch / unbatch ------------------------------------------------------------------

# A schema describes the structure shared by every element of one batch; elements are
# then drawn from it, so that a batch is always well-formed.
INT64 = st.integers(-(2**63), 2**63 - 1)
TEXT = st.text(max_size=5)
LEAF_SCHEMAS = st.one_of(
    st.sampled_from([("int",), ("float",), ("bool",), ("str",)]),
    st.tuples(
        st.just("array"),
        hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3),
        st.sampled_from(["int64", "float64", "bool"]),
    ),
)
# Containers are never empty: a batch of empty tuples or dicts holds no batch axis to
# split, so their row count cannot survive the round trip.
SCHEMAS = st.recursive(
    LEAF_SCHEMAS,
    lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=3).map(lambda c: ("tuple", tuple(c))),
        st.dictionaries(st.text(max_size=3), children, min_size=1, max_size=3).map(
            lambda d: ("dict", d)
        ),
        st.tuples(children, children).map(lambda c: ("point", c)),
    ),
    max_leaves=6,
)


def element_of(schema: tuple[Any, ...]) -> st.SearchStrategy[Any]:
    """Elements that all have the structure ``schema`` describes."""
    kind = schema[0]
    if kind == "int":
        return INT64
    if kind == "float":
        return st.floats(allow_nan=False)
    if kind == "bool":
        return st.booleans()
    if kind == "str":
        return TEXT
    if kind == "array":
        _, shape, dtype = schema
        return hnp.arrays(
            dtype, shape, elements={"allow_nan": False} if dtype == "float64" else None
        )
    if kind == "tuple":
        return st.tuples(*(element_of(child) for child in schema[1]))
    if kind == "point":
        return st.builds(Point, *(element_of(child) for child in schema[1]))
    assert kind == "dict"
    keys = list(schema[1])
    return st.tuples(*(element_of(schema[1][key]) for key in keys)).map(
        lambda values: dict(zip(keys, values, strict=True))
    )


@st.composite
def batchable(draw: st.DrawFn) -> list[Any]:
    """A list of elements sharing one random structure."""
    return draw(SCHEMAS.flatmap(lambda schema: st.lists(element_of(schema), max_size=25)))


def same(expected: Any, actual: Any) -> bool:
    """Structural equality that also checks container types and array shapes."""
    if isinstance(expected, np.ndarray):
        return isinstance(actual, np.ndarray | np.generic) and np.array_equal(expected, actual)
    if isinstance(expected, tuple):
        return (
            type(actual) is type(expected)
            and len(actual) == len(expected)
            and all(same(e, a) for e, a in zip(expected, actual, strict=True))
        )
    if isinstance(expected, dict):
        return (
            type(actual) is dict
            and list(actual) == list(expected)
            and all(same(expected[k], actual[k]) for k in expected)
        )
    return bool(actual == expected) and not isinstance(actual, np.ndarray)


@LAWS
@given(batchable(), st.integers(1, 30))
def test_unbatch_after_batch_is_identity(elements: list[Any], size: int) -> None:
    batched = hr.from_iterable(elements).batch(size)
    out = list(batched.unbatch())
    assert len(out) == len(elements)
    assert all(same(e, a) for e, a in zip(elements, out, strict=True))
    assert len(batched) == math.ceil(len(elements) / size) == len(list(batched))


@LAWS
@given(batchable(), st.integers(1, 30))
def test_unbatch_after_batch_with_drop_remainder_loses_only_the_tail(
    elements: list[Any], size: int
) -> None:
    kept = len(elements) - len(elements) % size
    out = list(stages.unbatch(stages.batch(elements, size, drop_remainder=True)))
    assert len(out) == kept
    assert all(same(e, a) for e, a in zip(elements[:kept], out, strict=True))


@LAWS
@given(st.lists(st.integers()), st.integers(1, 8))
def test_batch_without_collate_is_chunking(elements: list[int], size: int) -> None:
    chunks = [elements[i : i + size] for i in range(0, len(elements), size)]
    assert list(hr.from_iterable(elements).batch(size, collate=None)) == chunks
    assert list(stages.unbatch(chunks)) == elements


# -- take / skip / concat -------------------------------------------------------------

SIZES = st.integers(0, 40)


@LAWS
@given(st.lists(st.integers(), max_size=30), SIZES)
def test_take_then_skip_concatenate_to_the_whole(elements: list[int], n: int) -> None:
    p = hr.from_iterable(elements)
    assert list(p.take(n).concat(p.skip(n))) == elements
    assert list(p.take(n)) == elements[:n]
    assert list(p.skip(n)) == elements[n:]
    assert len(p.take(n)) == len(elements[:n])
    assert len(p.skip(n)) == len(elements[n:])


@LAWS
@given(st.lists(st.integers(), max_size=30), SIZES, SIZES)
def test_skip_composes_by_adding(elements: list[int], a: int, b: int) -> None:
    p = hr.from_iterable(elements)
    assert list(p.skip(a).skip(b)) == list(p.skip(a + b)) == elements[a + b :]
    assert len(p.skip(a).skip(b)) == len(p.skip(a + b))


@LAWS
@given(st.lists(st.integers(), max_size=30), SIZES, SIZES)
def test_take_composes_by_minimum(elements: list[int], a: int, b: int) -> None:
    p = hr.from_iterable(elements)
    assert list(p.take(a).take(b)) == list(p.take(min(a, b))) == elements[: min(a, b)]
    assert len(p.take(a).take(b)) == len(p.take(min(a, b)))


@LAWS
@given(st.lists(st.integers(), max_size=30), SIZES, SIZES)
def test_skip_then_take_is_a_slice(elements: list[int], a: int, b: int) -> None:
    p = hr.from_iterable(elements)
    assert list(p.skip(a).take(b)) == elements[a : a + b]
    assert list(p.take(a).skip(b)) == elements[b:a]


@LAWS
@given(st.lists(st.integers(), max_size=30), SIZES)
def test_take_after_filter_has_no_known_length(elements: list[int], n: int) -> None:
    # take(n) only bounds the length: after a filter fewer than n may come out.
    taken = hr.from_iterable(elements).filter(lambda x: x % 2 == 0).take(n)
    assert taken.known_length() in (None, len(list(taken)))


# -- element-wise stages against their references -------------------------------------

INTS = st.lists(st.integers(-50, 50), max_size=30)
UNARY = st.functions(like=lambda x: 0, returns=st.integers(-50, 50), pure=True)
PREDICATES = st.functions(like=lambda x: True, returns=st.booleans(), pure=True)


@LAWS
@given(INTS, UNARY)
def test_map_equals_builtin_map(elements: list[int], fn: Any) -> None:
    expected = list(map(fn, elements))
    assert list(hr.from_iterable(elements).map(fn)) == expected
    assert list(stages.map(elements, fn)) == expected


@LAWS
@given(INTS, PREDICATES)
def test_filter_equals_builtin_filter(elements: list[int], fn: Any) -> None:
    expected = list(filter(fn, elements))
    assert list(hr.from_iterable(elements).filter(fn)) == expected
    assert list(stages.filter(elements, fn)) == expected


@LAWS
@given(
    INTS, st.functions(like=lambda x: [], returns=st.lists(st.integers(), max_size=3), pure=True)
)
def test_flat_map_equals_chain_of_map(elements: list[int], fn: Any) -> None:
    expected = list(itertools.chain.from_iterable(map(fn, elements)))
    assert list(hr.from_iterable(elements).flat_map(fn)) == expected
    assert list(stages.flat_map(elements, fn)) == expected


@LAWS
@given(INTS, st.integers(-5, 5))
def test_enumerate_equals_builtin_enumerate(elements: list[int], start: int) -> None:
    p = hr.from_iterable(elements).enumerate(start)
    assert list(p) == list(enumerate(elements, start))
    assert len(p) == len(elements)


@LAWS
@given(INTS, PREDICATES)
def test_take_while_equals_itertools(elements: list[int], fn: Any) -> None:
    expected = list(itertools.takewhile(fn, elements))
    assert list(hr.from_iterable(elements).take_while(fn)) == expected
    assert list(stages.take_while(elements, fn)) == expected


@LAWS
@given(INTS, PREDICATES)
def test_drop_while_equals_itertools(elements: list[int], fn: Any) -> None:
    expected = list(itertools.dropwhile(fn, elements))
    assert list(hr.from_iterable(elements).drop_while(fn)) == expected
    assert list(stages.drop_while(elements, fn)) == expected


@LAWS
@given(
    INTS,
    st.functions(like=lambda state, x: 0, returns=st.integers(-50, 50), pure=True),
    st.integers(-50, 50),
)
def test_scan_equals_accumulate_without_initial(elements: list[int], fn: Any, initial: int) -> None:
    expected = list(itertools.accumulate(elements, fn, initial=initial))[1:]
    p = hr.from_iterable(elements).scan(fn, initial)
    assert list(p) == expected
    assert list(stages.scan(elements, fn, initial)) == expected
    assert len(p) == len(elements)


# -- fused runs of map / filter / tap -------------------------------------------------

# A step is (kind, function). "pipe" is an identity generator stage that cannot be
# fused, so drawn chains also cover runs split into several fused generators.
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("map"), UNARY),
        st.tuples(st.just("filter"), PREDICATES),
        st.tuples(st.just("tap"), st.none()),
        st.tuples(st.just("pipe"), st.none()),
    ),
    max_size=8,
)


def _identity_generator(iterable: Any) -> Any:
    yield from iterable


def build(elements: list[int], steps: list[tuple[str, Any]]) -> tuple[Any, list[list[int]]]:
    """The pipeline for ``steps`` and, per tap stage, the list it records into."""
    pipeline = hr.from_iterable(elements)
    logs: list[list[int]] = []
    for kind, fn in steps:
        if kind == "map":
            pipeline = pipeline.map(fn)
        elif kind == "filter":
            pipeline = pipeline.filter(fn)
        elif kind == "tap":
            log: list[int] = []
            logs.append(log)
            # What tap's function returns must be thrown away, truthy or not.
            pipeline = pipeline.tap(lambda x, log=log: log.append(x) or "ignored")
        else:
            pipeline = pipeline.pipe(_identity_generator)
    return pipeline, logs


def reference(
    elements: list[int], steps: list[tuple[str, Any]]
) -> tuple[list[int], list[list[int]]]:
    """Apply ``steps`` one whole stage at a time with builtins."""
    current = list(elements)
    logs = []
    for kind, fn in steps:
        if kind == "map":
            current = list(map(fn, current))
        elif kind == "filter":
            current = list(filter(fn, current))
        elif kind == "tap":
            logs.append(list(current))
    return current, logs


@LAWS
@given(INTS, STEPS)
def test_fused_chain_equals_stage_by_stage_builtins(
    elements: list[int], steps: list[tuple[str, Any]]
) -> None:
    expected, expected_logs = reference(elements, steps)
    pipeline, logs = build(elements, steps)
    assert list(pipeline) == expected
    assert logs == expected_logs


@LAWS
@given(INTS, STEPS)
def test_unfused_stats_run_equals_fused_run(
    elements: list[int], steps: list[tuple[str, Any]]
) -> None:
    expected, expected_logs = reference(elements, steps)
    pipeline, logs = build(elements, steps)
    with pipeline.iter(stats=True) as run:
        assert list(run) == expected
        figures = run.stats()
    assert logs == expected_logs
    assert len(figures) == len(steps) + 1
    assert figures[-1]["items_out"] == len(expected)
