"""Bad arguments fail at construction; user errors keep their type and gain one note."""

from __future__ import annotations

import re
import traceback

import numpy as np
import pytest

import headrace as hr
from headrace import stages

# -- bad arguments are refused when the pipeline is built ---------------------------

NOT_CALLABLE = [3, "len", None]

FN_METHODS = {
    "map": lambda p, fn: p.map(fn),
    "filter": lambda p, fn: p.filter(fn),
    "flat_map": lambda p, fn: p.flat_map(fn),
    "tap": lambda p, fn: p.tap(fn),
    "scan": lambda p, fn: p.scan(fn, 0),
    "take_while": lambda p, fn: p.take_while(fn),
    "drop_while": lambda p, fn: p.drop_while(fn),
    "pipe": lambda p, fn: p.pipe(fn),
    "interleave": lambda p, fn: p.interleave(fn),
    "coroutine": lambda p, fn: p.coroutine(fn),
}


@pytest.mark.parametrize("value", NOT_CALLABLE)
@pytest.mark.parametrize("method", sorted(FN_METHODS))
def test_stages_refuse_a_non_callable_fn_at_construction(method, value):
    pipeline = hr.range(3)

    with pytest.raises(TypeError, match=r"\bfn\b"):
        FN_METHODS[method](pipeline, value)


def test_from_generator_refuses_a_non_callable_fn_at_construction():
    with pytest.raises(TypeError, match=r"\bfn\b"):
        hr.from_generator(42)


SIZE_METHODS = {
    "batch": lambda p, size: p.batch(size),
    "padded_batch": lambda p, size: p.padded_batch(size),
    "window": lambda p, size: p.window(size),
}


@pytest.mark.parametrize(("size", "error"), [(0, ValueError), (-2, ValueError)])
@pytest.mark.parametrize("method", sorted(SIZE_METHODS))
def test_grouping_stages_refuse_a_size_below_one(method, size, error):
    with pytest.raises(error, match=r"\bsize\b"):
        SIZE_METHODS[method](hr.range(3), size)


@pytest.mark.parametrize("size", [2.0, "2", True, None])
@pytest.mark.parametrize("method", sorted(SIZE_METHODS))
def test_grouping_stages_refuse_a_size_that_is_not_an_int(method, size):
    with pytest.raises(TypeError, match=r"\bsize\b"):
        SIZE_METHODS[method](hr.range(3), size)


@pytest.mark.parametrize(
    ("build", "error", "argument"),
    [
        (lambda p: p.take(-1), ValueError, "count"),
        (lambda p: p.skip(-1), ValueError, "count"),
        (lambda p: p.take(1.5), TypeError, "count"),
        (lambda p: p.skip("2"), TypeError, "count"),
        (lambda p: p.shuffle(0), ValueError, "buffer_size"),
        (lambda p: p.shuffle(-5), ValueError, "buffer_size"),
        (lambda p: p.shuffle(8.0), TypeError, "buffer_size"),
        (lambda p: p.shuffle(8, seed=-1), ValueError, "seed"),
        (lambda p: p.shuffle(8, seed=1.5), TypeError, "seed"),
        (lambda p: p.repeat(-1), ValueError, "count"),
        (lambda p: p.repeat(2.0), TypeError, "count"),
        (lambda p: p.interleave(list, cycle_length=0), ValueError, "cycle_length"),
        (lambda p: p.interleave(list, block_length=0), ValueError, "block_length"),
        (lambda p: p.window(3, shift=0), ValueError, "shift"),
        (lambda p: p.batch(2, collate=5), TypeError, "collate"),
        (lambda p: p.padded_batch(2, padded_shapes=5), TypeError, "padded_shapes"),
        (lambda p: p.enumerate(start="0"), TypeError, "start"),
        (lambda p: p.cache(5), TypeError, "path"),
        (lambda p: p.coroutine((x for x in ()), 1), TypeError, "generator"),
        (lambda p: p.iter(epoch=-1), ValueError, "epoch"),
        (lambda p: p.iter(epoch="1"), TypeError, "epoch"),
        (lambda p: p.iter(epoch=True), TypeError, "epoch"),
    ],
)
def test_constructors_refuse_bad_arguments_naming_them(build, error, argument):
    with pytest.raises(error, match=rf"\b{argument}\b"):
        build(hr.range(3))


