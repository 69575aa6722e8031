"""``backend="ray"``: parallel ``map`` on Ray actors, on a real local Ray cluster.

The module starts one cluster (``ray.init(num_cpus=2)``) and shuts it down at the
end, checking that none of its processes is left running. Its functions travel to the
actors by value: in importlib mode this module is ``parallel.test_ray_backend``, a
name the actors cannot import.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import cloudpickle
import numpy as np
import pytest

import headrace as hr
from headrace.errors import WorkerError

pytestmark = pytest.mark.timeout(120)
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(autouse=True)
def no_runs_left_behind() -> None:
    """In place of the folder's check: the cluster's processes are this process's
    children for the whole module. The tests check that their actors are released
    (the cluster's CPUs free again), and the module that the cluster leaves nothing."""


@pytest.fixture(scope="module")
def cluster(local_ray: Any) -> Any:
    """The module's local cluster (``local_ray`` in tests/conftest.py)."""
    return local_ray


def _cpus_free(cluster: Any, want: float = 2.0) -> float:
    """The cluster's free CPUs, once the actors of closed runs have given theirs back."""
    deadline = time.monotonic() + 10
    while (free := cluster.available_resources().get("CPU", 0.0)) < want:
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return float(free)


def square_array(x: int) -> np.ndarray:
    return np.full((3, 4), x * x, dtype=np.int64)


def test_results_come_in_order_as_on_the_other_backends(cluster: Any) -> None:
    pipeline = hr.range(50).map(square_array, workers=2, backend="ray")
    got = list(pipeline)
    assert not got[0].flags.writeable  # zero-copy from the object store, as documented
    assert next(iter(pipeline.batch(5))).flags.writeable
    want = list(hr.range(50).map(square_array, workers=2))
    assert len(got) == 50
    assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))
    pipeline.close()
    assert _cpus_free(cluster) == 2.0  # the kept actors were released


def actor_pid(x: int) -> tuple[int, int]:
    time.sleep(0.002)  # long enough that both actors get tasks
    return x, os.getpid()


def test_a_later_run_reuses_the_kept_actors_and_close_releases_them(
    cluster: Any, tmp_path: Any
) -> None:
    starts = tmp_path / "starts"

    def init() -> None:
        with starts.open("a") as out:
            out.write(f"{os.getpid()}\n")

    pipeline = hr.range(60).map(actor_pid, workers=2, backend="ray", worker_init=init)
    first = list(pipeline)
    assert [x for x, _ in first] == list(range(60))
    pids = {pid for _, pid in first}
    assert len(pids) == 2
    assert cluster.available_resources().get("CPU", 0.0) == 0.0  # kept for the next run
    for _ in range(2):  # the next epochs: the same actors, worker_init not run again
        again = list(pipeline)
        assert [x for x, _ in again] == list(range(60))
        assert {pid for _, pid in again} <= pids
    assert sorted(map(int, starts.read_text().split())) == sorted(pids)
    pipeline.close()
    assert _cpus_free(cluster) == 2.0
    # A run after close() starts new actors.
    assert {pid for _, pid in pipeline}.isdisjoint(pids)
    del pipeline  # dropping the pipeline stops its actors
    gc.collect()
    assert _cpus_free(cluster) == 2.0


def test_a_run_with_no_room_stops_the_actors_other_stages_keep_idle(
    cluster: Any, caplog: pytest.LogCaptureFixture
) -> None:
    one = hr.range(30).map(actor_pid, workers=2, backend="ray")
    other = hr.range(30).map(actor_pid, workers=2, backend="ray").map(lambda p: p[0])
    assert [x for x, _ in one] == list(range(30))  # one's actors hold both CPUs, idle
    with caplog.at_level(logging.INFO, logger="headrace"):
        assert list(other) == list(range(30))
    assert any("idle actors other stages kept" in r.getMessage() for r in caplog.records)
    assert [x for x, _ in one] == list(range(30))  # and back: other's are stopped
    one.close()
    other.close()
    assert _cpus_free(cluster) == 2.0


def test_a_kept_actor_that_died_between_runs_is_replaced(cluster: Any) -> None:
    pipeline = hr.range(40).map(actor_pid, workers=2, backend="ray")
    pids = {pid for _, pid in pipeline}
    os.kill(min(pids), signal.SIGKILL)
    again = list(pipeline)
    assert [x for x, _ in again] == list(range(40))
    assert min(pids) not in {pid for _, pid in again}
    pipeline.close()
    assert _cpus_free(cluster) == 2.0


