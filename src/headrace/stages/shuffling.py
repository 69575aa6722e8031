"""Buffered shuffling with tf.data's semantics.

>>> from headrace import stages
>>> sorted(stages.shuffle(range(10), 4, seed=1)) == list(range(10))
True
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import Any

from headrace._checks import check_int, check_seed
from headrace._seeds import python_rng
from headrace.stages._base import Length, Stage, StageContext
from headrace.stages._guard import close_iterator

__all__ = ["shuffle"]


class Shuffle(Stage):
    __slots__ = ("_buffer_size", "_seed")

    def __init__(self, buffer_size: int, *, seed: int | None = None) -> None:
        self._buffer_size = check_int("buffer_size", buffer_size, minimum=1)
        self._seed = check_seed(seed)

    @property
    def name(self) -> str:
        seed = "" if self._seed is None else f", seed={self._seed}"
        return f"shuffle({self._buffer_size}{seed})"

    def open(self, upstream: Iterator[Any], ctx: StageContext) -> Iterator[Any]:
        seed = self._seed if self._seed is not None else ctx.seed
        return _shuffle(upstream, self._buffer_size, seed, ctx.epoch)

    def length(self, upstream: Length) -> Length:
        return upstream

    def unfixed_order(self, *, seeded: bool = False) -> str | None:
        return None if self._seed is not None or seeded else "a shuffle without a seed"


def _shuffle(
    upstream: Iterator[Any], buffer_size: int, seed: int | None, epoch: tuple[int, ...]
) -> Iterator[Any]:
    try:
        rng = python_rng(seed, epoch)
        buffer = list(itertools.islice(upstream, buffer_size))
        if len(buffer) == buffer_size:
            # Like tf.data: emit a random buffered element, then refill its slot, so the
            # first output needs exactly buffer_size elements from upstream.
            randrange = rng.randrange
            while True:
                slot = randrange(buffer_size)
                yield buffer[slot]
                try:
                    buffer[slot] = next(upstream)
                except StopIteration:
                    del buffer[slot]
                    break
        rng.shuffle(buffer)
        while buffer:
            yield buffer.pop()
    finally:
        close_iterator(upstream)


def shuffle(
    iterable: Iterable[Any], buffer_size: int, *, seed: int | None = None, epoch: int = 0
) -> Iterator[Any]:
    """Shuffle through a buffer of ``buffer_size`` elements.

    Fills the buffer, then repeatedly yields a uniformly chosen buffered element and
    puts the next input element in its place; at the end the buffer drains in random
    order. A buffer at least as long as the input gives a uniform permutation; a
    smaller one only mixes nearby elements, and memory is ``buffer_size`` elements.

    Args:
        buffer_size: elements held at once (at least 1; 1 means no shuffling).
        seed: makes the order reproducible; ``None`` draws fresh entropy every run.
        epoch: with a seed, each epoch number gives its own order. In a pipeline,
            every run is a new epoch, so a seeded ``shuffle`` reshuffles every epoch.

    >>> list(shuffle(range(5), 1))
    [0, 1, 2, 3, 4]
    """
    stage = Shuffle(buffer_size, seed=seed)
    return stage.apply(iterable, epoch=check_int("epoch", epoch))
