"""``map(fn, workers=N, backend=...)``: one stage, a thread pool or a process pool under it.

Both pools take elements from the upstream on the consumer's thread, keep at most
``buffer_size`` of them in flight, yield in input order unless ``ordered=False``,
and stop every worker when the run ends, however it ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from headrace._checks import check_callable
from headrace.errors import describe_callable
from headrace.parallel._drive import drive
from headrace.parallel._protocol import Plain
from headrace.parallel._rejects import Guarded, inline, screen
from headrace.parallel.processes import ProcessPool
from headrace.parallel.threads import ThreadPool, check_backend, pool_options
from headrace.policy import ErrorPolicy
from headrace.stages._base import Length, Stage, StageContext
from headrace.stats import PoolCounters

__all__ = ["GuardedMap", "ParallelMap", "run_pool"]


class GuardedMap(Stage):
    """Applies ``fn`` inline, with bad elements handled by an ``on_error`` policy.

    A plain ``map`` is fused with its neighbours; this one, which has a tally to
    keep, runs as a stage of its own.
    """

    __slots__ = ("_fn", "_policy")

    def __init__(self, fn: Callable[[Any], Any], *, on_error: object) -> None:
        self._fn = check_callable("fn", fn)
        self._policy = ErrorPolicy(on_error)

    @property
    def name(self) -> str:
        return f"map({describe_callable(self._fn)}, on_error={self._policy!r})"

    def open(self, upstream: Iterator[Any], ctx: StageContext) -> Iterator[Any]:
        results = inline(upstream, Guarded(Plain(self._fn)), ctx.label)
        return screen(results, self._policy, ctx)

    def length(self, upstream: Length) -> Length:
        return None


class ParallelMap(Stage):
    """Applies ``fn`` to every element on ``workers`` threads or processes.

    Args:
        fn: the function. On threads it must be thread-safe; on processes it may be
            any callable cloudpickle can send (lambdas and closures included), and
            its results must pickle.
        workers: threads or processes in the pool (at least 1).
        backend: ``"thread"`` or ``"process"``.
        ordered: yield results in input order (default); ``False`` yields each as
            soon as it is ready.
        buffer_size: elements in flight at most (default ``2 * workers``): taken from
            the upstream and not yet yielded, whether queued, running or done.
        on_error: ``"raise"`` (default), ``"skip"`` or a quarantine file, for the
            elements on which ``fn`` raises a data error (see :meth:`Pipeline.map`).
    """

    __slots__ = ("_backend", "_buffer_size", "_fn", "_ordered", "_policy", "_workers")

    def __init__(
        self,
        fn: Callable[[Any], Any],
        *,
        workers: int,
        backend: str = "thread",
        ordered: bool = True,
        buffer_size: int | None = None,
        on_error: object = "raise",
    ) -> None:
        self._fn = check_callable("fn", fn)
        self._backend = check_backend(backend)
        self._workers, self._ordered, self._buffer_size = pool_options(
            workers, ordered, buffer_size, minimum_workers=1
        )
        self._policy = ErrorPolicy(on_error)

    @property
    def name(self) -> str:
        extra = "" if self._backend == "thread" else f", backend={self._backend!r}"
        if not self._ordered:
            extra += ", ordered=False"
        if self._policy.mode != "raise":
            extra += f", on_error={self._policy!r}"
        return f"map({describe_callable(self._fn)}, workers={self._workers}{extra})"

    @property
    def identity(self) -> str:
        # The same elements as map(fn) inline (with ordered=True), on any pool.
        if self._policy.mode == "raise":
            order = "" if self._ordered else ", ordered=False"
            return f"map({describe_callable(self._fn)}{order})"
        return f"map({describe_callable(self._fn)}, on_error={self._policy!r})"

    def open(self, upstream: Iterator[Any], ctx: StageContext) -> Iterator[Any]:
        guarded = self._policy.mode != "raise"
        call = Plain(self._fn)
        results = run_pool(
            self._backend,
            upstream,
            Guarded(call) if guarded else call,
            self._workers,
            self._buffer_size,
            ctx,
            ordered=self._ordered,
        )
        return screen(results, self._policy, ctx) if guarded else results

    def length(self, upstream: Length) -> Length:
        return upstream if self._policy.mode == "raise" else None

    def resume_upstream(self, position: int) -> int | None:
        ordered = self._ordered and self._policy.mode == "raise"
        return position if ordered else None

    def unfixed_order(self, *, seeded: bool = False) -> str | None:
        if self._workers and not self._ordered:
            return "a parallel map with ordered=False"
        return None


def run_pool(
    backend: str,
    upstream: Iterator[Any],
    call: Callable[[int, Any], Any],
    workers: int,
    size: int,
    ctx: StageContext,
    *,
    ordered: bool,
) -> Iterator[Any]:
    """Yield ``call(index, element)`` for the upstream's elements, computed by a pool
    of ``workers`` threads or processes; at most ``size`` elements are in flight (see
    :func:`~headrace.parallel._drive.drive`).
    """
    kind = ProcessPool if backend == "process" else ThreadPool
    return drive(
        upstream,
        lambda: kind(call, workers, ctx.label),
        size,
        ordered=ordered,
        counters=PoolCounters.of(ctx),
        first=ctx.start,
    )
