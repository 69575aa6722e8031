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

import builtins
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from headrace._checks import check_callable, check_int
from headrace.errors import annotate, describe_callable
from headrace.parallel._protocol import Seeded, element_rng
from headrace.parallel.pool import run_pool
from headrace.parallel.threads import check_backend, pool_options
from headrace.stages._base import Length, Stage, StageContext
from headrace.stages._guard import close_iterator

__all__ = ["RandomMap", "element_rng"]


class RandomMap(Stage):
    """Applies ``fn(element, rng)`` with a per-element generator, inline or on workers."""

    __slots__ = ("_backend", "_buffer_size", "_fn", "_ordered", "_seed", "_workers")

    def __init__(
        self,
        fn: Callable[[Any, np.random.Generator], Any],
        *,
        seed: int,
        workers: int = 0,
        backend: str = "thread",
        ordered: bool = True,
        buffer_size: int | None = None,
    ) -> None:
        self._fn = check_callable("fn", fn)
        self._seed = check_int("seed", seed, minimum=0)
        self._backend = check_backend(backend)
        self._workers, self._ordered, self._buffer_size = pool_options(
            workers, ordered, buffer_size, minimum_workers=0
        )

    @property
    def name(self) -> str:
        extra = f", workers={self._workers}" if self._workers else ""
        if self._workers and self._backend != "thread":
            extra += f", backend={self._backend!r}"
        if self._workers and not self._ordered:
            extra += ", ordered=False"
        return f"random_map({describe_callable(self._fn)}, seed={self._seed}{extra})"

    def open(self, upstream: Iterator[Any], ctx: StageContext) -> Iterator[Any]:
        call = Seeded(self._fn, self._seed, ctx.epoch)
        if not self._workers:
            return _inline(upstream, call, ctx.label)
        # Positions are assigned on the consumer's thread, before any worker sees the
        # element: that is what makes the draws independent of scheduling.
        return run_pool(
            self._backend,
            upstream,
            call,
            self._workers,
            self._buffer_size,
            ctx,
            ordered=self._ordered,
        )

    def length(self, upstream: Length) -> Length:
        return upstream


def _inline(upstream: Iterator[Any], call: Seeded, label: str) -> Iterator[Any]:
    try:
        for index, item in builtins.enumerate(upstream):
            try:
                out = call(index, item)
            except Exception as error:
                annotate(error, label, index)
                raise
            yield out
    finally:
        close_iterator(upstream)
