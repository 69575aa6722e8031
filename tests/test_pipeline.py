"""Pipeline: immutable, lazy, re-runnable, a plain iterable, with a known length when
one follows from the source and stages."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Generator, Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import headrace as hr
from headrace import stages


def double(x: int) -> int:
    return 2 * x


def is_even(x: int) -> bool:
    return x % 2 == 0


def pair(x: int) -> list[int]:
    return [x, x]


def add(total: int, x: int) -> int:
    return total + x


def scale(k: int) -> Generator[int | None, int, None]:
    while True:
        x = yield None
        yield k * x


def as_plain(value: Any) -> Any:
    """Arrays and tuples of arrays as nested lists, so that batches compare with ==."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return tuple(as_plain(v) for v in value)
    if isinstance(value, list):
        return [as_plain(v) for v in value]
    return value


class Recorder:
    """A source function that logs when it is called and every element it makes."""

    def __init__(self, stop: int | None = 10) -> None:
        self.stop = stop
        self.calls = 0
        self.produced = 0

    def __call__(self) -> Iterator[int]:
        self.calls += 1
        for x in itertools.count() if self.stop is None else range(self.stop):
            self.produced += 1
            yield x


# -- immutability ---------------------------------------------------------------------

DERIVED: list[Callable[[hr.Pipeline[int]], hr.Pipeline[Any]]] = [
    lambda p: p.map(double),
    lambda p: p.filter(is_even),
    lambda p: p.tap(print),
    lambda p: p.flat_map(pair),
    lambda p: p.scan(add, 0),
    lambda p: p.enumerate(),
    lambda p: p.take(3),
    lambda p: p.skip(3),
    lambda p: p.take_while(is_even),
    lambda p: p.drop_while(is_even),
    lambda p: p.batch(3),
    lambda p: p.padded_batch(3),
    lambda p: p.batch(3).unbatch(),
    lambda p: p.window(3),
    lambda p: p.shuffle(4, seed=0),
    lambda p: p.repeat(2),
    lambda p: p.zip([1, 2]),
    lambda p: p.concat([1, 2]),
    lambda p: p.interleave(pair),
    lambda p: p.pipe(stages.map, double),
    lambda p: p.cache(),
]


@pytest.mark.parametrize("derive", DERIVED)
def test_methods_return_new_pipelines_and_leave_the_original_unchanged(
    derive: Callable[[hr.Pipeline[int]], hr.Pipeline[Any]],
) -> None:
    p = hr.range(10).map(double)
    before = (repr(p), p.stages, len(p))
    derived = derive(p)
    assert derived is not p
    assert isinstance(derived, hr.Pipeline)
    assert (repr(p), p.stages, len(p)) == before
    assert list(p) == [2 * x for x in range(10)]
    list(derived)  # running the derived pipeline does not touch the original either
    assert (repr(p), p.stages, len(p)) == before
    assert list(p) == [2 * x for x in range(10)]


def test_branches_from_one_pipeline_are_independent() -> None:
    base = hr.range(6)
    evens, odds = base.filter(is_even), base.filter(lambda x: not is_even(x))
    assert list(evens) == [0, 2, 4]
    assert list(odds) == [1, 3, 5]
    assert list(base) == list(range(6))


# -- re-iteration ---------------------------------------------------------------------

REPLAYABLE: list[Callable[[], hr.Pipeline[Any]]] = [
    lambda: hr.range(7),
    lambda: hr.from_iterable([3, 1, 4, 1, 5]),
    lambda: hr.from_generator(Recorder(6)),
    lambda: hr.range(20).map(double).filter(is_even).enumerate().skip(2).take(9),
    lambda: hr.range(9).window(2, shift=1).flat_map(list).scan(add, 0),
    lambda: hr.range(5).repeat(3).concat(hr.range(3)),
    lambda: hr.zip(hr.range(5), hr.from_generator(Recorder(5))),
    lambda: hr.range(4).interleave(pair, cycle_length=2),
]


