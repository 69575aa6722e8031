"""Runs own what they start: closing, early exits and exceptions release everything."""

from __future__ import annotations

import gc
import gzip
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import headrace as hr
from headrace import stages
from headrace.engine.stage import Stage

# -- user code that records when its ``finally:`` runs ------------------------------


def counting(events: list[str], name: str, stop: int = 1_000) -> Iterator[int]:
    """A source generator that records its start and its ``finally``."""
    events.append(f"{name} start")
    try:
        yield from range(stop)
    finally:
        events.append(f"{name} finally")


def relay(items: Iterator[int], events: list[str]) -> Iterator[int]:
    """A ``pipe`` stage that records its ``finally``."""
    try:
        yield from items
    finally:
        events.append("pipe finally")


def doubling(events: list[str]):
    """A two-``yield`` coroutine step that records its ``finally``."""
    try:
        while True:
            x = yield
            yield 2 * x
    finally:
        events.append("coroutine finally")


def full_chain(events: list[str]) -> hr.Pipeline:
    return (
        hr.from_generator(counting, events, "source")
        .map(lambda x: x + 1)
        .pipe(relay, events)
        .coroutine(doubling, events)
        .filter(lambda x: x % 4 == 0)
    )


ALL_FINALLY = {"source finally", "pipe finally", "coroutine finally"}


def finished(events: list[str]) -> set[str]:
    return {e for e in events if e.endswith("finally")}


# -- Run as a context manager and close() -------------------------------------------


def test_run_is_a_context_manager_that_closes_on_exit():
    events: list[str] = []
    with full_chain(events).iter() as run:
        assert isinstance(run, hr.Run)
        assert not run.closed
        assert next(run) == 4
        assert finished(events) == set()

    assert run.closed
    assert finished(events) == ALL_FINALLY


def test_close_is_idempotent():
    events: list[str] = []
    run = full_chain(events).iter()
    next(run)

    run.close()
    run.close()

    assert run.closed
    assert sorted(finished(events)) == sorted(ALL_FINALLY)
    assert len(events) == len(set(events))  # every finally ran exactly once


def test_closing_a_run_that_never_started_is_harmless():
    events: list[str] = []
    run = full_chain(events).iter()

    run.close()
    run.close()

    assert run.closed
    assert events == []  # nothing was started, so nothing had to be finished


def test_exhausted_run_has_finished_everything_before_close():
    events: list[str] = []
    pipeline = hr.from_generator(counting, events, "source", 5).pipe(relay, events)

    with pipeline.iter() as run:
        assert list(run) == [0, 1, 2, 3, 4]
        assert finished(events) == {"source finally", "pipe finally"}


def test_next_after_close_raises_stop_iteration():
    events: list[str] = []
    run = full_chain(events).iter()
    next(run)
    run.close()

    with pytest.raises(StopIteration):
        next(run)
    assert list(run) == []


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda: hr.range(10).map(str), id="map"),
        pytest.param(lambda: hr.range(10).map(str).take(5), id="map-take"),
        pytest.param(lambda: hr.from_generator(range, 10), id="from_generator"),
        pytest.param(lambda: hr.range(10).cache(), id="cache"),
        pytest.param(lambda: hr.range(10), id="range"),
        pytest.param(lambda: hr.from_iterable([1, 2, 3]), id="list"),
        pytest.param(lambda: hr.range(10).take(5), id="range-take"),
    ],
)
def test_next_after_close_raises_stop_iteration_for_every_kind_of_chain(build):
    run = build().iter()
    next(run)
    run.close()

    assert next(run, "ended") == "ended"


# -- early exits --------------------------------------------------------------------


def test_closing_early_runs_finally_blocks_of_user_generators():
    events: list[str] = []
    run = full_chain(events).iter()
    assert [next(run) for _ in range(3)] == [4, 8, 12]
    assert finished(events) == set()  # still running

    run.close()

    assert finished(events) == ALL_FINALLY
    # Downstream closes first, so no stage sees its upstream vanish under it.
    assert events.index("coroutine finally") < events.index("pipe finally")
    assert events.index("pipe finally") < events.index("source finally")


def test_closing_early_with_stats_runs_finally_blocks_too():
    events: list[str] = []
    with full_chain(events).iter(stats=True) as run:
        next(run)

    assert finished(events) == ALL_FINALLY


def test_break_then_dropping_the_run_runs_finally_blocks():
    events: list[str] = []
    run = full_chain(events).iter()
    for x in run:
        if x > 10:
            break
    assert finished(events) == set()  # the run is still referenced

    del run
    gc.collect()

    assert finished(events) == ALL_FINALLY


