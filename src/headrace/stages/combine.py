"""Stages that combine streams: zip, concat, interleave and repeat.

>>> import headrace as hr
>>> list(hr.range(3).zip(hr.from_iterable("abc")))
[(0, 'a'), (1, 'b'), (2, 'c')]
>>> list(hr.range(2).concat(hr.range(5, 7)).repeat(2))
[0, 1, 5, 6, 0, 1, 5, 6]
"""

from __future__ import annotations

import builtins
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from headrace._checks import check_bool, check_callable, check_int, check_optional_int
from headrace.errors import annotate, describe_callable
from headrace.stages._base import INFINITE, Length, OpenUpstream, Stage, StageContext, first_unfixed
from headrace.stages._guard import close_all, close_iterator

if TYPE_CHECKING:
    from headrace.pipeline import Pipeline
    from headrace.run import Chain

__all__ = ["Concat", "Interleave", "Repeat", "Zip", "concat", "interleave", "repeat", "zip"]


def _open_sub(pipeline: Pipeline[Any], ctx: StageContext, path: str) -> Chain:
    """Open a pipeline nested in the stage of ``ctx``: its own seed, or the stage's."""
    from headrace.run import open_chain

    seed = pipeline.seed if pipeline.seed is not None else ctx.seed
    return open_chain(pipeline.stages, ctx.epoch, None, path, seed)


class Zip(Stage):
    """Source that yields tuples of the elements of several pipelines, in step."""

    __slots__ = ("_parts", "_strict")
    is_source = True

    def __init__(self, parts: Sequence[Pipeline[Any]], *, strict: bool = False) -> None:
        if not parts:
            raise ValueError("zip needs at least one pipeline")
        self._parts = tuple(parts)
        self._strict = check_bool("strict", strict)

    @property
    def name(self) -> str:
        inside = ", ".join(repr(p) for p in self._parts)
        return f"zip({inside}{', strict=True' if self._strict else ''})"

    def open(self, upstream: Iterator[Any], ctx: StageContext) -> Iterator[Any]:
        return _zip(self._parts, self._strict, ctx)

    def unfixed_order(self, *, seeded: bool = False) -> str | None:
        return unfixed_in(self._parts, seeded)

    def length(self, upstream: Length) -> Length:
        lengths = [p.known_length() for p in self._parts]
        if any(n is None for n in lengths):
            return None
        return builtins.min(n for n in lengths if n is not None)


def _zip(parts: Sequence[Pipeline[Any]], strict: bool, ctx: StageContext) -> Iterator[Any]:
    chains: list[Chain] = []
    try:
        for i, part in builtins.enumerate(parts):
            chains.append(_open_sub(part, ctx, ctx.inner_path(f"input {i}")))
        joined = builtins.zip(*(c.iterator for c in chains), strict=strict)
        while True:
            try:
                row = next(joined)
            except StopIteration:
                return
            except ValueError as error:
                # Only the length mismatch raised by zip itself, in this frame; an
                # input's own ValueError already carries its note.
                tb = error.__traceback__
                if strict and tb is not None and tb.tb_next is None:
                    annotate(error, ctx.label)
                raise
            yield row
    finally:
        close_all(*chains)


class Concat(Stage):
    """Source that yields every element of one pipeline, then the next."""

    __slots__ = ("_parts",)
    is_source = True

    def __init__(self, parts: Sequence[Pipeline[Any]]) -> None:
        if not parts:
            raise ValueError("concat needs at least one pipeline")
        self._parts = tuple(parts)

    @property
    def name(self) -> str:
        return f"concat({', '.join(repr(p) for p in self._parts)})"

    def open(self, upstream: Iterator[Any], ctx: StageContext) -> Iterator[Any]:
        return _concat(self._parts, ctx)

    def unfixed_order(self, *, seeded: bool = False) -> str | None:
        return unfixed_in(self._parts, seeded)

    def length(self, upstream: Length) -> Length:
        lengths = [p.known_length() for p in self._parts]
        if any(n is None for n in lengths):
            return None
        return sum(n for n in lengths if n is not None)


def _concat(parts: Sequence[Pipeline[Any]], ctx: StageContext) -> Iterator[Any]:
    for i, part in builtins.enumerate(parts):
        chain = _open_sub(part, ctx, ctx.inner_path(f"input {i}"))
        try:
            yield from chain.iterator
        finally:
            chain.close()


def unfixed_in(parts: Sequence[Pipeline[Any]], seeded: bool) -> str | None:
    """The first reason any stage of the nested pipelines ``parts`` has to change its
    order between runs (``seeded``: the pipeline around them has a seed)."""
    for part in parts:
        found = first_unfixed(part.stages, seeded=seeded or part.seed is not None)
        if found is not None:
            return f"{found[2]} (in {part!r})"
    return None


class Interleave(Stage):
    __slots__ = ("_block_length", "_cycle_length", "_fn")

    def __init__(
        self, fn: Callable[[Any], Iterable[Any]], *, cycle_length: int = 4, block_length: int = 1
    ) -> None:
        self._fn = check_callable("fn", fn)
        self._cycle_length = check_int("cycle_length", cycle_length, minimum=1)
        self._block_length = check_int("block_length", block_length, minimum=1)

    @property
    def name(self) -> str:
        return (
            f"interleave({describe_callable(self._fn)}, cycle_length={self._cycle_length}, "
            f"block_length={self._block_length})"
        )

    def open(self, upstream: Iterator[Any], ctx: StageContext) -> Iterator[Any]:
        return _interleave(upstream, self._fn, self._cycle_length, self._block_length, ctx)


