"""Send-style coroutines as stages (seed 000's ``GeneratorPipeline`` runs on them).

A *coroutine step* is a generator with two ``yield`` expressions: one receives a value,
the next yields the result::

    def add(n):
        while True:
            x = yield          # receive
            yield x + n        # produce

For every element the stage sends ``None`` (advancing the step to its receiving
``yield``; this also primes a fresh generator) and then the element, whose reply is the
output. A step that returns ends the stream.

>>> import headrace as hr
>>> def add(n):
...     while True:
...         x = yield
...         yield x + n
>>> list(hr.range(3).coroutine(add, 10))
[10, 11, 12]
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any

from headrace.engine.guard import close_all, close_iterator
from headrace.engine.opening import apply
from headrace.engine.stage import RUN_LOCK, Stage, StageContext
from headrace.errors import annotate, describe_callable

__all__ = ["Coroutine", "Step", "coroutine"]

Step = Generator[Any, Any, Any]


class Coroutine(Stage):
    """Drives a coroutine step, made fresh for every run by ``factory``.

    A ready-made generator object can drive only one run; pass the generator function
    (and its arguments) for a pipeline that runs more than once.
    """

    __slots__ = ("_args", "_factory", "_kwargs", "_spent")

    def __init__(self, factory: Callable[..., Step] | Step, *args: Any, **kwargs: Any) -> None:
        if isinstance(factory, Generator):
            if args or kwargs:
                raise TypeError("arguments are given to a generator function, not to a generator")
        elif not callable(factory):
            raise TypeError(
                "fn must be a generator function or a generator, got "
                f"{type(factory).__name__}: {factory!r}"
            )
        self._factory = factory
        self._args = args
        self._kwargs = kwargs
        self._spent = False

    @property
    def name(self) -> str:
        return f"coroutine({describe_callable(self._factory)})"

    def open(self, upstream: Iterator[Any], ctx: StageContext) -> Iterator[Any]:
        if isinstance(self._factory, Generator):
            with RUN_LOCK:
                if self._spent:
                    raise RuntimeError(
                        f"{ctx.label} was given a generator object, which can drive only "
                        "one run; pass the generator function instead to run again"
                    )
                self._spent = True
            return _drive(upstream, self._factory, (), {}, ctx.label)
        return _drive(upstream, self._factory, self._args, self._kwargs, ctx.label)


def _drive(
    upstream: Iterator[Any],
    factory: Callable[..., Step] | Step,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    label: str,
) -> Iterator[Any]:
    # The step is made on the first element, not when the run opens: opening a run
    # executes no user code.
    if isinstance(factory, Generator):
        step = factory
    else:
        try:
            made: object = factory(*args, **kwargs)  # user code: check what it returned
        except Exception as error:
            annotate(error, label)
            close_iterator(upstream)
            raise
        if not isinstance(made, Generator):
            close_iterator(upstream)
            raise TypeError(
                f"{label}: {describe_callable(factory)} returned "
                f"{type(made).__name__}, not a generator"
            )
        step = made
    send = step.send
    try:
        for index, item in builtins.enumerate(upstream):
            try:
                send(None)
                out = send(item)
            except StopIteration:
                return
            except Exception as error:
                annotate(error, label, index)
                raise
            yield out
    finally:
        close_all(step, upstream)


def coroutine(
    iterable: Iterable[Any], fn: Callable[..., Step] | Step, *args: Any, **kwargs: Any
) -> Iterator[Any]:
    """Send every element through a two-``yield`` coroutine step.

    >>> def negate():
    ...     while True:
    ...         x = yield
    ...         yield -x
    >>> list(coroutine([1, 2], negate))
    [-1, -2]
    """
    stage = Coroutine(fn, *args, **kwargs)
    return apply(stage, iterable)