def fails_at_7(x: int) -> int:
    if x == 7:
        raise ValueError("seven is bad")
    return x


def test_an_error_keeps_its_type_and_gets_the_stage_note_and_the_actor_traceback(
    cluster: Any,
) -> None:
    with pytest.raises(ValueError, match="seven is bad") as caught:
        list(hr.range(20).map(fails_at_7, workers=2, backend="ray"))
    notes = caught.value.__notes__
    assert notes[0] == (
        "headrace: raised in stage 1 \"map(fails_at_7, workers=2, backend='ray')\" on its "
        "input element 7 (0-based)"
    )
    assert notes[1].startswith("headrace: traceback in Ray actor ")
    assert 'raise ValueError("seven is bad")' in notes[1]
    assert _cpus_free(cluster) == 2.0


def test_skip_drops_the_failing_elements_on_the_actors(cluster: Any) -> None:
    run = iter(hr.range(20).map(fails_at_7, workers=2, backend="ray", on_error="skip"))
    assert list(run) == [x for x in range(20) if x != 7]
    assert run.stats()[1]["rejected"] == 1


def dies_at_9(x: int) -> int:
    if x == 9:
        os._exit(3)
    return x


def test_an_actor_that_dies_is_a_named_worker_error_not_a_hang(cluster: Any) -> None:
    start = time.monotonic()
    with pytest.raises(WorkerError, match=r"Ray actor \d \(process \d+\) died with input elements"):
        list(hr.range(40).map(dies_at_9, workers=2, backend="ray"))
    assert time.monotonic() - start < 30
    assert _cpus_free(cluster) == 2.0  # the other actor was killed with the run


def slow(x: int) -> int:
    time.sleep(0.01)
    return x


def test_an_early_break_leaves_the_actors_for_the_next_run(cluster: Any) -> None:
    pipeline = hr.range(10_000).map(slow, workers=2, backend="ray")
    with pipeline.iter() as run:
        for x in run:
            if x == 5:
                break
    # The tasks in hand were finished and dropped (or the actors stopped): either way
    # the next run starts from the first element.
    assert list(pipeline.take(20)) == list(range(20))
    pipeline.close()
    assert _cpus_free(cluster) == 2.0


def sleepy_after_zero(x: int) -> int:
    if x:
        time.sleep(60)
    return x


def test_ctrl_c_while_the_consumer_waits_for_actors_stops_them(cluster: Any) -> None:
    # A real SIGINT, landing while the consumer waits on actors that are busy for 60 s:
    # the run ends at once with KeyboardInterrupt, and its actors are killed, not kept.
    pipeline = hr.range(100).map(sleepy_after_zero, workers=2, backend="ray", chunk_size=1)
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))

    def consume() -> None:
        with pipeline.iter() as run:
            assert next(run) == 0
            timer.start()
            next(run)

    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        consume()
    timer.join()
    assert time.monotonic() - start < 30
    assert _cpus_free(cluster) == 2.0


def test_random_map_draws_as_the_other_backends(cluster: Any) -> None:
    def draw(x: int, rng: np.random.Generator) -> int:
        return int(rng.integers(1_000_000))

    on_ray = list(hr.range(30).random_map(draw, seed=3, workers=2, backend="ray"))
    assert on_ray == list(hr.range(30).random_map(draw, seed=3, workers=2))
    assert on_ray == list(hr.range(30).random_map(draw, seed=3))


def test_a_state_resumes_on_another_backend(cluster: Any) -> None:
    def pipeline(backend: str) -> hr.Pipeline[Any]:
        return hr.range(40).filter(lambda x: x % 3).map(lambda x: x * 2, workers=2, backend=backend)

    with pipeline("ray").iter(epoch=0) as run:
        taken = [next(run) for _ in range(9)]
        state = run.state()
    assert taken + list(pipeline("thread").iter(state=state)) == list(pipeline("thread"))


def test_worker_init_runs_on_every_actor_and_its_failure_is_named(cluster: Any) -> None:
    def init() -> None:
        os.environ["HEADRACE_TEST_INIT"] = "yes"

    def seen(x: int) -> str:
        return os.environ.get("HEADRACE_TEST_INIT", "no")

    assert set(hr.range(8).map(seen, workers=2, backend="ray", worker_init=init)) == {"yes"}

    def broken() -> None:
        raise RuntimeError("no model file")

    with pytest.raises(RuntimeError, match="no model file") as caught:
        list(hr.range(8).map(seen, workers=2, backend="ray", worker_init=broken))
    assert any("worker_init function failed in a Ray actor" in n for n in caught.value.__notes__)
    assert _cpus_free(cluster) == 2.0


