"""Worker processes outlive a run: the next run of the same pipeline uses them.

A process-backend stage keeps its workers after a run that ended cleanly (exhausted,
or closed with the workers finishing what they held) and sends the next run's
function to them instead of starting interpreters. An error stops them as before.
They stop when the pipeline is dropped, at interpreter exit, or on
``pipeline.close()``. ``worker_init`` runs once in each worker, thread or process.

The module's functions go to worker processes by value (see test_process_map.py).
"""

from __future__ import annotations

import gc
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cloudpickle
import numpy as np
import pytest

import headrace as hr

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.timeout(60)

#: Counts, in each worker process, the calls of ``setup`` (its worker_init). This
#: module travels by value: what ``setup`` sets, ``with_pid`` must see, in every run.
INITS = 0


def setup() -> None:
    global INITS
    INITS += 1


def with_pid(x: int) -> tuple[int, int, int]:
    return x, os.getpid(), INITS


def pids_of(results: list[tuple[int, int, int]]) -> set[int]:
    return {pid for _, pid, _ in results}


def process_pids(children: Callable[[], list[str]]) -> list[str]:
    return [line.split()[0] for line in children()]


def test_the_next_run_uses_the_same_worker_processes(children, children_left):
    pipeline = hr.range(50).map(with_pid, workers=2, backend="process", worker_init=setup)
    first = list(pipeline)
    kept = process_pids(children)
    assert len(kept) == 2
    second = list(pipeline)
    assert [x for x, _, _ in second] == list(range(50))
    assert pids_of(second) <= {int(pid) for pid in kept}
    assert process_pids(children) == kept
    # worker_init ran once in each worker, for both runs.
    assert {inits for _, _, inits in first + second} == {1}
    pipeline.close()
    assert children_left() == []
    # A run after close starts new workers.
    third = list(pipeline)
    assert not pids_of(third) & {int(pid) for pid in kept}
    del pipeline
    gc.collect()
    assert children_left() == []


def test_every_epoch_of_a_random_map_draws_as_inline_on_kept_workers():
    def noisy(x: int, rng: np.random.Generator) -> tuple[int, float]:
        return x, float(rng.random())

    inline = hr.range(30).random_map(noisy, seed=4)
    parallel = hr.range(30).random_map(noisy, seed=4, workers=2, backend="process")
    for epoch in (0, 1, 2):
        assert list(parallel.iter(epoch=epoch)) == list(inline.iter(epoch=epoch))
    parallel.close()


def test_an_error_stops_the_workers(children, children_left):
    def fails_on_seven(x: int) -> int:
        if x == 7:
            raise ValueError("seven")
        return x

    pipeline = hr.range(20).map(fails_on_seven, workers=2, backend="process")
    with pytest.raises(ValueError, match="seven"):
        list(pipeline)
    assert children_left() == []
    assert list(hr.range(5).map(abs, workers=2, backend="process")) == list(range(5))


def test_a_kept_worker_that_died_is_replaced_quietly(children, children_left):
    pipeline = hr.range(40).map(with_pid, workers=2, backend="process")
    first = list(pipeline)
    victim = next(iter(pids_of(first)))
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # dead, and not reaped yet: a zombie
        if any(c.startswith(f"{victim} Z") for c in children()):
            break
        time.sleep(0.01)
    second = list(pipeline)
    assert [x for x, _, _ in second] == list(range(40))
    assert victim not in pids_of(second)
    pipeline.close()
    assert children_left() == []


def test_a_copy_of_the_pipeline_has_workers_of_its_own(children, children_left):
    pipeline = hr.range(10).map(with_pid, workers=1, backend="process")
    original = pids_of(list(pipeline))
    copy = pickle.loads(cloudpickle.dumps(pipeline))
    copied = pids_of(list(copy))
    assert not original & copied
    assert len(children()) == 2
    del copy
    gc.collect()
    assert pids_of(list(pipeline)) == original
    pipeline.close()
    assert children_left() == []


def test_worker_init_runs_once_in_each_thread():
    started: list[int] = []
    lock = threading.Lock()

    def note() -> None:
        with lock:
            started.append(threading.get_ident())

    assert list(hr.range(100).map(abs, workers=3, worker_init=note)) == list(range(100))
    assert len(started) == 3
    assert len(set(started)) == 3


@pytest.mark.parametrize("backend", ["thread", "process"])
def test_a_failing_worker_init_fails_the_run_naming_it(backend, children_left, threads_left):
    def broken() -> None:
        raise RuntimeError("no model file")

    pipeline = hr.range(10).map(abs, workers=2, backend=backend, worker_init=broken)
    with pytest.raises(RuntimeError, match="no model file") as info:
        list(pipeline)
    assert any("worker_init" in note for note in info.value.__notes__)
    assert children_left() == []
    assert threads_left() == []


def test_worker_init_needs_workers():
    with pytest.raises(ValueError, match="worker_init needs workers"):
        hr.range(3).map(abs, worker_init=setup)
    with pytest.raises(TypeError, match="worker_init"):
        hr.range(3).map(abs, workers=2, worker_init=3)  # type: ignore[arg-type]


KEPT_AT_EXIT = """
import os, sys
import headrace as hr

def pid(x):
    return os.getpid()

pipeline = hr.range(20).map(pid, workers=2, backend="process")
list(pipeline)
print(" ".join(map(str, sorted(set(pipeline)))), flush=True)
# The program ends with the pipeline, and its kept workers, still alive.
"""


def test_kept_workers_stop_when_the_program_exits(tmp_path: Path):
    script = tmp_path / "kept.py"
    script.write_text(textwrap.dedent(KEPT_AT_EXIT))
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=30, check=True
    )
    pids = [int(pid) for pid in done.stdout.split()]
    assert len(pids) == 2
    deadline = time.monotonic() + 5
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in pids if Path(f"/proc/{pid}").exists()]
        time.sleep(0.02)
    assert alive == [], "workers outlived the program"
    assert done.stderr == ""


def test_random_map_worker_init_needs_workers_too():
    with pytest.raises(ValueError, match="worker_init needs workers"):
        hr.range(3).random_map(lambda x, rng: x, seed=1, worker_init=setup)


def test_closing_the_pipeline_during_a_run_stops_that_runs_workers_when_it_ends(
    children, children_left
):
    pipeline = hr.range(100).map(with_pid, workers=2, backend="process")
    with pipeline.iter() as run:
        next(run)
        pipeline.close()  # nothing kept yet; the run's workers go when it ends
        assert len(list(run)) == 99
    assert children_left() == []


def test_a_forked_child_starts_workers_of_its_own_and_leaves_the_parents_alone(children):
    pipeline = hr.range(30).map(with_pid, workers=2, backend="process")
    kept = pids_of(list(pipeline))
    child = os.fork()
    if child == 0:  # the child: as a DataLoader worker would
        code = 1
        try:
            mine = list(pipeline)
            ok = [x for x, _, _ in mine] == list(range(30)) and not pids_of(mine) & kept
            code = 0 if ok else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    again = list(pipeline)
    assert [x for x, _, _ in again] == list(range(30))
    assert pids_of(again) == kept  # the parent's workers were neither used nor stopped
    pipeline.close()