def test_range_refuses_a_zero_step_at_construction():
    with pytest.raises(ValueError, match=r"\bstep\b"):
        hr.range(0, 5, 0)


def test_bad_arguments_fail_before_any_element_is_produced():
    produced = []
    pipeline = hr.range(3).tap(produced.append)

    with pytest.raises(ValueError, match="size"):
        pipeline.batch(0)
    assert produced == []


# -- errors raised by user code -----------------------------------------------------


class ParseError(Exception):
    """A user exception type headrace knows nothing about."""


def stage_notes(error: BaseException) -> list[str]:
    """The notes headrace attached naming a stage."""
    return [n for n in getattr(error, "__notes__", []) if n.startswith("headrace: raised in")]


def frames(error: BaseException) -> list[str]:
    return [frame.name for frame in traceback.extract_tb(error.__traceback__)]


def run_to_error(pipeline: hr.Pipeline, error_type: type[BaseException]) -> BaseException:
    with pytest.raises(error_type) as info, pipeline.iter() as run:
        for _ in run:
            pass
    assert type(info.value) is error_type  # the user's type, not a wrapper
    return info.value


def assert_noted(error: BaseException, stage: str, index: int | None) -> None:
    notes = stage_notes(error)
    assert len(notes) == 1, notes
    assert stage in notes[0], notes
    if index is not None:
        assert re.search(rf"input element {index}\b", notes[0]), notes


def parse(x):
    if x == 7:
        raise ParseError(f"cannot parse {x}")
    return x


def test_map_error_keeps_type_traceback_and_gets_one_note():
    error = run_to_error(hr.range(10).map(parse), ParseError)

    assert str(error) == "cannot parse 7"
    assert frames(error)[-1] == "parse"  # the user's own line raised it
    assert_noted(error, "stage 1 'map(parse)'", 7)


# User functions live at module level so that stage names are their plain names
# (a nested function is named ``outer.inner``).


def keep_even(x):
    return x % 2 == 0


def fail_on_six(x):
    if x == 6:
        raise ParseError("six")
    return x


@pytest.mark.parametrize("stats", [False, True])
def test_fused_chain_error_index_counts_the_failing_stages_own_input(stats):
    # stage 3 sees 0, 2, 4, 6: the failing element is its input element 3, not 6.
    # (stats=True runs the stages unfused: the note must not depend on fusion.)
    pipeline = hr.range(10).map(lambda x: x).filter(keep_even).map(fail_on_six)
    with pytest.raises(ParseError) as info, pipeline.iter(stats=stats) as run:
        list(run)

    assert frames(info.value)[-1] == "fail_on_six"
    assert_noted(info.value, "stage 3 'map(fail_on_six)'", 3)


def picky(x):
    if x == 4:
        raise ParseError("picky")
    return True


def test_filter_error_is_noted_with_its_stage_and_index():
    error = run_to_error(hr.range(10).map(lambda x: x + 1).filter(picky), ParseError)

    assert frames(error)[-1] == "picky"
    assert_noted(error, "stage 2 'filter(picky)'", 3)


def log(x):
    if x == "c":
        raise ParseError("log")


def test_tap_error_is_noted_with_its_stage_and_index():
    error = run_to_error(hr.from_iterable("abcd").tap(log), ParseError)

    assert frames(error)[-1] == "log"
    assert_noted(error, "stage 1 'tap(log)'", 2)


def at_least_five(x):
    return x >= 5


def explode(x):
    if x == 8:
        raise ParseError("eight")
    return x