@pytest.mark.parametrize("make", REPLAYABLE)
def test_every_iteration_is_a_fresh_independent_epoch(make: Callable[[], hr.Pipeline[Any]]) -> None:
    p = make()
    expected = list(p)
    assert expected  # the cases are chosen to be non-empty
    first, second = iter(p), iter(p)
    assert first is not second
    seen_first = [next(first)]
    seen_second = [next(second), next(second)]
    # Interleave the two runs by hand; neither steals elements from the other.
    for a, b in itertools.zip_longest(first, second, fillvalue=None):
        if a is not None:
            seen_first.append(a)
        if b is not None:
            seen_second.append(b)
    assert seen_first == expected
    assert seen_second == expected
    assert list(p) == expected


def test_two_runs_of_one_seeded_epoch_interleave_to_the_same_order() -> None:
    p = hr.range(50).shuffle(16, seed=5)
    a, b = p.iter(epoch=2), p.iter(epoch=2)
    pairs = list(zip(a, b, strict=True))
    assert all(x == y for x, y in pairs)
    assert sorted(x for x, _ in pairs) == list(range(50))


def test_from_generator_calls_its_function_once_per_run() -> None:
    source = Recorder(4)
    p = hr.from_generator(source).map(double)
    assert source.calls == 0
    assert list(p) == list(p) == [0, 2, 4, 6]
    assert source.calls == 2


# -- a plain iterable -----------------------------------------------------------------


def test_a_pipeline_works_where_any_iterable_does() -> None:
    p = hr.range(5).map(double)
    collected = []
    for x in p:
        collected.append(x)
    assert collected == [0, 2, 4, 6, 8]
    assert list(p) == collected
    assert list(itertools.islice(p, 1, 3)) == [2, 4]
    assert list(zip(p, "abcde", strict=True)) == list(zip(collected, "abcde", strict=True))
    assert sum(p) == 20
    assert 6 in p
    assert sorted(p, reverse=True) == collected[::-1]
    assert dict(hr.from_iterable("ab").enumerate()) == {0: "a", 1: "b"}
    a, b, *rest = p
    assert (a, b, rest) == (0, 2, [4, 6, 8])


def test_iter_returns_a_run_that_is_its_own_iterator() -> None:
    run = iter(hr.range(3))
    assert isinstance(run, hr.Run)
    assert iter(run) is run
    assert list(run) == [0, 1, 2]
    assert list(run) == []


# -- repr -----------------------------------------------------------------------------


def test_repr_shows_the_chain() -> None:
    p = hr.range(10).map(double).filter(is_even).batch(4, drop_remainder=True)
    assert repr(p) == (
        "Pipeline(range(0, 10) -> map(double) -> filter(is_even) -> batch(4, drop_remainder=True))"
    )
    q = hr.from_iterable([1, 2, 3]).shuffle(8, seed=1).window(2, shift=1).repeat()
    assert repr(q) == (
        "Pipeline(from_iterable(<list of 3>) -> shuffle(8, seed=1)"
        " -> window(2, shift=1) -> repeat())"
    )
    assert (
        repr(hr.range(2).zip(hr.range(3)))
        == "Pipeline(zip(Pipeline(range(0, 2)), Pipeline(range(0, 3))))"
    )
    assert (
        repr(hr.range(2).concat([5]))
        == "Pipeline(concat(Pipeline(range(0, 2)), Pipeline(from_iterable(<list of 1>))))"
    )
    assert repr(hr.from_generator(Recorder)) == "Pipeline(from_generator(Recorder))"


# -- len ------------------------------------------------------------------------------

