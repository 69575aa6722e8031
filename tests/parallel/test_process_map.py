"""``map(fn, workers=N, backend="process")``: it equals ``map(fn)`` and owns its processes.

Workers are child processes of the test process and numpy buffers of 64 KiB and more
travel through ``/dev/shm`` segments named after this process, so the conftest's
autouse fixtures check after every test that no child process and no segment is left;
the tests of the ways a run ends check it explicitly as well, right at the exit. No
test asserts a wall-clock time beyond generous bounds that tell a hang from a stop.

Starting a run's workers costs a fraction of a second, so each test starts few runs,
and the laws (ordered map equals map, unordered map is a permutation of it) are
checked on a handful of worker and buffer counts rather than with Hypothesis.

The module's own functions and classes are sent to workers by value: in importlib
mode this module is registered as ``parallel.test_process_map``, a name the workers
cannot import.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import pickle
import re
import signal
import subprocess
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import pytest

import headrace as hr

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(
        not sys.platform.startswith("linux"),
        reason="lists worker processes and segments via /proc and /dev/shm",
    ),
]

#: Float64 elements in an array that travels through shared memory (128 KiB).
BIG = 16 * 1024
#: ... and in one of 4 MB, for the memory bound.
HUGE = 500_000


def process_map(pipeline: hr.Pipeline[Any], fn: Callable[[Any], Any], **options: Any) -> Any:
    return pipeline.map(fn, backend="process", **options)


# -- user functions (module level, so that stage names are their plain names) ---------


def double(x: int) -> int:
    return 2 * x


def jittery(x: int) -> int:
    """Sleeps 0, 2 or 4 ms by ``x``, so calls finish in an order other than the input's."""
    time.sleep((x % 3) * 0.002)
    return 3 * x + 1


def big(x: int) -> np.ndarray:
    """A result large enough to go through shared memory."""
    return np.full(BIG, x, np.float64)


def sluggish_big(x: int) -> np.ndarray:
    time.sleep(0.005)
    return big(x)


def never_returns_on_zero(x: int) -> np.ndarray:
    if x == 0:
        time.sleep(1000)
    return big(x)


def never_returns_on_zero_ignoring_sigterm(x: int) -> np.ndarray:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return never_returns_on_zero(x)


class ParseError(Exception):
    """A user exception type headrace knows nothing about."""


def parse(x: int) -> int:
    if x == 7:
        raise ParseError(f"cannot parse {x}")
    time.sleep(0.005)
    return x


class NeedsTwo(Exception):
    """Pickles, but cannot be rebuilt: unpickling calls ``NeedsTwo(message)``."""

    def __init__(self, value: int, reason: str) -> None:
        super().__init__(f"value {value}: {reason}")


def raise_needs_two(x: int) -> int:
    if x == 2:
        raise NeedsTwo(x, "too even")
    return x


def lock_on_two(x: int) -> Any:
    return threading.Lock() if x == 2 else x


def kill_self_on_one(x: int) -> Any:
    if x == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    # A result that takes a while to write through the pipe (bytes are not sent
    # through shared memory): the worker dies while the consumer is still reading it.
    return bytes(32 << 20) if x == 0 else x


def noisy(x: int, rng: np.random.Generator) -> float:
    return x + float(rng.normal())


#: How long ``sleepy`` sleeps.
SLEEP_S = 0.01


def sleepy(x: int) -> int:
    time.sleep(SLEEP_S)
    return x


def memory_owner(array: np.ndarray) -> object:
    """The object at the end of an array's chain of bases: what owns its memory."""
    owner: object = array
    while True:
        if isinstance(owner, np.ndarray) and owner.base is not None:
            owner = owner.base
        elif isinstance(owner, memoryview):
            owner = owner.obj
        else:
            return owner


def ordinary(array: np.ndarray) -> bool:
    """Writable, and its memory is the process's own (no mapping of a segment)."""
    owner = memory_owner(array)
    owned = isinstance(owner, bytearray) or (isinstance(owner, np.ndarray) and owner.flags.owndata)
    return bool(array.flags.writeable) and owned


