"""The Ray backend of parallel ``map``: a pool of Ray actors, for work beyond one machine.

``map(fn, workers=N, backend="ray")`` runs its calls on ``N`` Ray actors (one CPU
each) of the cluster the program is connected to: ``ray.init(address=...)`` before
the run names it (``address="auto"``: the cluster ``ray start`` made on this
machine); without it, the first run starts a new local cluster, with a log line that
says so. Ray carries ``fn`` (with cloudpickle, once per actor), the elements and
the results through its object store; arrays in results arrive zero-copy, read-only.

The actors start on a run's first ``next()`` and, as the process backend's workers
are, are kept for the stage's next run (``Warm``): a later epoch starts in a few
milliseconds instead of the half second that starting actors takes. They are killed
when the stage is dropped, at exit, on ``pipeline.close()``, or when a run ends with
an error, Ctrl-C or tasks that do not finish within a moment; kept actors hold their
share of the cluster's resources while they wait.
The consumer's thread does the coordination, as for the process backend: it sends
each task to the least-loaded actor and waits on the tasks' results, so an actor
that dies (killed, its node lost) is a :class:`headrace.WorkerError` naming it and
the elements it held as soon as Ray reports it, never a hang. A call's exception
comes back with its type, the stage's note and the actor's traceback.

``ray`` is an optional dependency (``pip install 'headrace[ray]'``), imported only
when a ray-backend run starts.
"""

from __future__ import annotations

import importlib
import logging
import os
import pickle
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from headrace.errors import WorkerError
from headrace.parallel import _stop
from headrace.parallel._drive import Done, Failed
from headrace.parallel._protocol import call_many
from headrace.parallel.processes import pickled, rebuild, unpicklable
from headrace.parallel.threads import spans

__all__ = ["RESOURCES", "TASK_FLOOR_S", "RayPool", "check_resources", "ray_module"]

logger = logging.getLogger("headrace")

#: What a task costs on this backend besides its calls: a round trip through Ray's
#: scheduler and object store on one machine (0.7 ms measured, ``ray.get`` of one
#: actor call at a time).
TASK_FLOOR_S: Final = 700e-6
#: How long one wait for results lasts before the consumer looks up (Ctrl-C, stop).
_WAIT_S: Final = 0.1
#: How long a run waits for the cluster to place its actors (an autoscaler may be
#: adding a node) before it says what it asked for and what the cluster has.
START_S: Final = float(os.environ.get("HEADRACE_RAY_START_S", "60"))
#: How long a run waits for its actors before it stops the idle actors that other
#: stages keep for their next runs, to make room.
_EVICT_AFTER_S: Final = 0.5
#: The resources named in that message.
_SHOWN: Final = ("CPU", "GPU", "memory")


#: What ``resources=`` may ask of the cluster for each actor.
RESOURCES: Final = ("num_cpus", "num_gpus", "memory")


def check_resources(resources: object, backend: str) -> dict[str, float]:
    """``resources=`` checked: a mapping of :data:`RESOURCES` to non-negative numbers,
    given with ``backend="ray"`` only."""
    if resources is None:
        return {}
    if backend != "ray":
        raise ValueError("resources= is what a Ray actor asks of its cluster: pass backend='ray'")
    if not isinstance(resources, Mapping):
        raise TypeError(f"resources must be a dict, got {type(resources).__name__}")
    out: dict[str, float] = {}
    for key, value in resources.items():
        if key not in RESOURCES:
            raise ValueError(f"resources: {key!r} is not one of {', '.join(RESOURCES)}")
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ValueError(f"resources[{key!r}] must be a non-negative number, got {value!r}")
        out[key] = value
    return out


def ray_module() -> Any:
    """The ``ray`` module, or an ImportError that says how to install it."""
    try:
        return importlib.import_module("ray")
    except ImportError:
        raise ImportError("backend='ray' needs Ray: pip install 'headrace[ray]'") from None


def _session(ray: Any) -> tuple[str, str]:
    """The driver's current connection: its job and its node."""
    context = ray.get_runtime_context()
    return context.get_job_id(), context.get_node_id()


class _Actor:
    """What each Ray actor runs: the stage's call on the elements of one task.

    It takes the driver's ``sys.path`` (on one machine, the user's modules import as
    there) and ``worker_init``, the call and the user's function pickled as the
    process backend pickles them (functions of a script or a test module travel by
    value, in one pickle, so that what ``worker_init`` sets the function sees).
    """

    def __init__(self, path: list[str], payload: bytes) -> None:
        sys.path.extend(entry for entry in path if entry not in sys.path)
        init, call, fn = pickle.loads(payload)
        self._call = call
        self._fn = fn
        self._failed: bytes | None = None
        if init is not None:
            try:
                init()
            except BaseException as error:  # reported on the first call, with its traceback
                from headrace.parallel._worker import failure

                self._failed = failure(error)

    def ready(self) -> tuple[int, bytes | None]:
        """The actor's process id, and its ``worker_init`` failure if it had one."""
        return os.getpid(), self._failed

    def rebind(self, payload: bytes) -> None:
        """Serve a new run of a kept actor: its call, around this actor's copy of
        the user's function (not sent again)."""
        from headrace._pickling import loads

        self._call = loads(payload, kept=self._fn)

    def run(self, first: int, items: list[Any]) -> tuple[list[Any], dict[int, bytes], float]:
        from headrace.parallel._worker import failure

        start = time.perf_counter()
        values, failed = call_many(self._call, first, items)
        busy = time.perf_counter() - start
        return values, {k: failure(error) for k, error in (failed or {}).items()}, busy


