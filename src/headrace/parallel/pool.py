"""``map(fn, workers=N, backend=...)``: one stage, a thread pool or a process pool under it.

Both pools take elements from the upstream on the consumer's thread, keep at most
``buffer_size`` of them in flight, yield in input order unless ``ordered=False``,
and stop every worker when the run ends, however it ends.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Final, Literal, Protocol, cast

from headrace._checks import check_callable
from headrace.engine.readahead import ReadAhead
from headrace.engine.stage import Length, Stage, StageContext
from headrace.engine.state import Entry, count_of, counting
from headrace.errors import WorkerError, annotate, describe_callable
from headrace.parallel._drive import Chunking, Done, Flat, Tuner, WorkerPool, drive, settle
from headrace.parallel._protocol import Joined, Plain, call_many
from headrace.parallel._rejects import CATCH, Guarded, check_catch, inline, inline_screened, screen
from headrace.parallel.cluster import TASK_FLOOR_S as RAY_FLOOR_S
from headrace.parallel.cluster import check_resources
from headrace.parallel.processes import TASK_FLOOR_S as PROCESS_FLOOR_S
from headrace.parallel.processes import ProcessPool
from headrace.parallel.threads import TASK_FLOOR_S as THREAD_FLOOR_S
from headrace.parallel.threads import (
    ThreadPool,
    check_backend,
    interrupted,
    pool_options,
    usable_cores,
)
from headrace.policy import ErrorPolicy
from headrace.stats import PoolCounters

__all__ = ["CallStage", "ParallelMap", "Warm", "run_pool"]

logger = logging.getLogger("headrace")


class CallStage(Stage):
    """A call per element, inline or on a pool, bad elements under an error policy:
    what ``map`` with workers or ``on_error`` and ``random_map`` share.

    Subclasses make the call (:meth:`_call`) and name the stage; this class runs it
    and says what that means for length, order and resuming.
    """

    __slots__ = (
        "_auto",
        "_backend",
        "_buffer_size",
        "_catch",
        "_chunk_size",
        "_fn",
        "_init",
        "_ordered",
        "_policy",
        "_resources",
        "_tuner",
        "_warm",
        "_workers",
    )

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        workers: int | Literal["auto"],
        backend: str,
        ordered: bool,
        buffer_size: int | None,
        chunk_size: int | None = None,
        worker_init: Callable[[], object] | None = None,
        on_error: object,
        catch: object = None,
        resources: Mapping[str, float] | None = None,
    ) -> None:
        self._fn = check_callable("fn", fn)
        self._backend = check_backend(backend)
        self._resources = check_resources(resources, self._backend)
        if self._backend == "ray" and isinstance(workers, str):
            raise ValueError(
                "workers='auto' counts this machine's cores; with backend='ray' give the "
                "number of actors: workers=N"
            )
        # "auto": as many workers as cores, of which the run uses what pays (Tuner).
        self._auto = isinstance(workers, str) and workers == "auto"
        if isinstance(workers, str) and not self._auto:
            raise TypeError(f"workers must be an int >= 0 or 'auto', got {workers!r}")
        self._workers, self._ordered, self._buffer_size, self._chunk_size = pool_options(
            usable_cores() if self._auto else workers,
            ordered,
            buffer_size,
            chunk_size,
            minimum_workers=0,
        )
        self._init = None if worker_init is None else check_callable("worker_init", worker_init)
        if self._init is not None and not self._workers:
            raise ValueError("worker_init needs workers: pass workers=N as well")
        self._policy = ErrorPolicy(on_error)
        self._catch = check_catch(catch)
        if catch is not None and self._policy.mode == "raise":
            raise ValueError(
                "catch= says which exceptions on_error applies to: pass on_error='skip' "
                "(or a quarantine file) as well"
            )
        self._warm = self._new_warm()
        self._tuner: Tuner | None = None  # the last run's, with workers="auto"

    def _new_warm(self) -> Warm | None:
        """What keeps this stage's workers between runs: worker processes and Ray
        actors are worth keeping, threads start in microseconds."""
        if not self._workers or self._backend == "thread":
            return None
        if self._backend == "ray":
            from headrace.parallel.cluster import RayPool

            return Warm(
                functools.partial(RayPool, resources=self._resources, evict=_evict_ray),
                evictable=True,
            )
        return Warm(ProcessPool)

    # A copy (pickled, or copied for a share) keeps no workers of the original's.
    def __getstate__(self) -> object:
        _, slots = cast("tuple[None, dict[str, Any]]", super().__getstate__())
        return None, {**slots, "_warm": None, "_tuner": None}

    def __setstate__(self, state: Any) -> None:
        _, slots = state
        for name, value in slots.items():
            object.__setattr__(self, name, value)
        if self._auto:  # the cores of the process it is unpickled in
            self._workers = usable_cores()
        self._warm = self._new_warm()

    def close_workers(self) -> None:
        """Stop the worker processes (or Ray actors) kept for the next run, if any."""
        if self._warm is not None:
            self._warm.close()

    def _options(self, *, running: bool) -> str:
        """The ``, key=value`` part of the stage's name; with ``running=False`` only the
        arguments that change the elements (for :attr:`identity`)."""
        extra = ""
        if running and self._workers:
            extra += ", workers='auto'" if self._auto else f", workers={self._workers}"
            if self._backend != "thread":
                extra += f", backend={self._backend!r}"
            if self._chunk_size is not None:
                extra += f", chunk_size={self._chunk_size}"
            if self._resources:
                extra += f", resources={self._resources!r}"
        if self._workers and not self._ordered:
            extra += ", ordered=False"
        if self._policy.mode != "raise":
            extra += f", on_error={self._policy!r}"
        if self._catch != CATCH:
            names = ", ".join(kind.__name__ for kind in self._catch)
            extra += f", catch=({names}{',' if len(self._catch) == 1 else ''})"
        return extra

    def _call(self, ctx: StageContext) -> Callable[[int, Any], Any]:
        """``call(index, element)`` for one run."""
        raise NotImplementedError

    def open(self, upstream: Iterator[Any], ctx: StageContext) -> Iterator[Any]:
        return self._open(upstream, ctx, self._call(ctx), self._init, self._fn)

    @property
    def counts_output(self) -> bool:
        # A pool counts the results it hands out (PoolCounters.items); under an error
        # policy the rejects leave, and the engine counts what is left.
        return self._workers > 0 and self._policy.mode == "raise"

    def joins(self, earlier: Stage) -> bool:
        # The same workers, and an element's index the same in both (the earlier one
        # gives one output per input). The options that size tasks and bound the
        # buffer must agree, as must worker_init (one of them runs in the workers)
        # and what a Ray actor asks of its cluster.
        return (
            isinstance(earlier, CallStage)
            and self._workers > 0
            and (earlier._workers, earlier._auto, earlier._backend, earlier._ordered)
            == (self._workers, self._auto, self._backend, self._ordered)
            and (earlier._chunk_size, earlier._buffer_size) == (self._chunk_size, self._buffer_size)
            and earlier._resources == self._resources
            and earlier._policy.mode == "raise"
            and self._policy.mode == "raise"
            and (earlier._init is None or self._init is None or earlier._init is self._init)
        )

    def open_joined(
        self,
        upstream: Iterator[Any],
        ctx: StageContext,
        earlier: Sequence[tuple[Stage, StageContext]],
    ) -> Iterator[Any]:
        stages = [cast("CallStage", stage) for stage, _ in earlier] + [self]
        contexts = [context for _, context in earlier] + [ctx]
        call = Joined(
            [stage._call(context) for stage, context in zip(stages, contexts, strict=True)],
            [context.label for context in contexts[:-1]],
        )
        init = next((stage._init for stage in stages if stage._init is not None), None)
        # Each user function is sent to kept workers once (see Warm).
        return self._open(upstream, ctx, call, init, tuple(stage._fn for stage in stages))

    def _open(
        self,
        upstream: Iterator[Any],
        ctx: StageContext,
        call: Callable[[int, Any], Any],
        init: Callable[[], object] | None,
        fn: object,
    ) -> Iterator[Any]:
        # A pool takes its input a task at a time and notes it after each task.
        upstream, ahead = ReadAhead.watch(upstream, ctx, self.read_ahead, by_hand=True)
        guarded = self._policy.mode != "raise"
        if guarded and not self._workers:
            # One generator calls and screens; it counts its inputs for the state.
            upstream, counter = counting(upstream, ctx.start)
            ctx.track_state(lambda _: {"start": count_of(counter)})
            return inline_screened(upstream, counter, call, self._policy, ctx, self._catch)
        if guarded:
            call = Guarded(call, self._catch)
        if not self._workers:
            results = inline(upstream, call, ctx.label, ctx.start)
        else:
            chunking = Chunking(
                self._workers,
                self._buffer_size,
                self._chunk_size,
                floor_s=_FLOORS[self._backend],
            )
            if ahead is not None:
                chunking.listen(lambda limit: ahead.reading_ahead(limit + self._workers))
            results = run_pool(
                self._backend,
                upstream,
                call,
                self._workers,
                chunking,
                ctx,
                ordered=self._ordered,
                taken=None if ahead is None else ahead.note,
                init=init,
                warm=self._warm,
                fn=fn,
                tuner=self._tune(init),
                resources=self._resources,
            )
        if not guarded:
            if ahead is not None:
                ctx.track_state(ahead.getter())
            return results
        # Rejects leave no output: the stage counts the results it screened (one per
        # input, in order) for the state.
        results, counter = counting(results, ctx.start)

        def inputs(position: int) -> Entry:
            return {"start": count_of(counter)}

        ctx.track_state(inputs if ahead is None else ahead.getter(inputs))
        return screen(results, self._policy, ctx)

    def _tune(self, init: object) -> Tuner | None:
        """With ``workers="auto"``, what chooses the workers a run uses: the same
        for every run of the stage, which goes on from the last run's choice."""
        if not self._auto:
            return None
        if self._tuner is None:
            self._tuner = Tuner(self._workers, inline=init is None)
        else:  # it goes on where the last run left it (its plan, its hold)
            self._tuner.restart()
        return self._tuner

    @property
    def read_ahead(self) -> int:
        # At the start of a run; with the default buffer, the bound grows with the
        # chunk, and the notes' spacing with it (ReadAhead.reading_ahead).
        if not self._workers:
            return 0
        return (self._buffer_size or 2 * self._workers) + self._workers

    def length(self, upstream: Length) -> Length:
        return upstream if self._policy.mode == "raise" else None

    def resume_upstream(self, position: int) -> int | None:
        # In order and one output per input: element positions go on from ctx.start.
        # (Under an error policy the stage counts its inputs itself.)
        ordered = (self._ordered or not self._workers) and self._policy.mode == "raise"
        return position if ordered else None

    def unfixed_order(self, *, seeded: bool = False) -> str | None:
        if self._workers and not self._ordered:
            return "a parallel map with ordered=False"
        return None


