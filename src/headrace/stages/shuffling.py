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
        return _shuffle(upstream, self._buffer_size, self._seed, ctx.epoch)

    def length(self, upstream: Length) -> Length:
        return upstream


def _shuffle(
    upstream: Iterator[Any], buffer_size: int, seed: int | None, epoch: tuple[int, ...]
) -> Iterator[Any]:
    rng = python_rng(seed, epoch)
    buffer = list(itertools.islice(upstream, buffer_size))
    if not buffer:
        return
    randrange = rng.randrange
    size = len(buffer)
    for item in upstream:
        slot = randrange(size)
        out = buffer[slot]
        buffer[slot] = item
        yield out
    rng.shuffle(buffer)
    while buffer:
        yield buffer.pop()


def shuffle(
    iterable: Iterable[Any], buffer_size: int, *, seed: int | None = None, epoch: int = 0
) -> Iterator[Any]:
    """Shuffle through a buffer of ``buffer_size`` elements.

    Fills the buffer, then for every new element yields a uniformly chosen buffered
    one and puts the new one in its place; at the end the buffer drains in random
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
    return stage.open(iter(iterable), StageContext(0, stage.name, (check_int("epoch", epoch),)))