class RayPool:
    """Calls on a pool of Ray actors, as :func:`~headrace.parallel._drive.drive` uses them."""

    def __init__(
        self,
        call: Callable[[int, Any], Any],
        workers: int,
        label: str,
        init: Callable[[], object] | None = None,
        fn: object = None,
        resources: Mapping[str, float] | None = None,
        evict: Callable[[], bool] | None = None,
    ) -> None:
        ray = self._ray = ray_module()
        self._label = label
        self.closed = False
        #: The process that started the actors (see ``Warm``).
        self.owner = os.getpid()
        #: Set by the stage that keeps these actors (see ``Warm``).
        self.generation = 0
        #: The user's function inside ``call``: a later run's call refers to each
        #: actor's copy of it (see :meth:`rebind`).
        self._fn = fn
        #: Stops the actors other stages keep idle between their runs, saying whether
        #: there were any: what a run does when the cluster has no room for its own.
        self._evict = evict
        if not ray.is_initialized():
            # A new local cluster: ray.init() alone would join a cluster started on
            # this machine before, or fail on the address such a cluster left behind.
            ray.init(address="local", include_dashboard=False, configure_logging=False)
            logger.info(
                "%s started a local Ray cluster (%s CPUs); call ray.init(address=...) "
                "before the run to use another",
                label,
                int(ray.cluster_resources().get("CPU", 0)),
            )
        #: The driver's connection the actors belong to: after ray.shutdown(), or
        #: in another ray.init(), they are gone with it.
        self._session = _session(ray)
        payload = pickled((init, call, fn), label, "ray")
        asked = {"num_cpus": 1, **(resources or {})}
        remote = ray.remote(**asked, max_restarts=0, max_task_retries=0)(_Actor)
        self._actors = [remote.remote(list(sys.path), payload) for _ in range(workers)]
        #: Tasks not yet received: their first element, element count and actor.
        self._pending: dict[Any, tuple[int, int, int]] = {}
        self._load = [0] * workers
        self._active = workers
        self.stop = _stop.current()
        try:
            started = self._started(asked)
        except BaseException as error:
            self.close()
            if isinstance(error, ray.exceptions.RayError):
                raise WorkerError(f"{label}: a Ray actor failed to start: {error}") from None
            raise
        self._pids = [pid for pid, _ in started]
        failed = next((body for _, body in started if body is not None), None)
        if failed is not None:
            self.close()
            init_error = rebuild(failed, label, -1, "Ray actor")
            init_error.add_note(
                f"headrace: {label}: its worker_init function failed in a Ray actor"
            )
            raise init_error

    def _started(self, asked: dict[str, float]) -> list[tuple[int, bytes | None]]:
        """Every actor's ``ready()``, once the cluster has placed them all; a
        :class:`WorkerError` saying what was asked, and what the cluster has free, when
        it has not placed them within :data:`START_S` (never a wait without end)."""
        ray = self._ray
        refs = [actor.ready.remote() for actor in self._actors]
        what = "its Ray actors started"
        ready = self._wait(refs, len(refs), what, min(_EVICT_AFTER_S, START_S))
        if len(ready) < len(refs) and self._evict is not None and self._evict():
            logger.info(
                "%s: the Ray cluster had no room for its actors; the idle actors other "
                "stages kept for their next runs were stopped to make room",
                self._label,
            )
        if len(ready) < len(refs):
            ready = self._wait(refs, len(refs), what, max(START_S - _EVICT_AFTER_S, 0.0))
        if len(ready) < len(refs):
            free = {k: v for k, v in ray.available_resources().items() if k in _SHOWN}
            total = {k: v for k, v in ray.cluster_resources().items() if k in _SHOWN}
            held = (
                ""
                if free == total
                else " (the rest is held by its actors placed so far, other stages' "
                "actors or other Ray work)"
            )
            raise WorkerError(
                f"{self._label}: the Ray cluster placed {len(ready)} of its "
                f"{len(refs)} actors ({asked} each) in {START_S:.0f} s; it has {total} "
                f"in all, {free} free{held}: ask for fewer workers or resources, or a "
                "larger cluster"
            )
        return list(ray.get(refs))

    def _wait(
        self, refs: list[Any], count: int, what: str, seconds: float | None = None
    ) -> list[Any]:
        """Those of ``refs`` that are ready once ``count`` of them are (or ``seconds``
        have passed), waiting in slices so that the run's stop flag is heard."""
        deadline = None if seconds is None else time.monotonic() + seconds
        while True:
            ready, _ = self._ray.wait(refs, num_returns=count, timeout=_WAIT_S)
            if len(ready) >= count or (deadline is not None and time.monotonic() > deadline):
                return list(ready)
            if self.stop is not None and self.stop.is_set():
                raise _stop.Stopped(f"{self._label}: stopped while {what}")

    @property
    def idle(self) -> bool:
        """Whether the actors have nothing in hand: the pool can serve another run."""
        return not self.closed and not self._pending and os.getpid() == self.owner

    def drain(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for the tasks in hand and drop their results;
        whether they all came back from live actors (then the pool is idle)."""
        ray = self._ray
        refs = list(self._pending)
        if not refs:
            return self.idle
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=seconds)
        if len(ready) < len(refs):
            return False
        try:
            ray.get(refs)
        except ray.exceptions.RayError:  # an actor died: results cannot be trusted
            return False
        self._pending.clear()
        self._load = [0] * len(self._actors)
        return True

    def rebind(self, call: Callable[[int, Any], Any], label: str) -> None:
        """Serve a new run, with its call, on these actors (kept from an earlier
        run); a :class:`WorkerError` if one of them is gone."""
        ray = self._ray
        self._label = label
        self.stop = _stop.current()
        self._active = len(self._actors)
        if not self._live():
            raise WorkerError(f"{label}: the Ray connection its kept actors belonged to is gone")
        payload = pickled(call, label, "ray", kept=self._fn)
        refs = [actor.rebind.remote(payload) for actor in self._actors]
        self._wait(refs, len(refs), "its kept Ray actors took the run's function")
        for number, ref in enumerate(refs):
            try:
                ray.get(ref)
            except ray.exceptions.RayActorError as error:
                raise WorkerError(
                    f"{label}: kept Ray actor {number} (process {self._pids[number]}) "
                    f"is gone: {' '.join(str(error).split())[:300]}"
                ) from None

    def _live(self) -> bool:
        """Whether the program is still connected as when the actors started."""
        return self._ray.is_initialized() and _session(self._ray) == self._session

    def send(self, first: int, items: list[Any]) -> int:
        number = min(range(self._active), key=self._load.__getitem__)
        try:
            ref = self._actors[number].run.remote(first, items)
        except Exception as error:  # Ray pickles the elements here
            raise unpicklable(error, items, first, self._label, "ray") from None
        self._pending[ref] = (first, len(items), number)
        self._load[number] += 1
        return 0

    def activate(self, count: int) -> None:
        self._active = min(max(count, 1), len(self._actors))

    def receive(self) -> list[Done]:
        ray = self._ray
        ready = self._wait(list(self._pending), 1, "waiting for Ray actors")
        results: list[Done] = []
        for ref in ready:
            first, count, number = self._pending.pop(ref)
            self._load[number] -= 1
            try:
                values, failures, busy = ray.get(ref)
            except ray.exceptions.RayActorError as error:
                raise self._died(number, first, count, error) from None
            except ray.exceptions.RayTaskError as error:
                # The calls' own errors come back as values: this is Ray failing to
                # pickle the results (or to unpickle them here).
                cause = error.cause if isinstance(error.cause, Exception) else error
                cause.add_note(
                    f"headrace: {self._label}: the results of its input elements "
                    f"{spans([(first, count)])} (0-based) could not come back from Ray "
                    f"actor {number}; the results of the ray backend must be picklable"
                )
                raise cause from None
            for offset, body in failures.items():
                values[offset] = Failed(rebuild(body, self._label, first + offset, "Ray actor"))
            results.append((first, values, bool(failures), busy, 0.0, 0))
        return results

    def _died(self, number: int, first: int, count: int, error: BaseException) -> WorkerError:
        held = sorted((f, n) for f, n, k in self._pending.values() if k == number)
        held.insert(0, (first, count))
        cause = " ".join(str(error).split())[:300]
        return WorkerError(
            f"{self._label}: Ray actor {number} (process {self._pids[number]}) died with "
            f"input elements {spans(held)} (0-based) sent to it and not returned; the run "
            f"is stopped ({cause})"
        )

    def close(self) -> None:
        """Kill every actor; safe to repeat."""
        if self.closed:
            return
        self.closed = True
        if not self._live():  # they went with their connection (and ray.kill would
            self._pending.clear()  # start a new cluster of its own)
            return
        for actor in self._actors:
            try:
                self._ray.kill(actor, no_restart=True)
            except Exception:  # gone already (its node lost, say)
                continue
        self._pending.clear()
