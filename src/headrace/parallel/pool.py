"""``map(fn, workers=N, backend=...)``: one stage, a thread pool or a process pool under it.

Both pools take elements from the upstream on the consumer's thread, keep at most
``buffer_size`` of them in flight, yield in input order unless ``ordered=False``,
and stop every worker when the run ends, however it ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from headrace._checks import check_callable
from headrace.engine.readahead import ReadAhead
from headrace.engine.stage import Length, Stage, StageContext
from headrace.engine.state import Entry, count_of, counting
from headrace.errors import describe_callable
from headrace.parallel._drive import Chunking, drive
from headrace.parallel._protocol import Plain
from headrace.parallel._rejects import Guarded, inline, screen
from headrace.parallel.processes import TASK_FLOOR_S as PROCESS_FLOOR_S
from headrace.parallel.processes import ProcessPool
from headrace.parallel.threads import TASK_FLOOR_S as THREAD_FLOOR_S
from headrace.parallel.threads import ThreadPool, check_backend, pool_options
from headrace.policy import ErrorPolicy
from headrace.stats import PoolCounters

__all__ = ["CallStage", "ParallelMap", "run_pool"]


class CallStage(Stage):
    """A call per element, inline or on a pool, bad elements under an error policy:
    what ``map`` with workers or ``on_error`` and ``random_map`` share.

    Subclasses make the call (:meth:`_call`) and name the stage; this class runs it
    and says what that means for length, order and resuming.
    """

    __slots__ = (
        "_backend",
        "_buffer_size",
        "_chunk_size",
        "_fn",
        "_ordered",
        "_policy",
        "_workers",
    )

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        workers: int,
        backend: str,
        ordered: bool,
        buffer_size: int | None,
        chunk_size: int | None = None,
        on_error: object,
    ) -> None:
        self._fn = check_callable("fn", fn)
        self._backend = check_backend(backend)
        self._workers, self._ordered, self._buffer_size, self._chunk_size = pool_options(
            workers, ordered, buffer_size, chunk_size, minimum_workers=0
        )
        self._policy = ErrorPolicy(on_error)

    def _options(self, *, running: bool) -> str:
        """The ``, key=value`` part of the stage's name; with ``running=False`` only the
        arguments that change the elements (for :attr:`identity`)."""
        extra = ""
        if running and self._workers:
            extra += f", workers={self._workers}"
            if self._backend != "thread":
                extra += f", backend={self._backend!r}"
            if self._chunk_size is not None:
                extra += f", chunk_size={self._chunk_size}"
        if self._workers and not self._ordered:
            extra += ", ordered=False"
        if self._policy.mode != "raise":
            extra += f", on_error={self._policy!r}"
        return extra

    def _call(self, ctx: StageContext) -> Callable[[int, Any], Any]:
        """``call(index, element)`` for one run."""
        raise NotImplementedError

    def open(self, upstream: Iterator[Any], ctx: StageContext) -> Iterator[Any]:
        # A pool takes its input a task at a time and notes it after each task.
        upstream, ahead = ReadAhead.watch(upstream, ctx, self.read_ahead, by_hand=True)
        guarded = self._policy.mode != "raise"
        call = self._call(ctx)
        if guarded:
            call = Guarded(call)
        if not self._workers:
            results = inline(upstream, call, ctx.label, ctx.start)
        else:
            chunking = Chunking(
                self._workers,
                self._buffer_size,
                self._chunk_size,
                floor_s=PROCESS_FLOOR_S if self._backend == "process" else THREAD_FLOOR_S,
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
            ``map`` with ``on_error``, which keeps a tally and so is not fused).
        backend: ``"thread"`` or ``"process"``.
        ordered: yield results in input order (default); ``False`` yields each as
            soon as it is ready.
        buffer_size: elements in flight at most: taken from the upstream and not yet
            yielded, whether queued, running or done. Default: ``2 * workers`` tasks'
            worth (see ``chunk_size``).
        chunk_size: elements per task, fixed; ``None`` (default) adapts it to the
            measured work per element (:class:`~headrace.parallel._drive.Chunking`).
        on_error: ``"raise"`` (default), ``"skip"`` or a quarantine file, for the
            elements on which ``fn`` raises a data error (see :meth:`Pipeline.map`).
    """

    __slots__ = ()
    per_element = True

    def __init__(
        self,
        fn: Callable[[Any], Any],
        *,
        workers: int,
        backend: str = "thread",
        ordered: bool = True,
        buffer_size: int | None = None,
        chunk_size: int | None = None,
        on_error: object = "raise",
    ) -> None:
        super().__init__(
            fn,
            workers=workers,
            backend=backend,
            ordered=ordered,
            buffer_size=buffer_size,
            chunk_size=chunk_size,
            on_error=on_error,
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
) -> Iterator[Any]:
    """Yield ``call(index, element)`` for the upstream's elements, computed by a pool
    of ``workers`` threads or processes, in tasks as ``chunking`` sizes them and
    bounds them (see :func:`~headrace.parallel._drive.drive`); ``taken(count)`` after
    each task's elements are taken.
    """
    kind = ProcessPool if backend == "process" else ThreadPool
    counters = PoolCounters.of(ctx)
    counters.workers = workers
    return drive(
        upstream,
        lambda: kind(call, workers, ctx.label),
        chunking,
        ordered=ordered,
        counters=counters,
        first=ctx.start,
        taken=taken,
    )
