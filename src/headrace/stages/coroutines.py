"""Send-style coroutines as stages, and seed 000's ``GeneratorPipeline``.

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

__all__ = ["Coroutine", "GeneratorPipeline", "coroutine"]

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


class GeneratorPipeline:
    """Seed 000's coroutine pipeline, running on headrace's stages.

    ``source`` is any iterator of elements; every step is a two-``yield`` coroutine
    generator (see the module docs). Iterating gives each source element after it has
    been sent through every step in order. Like the original it is an iterator: it
    runs once. :attr:`pipeline` is the equivalent re-runnable description.

    >>> def scale(k):
    ...     while True:
    ...         x = yield
    ...         yield x * k
    >>> list(GeneratorPipeline(iter([1, 2, 3]), scale(2), scale(10)))
    [20, 40, 60]
    """

    def __init__(self, source: Iterable[Any], *steps: Step) -> None:
        from headrace.pipeline import Pipeline
        from headrace.sources.basic import FromIterable

        self.source = source
        self.steps = list(steps)
        pipeline: Pipeline[Any] = Pipeline((FromIterable(source),))
        for step in self.steps:
            pipeline = pipeline.coroutine(step)
        self.pipeline = pipeline
        self._run: Iterator[Any] | None = None

    def __iter__(self) -> GeneratorPipeline:
        return self

    def __next__(self) -> Any:
        if self._run is None:
            self._run = iter(self.pipeline)
        return next(self._run)

    def next(self) -> Any:
        """The next transformed element (the seed's spelling of ``next(pipeline)``)."""
        return self.__next__()

    def send_none(self) -> None:
        """Advance every step to its receiving ``yield``, as the seed's class does."""
        for step in self.steps:
            step.send(None)

    def send(self, batch: Any) -> Any:
        """Send ``batch`` through every step by hand; returns the last step's output."""
        x = batch
        for generator in self.steps:
            x = generator.send(x)
        return x

    def close(self) -> None:
        """Stop the run and close every step."""
        close_iterator(self._run)
        for step in self.steps:
            step.close()