def test_stats_have_a_row_for_the_stage(cluster: Any) -> None:
    run = iter(hr.range(100).map(slow, workers=2, backend="ray"))
    assert sum(run) == sum(range(100))
    row = run.stats()[1]
    assert (row["items_in"], row["items_out"]) == (100, 100)
    assert row["workers"] == 2


def test_an_unknown_backend_names_the_three(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ValueError, match="backend must be 'thread', 'process' or 'ray'"):
        hr.range(3).map(str, workers=2, backend="dask")
    assert logging.getLogger("headrace")  # the module imports no Ray of its own


def test_resources_are_what_each_actor_asks_of_the_cluster(cluster: Any) -> None:
    def held(x: int) -> float:
        time.sleep(0.05)
        return x

    pipeline = hr.range(20).map(held, workers=1, backend="ray", resources={"num_cpus": 2})
    with pipeline.iter() as run:
        next(run)
        assert cluster.available_resources().get("CPU", 0.0) == 0.0  # one actor, two CPUs
        assert list(run) == list(range(1, 20))
    pipeline.close()
    assert _cpus_free(cluster) == 2.0
    name = hr.range(3).map(str, workers=1, backend="ray", resources={"num_cpus": 2}).stages[1].name
    assert name == "map(str, workers=1, backend='ray', resources={'num_cpus': 2})"


def test_bad_ray_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="resources: 'cpus' is not one of num_cpus"):
        hr.range(3).map(str, workers=2, backend="ray", resources={"cpus": 1})
    with pytest.raises(ValueError, match=r"resources\['num_gpus'\] must be a non-negative"):
        hr.range(3).map(str, workers=2, backend="ray", resources={"num_gpus": -1})
    with pytest.raises(ValueError, match="pass backend='ray'"):
        hr.range(3).map(str, workers=2, resources={"num_cpus": 1})
    with pytest.raises(ValueError, match="pass workers=N"):
        hr.range(3).map(str, backend="ray", resources={"num_cpus": 1})
    with pytest.raises(ValueError, match="with backend='ray' give the number of actors"):
        hr.range(3).map(str, workers="auto", backend="ray")


def test_import_headrace_does_not_load_ray() -> None:
    code = (
        "import sys, headrace as hr; "
        "hr.range(3).map(str, workers=2, backend='ray'); "
        "print('ray' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr


def test_actors_the_cluster_cannot_place_are_a_named_error_not_a_hang(
    cluster: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from headrace.parallel import cluster as backend

    monkeypatch.setattr(backend, "START_S", 2.0)
    start = time.monotonic()
    with pytest.raises(WorkerError, match=r"placed 2 of its 3 actors \(\{'num_cpus': 1\} each\)"):
        list(hr.range(10).map(slow, workers=3, backend="ray"))
    assert time.monotonic() - start < 30
    assert _cpus_free(cluster) == 2.0
    # Two stages of two actors each on two CPUs: the second cannot start.
    two = (
        hr.range(10)
        .map(slow, workers=2, backend="ray")
        .map(str, workers=2, backend="ray", ordered=False)
    )
    with pytest.raises(WorkerError, match="the rest is held by its actors placed so far, other"):
        list(two)
    # Asking for what no node has: nothing is held, and the message does not say so.
    gpu = hr.range(4).map(slow, workers=1, backend="ray", resources={"num_gpus": 1})
    with pytest.raises(WorkerError, match=r"placed 0 of its 1 actors") as caught:
        list(gpu)
    assert "the rest is held" not in str(caught.value)
    assert _cpus_free(cluster) == 2.0


def test_a_function_that_does_not_pickle_is_named(cluster: Any) -> None:
    lock = threading.Lock()

    def locked(x: int) -> int:
        with lock:
            return x

    with pytest.raises(TypeError, match="pickle") as caught:
        list(hr.range(3).map(locked, workers=2, backend="ray"))
    assert any(
        "could not send its function to Ray actors; the ray backend needs functions that "
        "cloudpickle can pickle" in note
        for note in caught.value.__notes__
    )
    assert _cpus_free(cluster) == 2.0