KNOWN_LENGTHS: list[tuple[hr.Pipeline[Any], int]] = [
    (hr.range(10), 10),
    (hr.range(2, 11, 3), 3),
    (hr.from_iterable([1, 2, 3]), 3),
    (hr.range(10).map(double), 10),
    (hr.range(10).tap(print), 10),
    (hr.range(10).batch(3), 4),
    (hr.range(10).batch(3, drop_remainder=True), 3),
    (hr.range(10).take(4), 4),
    (hr.range(3).take(4), 3),
    (hr.range(10).skip(4), 6),
    (hr.range(3).skip(4), 0),
    (hr.range(10).enumerate(), 10),
    (hr.range(10).scan(add, 0), 10),
    (hr.range(10).window(3, shift=2), 5),
    (hr.range(10).window(3, shift=2, drop_remainder=True), 4),
    (hr.range(10).shuffle(4), 10),
    (hr.range(10).repeat(3), 30),
    (hr.range(10).zip(hr.range(4)), 4),
    (hr.range(10).concat(hr.range(4), [1]), 15),
    (hr.range(10).repeat().take(25), 25),
    (hr.range(10).filter(is_even).repeat(0), 0),
    (hr.range(10).repeat().repeat(0), 0),
    (hr.range(10).cache(), 10),
]


@pytest.mark.parametrize(("pipeline", "length"), KNOWN_LENGTHS, ids=repr)
def test_len_when_it_follows_from_the_stages(pipeline: hr.Pipeline[Any], length: int) -> None:
    assert len(pipeline) == length
    assert len(list(pipeline)) == length


UNKNOWN_LENGTHS: list[hr.Pipeline[Any]] = [
    hr.range(10).filter(is_even),
    hr.range(10).flat_map(pair),
    hr.range(10).take_while(is_even),
    hr.range(10).drop_while(is_even),
    hr.range(10).interleave(pair),
    hr.range(10).pipe(stages.map, double),
    hr.range(10).filter(is_even).take(3),
    hr.range(10).filter(is_even).batch(2),
    hr.range(10).filter(is_even).repeat(),
    hr.from_generator(Recorder(3)),
    hr.from_iterable(iter([1, 2])),
    hr.range(3).zip(hr.range(3).filter(is_even)),
]


@pytest.mark.parametrize("pipeline", UNKNOWN_LENGTHS, ids=repr)
def test_len_raises_type_error_when_it_depends_on_the_data(pipeline: hr.Pipeline[Any]) -> None:
    with pytest.raises(TypeError, match="not known before running"):
        len(pipeline)
    assert pipeline.known_length() is None


@pytest.mark.parametrize(
    "pipeline",
    [hr.range(3).repeat(), hr.range(3).repeat().map(double).batch(2), hr.zip(hr.range(3).repeat())],
    ids=repr,
)
def test_len_of_an_endless_pipeline_raises_type_error(pipeline: hr.Pipeline[Any]) -> None:
    with pytest.raises(TypeError, match="endless"):
        len(pipeline)
    assert pipeline.known_length() == float("inf")


# A random chain of stages: whenever its length is known, the run produces exactly that
# many elements (and list(), which asks len() for a size hint, works either way).
CHAIN_STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("map"), st.none()),
        st.tuples(st.just("filter"), st.none()),
        st.tuples(st.just("flat_map"), st.none()),
        st.tuples(st.just("take"), st.integers(0, 12)),
        st.tuples(st.just("skip"), st.integers(0, 12)),
        st.tuples(st.just("batch"), st.tuples(st.integers(1, 4), st.booleans())),
        st.tuples(
            st.just("window"), st.tuples(st.integers(1, 4), st.integers(1, 4), st.booleans())
        ),
        st.tuples(st.just("repeat"), st.integers(0, 3)),
        st.tuples(st.just("forever"), st.none()),
        st.tuples(st.just("enumerate"), st.none()),
        st.tuples(st.just("shuffle"), st.integers(1, 8)),
        st.tuples(st.just("concat"), st.integers(0, 3)),
        st.tuples(st.just("zip"), st.integers(0, 12)),
    ),
    max_size=5,
)


