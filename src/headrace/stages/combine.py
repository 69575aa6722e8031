"""Stages that combine streams: zip, concat, sample_from, interleave and repeat.

>>> import headrace as hr
>>> list(hr.range(3).zip(hr.from_iterable("abc")))
[(0, 'a'), (1, 'b'), (2, 'c')]
>>> list(hr.range(2).concat(hr.range(5, 7)).repeat(2))
[0, 1, 5, 6, 0, 1, 5, 6]
>>> sorted(hr.sample_from([hr.range(3), hr.range(10, 12)], [0.5, 0.5], seed=1))
[0, 1, 2, 10, 11]
"""

from __future__ import annotations

import bisect
import builtins
import itertools
import math
import numbers
import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Final

import numpy as np

from headrace._checks import (
    check_bool,
    check_callable,
    check_int,
    check_optional_int,
    check_seed,
)
from headrace.engine.chain import Chain
from headrace.engine.guard import close_all, close_iterator
from headrace.engine.opening import apply, iterate
from headrace.engine.plan import Plan
from headrace.engine.stage import INFINITE, Length, OpenUpstream, Stage, StageContext, first_unfixed
from headrace.engine.state import Entry, count_of, counting
from headrace.errors import annotate, describe_callable
from headrace.sources.basic import as_plan

__all__ = [
    "Concat",
    "Interleave",
    "Repeat",
    "SampleFrom",
    "Zip",
    "concat",
    "interleave",
    "repeat",
    "sample_from",
    "zip",
]


def _saved_list(ctx: StageContext, name: str, length: int) -> list[Any] | None:
    """A list of ``length`` from this stage's saved entry, or ``None`` without one."""
    if ctx.resume is None:
        return None
    value = ctx.resume.get(name)
    if not isinstance(value, list) or len(value) != length:
        raise ValueError(f"{ctx.label}: its saved {name!r} must be a list of {length}")
    return value


class Zip(Stage):
    """Source that yields tuples of the elements of several pipelines, in step."""

    __slots__ = ("_parts", "_strict")
    is_source = True

    def __init__(self, parts: Sequence[Plan[Any]], *, strict: bool = False) -> None:
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


def _zip(parts: Sequence[Plan[Any]], strict: bool, ctx: StageContext) -> Iterator[Any]:
    chains: list[Chain] = []
    saved = _saved_list(ctx, "inputs", len(parts)) or [None] * len(parts)

    def entry(position: int) -> Entry:
        if len(chains) < len(parts):  # not started
            return ctx.resume or {}
        # Every input has handed out exactly as many elements as the zip.
        inputs = [chain.entries(position) for chain in chains]
        return None if None in inputs else {"inputs": inputs}

    ctx.track_state(entry)

    def run() -> Iterator[Any]:
        try:
            for i, part in builtins.enumerate(parts):
                chains.append(ctx.open_inner(part.stages, part.seed, f"input {i}", saved[i]))
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

    return run()


class Concat(Stage):
    """Source that yields every element of one pipeline, then the next."""

    __slots__ = ("_parts",)
    is_source = True

    def __init__(self, parts: Sequence[Plan[Any]]) -> None:
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


class _Reading:
    """The nested chain a ``concat`` or ``repeat`` is reading (its ``number``: the input
    or the repetition), and how many of its elements were handed out: their state."""

    __slots__ = ("chain", "counter", "ctx", "kind", "number")

    def __init__(self, ctx: StageContext, kind: str) -> None:
        self.ctx = ctx
        self.kind = kind
        self.number = 0
        self.chain: Chain | None = None
        self.counter = itertools.count()

    def read(self, number: int, chain: Chain, position: int) -> Iterator[Any]:
        """``chain``'s elements, counted from ``position`` (where a resumed one stands)."""
        iterator, self.counter = counting(chain.iterator, position)
        self.number, self.chain = number, chain
        return iterator

    def entry(self, position: int) -> Entry:
        if self.chain is None:  # not started
            return self.ctx.resume or {}
        done = count_of(self.counter)
        inner = self.chain.entries(done)
        return None if inner is None else {self.kind: self.number, "position": done, "inner": inner}


