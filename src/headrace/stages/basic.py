"""Element-wise stages: map, filter, tap, flat_map, take, skip, enumerate, scan, ...

Every stage here is a plain function from an iterable to an iterator, usable on its own
or through the matching :class:`~headrace.Pipeline` method:

>>> from headrace import stages
>>> list(stages.scan(stages.take([3, 1, 4, 1, 5], 4), lambda total, x: total + x, 0))
[3, 4, 8, 9]
"""

from __future__ import annotations

import builtins
import copy
import functools
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from headrace._checks import check_callable, check_int
from headrace.engine.fusion import fuse, inputs_taken
from headrace.engine.guard import close_iterator, drive
from headrace.engine.opening import apply
from headrace.engine.plan import Plan
from headrace.engine.stage import Length, Stage, StageContext
from headrace.engine.state import Entry, count_of, counting, decode_plain, encode_plain
from headrace.errors import annotate, describe_callable, mark
from headrace.stages.expansion import ExpansionState

__all__ = [
    "drop_while",
    "enumerate",
    "filter",
    "flat_map",
    "map",
    "pipe",
    "scan",
    "skip",
    "starmap",
    "take",
    "take_while",
    "tap",
]


class FusedStage(Stage):
    """``map``, ``filter`` and ``tap``: one user function per element, fused in runs."""

    __slots__ = ("_fn",)
    per_element = True

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self._fn = check_callable("fn", fn)

    @property
    def fn(self) -> Callable[[Any], Any]:
        return self._fn

    @property
    def name(self) -> str:
        return f"{self.fuse_kind}({describe_callable(self._fn)})"

    def open(self, upstream: Iterator[Any], ctx: StageContext) -> Iterator[Any]:
        if self.fuse_kind != "filter":
            return fuse(upstream, [self.fuse_kind or ""], [self._fn], [ctx.label], ctx.start)
        # A filter's outputs do not tell its inputs: its count of them is the state.
        ends: list[tuple[int, list[int]]] = []
        fused = fuse(upstream, ["filter"], [self._fn], [ctx.label], ctx.start, ends)
        ctx.track_state(lambda _: {"start": inputs_taken(fused, ends)})
        return fused

    def resume_upstream(self, position: int) -> int | None:
        # One output per input, but a filter's outputs do not tell its inputs.
        return None if self.fuse_kind == "filter" else position


class Map(FusedStage):
    __slots__ = ()
    fuse_kind = "map"

    def length(self, upstream: Length) -> Length:
        return upstream


class Starmap(FusedStage):
    __slots__ = ()
    fuse_kind = "starmap"

    def length(self, upstream: Length) -> Length:
        return upstream


class Filter(FusedStage):
    __slots__ = ()
    fuse_kind = "filter"


class Tap(FusedStage):
    __slots__ = ()
    fuse_kind = "tap"

    def length(self, upstream: Length) -> Length:
        return upstream


def map(iterable: Iterable[Any], fn: Callable[[Any], Any]) -> Iterator[Any]:
    """Apply ``fn`` to every element.

    >>> list(map([1, 2, 3], lambda x: x * 10))
    [10, 20, 30]
    """
    return apply(Map(fn), iterable)


def starmap(iterable: Iterable[Any], fn: Callable[..., Any]) -> Iterator[Any]:
    """Apply ``fn`` to the unpacked elements: ``fn(*x)``, like ``itertools.starmap``.

    >>> list(starmap([(2, 5), (3, 2), (10, 3)], pow))
    [32, 9, 1000]
    """
    return apply(Starmap(fn), iterable)


def filter(iterable: Iterable[Any], fn: Callable[[Any], Any]) -> Iterator[Any]:
    """Keep the elements for which ``fn`` returns a true value.

    >>> list(filter(range(6), lambda x: x % 2))
    [1, 3, 5]
    """
    return apply(Filter(fn), iterable)


def tap(iterable: Iterable[Any], fn: Callable[[Any], Any]) -> Iterator[Any]:
    """Call ``fn`` on every element for its side effect; pass elements on unchanged.

    >>> seen = []
    >>> list(tap("ab", seen.append)), seen
    (['a', 'b'], ['a', 'b'])
    """
    return apply(Tap(fn), iterable)


class FlatMap(Stage):
    __slots__ = ("_fn",)
    per_element = True

    def __init__(self, fn: Callable[[Any], Iterable[Any]]) -> None:
        self._fn = check_callable("fn", fn)

    @property
    def name(self) -> str:
        return f"flat_map({describe_callable(self._fn)})"

    def open(self, upstream: Iterator[Any], ctx: StageContext) -> Iterator[Any]:
        return _flat_map(upstream, self._fn, ctx)


