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

from collections.abc import Callable, Mapping
from typing import Any, Literal

import numpy as np

from headrace._checks import check_int
from headrace.engine.stage import StageContext
from headrace.errors import describe_callable
from headrace.parallel._protocol import Seeded, element_rng
from headrace.parallel.pool import CallStage

__all__ = ["RandomMap", "element_rng"]


class RandomMap(CallStage):
    """Applies ``fn(element, rng)`` with a per-element generator, inline or on workers."""

    __slots__ = ("_seed",)
    per_element = True

    def __init__(
        self,
        fn: Callable[[Any, np.random.Generator], Any],
        *,
        seed: int | None = None,
        workers: int | Literal["auto"] = 0,
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
        self._seed = None if seed is None else check_int("seed", seed, minimum=0)

    @property
    def name(self) -> str:
        return self._described(running=True)

    @property
    def identity(self) -> str:
        return self._described(running=False)

    def _described(self, *, running: bool) -> str:
        seed = "" if self._seed is None else f", seed={self._seed}"
        return f"random_map({describe_callable(self._fn)}{seed}{self._options(running=running)})"

    def _call(self, ctx: StageContext) -> Callable[[int, Any], Any]:
        # Positions are assigned on the consumer's thread, before any worker sees the
        # element: that is what makes the draws independent of scheduling.
        seed = self._seed if self._seed is not None else ctx.seed
        if seed is None:
            raise ValueError(
                f"{ctx.label} has no seed: pass random_map(..., seed=...), or give the "
                "pipeline one with with_seed(...)"
            )
        return Seeded(self._fn, seed, ctx.epoch)
