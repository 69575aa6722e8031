"""Buffered shuffling with tf.data's semantics.

>>> from headrace import stages
>>> sorted(stages.shuffle(range(10), 4, seed=1)) == list(range(10))
True
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable, Iterator
from typing import Any

from headrace._checks import check_int, check_seed
from headrace._seeds import python_rng
from headrace.engine.guard import close_iterator
from headrace.engine.opening import apply
from headrace.engine.stage import Length, Stage, StageContext
from headrace.engine.state import Entry, pack_counts, unpack_counts
from headrace.stages.held import InputNotes

__all__ = ["shuffle"]


class Shuffle(Stage):
    __slots__ = ("_buffer_size", "_seed")
    per_element = True

    def __init__(self, buffer_size: int, *, seed: int | None = None) -> None:
        self._buffer_size = check_int("buffer_size", buffer_size, minimum=1)
        self._seed = check_seed(seed)

    @property
    def name(self) -> str:
        seed = "" if self._seed is None else f", seed={self._seed}"
        return f"shuffle({self._buffer_size}{seed})"

    def open(self, upstream: Iterator[Any], ctx: StageContext) -> Iterator[Any]:
        seed = self._seed if self._seed is not None else ctx.seed
        return _Shuffling(upstream, self._buffer_size, python_rng(seed, ctx.epoch), ctx).run()

    def length(self, upstream: Length) -> Length:
        return upstream

    def unfixed_order(self, *, seeded: bool = False) -> str | None:
        return None if self._seed is not None or seeded else "a shuffle without a seed"


class _Shuffling:
    """One run of a buffer shuffle, and its state.

    The state names the buffered elements by their place in the input (the input is
    read again from before the oldest of them on resume: at most a few buffer lengths,
    however far into the epoch), with the generator's state and the slot last drawn.
    """

    __slots__ = (
        "buffer",
        "ctx",
        "indices",
        "notes",
        "phase",
        "pulled",
        "rng",
        "size",
        "slot",
        "upstream",
    )

    def __init__(
        self, upstream: Iterator[Any], size: int, rng: random.Random, ctx: StageContext
    ) -> None:
        self.upstream = upstream
        self.size = size
        self.rng = rng
        self.ctx = ctx
        self.phase = "new"  # then "fill" (the buffer is full), then "drain"
        self.buffer: list[Any] = []
        self.indices: list[int] = []  # each buffered element's place in the input
        self.slot = -1  # the slot last handed out, refilled on the next pull
        self.pulled = ctx.start
        # With live stages below, the input's state is noted every `size` elements, so
        # that one taken before the oldest buffered element is at hand.
        self.notes = InputNotes(ctx, size)
        ctx.track_state(self.entry)

    def entry(self, position: int) -> Entry:
        ctx = self.ctx
        if self.phase == "new":
            return ctx.resume or {}
        below, start = self.notes.before(self._oldest())
        if below is None:
            return None
        entry = {
            "upstream": below,
            "start": start,
            "phase": self.phase,
            "pulled": self.pulled - start,
            "indices": pack_counts([index - start for index in self.indices]),
        }
        if self.phase == "fill":
            version, words, gauss = self.rng.getstate()
            entry.update(slot=self.slot, rng=[version, pack_counts(words), gauss])
        return entry

    def _oldest(self) -> int:
        return min(self.indices, default=self.pulled)

    def _note(self) -> None:
        self.notes.note(self.pulled, self._oldest)

    def _restore(self) -> None:
        saved = self.ctx.resume
        assert saved is not None
        start = self.ctx.start
        try:
            phase = saved["phase"]
            pulled = start + int(saved["pulled"])
            indices = [start + offset for offset in unpack_counts(saved["indices"])]
            problem = _buffer_problem(phase, pulled - start, indices, start, self.size)
            if phase == "fill":
                version, words, gauss = saved["rng"]
                self.rng.setstate((version, tuple(unpack_counts(words)), gauss))
                self.slot = int(saved["slot"])
                if not -1 <= self.slot < self.size:
                    problem = problem or f"slot {self.slot} is not a slot of {self.size}"
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{self.ctx.label}: its saved buffer is damaged ({error!r})") from None
        if problem is not None:
            raise ValueError(f"{self.ctx.label}: its saved buffer is damaged: {problem}")
        wanted = {index: k for k, index in enumerate(indices)}
        buffer: list[Any] = [None] * len(indices)
        taken = start
        for index, item in zip(range(start, pulled), self.upstream, strict=False):
            taken = index + 1
            if index in wanted:
                buffer[wanted[index]] = item
        if taken < pulled:
            raise ValueError(
                f"{self.ctx.label}: its saved buffer holds elements up to input element "
                f"{pulled - start} (after {start}), but its input ends after {taken - start}; "
                "the state is from other data, or the data changed since it was saved"
            )
        self.buffer, self.indices, self.pulled, self.phase = buffer, list(indices), pulled, phase

    def run(self) -> Iterator[Any]:
        upstream = self.upstream
        try:
            if self.ctx.resume:
                self._restore()
            else:
                self.buffer = list(itertools.islice(upstream, self.size))
                self.indices = list(range(self.pulled, self.pulled + len(self.buffer)))
                self.pulled += len(self.buffer)
                self.phase = "fill" if len(self.buffer) == self.size else "drain"
                if self.phase == "drain":
                    # Shuffled in place of a full buffer's drain (same draws, so the
                    # same order as a shuffle of the elements alone).
                    self._shuffle_rest()
            if self.phase == "fill":
                yield from self._fill()
            while self.indices:
                self.indices.pop()
                yield self.buffer.pop()
        finally:
            close_iterator(upstream)

    def _fill(self) -> Iterator[Any]:
        # Like tf.data: emit a random buffered element, then refill its slot, so the
        # first output needs exactly buffer_size elements from upstream.
        upstream, buffer, indices, size = self.upstream, self.buffer, self.indices, self.size
        randrange = self.rng.randrange
        slot = self.slot
        while True:
            if slot < 0:
                slot = self.slot = randrange(size)
                yield buffer[slot]
            try:
                buffer[slot] = next(upstream)
            except StopIteration:
                del buffer[slot]
                del indices[slot]
                break
            indices[slot] = self.pulled
            self.pulled += 1
            self._note()
            slot = -1
        self.phase = "drain"
        self._shuffle_rest()

    def _shuffle_rest(self) -> None:
        pairs = list(zip(self.indices, self.buffer, strict=True))
        self.rng.shuffle(pairs)  # the draws of shuffling the buffer alone
        self.indices = [index for index, _ in pairs]
        self.buffer = [item for _, item in pairs]


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
    return apply(stage, iterable, epoch=check_int("epoch", epoch))


def _buffer_problem(
    phase: object, pulled: int, indices: list[int], start: int, size: int
) -> str | None:
    """What is wrong with a saved shuffle buffer, or ``None``: ``indices`` (places in
    the input, from ``start``) must be distinct and below ``pulled``, and fill the
    buffer while it is filling, at most ``size`` of them."""
    if phase not in ("fill", "drain"):
        return f"phase {phase!r} is neither 'fill' nor 'drain'"
    if pulled < 0:
        return f"'pulled' is negative ({pulled})"
    if len(indices) > size or (phase == "fill" and len(indices) != size):
        return f"it holds {len(indices)} elements, in a buffer of {size} in phase {phase!r}"
    if len(set(indices)) != len(indices):
        return "an element is in it twice"
    if any(not start <= index < start + pulled for index in indices):
        return f"an element is not one of the {pulled} it took from its input"
    return None