def _flat_map(
    upstream: Iterator[Any], fn: Callable[[Any], Iterable[Any]], ctx: StageContext
) -> Iterator[Any]:
    label = ctx.label
    # Resuming takes the element being expanded again and passes over what of it was
    # handed out; a pipeline it returned goes on from its own state instead.
    state = ExpansionState.opened(ctx)
    saved_inner = None if ctx.resume is None else ctx.resume.get("inner")
    ctx.track_state(lambda position: state.entry(ctx))

    def run() -> Iterator[Any]:
        drop = state.handed_out
        resumed = saved_inner
        try:
            for index, item in builtins.enumerate(upstream, ctx.start):
                try:
                    produced = fn(item)
                    if isinstance(produced, Plan):
                        # Opened in this run's epoch, as interleave opens its pipelines, not
                        # in the pipeline's own next epoch: the run replays the same way.
                        where = f"for input element {index}"
                        chain = ctx.open_inner(produced.stages, produced.seed, where, resumed)
                        if resumed is not None:
                            drop = 0  # the pipeline goes on from its own state
                        state.inner = chain
                        inner: Iterator[Any] = chain.iterator
                        closer: Callable[[], object] = chain.close
                    else:
                        inner = iter(produced)
                        closer = functools.partial(close_iterator, inner)
                    resumed = None
                except Exception as error:
                    annotate(error, label, index)
                    raise
                try:
                    while True:
                        try:
                            out = next(inner)
                        except StopIteration:
                            break
                        except Exception as error:
                            annotate(error, label, index)
                            raise
                        if drop:  # handed out before the state this run resumed from
                            drop -= 1
                            continue
                        state.handed_out += 1
                        yield out
                finally:
                    closer()
                state.next_element(ctx, index + 1)
        finally:
            close_iterator(upstream)

    return run()


def flat_map(iterable: Iterable[Any], fn: Callable[[Any], Iterable[Any]]) -> Iterator[Any]:
    """Replace every element by the elements of the iterable ``fn`` returns for it.

    >>> list(flat_map([1, 2, 3], lambda n: [n] * n))
    [1, 2, 2, 3, 3, 3]
    """
    stage = FlatMap(fn)
    return apply(stage, iterable)


class Take(Stage):
    __slots__ = ("_count",)

    def __init__(self, count: int) -> None:
        self._count = check_int("count", count, minimum=0)

    @property
    def name(self) -> str:
        return f"take({self._count})"

    def open(self, upstream: Iterator[Any], ctx: StageContext) -> Iterator[Any]:
        return _slice(upstream, builtins.max(0, self._count - ctx.start), None)

    def resume_upstream(self, position: int) -> int | None:
        return position

    def length(self, upstream: Length) -> Length:
        # An unknown upstream may hold fewer than count elements (after a filter, say),
        # so take(count) bounds the length but does not make it known.
        return None if upstream is None else builtins.min(upstream, self._count)


class Skip(Stage):
    __slots__ = ("_count",)

    def __init__(self, count: int) -> None:
        self._count = check_int("count", count, minimum=0)

    @property
    def name(self) -> str:
        return f"skip({self._count})"

    def open(self, upstream: Iterator[Any], ctx: StageContext) -> Iterator[Any]:
        return _slice(upstream, builtins.max(0, self._count - ctx.start), None, skip=True)

    def resume_upstream(self, position: int) -> int | None:
        # Nothing is read before the first output is asked for.
        return position + self._count if position else 0

    def length(self, upstream: Length) -> Length:
        return None if upstream is None else builtins.max(upstream - self._count, 0)


def _slice(upstream: Iterator[Any], count: int, _: None, *, skip: bool = False) -> Iterator[Any]:
    # A generator rather than a bare islice, so that the upstream is closed as soon as
    # take() has its elements (a file behind it closes then, not at the end of the run).
    try:
        if skip:
            yield from itertools.islice(upstream, count, None)
        else:
            yield from itertools.islice(upstream, count)
    finally:
        close_iterator(upstream)


def _enumerate(upstream: Iterator[Any], start: int) -> Iterator[tuple[int, Any]]:
    try:
        yield from builtins.enumerate(upstream, start)
    finally:
        close_iterator(upstream)


def take(iterable: Iterable[Any], count: int) -> Iterator[Any]:
    """The first ``count`` elements (fewer if the input is shorter).

    >>> list(take(range(10), 3))
    [0, 1, 2]
    """
    return apply(Take(count), iterable)


def skip(iterable: Iterable[Any], count: int) -> Iterator[Any]:
    """Everything after the first ``count`` elements.

    >>> list(skip(range(5), 3))
    [3, 4]
    """
    return apply(Skip(count), iterable)