def arrays_in(obj: Any) -> list[np.ndarray]:
    if isinstance(obj, np.ndarray):
        return [obj]
    if isinstance(obj, dict):
        return [a for value in obj.values() for a in arrays_in(value)]
    if isinstance(obj, tuple | list):
        return [a for value in obj for a in arrays_in(value)]
    return []


def reshape(element: dict[str, Any]) -> tuple[list[bool], dict[str, Any]]:
    """Reports how its arrays arrived, and answers with arrays of its own."""
    arrived = [ordinary(a) for a in arrays_in(element)]
    small, large = element["pair"]
    return arrived, {"sum": (small * 2, large + 1), "big": np.ones((256, 64)) * element["id"]}


class Counted:
    """A source function that counts the elements taken from it."""

    def __init__(self, count: int, make: Callable[[int], Any] = int) -> None:
        self.count = count
        self.make = make
        self.taken = 0

    def __call__(self) -> Iterator[Any]:
        for i in range(self.count):
            # Counted before the yield: a suspended generator has handed this one out.
            self.taken += 1
            yield self.make(i)


def huge(i: int) -> np.ndarray:
    return np.full(HUGE, i, np.float64)


def stage_notes(error: BaseException) -> list[str]:
    """The notes headrace attached naming a stage."""
    return [n for n in getattr(error, "__notes__", []) if n.startswith("headrace: raised in")]


def worker_tracebacks(error: BaseException) -> list[str]:
    return [
        n for n in getattr(error, "__notes__", []) if n.startswith("headrace: traceback in worker")
    ]


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and has not exited (a zombie has)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            state = next(line for line in status if line.startswith("State:"))
    except (FileNotFoundError, ProcessLookupError, StopIteration):
        return False
    return "zombie" not in state


def closes_promptly(
    run: hr.Run[Any], children_left: Callable[[], list[str]], segments_left: Callable[[], Any]
) -> None:
    """Close ``run``: quickly, and leaving no worker process and no segment behind."""
    start = time.monotonic()
    run.close()
    elapsed = time.monotonic() - start
    # Generous: close() grants the workers 0.2 s to finish, then kills them.
    assert elapsed < 3, f"close() took {elapsed:.1f} s"
    assert children_left() == []
    assert segments_left() == {}


def endless() -> hr.Pipeline[int]:
    return hr.range(10**12)


# -- it equals map(fn) -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("workers", "buffer_size"), [(1, None), (2, None), (3, None), (2, 1), (3, 7)]
)
def test_ordered_output_equals_map(workers, buffer_size):
    pipeline = hr.range(40)

    parallel = process_map(pipeline, jittery, workers=workers, buffer_size=buffer_size)

    threads = set(threading.enumerate())
    out = []
    with parallel.iter(stats=False) as run:  # statistics sample on a thread of their own
        for x in run:
            out.append(x)
            # The consumer's thread coordinates the workers: no thread is started here.
            assert set(threading.enumerate()) == threads
    assert out == list(pipeline.map(jittery))


@pytest.mark.parametrize(("workers", "buffer_size"), [(2, None), (3, 2)])
def test_unordered_output_is_a_permutation_of_map(workers, buffer_size):
    pipeline = hr.range(40)

    parallel = process_map(
        pipeline, jittery, workers=workers, buffer_size=buffer_size, ordered=False
    )

    assert sorted(parallel) == sorted(pipeline.map(jittery))


def test_lambdas_and_closures_travel_to_the_workers():
    offset = 1000
    lookup = {i: f"#{i}" for i in range(10)}

    def label(x: int) -> str:
        return f"{lookup[x % 10]}+{offset}"

    pipeline = process_map(
        process_map(hr.range(25), lambda x: x + offset, workers=2), label, workers=2
    )

    assert list(pipeline) == [f"#{(x + 1000) % 10}+1000" for x in range(25)]


def test_an_empty_input_starts_and_stops_cleanly():
    assert list(process_map(hr.from_iterable([]), double, workers=2)) == []


