"""``random_map``: random functions that give the same output with any worker count.

Every element gets its own ``numpy.random.Generator``, seeded from the stage's seed,
the epoch path and the element's position in the stage's input. Which thread runs
the call, and in which order calls finish, cannot change what an element draws: the
output with 0, 1 or N workers is identical, and each epoch draws anew.

>>> import headrace as hr
>>> jitter = lambda x, rng: round(x + rng.normal(), 6)
>>> noisy = hr.range(6).random_map(jitter, seed=7)
>>> threaded = hr.range(6).random_map(jitter, seed=7, workers=3)
>>> list(noisy.iter(epoch=0)) == list(threaded.iter(epoch=0))
True
>>> processes = hr.range(6).random_map(jitter, seed=7, workers=2, backend="process")
>>> list(noisy.iter(epoch=0)) == list(processes.iter(epoch=0))
True
>>> list(noisy.iter(epoch=0)) == list(noisy.iter(epoch=1))
False
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from headrace._checks import check_callable, check_int
from headrace.errors import describe_callable
from headrace.parallel._protocol import Seeded, element_rng
from headrace.parallel._rejects import Guarded, inline, screen
from headrace.parallel.pool import run_pool
from headrace.parallel.threads import check_backend, pool_options
from headrace.policy import ErrorPolicy
from headrace.stages._base import Length, Stage, StageContext

__all__ = ["RandomMap", "element_rng"]


class RandomMap(Stage):
    """Applies ``fn(element, rng)`` with a per-element generator, inline or on workers."""

    __slots__ = ("_backend", "_buffer_size", "_fn", "_ordered", "_policy", "_seed", "_workers")

    def __init__(
        self,
        fn: Callable[[Any, np.random.Generator], Any],
        *,
        seed: int | None = None,
        workers: int = 0,
        backend: str = "thread",
        ordered: bool = True,
        buffer_size: int | None = None,
        on_error: object = "raise",
    ) -> None:
        self._fn = check_callable("fn", fn)
        self._seed = None if seed is None else check_int("seed", seed, minimum=0)
        self._backend = check_backend(backend)
        self._workers, self._ordered, self._buffer_size = pool_options(
            workers, ordered, buffer_size, minimum_workers=0
        )
        self._policy = ErrorPolicy(on_error)

    @property
    def name(self) -> str:
        extra = f", workers={self._workers}" if self._workers else ""
        if self._workers and self._backend != "thread":
            extra += f", backend={self._backend!r}"
        if self._workers and not self._ordered:
            extra += ", ordered=False"
        if self._policy.mode != "raise":
            extra += f", on_error={self._policy!r}"
        seed = "" if self._seed is None else f", seed={self._seed}"
        return f"random_map({describe_callable(self._fn)}{seed}{extra})"

    @property
    def identity(self) -> str:
        extra = "" if self._seed is None else f", seed={self._seed}"
        if self._workers and not self._ordered:
            extra += ", ordered=False"
        if self._policy.mode != "raise":
            extra += f", on_error={self._policy!r}"
        return f"random_map({describe_callable(self._fn)}{extra})"

    def open(self, upstream: Iterator[Any], ctx: StageContext) -> Iterator[Any]:
        guarded = self._policy.mode != "raise"
        seed = self._seed if self._seed is not None else ctx.seed
        if seed is None:
            raise ValueError(
                f"{ctx.label} has no seed: pass random_map(..., seed=...), or give the "
                "pipeline one with with_seed(...)"
            )
        seeded = Seeded(self._fn, seed, ctx.epoch)
        call: Callable[[int, Any], Any] = Guarded(seeded) if guarded else seeded
        if not self._workers:
            results = inline(upstream, call, ctx.label, ctx.start)
        else:
            # Positions are assigned on the consumer's thread, before any worker sees
            # the element: that is what makes the draws independent of scheduling.
            results = run_pool(
                self._backend,
                upstream,
                call,
                self._workers,
                self._buffer_size,
                ctx,
                ordered=self._ordered,
            )
        return screen(results, self._policy, ctx) if guarded else results

    def length(self, upstream: Length) -> Length:
        return upstream if self._policy.mode == "raise" else None

    def resume_upstream(self, position: int) -> int | None:
        # The element positions go on from ctx.start, so the draws are the same.
        ordered = (self._ordered or not self._workers) and self._policy.mode == "raise"
        return position if ordered else None

    def unfixed_order(self, *, seeded: bool = False) -> str | None:
        if self._workers and not self._ordered:
            return "a parallel map with ordered=False"
        return None
