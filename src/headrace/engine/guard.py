"""Running user-supplied iterables inside a stage: error notes and closing."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from headrace.errors import annotate

__all__ = ["close_all", "close_iterator", "drive"]


def close_iterator(iterator: object) -> None:
    """Close ``iterator`` if it can be closed (generators, runs, files); else nothing.

    Called from ``finally`` blocks while an exception is on its way out, a failure to
    close (a user generator that raises in its own ``finally``) is added as a note to
    that exception instead of replacing it: the user sees the error that started it.
    """
    close = getattr(iterator, "close", None)
    if close is None:
        return
    pending = sys.exc_info()[1]
    if pending is None or isinstance(pending, GeneratorExit):
        close()
        return
    try:
        close()
    except Exception as error:
        pending.add_note(
            f"headrace: while this error unwound the pipeline, closing a stage also "
            f"failed: {type(error).__name__}: {error}"
        )


def close_all(*iterators: object) -> None:
    """Close every iterator in order, even when one fails; then raise the first failure."""
    failure: BaseException | None = None
    for iterator in iterators:
        try:
            close_iterator(iterator)
        except Exception as error:
            failure = failure or error
    if failure is not None:
        raise failure


def drive(
    make: Callable[[], Iterable[Any]],
    label: str,
    where: Callable[[int], dict[str, int | None]],
    upstream: object = None,
) -> Iterator[Any]:
    """Yield from the iterable ``make()`` returns, noting errors raised by user code.

    An exception from ``make`` or from the iterable gets one note naming ``label``;
    ``where(count)`` gives the :func:`~headrace.errors.annotate` keywords that locate
    the failure, from the number of elements yielded so far. The iterable, and the
    ``upstream`` that feeds it if any, are closed however the stage ends, so their
    ``finally`` blocks run.
    """
    try:
        produced = iter(make())
    except Exception as error:
        annotate(error, label)
        close_iterator(upstream)
        raise
    count = 0
    try:
        while True:
            try:
                item = next(produced)
            except StopIteration:
                return
            except Exception as error:
                annotate(error, label, **where(count))  # type: ignore[arg-type]
                raise
            count += 1
            yield item
    finally:
        close_all(produced, upstream)