@pytest.mark.parametrize("shared_memory", ["default", "0"])
def test_numpy_arrays_arrive_equal_writable_and_in_ordinary_memory(
    shared_memory, monkeypatch, segments
):
    if shared_memory != "default":
        monkeypatch.setenv("HEADRACE_SHARED_MEMORY", shared_memory)
    elements = [
        {
            "id": i,
            "pair": (np.arange(10, dtype=np.int32) + i, np.full(BIG, float(i))),
            "meta": "plain",
        }
        for i in range(6)
    ]
    seen: list[dict[str, int]] = []

    pipeline = process_map(hr.from_iterable(elements), reshape, workers=2)
    with pipeline.iter() as run:
        results = []
        for result in run:
            results.append(result)
            seen.append(segments())

    for i, (arrived, answer) in enumerate(results):
        assert arrived == [True, True], "elements reached the worker read-only or mapped"
        small, large = answer["sum"]
        np.testing.assert_array_equal(small, (np.arange(10, dtype=np.int32) + i) * 2)
        np.testing.assert_array_equal(large, np.full(BIG, float(i)) + 1)
        np.testing.assert_array_equal(answer["big"], np.ones((256, 64)) * i)
        assert small.dtype == np.int32
        assert answer["big"].shape == (256, 64)
        for array in (small, large, answer["big"]):
            assert ordinary(array), memory_owner(array)
            array += 1  # writable, and the segments it came through are gone by now
    if shared_memory == "default":
        assert any(seen), "large arrays should have gone through shared memory"
    else:
        assert not any(seen), f"HEADRACE_SHARED_MEMORY=0 still made segments: {seen}"


def test_numpy_arrays_of_every_layout_and_dtype_come_back_equal():
    structured = np.zeros(BIG, dtype=[("a", np.int64), ("b", np.float32)])
    structured["a"] = np.arange(BIG)
    element = {
        "fortran": np.asfortranarray(np.arange(2 * BIG, dtype=np.float32).reshape(128, -1)),
        "strided": np.arange(2 * BIG, dtype=np.float64)[::2],
        "structured": structured,
        "objects": np.array([{"x": 1}, "s", None], dtype=object),
        "scalar": np.float64(3.5),
        "zero_d": np.array(7.0),
        "empty": np.empty((0, 3)),
    }

    (back,) = process_map(hr.from_iterable([element]), lambda e: e, workers=1)

    assert back.keys() == element.keys()
    for key, array in element.items():
        assert type(back[key]) is type(array), key
        assert back[key].dtype == array.dtype, key
        assert back[key].shape == array.shape, key
        if key != "objects":
            np.testing.assert_array_equal(back[key], array)
    assert list(back["objects"]) == list(element["objects"])
    assert back["fortran"].flags.f_contiguous


@pytest.mark.parametrize("value", ["lots", "1.5"])
def test_a_bad_shared_memory_setting_is_refused_naming_the_variable(value, monkeypatch, children):
    monkeypatch.setenv("HEADRACE_SHARED_MEMORY", value)

    with pytest.raises(ValueError, match="HEADRACE_SHARED_MEMORY"):
        list(process_map(hr.range(3), double, workers=2))
    assert children() == []


def test_two_runs_at_once_keep_their_own_workers_and_segments(children, segments):
    pipeline = process_map(hr.range(20), big, workers=2)
    first, second = pipeline.iter(), pipeline.iter()
    for i in range(3):
        assert next(first)[0] == i
        assert next(second)[0] == i
    assert len(children()) == 4
    run_name = len(f"hr{os.getpid()}_") + 7  # "_" ends the run's name; then "p" or "w"
    runs = {name[:run_name] for name in segments()}
    assert len(runs) == 2, sorted(segments())

    first.close()

    # Closed without an error: its workers finish what they hold and are kept for
    # the next run. The other run goes on undisturbed.
    assert len(children()) == 4
    assert [a[0] for a in second] == list(range(3, 20))
    # One set of workers is kept; the other stopped, with its segments.
    assert len(children()) == 2
    assert len({name[:run_name] for name in segments()}) == 1
    pipeline.close()
    assert children() == []
    assert segments() == {}


def three_then_fail() -> Iterator[int]:
    yield from range(3)
    raise ParseError("source broke")