def test_break_out_of_a_plain_for_loop_over_the_pipeline_finishes_everything():
    events: list[str] = []
    for x in full_chain(events):
        if x > 10:
            break
    gc.collect()

    assert finished(events) == ALL_FINALLY


def test_an_exception_in_the_consumer_closes_everything():
    events: list[str] = []
    runs = []

    def consume():
        with full_chain(events).iter() as run:
            runs.append(run)
            for x in run:
                if x == 8:
                    raise KeyError("consumer failed")

    with pytest.raises(KeyError, match="consumer failed"):
        consume()

    assert runs[0].closed
    assert finished(events) == ALL_FINALLY


def test_an_exception_in_a_stage_closes_the_other_stages():
    events: list[str] = []

    def fail_at_three(x):
        if x == 3:
            raise ValueError("stage failed")
        return x

    pipeline = hr.from_generator(counting, events, "source").map(fail_at_three).pipe(relay, events)
    with pytest.raises(ValueError, match="stage failed"), pipeline.iter() as run:
        list(run)

    assert finished(events) == {"source finally", "pipe finally"}


# -- sub-pipelines ------------------------------------------------------------------


def _zip(events):
    return hr.zip(hr.from_generator(counting, events, "left"), counting(events, "right"))


def _concat(events):
    return hr.concat(hr.from_generator(counting, events, "left"), hr.range(3))


def _interleave(events):
    names = ["left", "right", "third"]
    return hr.from_iterable(names).interleave(
        lambda name: hr.from_generator(counting, events, name).pipe(relay, events),
        cycle_length=2,
    )


def _interleave_generators(events):
    return hr.from_iterable(["left", "right"]).interleave(
        lambda name: counting(events, name), cycle_length=2
    )


@pytest.mark.parametrize("build", [_zip, _concat, _interleave, _interleave_generators])
def test_closing_early_closes_sub_pipelines(build):
    events: list[str] = []
    run = build(events).iter()
    for _ in range(5):
        next(run)
    started = {e.removesuffix(" start") for e in events if e.endswith(" start")}
    assert started
    assert finished(events) == set()

    run.close()

    assert {f"{s} finally" for s in started} <= set(events)


@pytest.mark.parametrize("build", [_zip, _concat, _interleave])
def test_break_and_garbage_collection_close_sub_pipelines(build):
    events: list[str] = []
    run = build(events).iter()
    for i, _ in enumerate(run):
        if i == 4:
            break
    started = {e.removesuffix(" start") for e in events if e.endswith(" start")}

    del run
    gc.collect()

    assert {f"{s} finally" for s in started} <= set(events)


def test_concat_closes_each_part_before_opening_the_next():
    events: list[str] = []
    pipeline = hr.concat(
        hr.from_generator(counting, events, "a", 2), hr.from_generator(counting, events, "b", 2)
    )

    assert list(pipeline) == [0, 1, 0, 1]
    assert events == ["a start", "a finally", "b start", "b finally"]


def test_repeat_closes_each_repetition_before_starting_the_next():
    events: list[str] = []
    # take(2) stops every repetition early, so only repeat can close the source.
    pipeline = hr.from_generator(counting, events, "rep").take(2).repeat(3)

    assert list(pipeline) == [0, 1, 0, 1, 0, 1]
    assert events == ["rep start", "rep finally"] * 3


def test_closing_in_the_middle_of_a_repetition_closes_it():
    events: list[str] = []
    run = hr.from_generator(counting, events, "rep").pipe(relay, events).repeat().iter()
    for _ in range(1_500):  # into the second repetition
        next(run)
    assert events == ["rep start", "rep finally", "pipe finally", "rep start"]

    run.close()

    assert events[-2:] == ["pipe finally", "rep finally"]


# -- text_lines releases its files --------------------------------------------------


@pytest.fixture
def opened(monkeypatch):
    """Every stream text_lines opens, so a test can check that it was closed."""
    streams = []
    # The module that opens files for text_lines, found through the function's home.
    module = sys.modules[type(hr.text_lines("unused.txt").stages[0]).__module__]
    module = sys.modules[module.line_file.__module__]
    real = module.open_binary

    def recording(path):
        stream = real(path)
        streams.append(stream)
        return stream

    monkeypatch.setattr(module, "open_binary", recording)
    return streams


def _write(path: Path, count: int) -> str:
    data = "".join(f"{path.stem} {i}\n" for i in range(count)).encode()
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as stream:
            stream.write(data)
    else:
        path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize("name", ["lines.txt", "lines.gz"])
def test_text_lines_closes_its_file_when_the_run_closes_early(tmp_path, opened, name):
    path = _write(tmp_path / name, 1_000)

    with hr.text_lines(path).iter() as run:
        assert next(run) == f"{Path(name).stem} 0"
        assert len(opened) == 1
        assert not opened[0].closed

    assert opened[0].closed