def chain(p: hr.Pipeline[Any], kind: str, arg: Any) -> hr.Pipeline[Any]:
    if kind == "map":
        return p.map(str)
    if kind == "filter":
        return p.filter(lambda x: sum(map(ord, str(x))) % 3 != 0)
    if kind == "flat_map":
        return p.flat_map(lambda x: [x] * (len(str(x)) % 3))
    if kind == "take":
        return p.take(arg)
    if kind == "skip":
        return p.skip(arg)
    if kind == "batch":
        return p.batch(arg[0], drop_remainder=arg[1], collate=None).map(tuple)
    if kind == "window":
        return p.window(arg[0], shift=arg[1], drop_remainder=arg[2])
    if kind == "repeat":
        return p.repeat(arg)
    if kind == "forever":
        return p.repeat()
    if kind == "enumerate":
        return p.enumerate()
    if kind == "shuffle":
        return p.shuffle(arg, seed=0)
    if kind == "concat":
        return p.concat(hr.range(arg))
    assert kind == "zip"
    return p.zip(hr.range(arg))


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 12), CHAIN_STEPS)
def test_a_known_length_is_always_the_true_length(n: int, steps: list[tuple[str, Any]]) -> None:
    p = hr.range(n)
    for kind, arg in steps:
        p = chain(p, kind, arg)
    length = p.known_length()
    if length == float("inf"):
        assert len(list(p.take(50))) == 50
    elif length is not None:
        assert len(list(p)) == length == len(p)
    else:
        with pytest.raises(TypeError, match="not known"):
            len(p)
        # Without repeat() the run is finite, and list() (which asks len() for a size
        # hint) still works. After repeat() a filter may reject every element forever,
        # so even a bounded look could spin.
        if all(kind != "forever" for kind, _ in steps):
            list(p)


# -- laziness -------------------------------------------------------------------------


def test_building_and_starting_a_pipeline_runs_no_user_code() -> None:
    source = Recorder()
    calls: list[str] = []

    def spy(name: str, result: Callable[[Any], Any] = lambda x: x) -> Callable[[Any], Any]:
        def fn(*args: Any) -> Any:
            calls.append(name)
            return result(args[-1])

        return fn

    def generator_stage(iterable: Any) -> Iterator[Any]:
        calls.append("pipe")
        yield from iterable

    def step() -> Any:
        calls.append("coroutine")
        while True:
            x = yield
            yield x

    p = (
        hr.from_generator(source)
        .map(spy("map"))
        .filter(spy("filter"))
        .tap(spy("tap"))
        .flat_map(spy("flat_map", lambda x: [x]))
        .scan(spy("scan"), 0)
        .take_while(spy("take_while", lambda x: True))
        .drop_while(spy("drop_while", lambda x: False))
        .shuffle(3, seed=0)
        .batch(2)
        .unbatch()
        .window(2)
        .interleave(spy("interleave", lambda x: [x]))
        .pipe(generator_stage)
        .coroutine(step)
        .cache()
        .repeat(2)
    )
    p = hr.zip(p, hr.from_generator(source)).concat(hr.from_generator(source)).take(5)
    assert (source.calls, calls) == (0, [])
    run = p.iter()
    # Opening a run only builds the chain of generators: no source function, stage
    # function or coroutine body has run yet.
    assert (source.calls, source.produced, calls) == (0, 0, [])
    run.close()
    assert (source.calls, source.produced, calls) == (0, 0, [])


@pytest.mark.parametrize(
    ("build", "pulled"),
    [
        (lambda p: p, 1),
        (lambda p: p.map(double).tap(print).map(double), 1),
        (lambda p: p.filter(lambda x: x >= 3), 4),
        (lambda p: p.batch(4), 4),
        (lambda p: p.window(3, shift=1), 3),
        (lambda p: p.skip(2), 3),
        # Fills its buffer (tf.data's rule), emitting before refilling the slot.
        (lambda p: p.shuffle(5, seed=0), 5),
        (lambda p: p.enumerate().take(100), 1),
    ],
)
def test_the_first_element_pulls_only_what_it_needs(
    build: Callable[[hr.Pipeline[int]], hr.Pipeline[Any]], pulled: int
) -> None:
    source = Recorder(stop=None)
    with build(hr.from_generator(source)).iter() as run:
        next(run)
        assert source.produced == pulled
    assert source.calls == 1