def test_an_upstream_error_passes_through_with_its_note(children_left):
    with pytest.raises(ParseError, match="source broke") as info:
        list(process_map(hr.from_generator(three_then_fail), double, workers=2))

    notes = stage_notes(info.value)
    assert len(notes) == 1, info.value.__notes__
    assert "stage 0 'from_generator(three_then_fail)'" in notes[0]
    assert children_left() == []


def test_a_process_map_pickles_and_the_copy_runs_like_the_original():
    pipeline = process_map(hr.range(12), jittery, workers=2, ordered=True, buffer_size=3)

    copy = pickle.loads(pickle.dumps(pipeline))

    assert list(copy) == list(hr.range(12).map(jittery))


def test_process_maps_inside_zip_and_repeat_equal_maps():
    def build(**options: Any) -> hr.Pipeline[Any]:
        left = hr.range(15).map(jittery, **options)
        return left.zip(hr.range(15).map(double, **options)).repeat(2)

    assert list(build(workers=2, backend="process")) == list(build())


def test_random_map_on_processes_equals_random_map_inline():
    inline = hr.range(30).random_map(noisy, seed=11)
    processes = hr.range(30).random_map(noisy, seed=11, workers=2, backend="process")

    assert list(processes.iter(epoch=1)) == list(inline.iter(epoch=1))


# -- errors from fn ----------------------------------------------------------------------


@pytest.mark.parametrize("ordered", [True, False])
def test_a_worker_error_keeps_its_type_and_is_noted_with_index_and_worker_traceback(
    ordered, children_left, segments_left
):
    run = process_map(hr.range(40), parse, workers=3, ordered=ordered).iter()
    seen: list[int] = []

    with pytest.raises(ParseError) as info:
        seen.extend(run)

    error = info.value
    assert type(error) is ParseError  # the user's own type, not a wrapper
    assert str(error) == "cannot parse 7"
    notes = stage_notes(error)
    assert len(notes) == 1, error.__notes__
    assert re.search(r"stage 1 .*\bparse\b.*on its input element 7\b", notes[0]), notes
    tracebacks = worker_tracebacks(error)
    assert len(tracebacks) == 1, error.__notes__
    assert re.match(r"headrace: traceback in worker process \d+:", tracebacks[0])
    assert 'raise ParseError(f"cannot parse {x}")' in tracebacks[0]  # the user's line
    assert Path(__file__).name in tracebacks[0]
    assert 7 not in seen
    if ordered:
        assert seen == list(range(7))
    # The run is still referenced here: the error itself stopped every worker.
    assert children_left() == []
    assert segments_left() == {}


def test_an_exception_that_cannot_be_rebuilt_still_arrives_as_a_worker_error(children_left):
    with pytest.raises(hr.WorkerError) as info:
        list(process_map(hr.range(10), raise_needs_two, workers=2))

    message = str(info.value)
    assert "NeedsTwo" in message
    assert "value 2: too even" in message
    assert re.search(r"on its input element 2\b", " ".join(stage_notes(info.value)))
    assert "raise NeedsTwo(x, " in " ".join(worker_tracebacks(info.value))
    assert children_left() == []


@pytest.mark.parametrize(
    "make", [threading.Lock, lambda: (i for i in range(3))], ids=["lock", "generator"]
)
def test_an_unpicklable_element_is_refused_naming_the_stage_and_index(make, children_left):
    elements = [0, 1, make(), 3]

    with pytest.raises(TypeError, match="pickle") as info:
        list(process_map(hr.from_iterable(elements), double, workers=2))

    notes = stage_notes(info.value)
    assert len(notes) == 1, info.value.__notes__
    assert re.search(r"stage 1 .*\bdouble\b.*on its input element 2\b", notes[0]), notes
    assert any("must be picklable" in n for n in info.value.__notes__), info.value.__notes__
    assert children_left() == []


def test_an_unpicklable_result_is_reported_from_the_worker(children_left):
    with pytest.raises(TypeError, match="pickle") as info:
        list(process_map(hr.range(6), lock_on_two, workers=2))

    notes = info.value.__notes__
    assert any("results of the process backend must be picklable" in n for n in notes), notes
    assert re.search(r"on its input element 2\b", " ".join(stage_notes(info.value)))
    assert children_left() == []