class ParallelMap(CallStage):
    """Applies ``fn`` to every element on ``workers`` threads or processes.

    Args:
        fn: the function. On threads it must be thread-safe; on processes it may be
            any callable cloudpickle can send (lambdas and closures included), and
            its results must pickle.
        workers: threads or processes in the pool; ``0`` calls ``fn`` inline (a
            ``map`` with ``on_error``, which keeps a tally and so is not fused);
            ``"auto"``: one per usable core, of which each run uses the count that
            measures fastest (:class:`~headrace.parallel._drive.Tuner`).
        backend: ``"thread"``, ``"process"`` or ``"ray"``.
        ordered: yield results in input order (default); ``False`` yields each as
            soon as it is ready.
        buffer_size: elements in flight at most: taken from the upstream and not yet
            yielded, whether queued, running or done. Default: ``2 * workers`` tasks'
            worth (see ``chunk_size``).
        chunk_size: elements per task, fixed; ``None`` (default) adapts it to the
            measured work per element (:class:`~headrace.parallel._drive.Chunking`).
        on_error: ``"raise"`` (default), ``"skip"`` or a quarantine file, for the
            elements on which ``fn`` raises (see :meth:`Pipeline.map`).
        catch: the exception types ``on_error`` applies to (default: every
            ``Exception``).
        resources: with ``backend="ray"``, what each actor asks of the cluster:
            ``num_cpus`` (default 1), ``num_gpus``, ``memory`` (bytes).
    """

    __slots__ = ()
    per_element = True

    def __init__(
        self,
        fn: Callable[[Any], Any],
        *,
        workers: int | Literal["auto"],
        backend: str = "thread",
        ordered: bool = True,
        buffer_size: int | None = None,
        chunk_size: int | None = None,
        worker_init: Callable[[], object] | None = None,
        on_error: object = "raise",
        catch: object = None,
        resources: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__(
            fn,
            workers=workers,
            backend=backend,
            ordered=ordered,
            buffer_size=buffer_size,
            chunk_size=chunk_size,
            worker_init=worker_init,
            on_error=on_error,
            catch=catch,
            resources=resources,
        )

    @property
    def name(self) -> str:
        return f"map({describe_callable(self._fn)}{self._options(running=True)})"

    @property
    def identity(self) -> str:
        # The same elements as map(fn) inline, on any pool.
        return f"map({describe_callable(self._fn)}{self._options(running=False)})"

    def _call(self, ctx: StageContext) -> Callable[[int, Any], Any]:
        return Plain(self._fn)


def run_pool(
    backend: str,
    upstream: Iterator[Any],
    call: Callable[[int, Any], Any],
    workers: int,
    chunking: Chunking,
    ctx: StageContext,
    *,
    ordered: bool,
    taken: Callable[[int], None] | None = None,
    init: Callable[[], object] | None = None,
    warm: Warm | None = None,
    fn: object = None,
    tuner: Tuner | None = None,
    resources: Mapping[str, float] | None = None,
) -> Iterator[Any]:
    """Yield ``call(index, element)`` for the upstream's elements, computed by a pool
    of ``workers`` threads or processes, in tasks as ``chunking`` sizes them and
    bounds them (see :func:`~headrace.parallel._drive.drive`); ``taken(count)`` after
    each task's elements are taken. ``init`` runs once in each worker; worker
    processes and Ray actors come from ``warm`` and go back there when the run ends
    with them idle; ``fn``, the user's function inside ``call``, is sent to each once.
    ``tuner`` (``workers="auto"``) chooses how many of the workers to use.
    """
    counters = PoolCounters.of(ctx)
    counters.workers = workers if tuner is None else tuner.active
    counters.tuner = tuner

    def inline(first: int, items: list[Any]) -> Done:
        """A task run on the consumer's thread, as a thread pool runs it."""
        begin = time.perf_counter()
        values, failed = call_many(call, first, items)
        busy = time.perf_counter() - begin
        if failed:
            settle(values, failed, ctx.label, first)
        return first, values, bool(failed), busy, 0.0, 0

    def stream(elements: Iterator[Any], first: int, counts: list[int]) -> Iterator[Any]:
        """Calls on the consumer's thread as it takes the results, one at a time;
        ``counts[0]``: the elements taken, each of which gave a result or raised."""
        counted, counter = counting(elements, 0)
        try:
            if type(call) is Plain:  # the common case, mapped in C
                try:
                    yield from map(call.fn, counted)
                except Exception as error:  # an upstream error is noted already
                    annotate(error, ctx.label, first + count_of(counter) - 1)
                    raise
                return
            guarded = type(call) is Guarded
            inner = cast("Guarded", call).call if guarded else call
            fn = inner.fn if type(inner) is Plain else None
            for index, item in enumerate(counted, first):
                try:
                    out = fn(item) if fn is not None else inner(index, item)
                except Exception as error:
                    rejected = cast("Guarded", call).rescue(index, item, error) if guarded else None
                    if rejected is None:
                        annotate(error, ctx.label, index)
                        raise
                    out = rejected
                yield out
        finally:
            counts[0] = count_of(counter)

    start: Callable[[], WorkerPool]
    finish: Callable[[Any], None] | None = None
    if backend != "thread" and warm is not None:
        start = functools.partial(warm.start, call, workers, ctx.label, init, fn)
        finish = warm.finish
    elif backend == "process":
        start = functools.partial(ProcessPool, call, workers, ctx.label, init, fn)
    elif backend == "ray":
        from headrace.parallel.cluster import RayPool

        start = functools.partial(RayPool, call, workers, ctx.label, init, fn, resources)
    else:
        start = functools.partial(ThreadPool, call, workers, ctx.label, init)
    tasks = drive(
        upstream,
        start,
        chunking,
        ordered=ordered,
        counters=counters,
        first=ctx.start,
        taken=taken,
        finish=finish,
        tuner=tuner,
        inline=inline,
        stream=stream,
    )
    return Flat(tasks)


#: What a task costs each backend besides its calls, for sizing tasks.
_FLOORS: Final = {"thread": THREAD_FLOOR_S, "process": PROCESS_FLOOR_S, "ray": RAY_FLOOR_S}

#: How long a run that ends with tasks in hand waits for them, to keep its workers.
DRAIN_S = 0.2


class Kept(WorkerPool, Protocol):
    """What :class:`Warm` needs of a pool besides :class:`WorkerPool`'s methods."""

    owner: int
    generation: int
    closed: bool

    @property
    def idle(self) -> bool: ...

    def drain(self, seconds: float) -> bool: ...

    def rebind(self, call: Callable[[int, Any], Any], label: str) -> None: ...


class Warm:
    """The worker processes (or Ray actors) a stage keeps between its runs.

    A run takes them (sending them its function, which costs a millisecond or so
    instead of starting interpreters) and gives them back when it ends. A run that
    ends with tasks still in hand (``break``, an error) lets the workers finish them
    for up to :data:`DRAIN_S` and drops their results; workers that do not finish by
    then, or any run ended by Ctrl-C or a dead worker, are stopped as before. Kept
    workers stop when the stage is dropped (with the last pipeline that holds it), at
    exit, or on :meth:`close`. Two runs at once each have workers of their own; one
    set is kept.
    """

    __slots__ = ("__weakref__", "_closes", "_held", "_lock", "_new")

    def __init__(self, new: Callable[..., Kept], *, evictable: bool = False) -> None:
        #: Starts a pool: ``new(call, workers, label, init, fn)``.
        self._new = new
        self._held: list[Kept] = []
        self._lock = threading.Lock()
        #: How many times :meth:`close` ran: workers taken before the last close are
        #: stopped when their run ends, not kept.
        self._closes = 0
        weakref.finalize(self, _close_all, self._held, self._lock)
        if evictable:
            _EVICTABLE.add(self)

    def evict(self) -> bool:
        """Stop the workers kept idle (a later run starts new ones); whether there
        were any."""
        with self._lock:
            held = bool(self._held)
        _close_all(self._held, self._lock)
        return held

    def start(
        self,
        call: Callable[[int, Any], Any],
        workers: int,
        label: str,
        init: Callable[[], object] | None,
        fn: object = None,
    ) -> Kept:
        """Workers for a run: the kept ones, or new ones."""
        with self._lock:
            pool = self._held.pop() if self._held else None
            closes = self._closes
        if pool is not None and pool.owner != os.getpid():
            # A forked child (a DataLoader worker) inherited the parent's kept
            # workers: they are not its to use or stop.
            pool.close()  # closes this process's copies of the pipes only
            pool = None
        if pool is not None:
            try:
                pool.rebind(call, label)
            except WorkerError as error:  # one died while kept: start afresh
                logger.debug("%s: a kept worker was gone (%s); starting new ones", label, error)
                pool.close()
            except BaseException:
                pool.close()
                raise
            else:
                pool.generation = closes
                return pool
        pool = self._new(call, workers, label, init, fn)
        pool.generation = closes
        return pool

    def finish(self, pool: Kept) -> None:
        """A run is over: keep its workers if they are idle or soon are, else stop them."""
        if not pool.idle and not pool.closed and not interrupted():
            try:
                pool.drain(DRAIN_S)
            except Exception:  # results that cannot be read: the workers go
                pool.close()
        if pool.idle:
            with self._lock:
                if not self._held and pool.generation == self._closes:
                    self._held.append(pool)
                    return
        pool.close()

    def close(self) -> None:
        """Stop the kept workers, and those of runs going on when they end; a later
        run starts new ones."""
        with self._lock:
            self._closes += 1
        _close_all(self._held, self._lock)


#: The stages' keepers of Ray actors, whose idle actors a run may stop to make room
#: on the cluster for its own.
_EVICTABLE: weakref.WeakSet[Warm] = weakref.WeakSet()


def _evict_ray() -> bool:
    """Stop every Ray actor that a stage keeps idle for its next run; whether any were."""
    evicted = False
    for warm in list(_EVICTABLE):  # every one, not up to the first that held some
        evicted = warm.evict() or evicted
    return evicted


def _close_all(held: list[Kept], lock: threading.Lock) -> None:
    with lock:
        pools = list(held)
        held.clear()
    for pool in pools:
        pool.close()