def test_map_after_filter_after_tap_counts_after_the_filter():
    pipeline = hr.range(10).tap(lambda x: None).filter(at_least_five).tap(id).map(explode)

    error = run_to_error(pipeline, ParseError)

    # map(explode) receives 5, 6, 7, 8: input element 3.
    assert_noted(error, "stage 4 'map(explode)'", 3)


def expand(x):
    if x == 3:
        raise ParseError("expand")
    return [x, x]


def lazily(x):
    yield x
    if x == 2:
        raise ParseError("lazily")
    yield x


def test_flat_map_error_in_fn_and_in_the_iterable_it_returns():
    error = run_to_error(hr.range(5).flat_map(expand), ParseError)
    assert frames(error)[-1] == "expand"
    assert_noted(error, "stage 1 'flat_map(expand)'", 3)

    error = run_to_error(hr.range(5).flat_map(lazily), ParseError)
    assert frames(error)[-1] == "lazily"
    assert_noted(error, "stage 1 'flat_map(lazily)'", 2)


def running(total, x):
    if x == 4:
        raise ParseError("running")
    return total + x


def test_scan_error_is_noted():
    error = run_to_error(hr.range(6).scan(running, 0), ParseError)

    assert frames(error)[-1] == "running"
    assert_noted(error, "stage 1 'scan(running)'", 4)


def small(x):
    if x == 2:
        raise ParseError("small")
    return x < 100


def test_take_while_and_drop_while_errors_are_noted():
    error = run_to_error(hr.range(5).take_while(small), ParseError)
    assert frames(error)[-1] == "small"
    assert_noted(error, "stage 1 'take_while(small)'", 2)

    error = run_to_error(hr.range(5).drop_while(small), ParseError)
    assert frames(error)[-1] == "small"
    assert_noted(error, "stage 1 'drop_while(small)'", 2)


def pairs(items):
    for item in items:
        if item == 4:
            raise ParseError("pairs")
        yield item, item


def test_pipe_generator_error_names_the_last_element_it_took():
    error = run_to_error(hr.range(10).map(str).map(int).pipe(pairs), ParseError)

    assert frames(error)[-1] == "pairs"
    assert_noted(error, "stage 3 'pipe(pairs)'", 4)


def invert():
    while True:
        x = yield
        yield 1 / x


def test_coroutine_error_is_noted():
    error = run_to_error(hr.range(-3, 3).coroutine(invert), ZeroDivisionError)

    assert frames(error)[-1] == "invert"
    assert_noted(error, "stage 1 'coroutine(invert)'", 3)


def open_part(x):
    if x == 3:
        raise ParseError("open_part")
    return [x] * 3


def read_part(x):
    yield x
    if x == 1:
        raise ParseError("read_part")
    yield x


def test_interleave_error_in_fn_and_in_an_inner_iterable():
    error = run_to_error(hr.range(6).interleave(open_part, cycle_length=2), ParseError)
    assert frames(error)[-1] == "open_part"
    assert_noted(error, "stage 1 'interleave(open_part, cycle_length=2", 3)

    error = run_to_error(hr.range(4).interleave(read_part, cycle_length=2), ParseError)
    assert frames(error)[-1] == "read_part"
    assert_noted(error, "stage 1 'interleave(read_part, cycle_length=2", 1)


def records():
    yield "a"
    yield "b"
    yield "c"
    raise OSError("disk went away")


def test_from_generator_error_says_how_many_elements_came_before():
    error = run_to_error(hr.from_generator(records).map(str.upper), OSError)

    assert frames(error)[-1] == "records"
    notes = stage_notes(error)
    assert len(notes) == 1
    assert "stage 0 'from_generator(records)'" in notes[0]
    assert "after producing 3 elements" in notes[0]


def broken():
    raise ParseError("no generator for you")


