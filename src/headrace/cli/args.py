"""The value types of the ``headrace`` command line's options.

Each is an ``argparse`` ``type=``: it takes the text given and returns the value, or
raises :class:`argparse.ArgumentTypeError`, whose message argparse prints after the
option's name (``argument --lines: must be at least 1, got 0``) before exiting with 2.

>>> positive_int("8"), nonnegative_int("0")
(8, 0)
>>> positive_int("0")
Traceback (most recent call last):
    ...
argparse.ArgumentTypeError: must be at least 1, got 0
>>> nonnegative_int("many")
Traceback (most recent call last):
    ...
argparse.ArgumentTypeError: not an integer: 'many'
"""

from __future__ import annotations

import argparse

__all__ = ["int_at_least", "nonnegative_int", "positive_int", "worker_count"]


def positive_int(text: str) -> int:
    """An integer of at least 1: a size, a number of epochs or repeats, a limit."""
    return int_at_least(text, 1)


def nonnegative_int(text: str) -> int:
    """An integer of at least 0: a count where none is allowed (``--images 0``)."""
    return int_at_least(text, 0)


def worker_count(text: str) -> int | str:
    """A worker count of at least 0, or ``auto``."""
    return "auto" if text == "auto" else int_at_least(text, 0)


def int_at_least(text: str, minimum: int) -> int:
    """``text`` as an integer of at least ``minimum``.

    Raises:
        argparse.ArgumentTypeError: ``text`` is not an integer, or is below ``minimum``.
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
    return value