def test_take_ends_an_endless_source() -> None:
    assert list(hr.from_generator(itertools.count).take(3)) == [0, 1, 2]
    assert list(hr.range(2).repeat().take(5)) == [0, 1, 0, 1, 0]
    assert list(hr.from_generator(itertools.count).map(double).filter(is_even).take(3)) == [0, 2, 4]
    assert list(stages.take(itertools.count(), 3)) == [0, 1, 2]


def test_stage_functions_are_lazy_iterators() -> None:
    endless = itertools.count()
    out = stages.batch(stages.map(endless, double), 2)
    assert not isinstance(out, list)
    assert next(endless) == 0  # nothing was consumed while building
    assert next(out).tolist() == [2, 4]


# -- stage functions and pipe ---------------------------------------------------------

ELEMENTS = [5, 3, 8, 0, 2, 7, 7, 1, 9]


def repeated(x: int) -> list[int]:
    """``x`` repeated 1 to 3 times: sequences of a few lengths, to bucket."""
    return [x] * (x % 3 + 1)


STAGE_PAIRS: list[tuple[str, Callable[[list[int]], Any], Callable[[hr.Pipeline[int]], Any]]] = [
    ("map", lambda xs: stages.map(xs, double), lambda p: p.map(double)),
    ("filter", lambda xs: stages.filter(xs, is_even), lambda p: p.filter(is_even)),
    ("tap", lambda xs: stages.tap(xs, print), lambda p: p.tap(print)),
    ("flat_map", lambda xs: stages.flat_map(xs, pair), lambda p: p.flat_map(pair)),
    (
        "starmap",
        lambda xs: stages.starmap(stages.map(xs, pair), add),
        lambda p: p.map(pair).starmap(add),
    ),
    ("scan", lambda xs: stages.scan(xs, add, 10), lambda p: p.scan(add, 10)),
    ("enumerate", lambda xs: stages.enumerate(xs, 3), lambda p: p.enumerate(3)),
    ("take", lambda xs: stages.take(xs, 4), lambda p: p.take(4)),
    ("skip", lambda xs: stages.skip(xs, 4), lambda p: p.skip(4)),
    ("take_while", lambda xs: stages.take_while(xs, bool), lambda p: p.take_while(bool)),
    ("drop_while", lambda xs: stages.drop_while(xs, bool), lambda p: p.drop_while(bool)),
    ("batch", lambda xs: stages.batch(xs, 4), lambda p: p.batch(4)),
    (
        "batch_drop",
        lambda xs: stages.batch(xs, 4, drop_remainder=True, collate=None),
        lambda p: p.batch(4, drop_remainder=True, collate=None),
    ),
    (
        "padded_batch",
        lambda xs: stages.padded_batch(stages.map(xs, lambda x: [1] * x), 3, padding_value=-1),
        lambda p: p.map(lambda x: [1] * x).padded_batch(3, padding_value=-1),
    ),
    ("unbatch", lambda xs: stages.unbatch(stages.batch(xs, 2)), lambda p: p.batch(2).unbatch()),
    ("window", lambda xs: stages.window(xs, 3, shift=2), lambda p: p.window(3, shift=2)),
    (
        "parse",
        lambda xs: stages.parse(stages.map(xs, str), r"(?P<first>\d)(?P<rest>\d*)"),
        lambda p: p.map(str).parse(r"(?P<first>\d)(?P<rest>\d*)"),
    ),
    (
        "shuffle",
        lambda xs: stages.shuffle(xs, 4, seed=9, epoch=0),
        lambda p: p.shuffle(4, seed=9).iter(epoch=0),
    ),
    ("pipe", lambda xs: stages.pipe(xs, stages.map, double), lambda p: p.pipe(stages.map, double)),
    ("zip", lambda xs: stages.zip(xs, "abcdefghij"), lambda p: p.zip("abcdefghij")),
    ("concat", lambda xs: stages.concat(xs, [1, 2]), lambda p: p.concat([1, 2])),
    (
        "interleave",
        lambda xs: stages.interleave(xs, pair, cycle_length=2, block_length=3),
        lambda p: p.interleave(pair, cycle_length=2, block_length=3),
    ),
    ("repeat", lambda xs: stages.repeat(xs, 2), lambda p: p.repeat(2)),
    (
        "sample_from",
        lambda xs: stages.sample_from([xs, [100, 101]], [0.7, 0.3], seed=3),
        lambda p: hr.sample_from([p, [100, 101]], [0.7, 0.3], seed=3),
    ),
    (
        "bucket_by_length",
        lambda xs: stages.bucket_by_length(stages.map(xs, repeated), len, [2], [2, 3]),
        lambda p: p.map(repeated).bucket_by_length(len, [2], [2, 3]),
    ),
    ("coroutine", lambda xs: stages.coroutine(xs, scale, 3), lambda p: p.coroutine(scale, 3)),
]