def test_a_function_cloudpickle_cannot_send_is_refused_when_the_run_starts(children):
    lock = threading.Lock()
    run = process_map(hr.range(5), lambda x: (lock, x)[1], workers=2).iter()

    with pytest.raises(TypeError, match="pickle") as info:
        next(run)

    notes = info.value.__notes__
    assert any("could not send its function to worker processes" in n for n in notes), notes
    assert children() == []  # refused before any worker was started


def test_a_function_the_workers_cannot_load_is_reported_when_the_run_starts(
    monkeypatch, children_left
):
    # Importable here, not in a fresh interpreter: cloudpickle sends it by reference.
    module = types.ModuleType("headrace_nowhere_to_be_found")
    exec("def triple(x):\n    return 3 * x\n", module.__dict__)
    monkeypatch.setitem(sys.modules, module.__name__, module)

    with pytest.raises(ImportError, match="headrace_nowhere_to_be_found") as info:
        list(process_map(hr.range(5), module.triple, workers=2))

    notes = info.value.__notes__
    assert any("could not load the stage's function" in n for n in notes), notes
    assert any("stage 1 " in n for n in stage_notes(info.value)), notes
    assert children_left() == []


# -- dead workers ------------------------------------------------------------------------


def die(how: str, record: Path, x: int) -> int:
    if x == 3:
        record.write_text(str(os.getpid()))
        if how == "SIGKILL":
            os.kill(os.getpid(), signal.SIGKILL)
        else:
            os._exit(3)
    time.sleep(0.002)
    return x


@pytest.mark.parametrize(
    ("how", "reported"), [("SIGKILL", r"signal 9 \(SIGKILL\b"), ("exit", r"exited with code 3\b")]
)
def test_a_dead_worker_raises_worker_error_naming_its_pid_and_how_it_ended(
    how, reported, tmp_path, children_left, segments_left
):
    record = tmp_path / "pid"
    pipeline = process_map(hr.range(10**6), functools.partial(die, how, record), workers=2)

    start = time.monotonic()
    with pytest.raises(hr.WorkerError) as info:
        list(pipeline)
    elapsed = time.monotonic() - start

    assert elapsed < 5, f"the death was noticed only after {elapsed:.1f} s"
    message = str(info.value)
    assert f"worker process {record.read_text()} " in message
    assert re.search(reported, message), message
    assert re.search(r"stage 1 .*\bpartial\(die\)", message), message
    assert children_left() == []
    assert segments_left() == {}


def test_a_dead_worker_is_reported_with_the_element_it_died_on():
    # One worker holds elements 0 and 1; it finishes 0 and dies on 1 (as the kernel's
    # out-of-memory killer might, right after a large result). WorkerError promises
    # "the element it was working on": a message naming only element 0, whose result
    # had not quite reached the consumer yet, sends the user to the wrong element.
    pipeline = process_map(hr.range(10), kill_self_on_one, workers=1, buffer_size=2)

    with pytest.raises(hr.WorkerError) as info:
        list(pipeline)

    assert re.search(r"\belements?\b[^;]*?\b1\b", str(info.value)), str(info.value)


# -- every way a run ends leaves its workers idle or stopped; none outlives its pipeline -


def running(
    run: Iterator[Any], children: Callable[[], list[str]], segments: Callable[[], Any]
) -> None:
    """Advance a fresh run of ``sluggish_big`` a few elements; check it has workers."""
    for _ in range(3):
        next(run)
    assert len(children()) == 2, children()
    assert segments(), "results of 128 KiB should have gone through shared memory"


def test_break_then_del_and_gc_stops_the_workers(children, children_left, segments_left):
    run = process_map(endless(), sluggish_big, workers=2).iter()
    for i, _ in enumerate(run):
        if i == 2:
            assert len(children()) == 2
            break

    del run
    gc.collect()

    assert children_left() == []
    assert segments_left() == {}


def test_close_keeps_the_workers_for_the_pipelines_next_run(
    children, children_left, segments, segments_left
):
    pipeline = process_map(endless(), sluggish_big, workers=2, ordered=False)
    run = pipeline.iter()
    running(run, children, segments)

    def pids() -> list[str]:
        return [line.split()[0] for line in children()]

    workers = pids()

    run.close()

    assert run.closed
    run.close()  # idempotent
    assert list(run) == []
    # The workers finished the calls in hand and wait for the next run, which uses them.
    assert pids() == workers
    again = pipeline.iter()
    running(again, children, segments)
    assert pids() == workers
    again.close()
    pipeline.close()
    assert children_left() == []
    assert segments_left() == {}