def _concat(parts: Sequence[Plan[Any]], ctx: StageContext) -> Iterator[Any]:
    first = ctx.saved_count("input")
    if first >= len(parts):
        raise ValueError(f"{ctx.label}: its saved input {first} is past its {len(parts)} inputs")
    position = ctx.saved_count("position")
    current = _Reading(ctx, "input")
    ctx.track_state(current.entry)

    def run() -> Iterator[Any]:
        for i in builtins.range(first, len(parts)):
            saved = None
            if i == first and ctx.resume is not None:
                saved = ctx.resume.get("inner")
            chain = ctx.open_inner(parts[i].stages, parts[i].seed, f"input {i}", saved)
            try:
                yield from current.read(i, chain, position if i == first else 0)
            finally:
                chain.close()

    return run()


#: Draws ``sample_from`` takes from its generator at a time.
_DRAWS: Final = 256


class SampleFrom(Stage):
    """Source that picks each element from one of several pipelines at random, each
    with its weight: tf.data's ``sample_from_datasets``, Grain's mix."""

    __slots__ = ("_parts", "_seed", "_stop_on_empty", "_weights")
    is_source = True

    def __init__(
        self,
        parts: Sequence[Plan[Any]],
        weights: Sequence[float] | None = None,
        *,
        seed: int | None = None,
        stop_on_empty: bool = False,
    ) -> None:
        if not parts:
            raise ValueError("sample_from needs at least one pipeline")
        self._parts = tuple(parts)
        self._weights = _check_weights(weights, len(self._parts))
        self._seed = check_seed(seed)
        self._stop_on_empty = check_bool("stop_on_empty", stop_on_empty)

    @property
    def name(self) -> str:
        inside = ", ".join(repr(p) for p in self._parts)
        extra = f", weights={list(self._weights)}"
        if self._seed is not None:
            extra += f", seed={self._seed}"
        if self._stop_on_empty:
            extra += ", stop_on_empty=True"
        return f"sample_from([{inside}]{extra})"

    def open(self, upstream: Iterator[Any], ctx: StageContext) -> Iterator[Any]:
        seed = self._seed if self._seed is not None else ctx.seed
        return _Sampling(self._parts, self._weights, seed, self._stop_on_empty, ctx).run()

    def unfixed_order(self, *, seeded: bool = False) -> str | None:
        if self._seed is None and not seeded:
            return "a sample_from without a seed"
        return unfixed_in(self._parts, seeded)

    def length(self, upstream: Length) -> Length:
        lengths = [
            p.known_length() for p, w in builtins.zip(self._parts, self._weights, strict=True) if w
        ]
        if self._stop_on_empty:
            return INFINITE if all(n == INFINITE for n in lengths) else None
        if any(n == INFINITE for n in lengths):
            return INFINITE
        if any(n is None for n in lengths) or 0.0 in self._weights:
            return None  # an input of weight 0 is never read: its length does not count
        return sum(n for n in lengths if n is not None)


def _check_weights(weights: Sequence[float] | None, count: int) -> tuple[float, ...]:
    if weights is None:
        return (1.0 / count,) * count
    if isinstance(weights, str | bytes) or not isinstance(weights, Sequence):
        raise TypeError(f"weights must be a list of numbers, got {weights!r}")
    if len(weights) != count:
        raise ValueError(f"weights must give one weight per pipeline ({count}), got {len(weights)}")
    checked: list[float] = []
    for weight in weights:
        given: object = weight  # numpy numbers too
        if isinstance(given, bool) or not isinstance(given, numbers.Real):
            raise TypeError(f"weights must be numbers, got {weight!r}")
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(f"weights must be finite and at least 0, got {weight!r}")
        checked.append(float(weight))
    if not sum(checked) > 0:
        raise ValueError(f"weights must not all be 0, got {list(weights)}")
    total = sum(checked)
    return tuple(weight / total for weight in checked)