def test_from_generator_error_in_the_function_call_itself_is_noted():
    error = run_to_error(hr.from_generator(broken), ParseError)

    assert frames(error)[-1] == "broken"
    assert_noted(error, "stage 0 'from_generator(broken)'", None)


def test_batch_collation_error_names_the_stage_and_the_batch():
    pipeline = hr.from_iterable([1, 2, 3, "four", 5]).batch(2)

    error = run_to_error(pipeline, TypeError)

    # The batch that fails holds input elements 2 and 3; the message names which one.
    assert_noted(error, "stage 1 'batch(2)'", None)
    assert "while collating batch 1 (its input elements 2 to 3, 0-based)" in error.__notes__[0]
    assert "element 1 is str" in str(error)


def test_batch_collation_error_of_ragged_arrays():
    pipeline = hr.from_iterable([np.zeros(2), np.zeros(2), np.zeros(2), np.zeros(3)]).batch(2)

    error = run_to_error(pipeline, ValueError)

    assert "padded_batch" in str(error)
    assert "element 1 has shape (3,)" in str(error)
    assert_noted(error, "stage 1 'batch(2)'", None)
    assert "collating batch 1 (its input elements 2 to 3, 0-based)" in error.__notes__[0]


def my_collate(items):
    if len(items) < 3:
        raise ParseError("short batch")
    return items


def test_user_collate_error_keeps_its_traceback():
    error = run_to_error(hr.range(7).batch(3, collate=my_collate), ParseError)

    assert frames(error)[-1] == "my_collate"
    assert_noted(error, "stage 1 'batch(3)'", None)
    # The short last batch holds only input element 6.
    assert "collating batch 2 (its input elements 6 to 6, 0-based)" in error.__notes__[0]


def _passthrough(items):
    yield from items


def _identity_step():
    while True:
        x = yield
        yield x


@pytest.mark.parametrize("stats", [False, True])
def test_error_passing_through_later_stages_keeps_only_the_raising_stages_note(stats):
    pipeline = (
        hr.range(20)
        .map(parse)
        .pipe(_passthrough)
        .flat_map(lambda x: [x])
        .scan(lambda s, x: x, 0)
        .take_while(lambda x: True)
        .drop_while(lambda x: False)
        .coroutine(_identity_step)
        .interleave(lambda x: [x], cycle_length=2)
        .filter(lambda x: True)
        .batch(2)
        .unbatch()
        .window(2)
        .shuffle(4, seed=0)
        .cache()
        .repeat(2)
    )

    with pytest.raises(ParseError) as info, pipeline.iter(stats=stats) as run:
        list(run)

    assert frames(info.value)[-1] == "parse"
    assert_noted(info.value, "stage 1 'map(parse)'", 7)
    assert len(info.value.__notes__) == 1


def one_then_fail():
    yield 1
    raise OSError("gone")


def test_source_error_passing_through_later_stages_keeps_only_the_source_note():
    pipeline = (
        hr.from_generator(one_then_fail).map(str).pipe(_passthrough).coroutine(_identity_step)
    )

    error = run_to_error(pipeline, OSError)

    assert len(error.__notes__) == 1
    assert "stage 0 'from_generator(one_then_fail)'" in error.__notes__[0]


def test_error_inside_a_zipped_sub_pipeline_is_noted_by_its_own_stage():
    left = hr.range(10).map(parse)
    pipeline = hr.zip(left, hr.range(10)).map(lambda pair: pair[0])

    error = run_to_error(pipeline, ParseError)

    assert_noted(error, "map(parse)", 7)
    assert len(error.__notes__) == 1


def test_the_same_failure_is_noted_freshly_on_every_run():
    pipeline = hr.range(10).map(parse)

    first = run_to_error(pipeline, ParseError)
    second = run_to_error(pipeline, ParseError)

    assert first is not second
    assert len(first.__notes__) == len(second.__notes__) == 1


def test_errors_are_catchable_by_their_user_type_around_a_loop():
    caught = []
    try:
        for _ in hr.range(10).map(parse):
            pass
    except ParseError as error:
        caught.append(error)

    assert len(caught) == 1