def test_leaving_a_with_block_early_then_dropping_the_pipeline_stops_the_workers(
    children, children_left, segments, segments_left
):
    with process_map(endless(), sluggish_big, workers=2).iter() as run:
        running(run, children, segments)

    assert run.closed
    del run  # the last reference to the pipeline
    assert children_left() == []
    assert segments_left() == {}


def test_an_exception_in_the_consumers_loop_stops_the_workers(
    children, children_left, segments, segments_left
):
    def consume() -> None:
        # No name holds the run: only the loop does, and the error unwinds it.
        for i, _ in enumerate(process_map(endless(), sluggish_big, workers=2)):
            if i == 3:
                assert len(children()) == 2
                raise RuntimeError("consumer")

    with pytest.raises(RuntimeError, match="consumer") as info:
        consume()
    gc.collect()

    assert stage_notes(info.value) == []  # the consumer's error, untouched by cleanup
    assert children_left() == []
    assert segments_left() == {}


def test_deleting_a_half_consumed_run_stops_the_workers(
    children, children_left, segments, segments_left
):
    run = process_map(endless(), sluggish_big, workers=2, buffer_size=3).iter()
    running(run, children, segments)

    del run
    gc.collect()

    assert children_left() == []
    assert segments_left() == {}


@pytest.mark.parametrize(
    "fn",
    [never_returns_on_zero, never_returns_on_zero_ignoring_sigterm],
    ids=["plain", "no-sigterm"],
)
def test_close_stops_a_worker_whose_call_never_returns(fn, children, children_left, segments_left):
    # Unordered, so the other worker's results come while element 0 hangs forever.
    run = process_map(endless(), fn, workers=2, ordered=False).iter()
    first = next(run)
    assert first[0] != 0
    assert len(children()) == 2

    closes_promptly(run, children_left, segments_left)


CTRL_C_SCRIPT = """
import glob, os, time
import headrace as hr

def slow_after_zero(x):
    if x:
        time.sleep(1000)
    return x

run = hr.range(100).map(slow_after_zero, workers=2, backend="process").iter()
assert next(run) == 0
pids = []
for path in glob.glob(f"/proc/{os.getpid()}/task/*/children"):
    with open(path) as children:
        pids += children.read().split()
print(" ".join(pids), flush=True)
next(run)  # every worker is busy for 1000 s: the consumer waits here
"""


def test_ctrl_c_while_the_consumer_waits_ends_the_script_and_its_workers(tmp_path):
    script = tmp_path / "interrupted.py"
    script.write_text(CTRL_C_SCRIPT)
    # Its own session, like a terminal's foreground job: Ctrl-C reaches the whole group,
    # workers included (they ignore it; the script decides how they stop).
    with subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as child:
        try:
            line = child.stdout.readline() if child.stdout else ""
            pids = [int(p) for p in line.split()]
            assert len(pids) == 2, line
            os.killpg(child.pid, signal.SIGINT)
            _, stderr = child.communicate(timeout=10)
        finally:
            with contextlib.suppress(ProcessLookupError):  # whatever is left of the group
                os.killpg(child.pid, signal.SIGKILL)

    assert child.returncode == -signal.SIGINT, stderr
    assert "KeyboardInterrupt" in stderr
    left = [pid for pid in pids if alive(pid)]
    assert left == [], f"workers {left} outlived the interrupted script"


ORPHAN_SCRIPT = """
import glob, os, sys, time
import numpy as np
import headrace as hr

def slow_after_zero(array):
    if array[0]:
        time.sleep(1000)
    return array

busy = sys.argv[1] == "busy"
# Arrays of 256 KiB: the elements in flight sit in shared-memory segments.
arrays = hr.range(100).map(lambda i: np.full(32 * 1024, i, np.float64))
run = arrays.map(slow_after_zero if busy else abs, workers=2, buffer_size=4, backend="process")
run = run.iter()
next(run)
pids = []
for path in glob.glob(f"/proc/{os.getpid()}/task/*/children"):
    with open(path) as children:
        pids += children.read().split()
print(" ".join(pids), flush=True)
time.sleep(0.3)
if busy:
    next(run)  # every worker is inside a call that lasts 1000 s
time.sleep(1000)  # a stuck consumer; its workers wait for tasks
"""