def test_text_lines_closes_its_file_after_take(tmp_path, opened):
    path = _write(tmp_path / "lines.gz", 1_000)

    with hr.text_lines(path).take(3).iter() as run:
        assert len(list(run)) == 3

    assert [s.closed for s in opened] == [True]


def test_text_lines_closes_its_file_after_break_and_garbage_collection(tmp_path, opened):
    path = _write(tmp_path / "lines.txt", 1_000)

    run = hr.text_lines(path).iter()
    for _ in run:
        break
    assert not opened[0].closed
    del run
    gc.collect()

    assert opened[0].closed


def test_text_lines_closes_each_file_as_it_moves_to_the_next(tmp_path, opened):
    first = _write(tmp_path / "a.txt", 2)
    _write(tmp_path / "b.gz", 2)

    with hr.text_lines(str(tmp_path / "*")).iter() as run:
        assert [next(run), next(run), next(run)] == ["a 0", "a 1", "b 0"]
        assert [s.closed for s in opened] == [True, False]
        assert first.endswith("a.txt")

    assert [s.closed for s in opened] == [True, True]


def test_interleaved_text_lines_close_every_open_file(tmp_path, opened):
    for name in ["a.txt", "b.gz", "c.txt"]:
        _write(tmp_path / name, 100)

    pipeline = hr.files(str(tmp_path / "*")).interleave(hr.text_lines, cycle_length=3)
    with pipeline.iter() as run:
        assert [next(run) for _ in range(3)] == ["a 0", "b 0", "c 0"]
        assert len(opened) == 3
        assert not any(s.closed for s in opened)

    assert all(s.closed for s in opened)


def test_text_lines_closes_its_file_when_decoding_fails(tmp_path, opened):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"fine\n\xff\n")

    with pytest.raises(hr.DecodeError), hr.text_lines(str(path)).iter() as run:
        list(run)

    assert [s.closed for s in opened] == [True]


# -- closing without the garbage collector ------------------------------------------


class Tracked:
    """A source whose generator records when its finally block runs."""

    def __init__(self, n: int = 10) -> None:
        self.n = n
        self.finished = 0

    def __call__(self):
        try:
            yield from range(self.n)
        finally:
            self.finished += 1


def explode_at_3(x):
    if x == 3:
        raise ValueError("three")
    return x


def test_exhaustion_closes_the_run_and_its_sources_while_it_is_still_referenced():
    source = Tracked()
    gc.disable()
    try:
        run = hr.from_generator(source).map(str).take(5).iter()
        assert list(run) == ["0", "1", "2", "3", "4"]
        assert run.closed
        assert source.finished == 1
    finally:
        gc.enable()


def test_an_error_closes_everything_upstream_while_the_run_is_still_referenced():
    source = Tracked()
    inner = Tracked()
    gc.disable()
    try:
        run = (
            hr.from_generator(source)
            .zip(hr.from_generator(inner))
            .map(lambda pair: pair[0])
            .batch(2)
            .unbatch()
            .map(explode_at_3)
            .iter()
        )
        with pytest.raises(ValueError, match="three"):
            list(run)
        assert (source.finished, inner.finished) == (1, 1)
    finally:
        gc.enable()


def test_take_closes_its_upstream_as_soon_as_it_has_its_elements():
    source = Tracked(n=1000)
    run = hr.from_generator(source).take(2).map(str).iter()
    assert [next(run), next(run)] == ["0", "1"]
    assert source.finished == 0
    assert next(run, "end") == "end"
    assert source.finished == 1  # closed when take ended, not when the run is dropped


def passthrough(items):
    yield from items


def test_closing_a_stats_run_reaches_every_stage():
    source = Tracked()
    run = hr.from_generator(source).pipe(passthrough).map(str).iter(stats=True)
    keep = list(run._chain.nodes)  # extra references must not keep stages open
    next(run)
    run.close()
    assert source.finished == 1
    assert keep


def test_close_from_inside_the_run_is_refused_and_can_be_retried():
    holder: dict[str, object] = {}

    def close_myself(x):
        if x == 1:
            holder["run"].close()
        return x

    run = hr.range(5).map(close_myself).iter()
    holder["run"] = run
    assert next(run) == 0
    with pytest.raises(ValueError, match="while it is producing an element"):
        next(run)
    run.close()  # the retry succeeds once nothing is executing
    assert run.closed
    assert next(run, "end") == "end"


