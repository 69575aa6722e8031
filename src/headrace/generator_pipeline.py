"""Seed 000's ``GeneratorPipeline``: its coroutine pipeline, running on headrace.

>>> import headrace as hr
>>> def add(n):
...     while True:
...         x = yield
...         yield x + n
>>> list(hr.GeneratorPipeline(iter([1, 2]), add(10)))
[11, 12]
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from headrace.engine.guard import close_iterator
from headrace.pipeline import Pipeline
from headrace.sources.basic import FromIterable
from headrace.stages.coroutines import Step

__all__ = ["GeneratorPipeline"]


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
