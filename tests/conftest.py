"""Shared checks: nothing that headrace started outlives a test.

Test modules are imported in importlib mode, where they cannot import each other, so
the helpers are fixtures: ``live_threads()`` lists live ``headrace-`` threads,
``threads_left(timeout)`` polls until none is left and returns the names still alive,
and ``eventually(predicate, timeout)`` polls a condition. For the process backend,
``children()`` lists the processes whose parent is this test process (zombies
included), ``children_left(timeout)`` polls until there are none, ``segments()``
maps the shared-memory segments of this process's runs to their sizes, and
``segments_left(timeout)`` polls until there are none. ``nothing_left_running``
asserts after its test that no ``headrace-`` thread, no child process and no segment
is left; the parallel tests use it for every test, others where they start workers
(tests with servers of their own, which are child processes, cannot).
"""

from __future__ import annotations

import gc
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# Keras tests run on the torch backend (set before any test imports keras); TensorFlow
# keeps its C++ start-up chatter to itself.
os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PREFIX = "headrace-"

#: The segments of this process's runs: ``hr{pid}_``, six hex digits and ``_`` name the
#: run, ``p`` or ``w`` the side that made it. The exact shape keeps pid 12 from claiming
#: the segments of pid 123.
SEGMENT = re.compile(rf"hr{os.getpid()}_[0-9a-f]{{6}}_[pw]")
SHM = "/dev/shm"


def _live_threads() -> list[str]:
    return sorted(t.name for t in threading.enumerate() if t.name.startswith(PREFIX))


def _threads_left(timeout: float = 1.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        names = _live_threads()
        if not names or time.monotonic() >= deadline:
            return names
        time.sleep(0.005)


def _eventually(predicate: Callable[[], bool], timeout: float = 1.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.005)
    return True


#: The command lines of a Ray cluster's own processes (its store, scheduler, monitors).
_RAY_CLUSTER = re.compile(r"/ray/(core/src/ray/|_private/|dashboard/|autoscaler/)|^ray::")


def _children() -> list[str]:
    """``pid state cmdline`` of every process whose parent is this one, but for the
    processes of a Ray cluster this process started (``local_ray``: checked when the
    cluster shuts down)."""
    if not sys.platform.startswith("linux"):
        return []
    me = os.getpid()
    found: list[str] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as status:
                fields = dict(line.split(":", 1) for line in status if ":" in line)
            if int(fields["PPid"]) != me:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as raw:
                cmdline = raw.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, KeyError, ValueError):  # gone meanwhile, or not ours to read
            continue
        if _RAY_CLUSTER.search(cmdline):
            continue
        found.append(f"{entry} {fields['State'].strip()} {cmdline[:120]}")
    return sorted(found)


def _segments() -> dict[str, int]:
    """The shared-memory segments of this process's runs, and their sizes in bytes."""
    try:
        names = [n for n in os.listdir(SHM) if SEGMENT.match(n)]
    except OSError:
        return {}
    sizes: dict[str, int] = {}
    for name in names:
        try:
            sizes[name] = os.stat(os.path.join(SHM, name)).st_size
        except FileNotFoundError:
            continue
    return sizes


def _left(listing: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = listing()
        if not found or time.monotonic() >= deadline:
            return found
        time.sleep(0.005)


@pytest.fixture
def live_threads() -> Callable[[], list[str]]:
    """Names of the live threads that headrace started."""
    return _live_threads


@pytest.fixture
def threads_left() -> Callable[..., list[str]]:
    """Poll until no ``headrace-`` thread is alive; return the names still alive then."""
    return _threads_left


@pytest.fixture
def eventually() -> Callable[..., bool]:
    """Whether ``predicate()`` becomes true within ``timeout`` seconds."""
    return _eventually


@pytest.fixture
def children() -> Callable[[], list[str]]:
    """``pid state cmdline`` of the live (or unreaped) child processes of this process."""
    return _children


@pytest.fixture
def children_left() -> Callable[..., list[str]]:
    """Poll until this process has no child process; return those still there then."""
    return lambda timeout=1.0: _left(_children, timeout)


@pytest.fixture
def segments() -> Callable[[], dict[str, int]]:
    """This process's shared-memory segments (name to size in bytes)."""
    return _segments


@pytest.fixture
def segments_left() -> Callable[..., dict[str, int]]:
    """Poll until this process has no shared-memory segment; return those left then."""
    return lambda timeout=1.0: _left(_segments, timeout)


@pytest.fixture
def nothing_left_running() -> Iterator[None]:
    """After the test: no headrace thread, child process or shared-memory segment, and
    where a Ray cluster is up, no actor holding its CPUs.

    A process-backend stage keeps its workers until its pipeline is dropped: the
    test's pipelines are gone once it returns, those caught in reference cycles (a
    traceback's frames) once the garbage is collected.
    """
    yield
    gc.collect()
    assert _threads_left() == [], "a test left headrace threads running"
    # Worker processes are children of the test process, so any process left is one
    # that a run started and did not stop (or stopped and did not reap: a zombie).
    assert _left(_children, 1.0) == [], "a test left child processes behind"
    assert _left(_segments, 1.0) == {}, "a test left shared-memory segments behind"
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        # Ray actors are not children of this process: they are gone when the
        # cluster has all its CPUs free again.
        def cpus_free() -> bool:
            free = ray.available_resources().get("CPU", 0.0)
            return bool(free >= ray.cluster_resources().get("CPU", 0.0))

        assert _eventually(cpus_free, 10.0), "a test left Ray actors holding CPUs"


def _ray_processes() -> set[int]:
    """Processes whose command line is one of a Ray cluster's."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"raylet" in command or b"gcs_server" in command or b"default_worker.py" in command:
            found.add(int(entry.name))
    return found


@pytest.fixture(scope="session")
def ray_processes() -> Callable[[], set[int]]:
    """The processes of Ray clusters on this machine, by pid."""
    return _ray_processes


def start_local_ray() -> set[int]:
    """Start a local Ray cluster of two CPUs (``ray.init(num_cpus=2)``); return the
    Ray processes there were before, for :func:`stop_local_ray`."""
    import ray

    if ray.is_initialized():
        # A Ray object collected after an earlier module's cluster was shut down (a
        # dataset in a reference cycle) may have started one again on its own.
        ray.shutdown()
    before = _ray_processes()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    return before


def stop_local_ray(before: set[int]) -> None:
    """Shut the cluster down, and check that none of its processes is left running."""
    import ray

    gc.collect()  # the Ray objects of its tests go while their cluster is there
    ray.shutdown()
    deadline = time.monotonic() + 30
    while (left := _ray_processes() - before) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"Ray processes left running: {sorted(left)}"


@pytest.fixture(scope="session")
def local_ray_control() -> tuple[Callable[[], set[int]], Callable[[set[int]], None]]:
    """``(start_local_ray, stop_local_ray)``, for a cluster shared by several modules."""
    return start_local_ray, stop_local_ray


@pytest.fixture(scope="module")
def local_ray() -> Iterator[Any]:
    """A local Ray cluster of two CPUs for the module (``ray.init(num_cpus=2)``), shut
    down at its end with none of its processes left running."""
    import ray

    before = start_local_ray()
    try:
        yield ray
    finally:
        stop_local_ray(before)
