"""In-memory and generator sources.

>>> import headrace as hr
>>> def countdown(n):
...     while n:
...         yield n
...         n -= 1
>>> numbers = hr.from_generator(countdown, 3)
>>> list(numbers), list(numbers)  # the function is called again for every run
([3, 2, 1], [3, 2, 1])
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, cast

import numpy as np

from headrace._checks import check_callable, check_int
from headrace.engine.guard import drive
from headrace.engine.plan import Plan
from headrace.engine.stage import RUN_LOCK, STREAM_ONLY, Length, Stage, StageContext
from headrace.errors import describe_callable

__all__ = ["FromGenerator", "FromIterable", "Range", "as_plan"]


class FromIterable(Stage):
    """Elements of an iterable; a one-shot iterator can feed only one run."""

    __slots__ = ("_iterable", "_one_shot", "_spent")
    is_source = True

    def __init__(self, iterable: Iterable[Any]) -> None:
        # Checked without calling iter(): that would run user code (a custom
        # __iter__) while the pipeline is only being described, and leave an iterator
        # open that nothing closes.
        if not _is_iterable(iterable):
            raise TypeError(
                f"iterable must be iterable, got {type(iterable).__name__}: {iterable!r}"
            )
        self._iterable = iterable
        self._one_shot = isinstance(iterable, Iterator)
        self._spent = False

    @property
    def name(self) -> str:
        kind = type(self._iterable).__name__
        size = f" of {len(self._iterable)}" if self._sized() else ""  # type: ignore[arg-type]
        return f"from_iterable(<{kind}{size}>)"

    def _sized(self) -> bool:
        if self._one_shot or not hasattr(self._iterable, "__len__"):
            return False
        try:  # a 0-d numpy array has __len__, and len() of it raises
            len(self._iterable)  # type: ignore[arg-type]
        except TypeError:
            return False
        return True

    def open(self, upstream: Iterator[Any], ctx: StageContext) -> Iterator[Any]:
        if self._one_shot:
            with RUN_LOCK:
                if self._spent:
                    raise RuntimeError(
                        f"{ctx.label} wraps a one-shot iterator that an earlier run already "
                        "consumed; use from_generator(fn) or a list to run more than once"
                    )
                self._spent = True
        if ctx.start:
            # A resumed run: only sequences are opened at a position (see seekable).
            data = cast("Sequence[Any]", self._iterable)
            return map(data.__getitem__, builtins.range(ctx.start, len(data)))
        return iter(self._iterable)

    @property
    def seekable(self) -> bool:  # type: ignore[override]
        """Lists, tuples, ranges, strings and arrays: read by index from any element."""
        return self._sized() and isinstance(self._iterable, Sequence | np.ndarray)

    def length(self, upstream: Length) -> Length:
        return len(self._iterable) if self._sized() else None  # type: ignore[arg-type]

    def index_problem(self) -> str | None:
        data = self._iterable
        if self._one_shot:
            return (
                f"global_shuffle cannot read {self.name} by index: it wraps a one-shot "
                f"iterator; pass a list or a numpy array{STREAM_ONLY}"
            )
        if isinstance(data, np.ndarray):
            if data.ndim >= 1:
                return None
            # Not self.name: that asks the 0-d array for its len().
            what = "from_iterable(<0-d ndarray>)"
        elif isinstance(data, Sequence):
            return None
        else:
            what = self.name
        return (
            f"global_shuffle cannot read {what} by index: it needs a sequence "
            f"(list, tuple, range, ...) or a numpy array of at least one dimension{STREAM_ONLY}"
        )

    def by_index(self) -> Sequence[Any]:
        if self.index_problem() is not None:
            raise ValueError(self.index_problem())
        return cast("Sequence[Any]", self._iterable)


def _is_iterable(value: object) -> bool:
    """Whether ``iter(value)`` would succeed, by the rule ``iter`` uses, without calling it.

    >>> class Squares:
    ...     def __getitem__(self, i):
    ...         return i * i
    >>> _is_iterable([]), _is_iterable(3), _is_iterable(Squares())
    (True, False, True)
    """
    kind = type(value)
    for klass in kind.__mro__:
        if "__iter__" in vars(klass):
            # ``__iter__ = None`` is how a class declares itself not iterable.
            return vars(klass)["__iter__"] is not None
    # The old sequence protocol: __getitem__ with 0, 1, 2, ... until IndexError.
    return hasattr(kind, "__getitem__")


class FromGenerator(Stage):
    """Elements of ``fn(*args, **kwargs)``, called anew for every run."""

    __slots__ = ("_args", "_fn", "_kwargs")
    is_source = True

    def __init__(
        self, fn: Callable[..., Iterable[Any]], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        self._fn = check_callable("fn", fn)
        self._args = args
        self._kwargs = dict(kwargs)

    @property
    def name(self) -> str:
        return f"from_generator({describe_callable(self._fn)})"

    def open(self, upstream: Iterator[Any], ctx: StageContext) -> Iterator[Any]:
        fn, args, kwargs = self._fn, self._args, self._kwargs
        return drive(lambda: fn(*args, **kwargs), ctx.label, lambda n: {"produced": n})


class Range(Stage):
    """The integers of ``range(start, stop, step)``."""

    __slots__ = ("_range",)
    is_source = True

    def __init__(self, start: int, stop: int | None = None, step: int = 1) -> None:
        if stop is None:
            start, stop = 0, start
        start = check_int("start", start)
        stop = check_int("stop", stop)
        step = check_int("step", step)
        if step == 0:
            raise ValueError("step must not be zero")
        self._range = builtins.range(start, stop, step)

    @property
    def name(self) -> str:
        r = self._range
        return f"range({r.start}, {r.stop}{'' if r.step == 1 else f', {r.step}'})"

    seekable = True

    def open(self, upstream: Iterator[Any], ctx: StageContext) -> Iterator[Any]:
        return iter(self._range[ctx.start :])

    def index_problem(self) -> str | None:
        return None

    def by_index(self) -> Sequence[Any]:
        return self._range

    def length(self, upstream: Length) -> Length:
        # Not len(range): it raises OverflowError past sys.maxsize elements, and list()
        # asks for the length even of range(10**20).take(3).
        r = self._range
        if r.step > 0:
            return builtins.max(0, (r.stop - r.start + r.step - 1) // r.step)
        return builtins.max(0, (r.start - r.stop - r.step - 1) // -r.step)


def as_plan(value: Plan[Any] | Iterable[Any]) -> Plan[Any]:
    """``value`` itself if it is a plan (a pipeline), else a plan over its elements."""
    if isinstance(value, Plan):
        return value
    return Plan((FromIterable(value),))