def test_decode_error_is_a_headrace_error_and_a_value_error():
    assert issubclass(hr.DecodeError, hr.HeadraceError)
    assert issubclass(hr.DecodeError, ValueError)


# -- nested pipelines and reused exception objects ------------------------------------


def bad(x):
    if x == 2:
        raise ParseError("bad element")
    return x


def test_an_error_inside_a_zipped_pipeline_names_its_place():
    error = run_to_error(hr.range(5).zip(hr.range(5).map(bad)).batch(2), ParseError)
    notes = stage_notes(error)
    assert len(notes) == 1, notes
    assert "stage 0 (zip) input 1 > stage 1 'map(bad)' on its input element 2" in notes[0]


def test_an_error_inside_an_interleaved_pipeline_names_the_input_element():
    pipeline = hr.range(3).interleave(lambda n: hr.range(4).map(bad), cycle_length=1)
    error = run_to_error(pipeline, ParseError)
    assert (
        "stage 1 (interleave) for input element 0 > stage 1 'map(bad)'" in (stage_notes(error)[0])
    )


def test_a_user_function_that_runs_a_pipeline_gets_its_own_note_too():
    inner = hr.range(5).map(bad)

    def outer(x):
        return sum(inner) + x

    error = run_to_error(hr.range(3).map(outer), ParseError)
    notes = stage_notes(error)
    assert len(notes) == 2, notes
    assert "stage 1 'map(bad)' on its input element 2" in notes[0]
    assert "stage 1 'map(" in notes[1]
    assert "outer)' on its input element 0" in notes[1]


SHARED_ERROR = ParseError("raised from a module constant")


def fail_at(n):
    def check(x):
        if x == n:
            raise SHARED_ERROR
        return x

    return check


def test_a_reused_exception_object_is_noted_again_in_a_later_run():
    with pytest.raises(ParseError):
        list(hr.range(9).map(fail_at(1)))
    with pytest.raises(ParseError) as caught:
        list(hr.range(9).map(fail_at(4)))
    assert "on its input element 4" in stage_notes(caught.value)[-1]


def test_tracebacks_through_fused_stages_show_the_generated_source():
    error = run_to_error(hr.range(5).map(bad).filter(bool), ParseError)
    text = "".join(traceback.format_exception(error))
    assert "x = f0(x)" in text


# -- review regressions: notes --------------------------------------------------------


def check_sorted(x):
    if x == 1:
        raise ValueError("expected the result of zip() to be sorted")
    return x


def test_strict_zip_notes_only_its_own_length_mismatch():
    inner = hr.zip(hr.range(3), hr.range(4), strict=True)
    error = run_to_error(hr.zip(inner, hr.range(9), strict=False), ValueError)
    assert len(stage_notes(error)) == 1
    user = run_to_error(hr.zip(hr.range(3).map(check_sorted), hr.range(3), strict=True), ValueError)
    notes = stage_notes(user)
    assert len(notes) == 1, notes
    assert "map(check_sorted)" in notes[0]


def test_an_error_in_an_interleaved_pipeline_gets_one_note():
    pipeline = hr.range(3).interleave(lambda n: hr.range(4).map(bad), cycle_length=2)
    assert len(stage_notes(run_to_error(pipeline, ParseError))) == 1


def test_standalone_stages_note_errors_from_pipelines_run_inside_them():
    inner = hr.range(5).map(bad)
    with pytest.raises(ParseError) as caught:
        list(stages.map([0], lambda x: sum(inner)))
    notes = stage_notes(caught.value)
    assert len(notes) == 2, notes
    with pytest.raises(ParseError):
        list(stages.map(range(9), fail_at(1)))
    with pytest.raises(ParseError) as again:
        list(stages.map(range(9), fail_at(4)))
    assert "on its input element 4" in stage_notes(again.value)[-1]