class Enumerate(Stage):
    __slots__ = ("_start",)

    def __init__(self, start: int = 0) -> None:
        self._start = check_int("start", start)

    @property
    def name(self) -> str:
        return "enumerate()" if self._start == 0 else f"enumerate(start={self._start})"

    def open(self, upstream: Iterator[Any], ctx: StageContext) -> Iterator[Any]:
        return _enumerate(upstream, self._start + ctx.start)

    def resume_upstream(self, position: int) -> int | None:
        return position

    def length(self, upstream: Length) -> Length:
        return upstream


def enumerate(iterable: Iterable[Any], start: int = 0) -> Iterator[tuple[int, Any]]:
    """Pair every element with its position: ``(start, x0), (start + 1, x1), ...``.

    >>> list(enumerate("ab", start=1))
    [(1, 'a'), (2, 'b')]
    """
    return apply(Enumerate(start), iterable)


class TakeWhile(Stage):
    __slots__ = ("_drop", "_fn")

    def __init__(self, fn: Callable[[Any], Any], *, drop: bool) -> None:
        self._fn = check_callable("fn", fn)
        self._drop = drop

    @property
    def name(self) -> str:
        kind = "drop_while" if self._drop else "take_while"
        return f"{kind}({describe_callable(self._fn)})"

    def open(self, upstream: Iterator[Any], ctx: StageContext) -> Iterator[Any]:
        if not self._drop:
            # One output per input until it stops; once stopped, it stays stopped.
            state = TakeWhileState(bool(ctx.saved_count("stopped")))
            ctx.track_state(state.entry)
            return _take_while(upstream, self._fn, ctx.label, state)
        # Once an element is handed out, nothing more is dropped: the state is the
        # input count, and whether that point was passed.
        upstream, counter = counting(upstream, ctx.start)
        done = ctx.saved_count("done")

        def entry(position: int) -> Entry:
            return {"start": count_of(counter), "done": 1} if position else (ctx.resume or {})

        ctx.track_state(entry)
        return _drop_while(upstream, self._fn, ctx.label, done=bool(done))


@dataclass(slots=True)
class TakeWhileState:
    """Whether a ``take_while`` has stopped: its entry is its input count, and
    ``"stopped": 1`` once it has (a resumed run then hands out nothing more)."""

    stopped: bool

    def entry(self, position: int) -> Entry:
        """The stage's entry after it handed out ``position`` elements."""
        return {"start": position, "stopped": 1} if self.stopped else {"start": position}


def _take_while(
    upstream: Iterator[Any], fn: Callable[[Any], Any], label: str, state: TakeWhileState
) -> Iterator[Any]:
    try:
        for index, item in builtins.enumerate(() if state.stopped else upstream):
            try:
                keep = fn(item)
            except Exception as error:
                annotate(error, label, index)
                raise
            if not keep:
                state.stopped = True
                return
            yield item
    finally:
        close_iterator(upstream)


def _drop_while(
    upstream: Iterator[Any], fn: Callable[[Any], Any], label: str, *, done: bool = False
) -> Iterator[Any]:
    try:
        for index, item in builtins.enumerate(() if done else upstream):
            try:
                dropping = fn(item)
            except Exception as error:
                annotate(error, label, index)
                raise
            if not dropping:
                yield item
                break
        yield from upstream
    finally:
        close_iterator(upstream)


def take_while(iterable: Iterable[Any], fn: Callable[[Any], Any]) -> Iterator[Any]:
    """Elements up to (not including) the first for which ``fn`` is false.

    >>> list(take_while([1, 2, 5, 1], lambda x: x < 3))
    [1, 2]
    """
    stage = TakeWhile(fn, drop=False)
    return apply(stage, iterable)


def drop_while(iterable: Iterable[Any], fn: Callable[[Any], Any]) -> Iterator[Any]:
    """Elements from the first for which ``fn`` is false onwards.

    >>> list(drop_while([1, 2, 5, 1], lambda x: x < 3))
    [5, 1]
    """
    stage = TakeWhile(fn, drop=True)
    return apply(stage, iterable)


_PLAIN_CONTAINERS = (list, dict, set, bytearray)


