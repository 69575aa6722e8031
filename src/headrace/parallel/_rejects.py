"""``on_error=`` for ``map`` and ``random_map``: bad elements counted, not lost.

A guarded call turns an exception of the stage's ``catch`` types (every
``Exception`` by default, as tf.data's ``ignore_errors``; never a ``MemoryError``)
into a :class:`Rejected` value, which names the exception's type. That value travels
back like any result, from an inline call, a thread or a worker process, and
:func:`screen`, on the consumer's thread, accounts for it under the stage's error
policy. Any other exception stops the run as it always does.
"""

from __future__ import annotations

import builtins
import itertools
from collections.abc import Callable, Iterator
from typing import Any, Final, cast

from headrace.engine.guard import close_iterator
from headrace.engine.stage import StageContext
from headrace.engine.state import count_of
from headrace.errors import annotate
from headrace.parallel._protocol import Plain
from headrace.policy import ErrorPolicy

__all__ = [
    "CATCH",
    "Catch",
    "Guarded",
    "Rejected",
    "check_catch",
    "inline",
    "inline_screened",
    "screen",
]

#: The exception types a guarded call accounts for instead of raising.
Catch = tuple[type[Exception], ...]
#: What ``on_error`` catches unless ``catch=`` narrows it: every exception of a call.
CATCH: Final[Catch] = (Exception,)
#: Never bad data, whatever ``catch`` says: the process ran out of memory.
_NEVER: Final = (MemoryError,)


def check_catch(catch: object) -> Catch:
    """``catch=`` as a tuple of exception types (an ``Exception`` subclass or a tuple
    of them; None: :data:`CATCH`)."""
    if catch is None:
        return CATCH
    types = catch if isinstance(catch, tuple) else (catch,)
    for kind in types:
        if not (isinstance(kind, type) and issubclass(kind, Exception)):
            raise TypeError(
                "catch must be an exception type or a tuple of them (subclasses of "
                f"Exception: KeyboardInterrupt and SystemExit always stop a run), got {catch!r}"
            )
    if not types:
        raise ValueError("catch must name at least one exception type, got ()")
    return cast("Catch", types)


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
    """``call(index, element)``, giving a :class:`Rejected` where it raises one of the
    ``catch`` types."""

    __slots__ = ("call", "catch")

    def __init__(self, call: Callable[[int, Any], Any], catch: Catch = CATCH) -> None:
        self.call = call
        self.catch = catch

    def __call__(self, index: int, item: Any) -> Any:
        try:
            return self.call(index, item)
        except Exception as error:
            rejected = self.rescue(index, item, error)
            if rejected is None:
                raise
            return rejected

    def rescue(self, index: int, item: Any, error: BaseException) -> Rejected | None:
        """The :class:`Rejected` for a call on ``item`` that raised ``error``, if that
        is of the ``catch`` types; ``None`` otherwise."""
        return rejection(index, item, error, self.catch)


def rejection(index: int, item: Any, error: BaseException, catch: Catch) -> Rejected | None:
    """The :class:`Rejected` for a call on ``item`` that raised ``error``, if ``catch``
    takes it (a ``MemoryError`` never); ``None`` otherwise."""
    if isinstance(error, _NEVER) or not isinstance(error, catch):
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
    catch: Catch = CATCH,
) -> Iterator[Any]:
    """:func:`inline` and :func:`screen` in one generator: ``call(index, element)``
    for each element of ``upstream`` (counted by ``counter`` from ``ctx.start``), an
    exception of the ``catch`` types accounted for by ``policy`` where it is raised. A
    :class:`Plain` call is made as ``fn(element)``."""
    tally = policy.tally(ctx)
    first = ctx.start
    tally.taking = lambda: count_of(counter) - first
    plain = type(call) is Plain
    fn = cast("Plain", call).fn if plain else None
    try:
        for index, item in builtins.enumerate(upstream, first):
            try:
                out = fn(item) if fn is not None else call(index, item)
            except Exception as error:
                rejected = rejection(index, item, error, catch)
                if rejected is None:
                    annotate(error, ctx.label, index)
                    raise
                tally.reject(f"input element {index}", rejected.reason, rejected.record)
                continue
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