@pytest.mark.parametrize(
    ("name", "function", "method"), STAGE_PAIRS, ids=[p[0] for p in STAGE_PAIRS]
)
def test_stage_functions_equal_pipeline_methods(
    name: str,
    function: Callable[[list[int]], Any],
    method: Callable[[hr.Pipeline[int]], Any],
) -> None:
    expected = as_plain(list(method(hr.from_iterable(ELEMENTS))))
    assert as_plain(list(function(ELEMENTS))) == expected
    assert expected != ELEMENTS or name in {"tap", "unbatch"}
    if name == "repeat":
        # A one-shot iterator has no second pass to give: repeat says so.
        with pytest.raises(RuntimeError, match="one-shot"):
            list(function(iter(ELEMENTS)))
    else:  # any iterable works, one-shot iterators too
        assert as_plain(list(function(iter(ELEMENTS)))) == expected


def test_every_stage_function_is_covered() -> None:
    covered = {name.removesuffix("_drop") for name, _, _ in STAGE_PAIRS} | {"collate"}
    assert covered == set(stages.__all__)


def test_pipe_of_a_stage_function_equals_the_method() -> None:
    p = hr.range(7)
    assert (
        as_plain(list(p.pipe(stages.batch, 2)))
        == as_plain(list(p.batch(2)))
        == [[0, 1], [2, 3], [4, 5], [6]]
    )
    assert as_plain(list(p.pipe(stages.batch, 2, drop_remainder=True))) == [[0, 1], [2, 3], [4, 5]]
    assert list(p.pipe(stages.window, 3, shift=1)) == list(p.window(3, shift=1))
    assert list(p.pipe(stages.shuffle, 7, seed=1)) == list(p.shuffle(7, seed=1).iter(epoch=0))
    assert repr(p.pipe(stages.batch, 2)) == "Pipeline(range(0, 7) -> pipe(batch, 2))"


def test_scan_starts_every_run_from_a_fresh_copy_of_its_initial_state() -> None:
    def collect(seen: list[int], x: int) -> list[int]:
        seen.append(x)  # mutates its state in place
        return seen

    running = hr.range(3).scan(collect, []).map(len)
    assert list(running) == [1, 2, 3]
    assert list(running) == [1, 2, 3]  # not [4, 5, 6]: the first run's list is not reused


def test_caching_an_endless_pipeline_is_refused() -> None:
    with pytest.raises(ValueError, match="grow without bound"):
        hr.range(3).repeat().cache()
    assert list(hr.range(3).cache().repeat().take(7)) == [0, 1, 2, 0, 1, 2, 0]


def test_scan_uses_other_initial_objects_as_given() -> None:
    start = object()

    def step(state: object, x: int) -> object:
        assert state is start or isinstance(state, int)  # identity is kept
        return x

    assert list(hr.range(3).scan(step, start)) == [0, 1, 2]
    counts: dict[str, int] = {}

    def count(seen: dict[str, int], word: str) -> dict[str, int]:
        seen[word] = seen.get(word, 0) + 1
        return seen

    list(stages.scan(["a", "b", "a"], count, counts))
    assert counts == {"a": 2, "b": 1}  # one standalone run updates the caller's dict
