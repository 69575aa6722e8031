"""Argument checks shared by every constructor: fail at construction, name the argument."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import numpy as np


def check_callable(name: str, value: object) -> Callable[..., Any]:
    """Return ``value`` if it is callable, else raise ``TypeError`` naming ``name``.

    >>> check_callable("fn", 3)
    Traceback (most recent call last):
    TypeError: fn must be callable, got int: 3
    """
    if not callable(value):
        raise TypeError(f"{name} must be callable, got {type(value).__name__}: {value!r}")
    return value


def check_bool(name: str, value: object) -> bool:
    """Return ``value`` as a ``bool``; only ``True``/``False`` (or numpy's) are accepted.

    ``bool(x)`` would read any non-empty string, even ``"no"``, as true.

    >>> check_bool("drop_remainder", np.True_)
    True
    >>> check_bool("drop_remainder", "no")
    Traceback (most recent call last):
    TypeError: drop_remainder must be a bool, got str: 'no'
    """
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}: {value!r}")
    return bool(value)


def check_int(name: str, value: object, *, minimum: int | None = None) -> int:
    """Return ``value`` as an ``int`` (bools refused), at least ``minimum`` if given.

    >>> check_int("size", 0, minimum=1)
    Traceback (most recent call last):
    ValueError: size must be at least 1, got 0
    >>> check_int("size", 2.0)
    Traceback (most recent call last):
    TypeError: size must be an int, got float: 2.0
    """
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got bool: {value!r}")
    try:
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__}: {value!r}") from None
    if minimum is not None and number < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {number}")
    return number


def check_optional_int(name: str, value: object, *, minimum: int | None = None) -> int | None:
    """Like :func:`check_int`, but ``None`` passes through."""
    if value is None:
        return None
    return check_int(name, value, minimum=minimum)


def check_seed(value: object) -> int | None:
    """A seed is ``None`` or a non-negative int."""
    return check_optional_int("seed", value, minimum=0)


def check_shuffle(shuffle: object, seed: object, what: str) -> tuple[bool, int | None]:
    """``(shuffle, seed)`` of a source that can shuffle ``what`` (its paths, its files);
    a seed without ``shuffle=True`` would do nothing, so it is refused."""
    on = check_bool("shuffle", shuffle)
    number = check_seed(seed)
    if number is not None and not on:
        raise ValueError(
            f"seed={number} has no effect without shuffle=True; pass shuffle=True "
            f"to shuffle the {what} reproducibly, or drop the seed"
        )
    return on, number