class _Sampling:
    """One run of ``sample_from``, and its state: each input's chain and how many of its
    elements were handed out, which inputs are done, and how many numbers were drawn.

    Draw ``k`` of a run is the ``k``-th double of numpy's PCG64 seeded with the seed and
    the epoch path, so a resumed run takes up the same sequence: ``advance(k)`` gets
    there at once. (Without a seed the run draws one from the system: its order is not
    fixed, and its state is refused, as a shuffle's is.) A draw picks an
    input among those not done, in proportion to their weights; an input found at its
    end is done, and a new draw picks among the rest (or, with ``stop_on_empty``, the
    run ends).
    """

    __slots__ = (
        "_inputs",
        "chains",
        "counts",
        "ctx",
        "done",
        "draws",
        "parts",
        "seed",
        "started",
        "stop",
        "stopped",
        "weights",
    )

    def __init__(
        self,
        parts: Sequence[Plan[Any]],
        weights: Sequence[float],
        seed: int | None,
        stop_on_empty: bool,
        ctx: StageContext,
    ) -> None:
        self.parts, self.weights, self.stop, self.ctx = parts, weights, stop_on_empty, ctx
        saved = ctx.resume or {}
        count = len(parts)
        try:
            self.seed = secrets.randbits(63) if seed is None else seed
            self.draws = int(saved.get("draws", 0))
            self.counts = [int(n) for n in saved.get("counts", [0] * count)]
            self.done = [bool(d) for d in saved.get("done", [False] * count)]
            #: With stop_on_empty: a pipeline picked had ended, and so has the run.
            self.stopped = bool(saved.get("stopped", False))
            inputs = saved.get("inputs", [None] * count)
            if len(self.counts) != count or len(self.done) != count or len(inputs) != count:
                raise ValueError(f"{count} inputs")
            if self.draws < 0 or min(self.counts) < 0:
                raise ValueError("a negative count")
        except (TypeError, ValueError) as error:
            raise ValueError(f"{ctx.label}: its saved state is damaged ({error!r})") from None
        self.chains: list[Chain | None] = [None] * count
        self._inputs: list[Any] | None = inputs
        self.started = False
        ctx.track_state(self.entry)

    def entry(self, position: int) -> Entry:
        if not self.started:
            return self.ctx.resume or {}
        if self.stopped:  # nothing more to hand out: no input's state is needed
            return {"stopped": True, "draws": self.draws, "counts": list(self.counts)}
        inputs: list[Any] = []
        for chain, count, done in builtins.zip(self.chains, self.counts, self.done, strict=True):
            if done or chain is None:
                inputs.append(None)
                continue
            entries = chain.entries(count)
            if entries is None:
                return None
            inputs.append(entries)
        return {
            "draws": self.draws,
            "counts": list(self.counts),
            "done": list(self.done),
            "inputs": inputs,
        }

    def run(self) -> Iterator[Any]:
        ctx, parts = self.ctx, self.parts
        inputs, self._inputs = self._inputs or [], None
        generator = np.random.PCG64(np.random.SeedSequence([self.seed, *ctx.epoch]))
        generator.advance(self.draws)
        numbers = np.random.Generator(generator)
        try:
            if self.stopped:
                return
            for i, part in builtins.enumerate(parts):
                if not self.done[i] and self.weights[i] > 0:
                    what = f"input {i}"
                    self.chains[i] = ctx.open_inner(part.stages, part.seed, what, inputs[i])
            self.started = True
            iterators = [None if c is None else c.iterator for c in self.chains]
            active, bounds = self._active()
            block: list[float] = []
            while active:
                if not block:
                    block = numbers.random(_DRAWS).tolist()
                    block.reverse()
                self.draws += 1
                pick = active[bisect.bisect_right(bounds, block.pop())]
                try:
                    item = next(iterators[pick])  # type: ignore[arg-type]
                except StopIteration:
                    self.done[pick] = True
                    chain, self.chains[pick] = self.chains[pick], None
                    if chain is not None:
                        chain.close()
                    if self.stop:
                        self.stopped = True
                        return
                    active, bounds = self._active()
                    continue
                self.counts[pick] += 1
                yield item
        finally:
            close_all(*(c for c in self.chains if c is not None))

    def _active(self) -> tuple[list[int], list[float]]:
        """The inputs a draw picks from, and the upper bounds of their shares of [0, 1)."""
        active = [i for i, w in builtins.enumerate(self.weights) if w > 0 and not self.done[i]]
        total = sum(self.weights[i] for i in active)
        bounds = list(itertools.accumulate(self.weights[i] / total for i in active))
        if bounds:
            bounds[-1] = math.inf  # a draw just under 1 picks the last, whatever the rounding
        return active, bounds


def unfixed_in(parts: Sequence[Plan[Any]], seeded: bool) -> str | None:
    """The first reason any stage of the nested pipelines ``parts`` has to change its
    order between runs (``seeded``: the pipeline around them has a seed)."""
    for part in parts:
        found = first_unfixed(part.stages, seeded=seeded or part.seed is not None)
        if found is not None:
            return f"{found[2]} (in {part!r})"
    return None