class Scan(Stage):
    __slots__ = ("_fn", "_fresh", "_initial")

    def __init__(self, fn: Callable[[Any, Any], Any], initial: Any, *, fresh: bool = True) -> None:
        self._fn = check_callable("fn", fn)
        self._initial = initial
        self._fresh = fresh

    @property
    def name(self) -> str:
        return f"scan({describe_callable(self._fn)})"

    def open(self, upstream: Iterator[Any], ctx: StageContext) -> Iterator[Any]:
        initial = self._initial
        if self._fresh and type(initial) in _PLAIN_CONTAINERS:
            # Each run starts from its own copy, so a function that mutates a plain
            # container state (appending to a list) does not carry one epoch into the
            # next. Other objects are used as given: copying could break identity
            # checks or fail outright (locks).
            initial = copy.deepcopy(initial)
        if ctx.resume is not None and "value" in ctx.resume:
            initial = decode_plain(ctx.resume["value"], ctx.label)
        state = ScanState(initial)
        ctx.track_state(state.entry)
        return _scan(upstream, self._fn, state, ctx.label, ctx.start)

    def resume_upstream(self, position: int) -> int | None:
        return position

    def length(self, upstream: Length) -> Length:
        return upstream


@dataclass(slots=True)
class ScanState:
    """The running value of a ``scan``: its entry is the input count and the value,
    when the value is plain data (else resuming replays the epoch)."""

    value: Any

    def entry(self, position: int) -> Entry:
        """The stage's entry after it handed out ``position`` elements."""
        try:
            return {"start": position, "value": encode_plain(self.value)}
        except TypeError:
            return None


def _scan(
    upstream: Iterator[Any],
    fn: Callable[[Any, Any], Any],
    state: ScanState,
    label: str,
    first: int,
) -> Iterator[Any]:
    value = state.value
    try:
        for index, item in builtins.enumerate(upstream, first):
            try:
                value = fn(value, item)
            except Exception as error:
                annotate(error, label, index)
                raise
            state.value = value
            yield value
    finally:
        close_iterator(upstream)


def scan(iterable: Iterable[Any], fn: Callable[[Any, Any], Any], initial: Any) -> Iterator[Any]:
    """Running reduction: yield ``state = fn(state, x)`` for every element.

    One output per input (``initial`` itself is not yielded), like
    ``itertools.accumulate(iterable, fn, initial=initial)`` without its first element.

    >>> list(scan([5, 4, 2], lambda s, x: (s[0] + x, s[1] + 1), (0, 0)))
    [(5, 1), (9, 2), (11, 3)]
    """
    stage = Scan(fn, initial, fresh=False)  # one run: the caller's state, as given
    return apply(stage, iterable)


class Pipe(Stage):
    """Any generator function ``fn(iterable, *args, **kwargs)`` as a stage."""

    __slots__ = ("_args", "_fn", "_kwargs")

    def __init__(
        self, fn: Callable[..., Iterable[Any]], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        self._fn = check_callable("fn", fn)
        self._args = args
        self._kwargs = dict(kwargs)

    @property
    def name(self) -> str:
        extra = [repr(a) for a in self._args] + [f"{k}={v!r}" for k, v in self._kwargs.items()]
        inside = ", ".join([describe_callable(self._fn), *extra])
        return f"pipe({inside})"

    def open(self, upstream: Iterator[Any], ctx: StageContext) -> Iterator[Any]:
        return _pipe(upstream, self._fn, self._args, self._kwargs, ctx.label)


class _Feed:
    """The input handed to a user generator: counts what it took, marks upstream errors.

    Marking lets the stage tell an exception raised by the user's code (which gets a
    note naming this stage) from one that only passed through it from upstream.
    """

    __slots__ = ("_scope", "_upstream", "taken")

    def __init__(self, upstream: Iterator[Any], scope: object) -> None:
        self._upstream = upstream
        self._scope = scope
        self.taken = 0

    def __iter__(self) -> _Feed:
        return self

    def __next__(self) -> Any:
        try:
            item = next(self._upstream)
        except StopIteration:
            raise
        except BaseException as error:
            mark(error, self._scope)
            raise
        self.taken += 1
        return item


def _pipe(
    upstream: Iterator[Any],
    fn: Callable[..., Iterable[Any]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    label: str,
) -> Iterator[Any]:
    feed = _Feed(upstream, getattr(label, "scope", True))
    # The element blamed is the last one the user's generator took from its input.
    return drive(
        lambda: fn(feed, *args, **kwargs),
        label,
        lambda _: {"index": feed.taken - 1 if feed.taken else None},
        upstream,
    )


def pipe(
    iterable: Iterable[Any], fn: Callable[..., Iterable[Any]], *args: Any, **kwargs: Any
) -> Iterator[Any]:
    """Run the generator function ``fn(iterable, *args, **kwargs)`` as a stage.

    >>> def pairs(items, sep):
    ...     for item in items:
    ...         yield f"{item}{sep}{item}"
    >>> list(pipe("ab", pairs, "-"))
    ['a-a', 'b-b']
    """
    stage = Pipe(fn, args, kwargs)
    return apply(stage, iterable)