class _Inner:
    """One open slot of ``interleave``: the iterator and what closes it."""

    __slots__ = ("chain", "index", "iterator")

    def __init__(self, produced: Any, index: int, ctx: StageContext) -> None:
        from headrace.pipeline import Pipeline

        self.index = index
        self.chain = (
            _open_sub(produced, ctx, ctx.inner_path(f"for input element {index}"))
            if isinstance(produced, Pipeline)
            else None
        )
        self.iterator: Iterator[Any] = (
            self.chain.iterator if self.chain is not None else iter(produced)
        )

    def close(self) -> None:
        if self.chain is not None:
            self.chain.close()
        else:
            close_iterator(self.iterator)


def _interleave(
    upstream: Iterator[Any],
    fn: Callable[[Any], Iterable[Any]],
    cycle_length: int,
    block_length: int,
    ctx: StageContext,
) -> Iterator[Any]:
    inputs = builtins.enumerate(upstream)

    def open_next() -> _Inner | None:
        for index, item in inputs:
            try:
                return _Inner(fn(item), index, ctx)
            except Exception as error:
                annotate(error, ctx.label, index)
                raise
        return None

    slots: list[_Inner] = []
    try:
        while len(slots) < cycle_length:
            inner = open_next()
            if inner is None:
                break
            slots.append(inner)
        position = 0
        while slots:
            current = slots[position]
            exhausted = False
            for _ in builtins.range(block_length):
                try:
                    item = next(current.iterator)
                except StopIteration:
                    exhausted = True
                    break
                except Exception as error:
                    if current.chain is None:  # a nested pipeline's note names its place
                        annotate(error, ctx.label, current.index)
                    raise
                yield item
            if exhausted:
                current.close()
                replacement = open_next()
                if replacement is None:
                    del slots[position]
                    if position >= len(slots):
                        position = 0
                    continue
                slots[position] = replacement
            position = (position + 1) % len(slots)
    finally:
        close_all(*slots, upstream)


class Repeat(Stage):
    __slots__ = ("_count",)
    lazy_upstream = True

    def __init__(self, count: int | None = None) -> None:
        self._count = check_optional_int("count", count, minimum=0)

    @property
    def name(self) -> str:
        return "repeat()" if self._count is None else f"repeat({self._count})"

    def open_lazy(self, upstream: OpenUpstream, ctx: StageContext) -> Iterator[Any]:
        return _repeat(upstream, self._count, ctx)

    def length(self, upstream: Length) -> Length:
        # repeat(0) yields nothing whatever the upstream (checked first: inf * 0 is nan).
        if upstream == 0 or self._count == 0:
            return 0
        if self._count is None:
            return INFINITE if upstream is not None else None
        if upstream is None:
            return None
        return upstream * self._count


_EMPTY = object()


def _repeat(upstream: OpenUpstream, count: int | None, ctx: StageContext) -> Iterator[Any]:
    repetitions = itertools.count() if count is None else builtins.range(count)
    for repetition in repetitions:
        # Each repetition is its own epoch path, so an upstream shuffle reorders.
        iterator = upstream((*ctx.epoch, repetition))
        try:
            first = next(iterator, _EMPTY)
            if first is _EMPTY:
                if count is None:
                    return  # an empty upstream repeated forever would spin without end
                continue  # a later repetition may hold data (a source that changes)
            yield first
            yield from iterator
        finally:
            close_iterator(iterator)


def _pipeline(iterable: Iterable[Any]) -> Pipeline[Any]:
    from headrace.pipeline import as_pipeline

    return as_pipeline(iterable)


def zip(*iterables: Iterable[Any], strict: bool = False) -> Iterator[tuple[Any, ...]]:
    """Tuples of the elements of several iterables, in step (``strict`` as in builtins).

    >>> list(zip("ab", range(5)))
    [('a', 0), ('b', 1)]
    """
    from headrace.pipeline import Pipeline

    return iter(Pipeline((Zip([_pipeline(i) for i in iterables], strict=strict),)))


def concat(*iterables: Iterable[Any]) -> Iterator[Any]:
    """The elements of each iterable in turn.

    >>> list(concat("ab", [1]))
    ['a', 'b', 1]
    """
    from headrace.pipeline import Pipeline

    return iter(Pipeline((Concat([_pipeline(i) for i in iterables]),)))


def interleave(
    iterable: Iterable[Any],
    fn: Callable[[Any], Iterable[Any]],
    *,
    cycle_length: int = 4,
    block_length: int = 1,
) -> Iterator[Any]:
    """tf.data's interleave over ``fn(x)`` for the elements ``x`` of ``iterable``.

    >>> list(interleave(["ab", "xyz"], list, cycle_length=2))
    ['a', 'x', 'b', 'y', 'z']
    """
    stage = Interleave(fn, cycle_length=cycle_length, block_length=block_length)
    return stage.apply(iterable)


def repeat(iterable: Iterable[Any], count: int | None = None) -> Iterator[Any]:
    """Iterate ``iterable`` ``count`` times (``None``: forever).

    A one-shot iterator cannot be repeated: its second pass raises ``RuntimeError``.

    >>> list(repeat([1, 2], 2))
    [1, 2, 1, 2]
    """
    return iter(_pipeline(iterable).repeat(count))
