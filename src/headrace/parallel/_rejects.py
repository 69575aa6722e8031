"""``on_error=`` for ``map`` and ``random_map``: bad elements counted, not lost.

A guarded call turns a data error (:class:`~headrace.errors.ParseError`, which
:class:`~headrace.errors.DecodeError` is, or an ``OSError``: a file that cannot be
opened) into a :class:`Rejected` value. That value travels back like any result,
from an inline call, a thread or a worker process, and :func:`screen`, on the
consumer's thread, accounts for it under the stage's error policy. Every other
exception is a bug, not bad data, and stops the run as it always does.
"""

from __future__ import annotations

import builtins
import itertools
from collections.abc import Callable, Iterator
from typing import Any, Final, cast

from headrace.engine.guard import close_iterator
from headrace.engine.stage import StageContext
from headrace.engine.state import count_of
from headrace.errors import ParseError, annotate
from headrace.parallel._protocol import Plain
from headrace.policy import ErrorPolicy

__all__ = ["DATA_ERRORS", "Guarded", "Rejected", "inline", "inline_screened", "screen"]

#: What a guarded call accounts for instead of raising.
DATA_ERRORS: Final = (ParseError, OSError)

# A quarantined record shows the element, cut to this many characters: an element
# can hold a whole image's bytes.
_RECORD_CHARS: Final = 500


class Rejected:
    """The element at ``index`` was not transformed: ``reason`` says why."""

    __slots__ = ("index", "reason", "record")

    def __init__(self, index: int, reason: str, record: str) -> None:
        self.index, self.reason, self.record = index, reason, record

    def __reduce__(self) -> tuple[type[Rejected], tuple[int, str, str]]:
        return Rejected, (self.index, self.reason, self.record)


class Guarded:
    """``call(index, element)``, giving a :class:`Rejected` where it raises bad data."""

    __slots__ = ("call",)

    def __init__(self, call: Callable[[int, Any], Any]) -> None:
        self.call = call

    def __call__(self, index: int, item: Any) -> Any:
        try:
            return self.call(index, item)
        except DATA_ERRORS as error:
            rejected = self.rescue(index, item, error)
            assert rejected is not None
            return rejected

    @staticmethod
    def rescue(index: int, item: Any, error: BaseException) -> Rejected | None:
        """The :class:`Rejected` for a call on ``item`` that raised ``error``, if that
        is a data error; ``None`` otherwise."""
        if not isinstance(error, DATA_ERRORS):
            return None
        shown = item if isinstance(item, str) else repr(item)
        if len(shown) > _RECORD_CHARS:
            shown = shown[: _RECORD_CHARS - 3] + "..."
        return Rejected(index, f"{type(error).__name__}: {error}", shown)


def inline(
    upstream: Iterator[Any], call: Callable[[int, Any], Any], label: str, first: int = 0
) -> Iterator[Any]:
    """``call(index, element)`` for each element, on the consumer's thread; the first
    element's index is ``first``."""
    try:
        for index, item in builtins.enumerate(upstream, first):
            try:
                out = call(index, item)
            except Exception as error:
                annotate(error, label, index)
                raise
            yield out
    finally:
        close_iterator(upstream)


def inline_screened(
    upstream: Iterator[Any],
    counter: itertools.count[int],
    call: Callable[[int, Any], Any],
    policy: ErrorPolicy,
    ctx: StageContext,
) -> Iterator[Any]:
    """:func:`inline` and :func:`screen` in one generator: ``call(index, element)``
    for each element of ``upstream`` (counted by ``counter`` from ``ctx.start``), a
    data error accounted for by ``policy`` where it is raised. A :class:`Plain` call
    is made as ``fn(element)``."""
    tally = policy.tally(ctx)
    first = ctx.start
    tally.taking = lambda: count_of(counter) - first
    plain = type(call) is Plain
    fn = cast("Plain", call).fn if plain else None
    try:
        for index, item in builtins.enumerate(upstream, first):
            try:
                out = fn(item) if fn is not None else call(index, item)
            except DATA_ERRORS as error:
                rejected = Guarded.rescue(index, item, error)
                assert rejected is not None
                tally.reject(f"input element {index}", rejected.reason, rejected.record)
                continue
            except Exception as error:
                annotate(error, ctx.label, index)
                raise
            yield out
    finally:
        tally.read += count_of(counter) - first
        tally.taking = None
        tally.close()
        close_iterator(upstream)


def screen(results: Iterator[Any], policy: ErrorPolicy, ctx: StageContext) -> Iterator[Any]:
    """Yield ``results`` but the :class:`Rejected` ones, which ``policy`` accounts for."""
    tally = policy.tally(ctx)
    try:
        for result in results:
            tally.read += 1
            if type(result) is Rejected:
                # The tally's summary and quarantine entries name the stage already.
                tally.reject(f"input element {result.index}", result.reason, result.record)
                continue
            yield result
    finally:
        tally.close()
        close_iterator(results)