class Interleave(Stage):
    __slots__ = ("_block_length", "_cycle_length", "_fn")
    per_element = True

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
    """One open slot of ``interleave``: the iterator, what closes it, how many of its
    elements were handed out, and the input's state before its element was taken."""

    __slots__ = ("chain", "count", "index", "iterator", "noted")

    def __init__(
        self, produced: Any, index: int, ctx: StageContext, noted: Any, saved: Any = None
    ) -> None:
        self.index = index
        self.noted = noted
        self.count = 0
        self.chain = (
            ctx.open_inner(produced.stages, produced.seed, f"for input element {index}", saved)
            if isinstance(produced, Plan)
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


class InterleaveState:
    """Where an ``interleave`` stands: the open slots (each with its input element and
    the elements it handed out), the slot being read and how far into its block, and
    the input elements taken. Its entry also holds the input's state before the
    oldest open slot's element: resuming takes the input from there, opens the slots
    again and passes over what they handed out (the work of the open slots, not of the
    epoch)."""

    __slots__ = ("block", "current", "pulled", "slots", "started")

    def __init__(self, pulled: int) -> None:
        #: Input elements taken.
        self.pulled = pulled
        #: The open slots, in the order they are read.
        self.slots: list[_Inner] = []
        #: The slot being read, and the elements of its block handed out.
        self.current = 0
        self.block = 0
        #: Whether the run has begun (before that, the saved entry stands).
        self.started = False

    def entry(self, ctx: StageContext) -> Entry:
        """The stage's entry for :meth:`headrace.Run.state`, or ``None`` (replay)."""
        if not self.started:
            return ctx.resume or {}
        if not self.slots:  # every slot is done: the input stands at its end
            noted: Any = ctx.input_state(self.pulled)
            start = self.pulled
        else:
            oldest = min(self.slots, key=lambda inner: inner.index)
            noted, start = oldest.noted, oldest.index
        below = ctx.upstream_entries(noted)
        if below is None:
            return None
        return {
            "upstream": below,
            "start": start,
            "pulled": self.pulled,
            "slots": [
                [
                    inner.index,
                    inner.count,
                    None if inner.chain is None else inner.chain.entries(inner.count),
                ]
                for inner in self.slots
            ],
            "at": [self.current, self.block],
        }

    def restore(
        self,
        ctx: StageContext,
        inputs: Iterator[tuple[int, Any]],
        fn: Callable[[Any], Iterable[Any]],
    ) -> None:
        """Open the slots of the saved entry again: ``inputs`` starts at its oldest one."""
        saved = ctx.resume or {}
        try:
            wanted = {
                int(slot[0]): (k, int(slot[1]), slot[2] if len(slot) > 2 else None)
                for k, slot in builtins.enumerate(saved["slots"])
            }
            end = int(saved["pulled"])
            at = [int(n) for n in saved["at"]]
            if len(at) != 2 or (wanted and not 0 <= at[0] < len(wanted)) or end < ctx.start:
                raise ValueError(at)
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{ctx.label}: its saved slots are damaged ({error!r})") from None
        opened: list[_Inner | None] = [None] * len(wanted)
        while self.pulled < end:
            noted = ctx.input_state(self.pulled)
            found = next(inputs, None)
            if found is None:
                break
            index, item = found
            self.pulled = index + 1
            if index in wanted:
                k, count, entries = wanted[index]
                try:
                    inner = _Inner(fn(item), index, ctx, noted, entries)
                except Exception as error:
                    annotate(error, ctx.label, index)
                    raise
                opened[k] = inner
                if inner.chain is not None and entries is not None:
                    inner.count = count  # a pipeline goes on from its own state
                else:
                    for _ in itertools.islice(inner.iterator, count):  # handed out before
                        inner.count += 1
        if any(inner is None for inner in opened):
            close_all(*(inner for inner in opened if inner is not None))
            raise ValueError(f"{ctx.label}: its input is shorter than its saved state says")
        self.slots.extend(inner for inner in opened if inner is not None)
        self.current, self.block = at


def _interleave(
    upstream: Iterator[Any],
    fn: Callable[[Any], Iterable[Any]],
    cycle_length: int,
    block_length: int,
    ctx: StageContext,
) -> Iterator[Any]:
    inputs = builtins.enumerate(upstream, ctx.start)
    state = InterleaveState(ctx.start)
    ctx.track_state(lambda position: state.entry(ctx))

    def open_next() -> _Inner | None:
        noted = ctx.input_state(state.pulled)
        for index, item in inputs:
            state.pulled = index + 1
            try:
                return _Inner(fn(item), index, ctx, noted)
            except Exception as error:
                annotate(error, ctx.label, index)
                raise
        return None

    def run() -> Iterator[Any]:
        slots = state.slots
        try:
            state.started = True
            if ctx.resume:
                state.restore(ctx, inputs, fn)
            else:
                while len(slots) < cycle_length:
                    inner = open_next()
                    if inner is None:
                        break
                    slots.append(inner)
            while slots:
                current = slots[state.current]
                exhausted = False
                while state.block < block_length:
                    try:
                        item = next(current.iterator)
                    except StopIteration:
                        exhausted = True
                        break
                    except Exception as error:
                        if current.chain is None:  # a nested pipeline's note names its place
                            annotate(error, ctx.label, current.index)
                        raise
                    current.count += 1
                    state.block += 1
                    yield item
                state.block = 0
                if exhausted:
                    current.close()
                    replacement = open_next()
                    if replacement is None:
                        del slots[state.current]
                        if state.current >= len(slots):
                            state.current = 0
                        continue
                    slots[state.current] = replacement
                state.current = (state.current + 1) % len(slots)
        finally:
            close_all(*slots, upstream)

    return run()


class Repeat(Stage):
    __slots__ = ("_count",)
    per_element = True
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
    first, position = ctx.saved_count("repetition"), ctx.saved_count("position")
    current = _Reading(ctx, "repetition")
    ctx.track_state(current.entry)

    def run() -> Iterator[Any]:
        repetitions = itertools.count(first) if count is None else builtins.range(first, count)
        for repetition in repetitions:
            # Each repetition is its own epoch path, so an upstream shuffle reorders.
            saved = ctx.resume if repetition == first else None
            resumed = saved is not None
            chain = upstream((*ctx.epoch, repetition), saved.get("inner") if saved else None)
            try:
                iterator = current.read(repetition, chain, position if resumed else 0)
                head = next(iterator, _EMPTY)
                if head is _EMPTY:
                    if resumed and position:
                        continue  # resumed at the end of a repetition
                    if count is None:
                        return  # an empty upstream repeated forever would spin without end
                    continue  # a later repetition may hold data (a source that changes)
                yield head
                yield from iterator
            finally:
                chain.close()

    return run()


def zip(*iterables: Iterable[Any], strict: bool = False) -> Iterator[tuple[Any, ...]]:
    """Tuples of the elements of several iterables, in step (``strict`` as in builtins).

    >>> list(zip("ab", range(5)))
    [('a', 0), ('b', 1)]
    """
    return iterate((Zip([as_plan(i) for i in iterables], strict=strict),))


def concat(*iterables: Iterable[Any]) -> Iterator[Any]:
    """The elements of each iterable in turn.

    >>> list(concat("ab", [1]))
    ['a', 'b', 1]
    """
    return iterate((Concat([as_plan(i) for i in iterables]),))


def sample_from(
    iterables: Sequence[Iterable[Any]],
    weights: Sequence[float] | None = None,
    *,
    seed: int | None = None,
    stop_on_empty: bool = False,
) -> Iterator[Any]:
    """Elements of the iterables picked at random in proportion to ``weights``.

    >>> sorted(sample_from(["ab", "xyz"], seed=0))
    ['a', 'b', 'x', 'y', 'z']
    """
    parts = [as_plan(i) for i in iterables]
    return iterate((SampleFrom(parts, weights, seed=seed, stop_on_empty=stop_on_empty),))


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
    return apply(stage, iterable)


def repeat(iterable: Iterable[Any], count: int | None = None) -> Iterator[Any]:
    """Iterate ``iterable`` ``count`` times (``None``: forever).

    A one-shot iterator cannot be repeated: its second pass raises ``RuntimeError``.

    >>> list(repeat([1, 2], 2))
    [1, 2, 1, 2]
    """
    plan = as_plan(iterable)
    return iterate((*plan.stages, Repeat(count)), seed=plan.seed)
