"""The column types :func:`headrace.read_csv` infers when ``dtype=`` does not give them.

The stage reads the first rows of the dataset's first file with the csv module
(:data:`INFER_ROWS` rows, or :data:`INFER_BYTES` bytes, whichever comes first) and
takes each column's type from its values (:func:`infer`), so both engines give every
file of the dataset the same types. The rows are then
read again by the engine, as the rest of the file: a value further on that does not
fit the inferred type is a bad row, never a change of type.

>>> [infer(values) for values in (["1", "-2"], ["1", ""], ["1.5", "nan"], ["true", "False"])]
[dtype('int64'), dtype('float64'), dtype('float64'), dtype('bool')]
>>> [infer(values) for values in (["1", "x"], ["", ""], ["true", ""], ["12345678901234567890"])]
[None, None, None, None]
>>> infer(["1.5", "12345678901234567890"]), infer(["12345678901234567890", "1.5"])
(None, None)
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Final

import numpy as np

__all__ = ["GUESS", "INFER_BYTES", "INFER_ROWS", "Guess", "infer"]

#: The most data rows of a file its column types are inferred from.
INFER_ROWS: Final = 4096
#: The most bytes of a file its column types are inferred from (rows past them are not
#: looked at, unless the first row alone is longer).
INFER_BYTES: Final = 1 << 20

_INT: Final = re.compile(r"[+-]?[0-9]+")
_FLOAT: Final = re.compile(
    r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?(?:nan|NaN|NAN|inf|Inf|INF)"
)
_BOOLS: Final = frozenset({"True", "TRUE", "true", "False", "FALSE", "false"})
_INT64: Final = np.iinfo(np.int64)


class Guess:
    """The type of a column that ``dtype=`` leaves to inference (:data:`GUESS`)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "GUESS"


#: A column whose type is inferred from the first rows of the dataset's first file.
GUESS: Final = Guess()


def infer(values: Iterable[str]) -> np.dtype[Any] | None:
    """The dtype of a column with these values, or None for text.

    ``int64`` when every value is an integer that fits; ``float64`` when every value is
    a number (``1.5``, ``-2e3``, ``nan``, ``inf``), or an integer with some values empty
    (missing: NaN); ``bool`` when every value is ``true`` or ``false`` (in the spellings
    ``True``, ``TRUE``, ``true``, ``False``, ``FALSE``, ``false``) and none is empty;
    text otherwise, and when every value is empty. ``1`` and ``0`` are integers, and
    values with spaces around them are text, as are integers too large for ``int64``
    (identifiers, which a float would round).
    """
    ints = floats = bools = True
    empty = seen = False
    for value in values:
        if not value:
            empty = True
            continue
        seen = True
        if bools and value not in _BOOLS:
            bools = False
        if _INT.fullmatch(value):
            if not _INT64.min <= int(value) <= _INT64.max:
                return None  # an identifier, which a float would round
        elif ints:
            ints = False
        if floats and not ints and not _FLOAT.fullmatch(value):
            floats = False
        if not (ints or floats or bools):
            return None
    if not seen:
        return None
    if bools:
        return None if empty else np.dtype(bool)
    if ints:
        return np.dtype(np.float64 if empty else np.int64)
    return np.dtype(np.float64) if floats else None