def test_a_run_cannot_be_pickled_or_made_by_from_iterable():
    import pickle

    with pytest.raises(TypeError, match="pickle the Pipeline"):
        pickle.dumps(hr.range(3).iter())
    with pytest.raises(TypeError, match=r"Pipeline\.iter\(\)"):
        hr.Run.from_iterable([[1]])


# -- review regressions: closing ----------------------------------------------------


def test_an_error_after_a_pipe_stage_closes_the_source_behind_the_pipe():
    source = Tracked()
    gc.disable()
    try:
        run = hr.from_generator(source).pipe(passthrough).map(explode_at_3).iter()
        with pytest.raises(ValueError, match="three"):
            list(run)
        assert source.finished == 1
    finally:
        gc.enable()


def test_standalone_stage_functions_leave_the_callers_iterator_open(tmp_path):
    path = tmp_path / "rows.txt"
    path.write_text("a\nb\nc\n")
    with path.open() as rows:
        assert list(stages.take(rows, 1)) == ["a\n"]
        assert list(rows) == ["b\n", "c\n"]  # as itertools.islice would leave it
    numbers = iter(range(10))
    assert list(stages.take(stages.map(numbers, str), 2)) == ["0", "1"]
    assert next(numbers) == 2


def test_a_failing_cleanup_does_not_hide_the_users_error():
    def source():
        try:
            yield from range(10)
        finally:
            raise OSError("cleanup failed")

    with pytest.raises(ZeroDivisionError) as caught:
        list(hr.from_generator(source).map(lambda x: 1 // (x - 3)))
    notes = caught.value.__notes__
    assert "on its input element 3" in notes[0]
    assert "closing a stage also failed: OSError: cleanup failed" in notes[1]


def test_closing_from_another_thread_while_producing_is_refused_cleanly():
    import threading

    started, release = threading.Event(), threading.Event()
    outcome: list[str] = []

    def slow(x):
        if x == 1:
            started.set()
            release.wait(10)
        return x

    run = hr.range(50).map(slow).iter()

    def watchdog():
        started.wait(10)
        try:
            run.close()
        except ValueError as error:
            outcome.append(str(error))
        finally:
            release.set()

    thread = threading.Thread(target=watchdog)
    thread.start()
    assert list(run) == list(range(50))  # the consumer is not disturbed
    thread.join(10)
    assert not thread.is_alive()
    assert outcome
    assert "while it is producing an element" in outcome[0]
    assert run.closed


def test_a_file_source_stops_cleanly_after_close(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("a\nb\nc\n")
    with path.open() as handle:
        run = hr.from_iterable(handle).iter()
        assert next(run) == "a\n"
        run.close()
        assert next(run, "end") == "end"


class HoldsOnOpen(Stage):
    """A source that acquires something when opened, as a prefetch thread will."""

    __slots__ = ("released",)
    is_source = True

    def __init__(self) -> None:
        self.released: list[str] = []

    @property
    def name(self) -> str:
        return "holds_on_open()"

    def open(self, upstream, ctx):
        released = self.released

        class Handle:
            closed = False

            def __iter__(self):
                return self

            def __next__(self):
                raise StopIteration

            def close(self):  # idempotent, as close() methods are
                if not self.closed:
                    self.closed = True
                    released.append(ctx.label)

        return Handle()


def test_zip_closes_opened_inputs_when_a_later_input_fails_to_open():
    holder = HoldsOnOpen()
    pipeline = hr.Pipeline((holder,)).zip(hr.from_iterable(iter([1, 2])))
    assert list(pipeline) == []  # the first run spends the one-shot input
    with pytest.raises(RuntimeError, match="one-shot"):
        list(pipeline)  # input 1 refuses to open; input 0 was already open
    assert holder.released == ["stage 0 (zip) input 0 > stage 0 'holds_on_open()'"] * 2


def test_a_chain_closes_what_it_opened_when_a_later_stage_fails_to_open():
    holder = HoldsOnOpen()

    def step():
        while True:
            x = yield
            yield x

    made = step()
    pipeline = hr.Pipeline((holder,)).coroutine(made)
    list(pipeline)
    with pytest.raises(RuntimeError, match="only one run"):
        pipeline.iter()
    assert len(holder.released) == 2  # the first run's handle, and the failed second's


def test_flat_map_closes_the_inner_iterables_it_leaves_early():
    inner = Tracked(n=100)
    run = hr.range(3).flat_map(lambda _: inner()).take(2).iter()
    assert list(run) == [0, 1]
    assert inner.finished == 1


def test_a_system_exit_upstream_of_prefetch_reaches_the_consumer_instead_of_hanging():
    def leaves():
        yield 1
        sys.exit(3)

    with pytest.raises(SystemExit) as caught:
        list(hr.from_generator(leaves).prefetch(2))
    assert caught.value.code == 3