@pytest.mark.parametrize("state", ["idle", "busy"])
def test_workers_leave_and_remove_the_segments_when_their_parent_is_killed(state, tmp_path):
    script = tmp_path / "killed.py"
    script.write_text(ORPHAN_SCRIPT)
    pids: list[int] = []
    with subprocess.Popen(
        [sys.executable, str(script), state],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as child:
        try:
            line = child.stdout.readline() if child.stdout else ""
            pids += [int(p) for p in line.split()]
            assert len(pids) == 2, line
            time.sleep(0.5)  # the busy case: let the consumer block in its second next()
            prefix = f"hr{child.pid}_"
            assert any(name.startswith(prefix) for name in os.listdir("/dev/shm"))
            child.kill()  # SIGKILL: no cleanup code runs in the parent
            child.wait(10)
            deadline = time.monotonic() + 3
            while any(alive(pid) for pid in pids) or any(
                name.startswith(prefix) for name in os.listdir("/dev/shm")
            ):
                assert time.monotonic() < deadline, "workers or segments outlived the parent"
                time.sleep(0.01)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


# -- bounded memory ----------------------------------------------------------------------


@pytest.mark.parametrize("ordered", [True, False])
def test_a_slow_consumer_bounds_elements_in_flight_and_shared_memory(ordered, segments):
    workers, buffer_size = 2, 3
    source = Counted(25, huge)
    pipeline = process_map(
        hr.from_generator(source),
        lambda a: a + 1,
        workers=workers,
        buffer_size=buffer_size,
        ordered=ordered,
    )

    peak_in_flight = 0
    peak_bytes = 0
    with pipeline.iter() as run:
        for consumed, array in enumerate(run, start=1):
            assert array.shape == (HUGE,)
            in_flight = source.taken - consumed
            assert in_flight <= buffer_size, f"{in_flight} in flight after {consumed}"
            time.sleep(0.02)  # the workers and the upstream are far faster than this
            in_flight = source.taken - consumed
            assert in_flight <= buffer_size, f"{in_flight} in flight after {consumed}"
            peak_in_flight = max(peak_in_flight, in_flight)
            peak_bytes = max(peak_bytes, sum(segments().values()))

    assert source.taken == 25
    assert peak_in_flight >= buffer_size - 1  # the pool did read ahead
    # Each element and each result needs one segment of 4 MiB (sizes are powers of
    # two); a segment is reused once read. Whatever the stream's length, no more than
    # the elements in flight, their results and one more per worker are ever held.
    segment = 1 << (HUGE * 8 - 1).bit_length()
    assert 0 < peak_bytes <= (2 * buffer_size + workers) * segment, peak_bytes / 2**20


# -- statistics --------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["thread", "process"])
def test_stats_report_the_pools_time(backend):
    pipeline = hr.range(12).map(sleepy, workers=2, backend=backend)

    with pipeline.iter(stats=True) as run:
        assert list(run) == list(range(12))

    rows = [row for row in run.stats() if row["name"].startswith("map(sleepy")]
    assert len(rows) == 1, run.stats()
    row = rows[0]
    for key in ("busy_s", "wait_input_s", "wait_workers_s", "wait_output_s"):
        assert isinstance(row[key], float), (key, row)
        assert row[key] >= 0, (key, row)
    assert row["busy_s"] > 0
    assert row["items_out"] == 12


# -- scripts -----------------------------------------------------------------------------


MAIN_SCRIPT = """
import headrace as hr

print("script body runs", flush=True)

STEP = 1


class Point:
    def __init__(self, x):
        self.x = x

    def moved(self):
        return Point(self.x + STEP)


def shift(point):
    assert type(point).__name__ == "Point"
    return point.moved()


points = [Point(i) for i in range(6)]
out = list(hr.from_iterable(points).map(shift, workers=2, backend="process"))
print(all(type(p) is Point for p in out), [p.x for p in out], flush=True)
# Point came back inside the results: this script's class is left as it was, its
# methods still this file's and still reading this module's globals.
STEP = 100
print(Point(1).moved().x, Point.moved.__code__.co_filename == __file__, flush=True)
"""


def test_a_script_without_a_main_guard_maps_instances_of_its_own_classes(tmp_path):
    script = tmp_path / "unguarded.py"
    script.write_text(MAIN_SCRIPT)
    with subprocess.Popen(
        [sys.executable, str(script)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as child:
        try:
            stdout, stderr = child.communicate(timeout=30)
        finally:
            # A worker that re-ran the script would start workers of its own: the whole
            # session goes.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)

    assert child.returncode == 0, stderr
    lines = stdout.splitlines()
    assert lines.count("script body runs") == 1, stdout  # workers did not run __main__
    assert lines[-2] == "True [1, 2, 3, 4, 5, 6]", stdout
    assert lines[-1] == "101 True", stdout


# -- waits that another thread must be able to stop -------------------------------------


def test_a_prefetch_after_a_process_map_closes_while_the_workers_are_busy(
    children, children_left, segments_left
):
    # The prefetch thread waits inside the process map for calls that never return;
    # closing the run must stop that wait, the thread and the workers.
    run = process_map(endless(), never_returns_on_zero, workers=2, ordered=False)
    run = run.prefetch(2).iter()
    assert next(run)[0] != 0
    assert len(children()) == 2

    closes_promptly(run, children_left, segments_left)


def hold_then_tag(element: bytes) -> int:
    """Element 0 takes long; the others return at once."""
    if element[0] == 0:
        time.sleep(2)
    return element[0]


def test_big_elements_do_not_wait_for_a_busy_worker():
    # Elements of 4 MB of bytes are no arrays, yet they must not go down a pipe that the
    # worker busy with element 0 will not read for seconds: the other worker's results
    # arrive first.
    elements = hr.range(12).map(lambda i: bytes([i]) * (4 << 20))
    run = process_map(elements, hold_then_tag, workers=2, buffer_size=6, ordered=False)
    with run.iter() as results:
        assert next(results) != 0


GRANDCHILD = "sleep 30 & echo $! > {record}"


def start_a_grandchild_then_exit(record: Path, x: int) -> int:
    if x == 3:
        os.system(GRANDCHILD.format(record=record))
        os._exit(3)
    return x


def test_a_dead_worker_is_noticed_though_its_own_child_lives_on(tmp_path):
    record = tmp_path / "grandchild.pid"
    fn = functools.partial(start_a_grandchild_then_exit, record)
    start = time.monotonic()
    try:
        with pytest.raises(hr.WorkerError, match="exited with code 3"):
            list(process_map(hr.range(10), fn, workers=2))
        assert time.monotonic() - start < 5
    finally:
        with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
            os.kill(int(record.read_text()), signal.SIGKILL)


# -- the interpreter that runs the workers ----------------------------------------------


def test_an_interpreter_that_is_no_python_fails_the_run_when_it_starts(monkeypatch, children):
    monkeypatch.setenv("HEADRACE_PYTHON", "/bin/true")
    with pytest.raises(hr.WorkerError, match="while starting"):
        list(process_map(hr.range(3), double, workers=2))
    assert children() == []


def test_no_interpreter_at_all_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(sys, "executable", "")
    with pytest.raises(hr.WorkerError, match="HEADRACE_PYTHON"):
        list(process_map(hr.range(3), double, workers=2))


@pytest.mark.parametrize("backend", ["thread", "process"])
def test_stats_of_a_repeated_pool_add_up_over_the_repetitions(backend):
    pipeline = hr.range(4).map(sleepy, workers=2, backend=backend).repeat(3)
    with pipeline.iter(stats=True) as run:
        assert len(list(run)) == 12
    (row,) = [r for r in run.stats() if "busy_s" in r]
    assert row["items_out"] == 12
    # Every call sleeps at least SLEEP_S: the busy time of all twelve is there.
    assert row["busy_s"] >= 12 * SLEEP_S
