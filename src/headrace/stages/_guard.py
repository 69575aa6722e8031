"""Running user-supplied iterables inside a stage: error notes and closing."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from headrace.errors import annotate

__all__ = ["close_iterator", "drive"]


def close_iterator(iterator: object) -> None:
    """Close ``iterator`` if it can be closed (generators, runs, files); else nothing."""
    close = getattr(iterator, "close", None)
    if close is not None:
        close()


def drive(
    make: Callable[[], Iterable[Any]],
    label: str,
    where: Callable[[int], dict[str, int | None]],
) -> Iterator[Any]:
    """Yield from the iterable ``make()`` returns, noting errors raised by user code.

    An exception from ``make`` or from the iterable gets one note naming ``label``;
    ``where(count)`` gives the :func:`~headrace.errors.annotate` keywords that locate
    the failure, from the number of elements yielded so far. The iterable is closed
    however the stage ends, so its ``finally`` blocks run.
    """
    try:
        produced = iter(make())
    except Exception as error:
        annotate(error, label)
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
        close_iterator(produced)
