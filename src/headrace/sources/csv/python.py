"""The Python engine of :func:`headrace.read_csv`: the standard library's
:mod:`csv` module, no dependencies.

It reads the files that pyarrow is not installed for or asked to read, and whatever
the pyarrow engine (:mod:`headrace.sources.csv.arrow`) cannot read as asked: it names
the exact row of each bad one.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import IO, Any, Final, cast

import numpy as np

from headrace.errors import DecodeError, ParseError
from headrace.policy import Tally
from headrace.sources.csv.common import (
    TRUTH,
    BoundedLines,
    Chunk,
    Layout,
    NotUtf8,
    RowTooLong,
    shown,
    to_float,
    utf8_text,
)
from headrace.sources.csv.infer import infer
from headrace.sources.files import DAMAGED, overlong_reason

__all__ = ["CHUNK_ROWS", "allow_fields", "python_chunks"]

#: How to read fields longer than the csv module takes, said where one is refused.
_LIMIT_HINT: Final = (
    " (a field longer than csv.field_size_limit() characters, which headrace raises "
    "to max_record_bytes: pass a larger max_record_bytes=)"
)


def allow_fields(limit: int) -> None:
    """Let the csv module read fields of up to ``limit`` characters, as pyarrow does.

    Its limit (128 KiB unless changed) is process-wide: it is raised, never lowered.
    """
    if csv.field_size_limit() < limit:
        csv.field_size_limit(limit)


#: Rows the Python engine converts to arrays at a time.
CHUNK_ROWS: Final = 4096


def python_chunks(
    stream: io.BufferedIOBase,
    path: str,
    layout: Layout,
    tally: Tally,
    before: int,
    skip: int,
    *,
    delimiter: str,
    quotechar: str,
    limit: int,
) -> Generator[Chunk, None, int]:
    """Chunks of the rows in ``stream`` (the bytes after the header), parsed by the csv
    module with ``delimiter`` and ``quotechar``. The first row is row ``before + 1``;
    rows up to ``skip`` are passed over uncounted. Returns the number of the last row
    read. A line over ``limit`` bytes is a bad row, read past; the reader has raised
    the csv module's field limit to ``limit`` (:func:`allow_fields`).

    Rows are gathered :data:`CHUNK_ROWS` at a time and converted a column at a time; a
    chunk with a value that does not convert is converted again row by row, to reject
    just the rows at fault.
    """
    # Undecodable bytes become lone surrogates, so a bad byte only rejects the row when
    # it is in a column that is read (as with pyarrow).
    binary = cast("IO[bytes]", stream)
    text = io.TextIOWrapper(binary, encoding="utf-8", errors="surrogateescape", newline="")
    reader = csv.reader(BoundedLines(text, limit), delimiter=delimiter, quotechar=quotechar)
    width, selected, dtypes = layout.width, layout.selected, layout.dtypes
    rows: list[list[str]] = []
    number = first = before

    def reject(where: int, fields: list[str] | None, reason: str, error: type[ParseError]) -> None:
        tally.read += 1
        tally.reject(f"{path} row {where}", reason, shown(fields), error=error)

    def flush() -> Iterator[Chunk]:
        if not rows:
            return
        try:
            columns = list(zip(*rows, strict=True))
            try:
                arrays = [_column(columns[i], d) for i, d in zip(selected, dtypes, strict=True)]
            except (ValueError, KeyError, OverflowError):
                yield from _row_by_row(rows, first, layout, reject)
            else:
                yield first, arrays
        finally:
            rows.clear()

    try:
        while True:
            try:
                for fields in reader:
                    if not fields:  # a blank line is no row, as for pyarrow
                        continue
                    number += 1
                    if number <= skip:
                        continue
                    if len(fields) != width:
                        yield from flush()
                        reason = f"expected {width} fields, found {len(fields)}"
                        reject(number, fields, reason, ParseError)
                        continue
                    if not rows:
                        first = number - 1
                    rows.append(fields)
                    if len(rows) >= CHUNK_ROWS:
                        yield from flush()
                break
            except csv.Error as error:  # a field over the csv module's size limit
                number += 1
                if number > skip:
                    yield from flush()
                    reject(number, None, f"cannot parse the row: {error}{_LIMIT_HINT}", ParseError)
            except RowTooLong as error:
                number += 1
                if number > skip:
                    yield from flush()
                    reject(number, None, overlong_reason("the row", error.size, limit), ParseError)
            except DAMAGED as error:
                yield from flush()
                tally.read += 1
                reason = f"the file is damaged or cut short after row {number} ({error})"
                tally.reject(f"{path} row {number + 1}", reason)
                return number
        yield from flush()
        return number
    finally:
        # The caller closes the stream; a wrapper left to the collector would close it.
        with contextlib.suppress(ValueError):
            text.detach()


def _column(strings: Sequence[str], dtype: np.dtype[Any] | None) -> np.ndarray:
    """A column of text as an array; ValueError, KeyError or OverflowError if a value
    does not convert (the caller then goes row by row)."""
    if dtype is None:
        if not all(map(str.isascii, strings)):
            for value in strings:
                utf8_text(value)
        return np.array(strings, dtype=object)
    values: list[Any]
    if dtype.kind == "f":
        try:
            values = list(map(float, strings))
        except ValueError:  # an empty field is NaN
            values = list(map(to_float, strings))
    elif dtype.kind == "b":
        values = list(map(TRUTH.__getitem__, strings))
    else:
        values = list(map(int, strings))
    with np.errstate(over="ignore"):  # 1e39 as float32 is inf, as pyarrow reads it
        return np.array(values, dtype=dtype)


def _row_by_row(
    rows: list[list[str]],
    before: int,
    layout: Layout,
    reject: Callable[[int, list[str], str, type[ParseError]], None],
) -> Iterator[Chunk]:
    """Chunks of the rows that convert; the others rejected, in their places."""
    converters, dtypes = layout.converters, layout.dtypes
    picked = list(zip(layout.selected, converters, strict=True))
    good: list[list[Any]] = [[] for _ in converters]
    first = before

    def chunk() -> Chunk:
        with np.errstate(over="ignore"):
            arrays = [
                np.array(column, dtype=object if dtype is None else dtype)
                for column, dtype in zip(good, dtypes, strict=True)
            ]
        for column in good:
            column.clear()
        return first, arrays

    for offset, fields in enumerate(rows):
        try:
            values = [convert(fields[index]) for index, convert in picked]
        except ValueError:
            if good[0]:
                yield chunk()
            reason, error = _why([fields[i] for i in layout.selected], layout)
            reject(before + offset + 1, fields, reason, error)
            continue
        if not good[0]:
            first = before + offset
        for column, value in zip(good, values, strict=True):
            column.append(value)
    if good[0]:
        yield chunk()


def _why(row: Sequence[str], layout: Layout) -> tuple[str, type[ParseError]]:
    """The reason a row's values do not convert, naming the first bad column (and, for
    a type inferred from a file's first rows, which file and how to set another)."""
    for value, convert, key, dtype, inferred in zip(
        row, layout.converters, layout.keys, layout.dtypes, layout.inferred, strict=True
    ):
        try:
            convert(value)
        except NotUtf8:
            return f"column {key!r} is not valid UTF-8", DecodeError
        except ValueError:
            reason = f"column {key!r}: cannot convert {value!r} to {dtype}"
            if inferred is not None:
                number = not value or getattr(infer([value]), "kind", "") in ("i", "f")
                wider = "float64" if dtype is not None and dtype.kind == "i" and number else "str"
                where = os.path.basename(inferred) or inferred
                reason += (
                    f" (the type inferred from the first rows of {where}; "
                    f"dtype={{{key!r}: {wider!r}}} reads them all)"
                )
            return reason, ParseError
    raise AssertionError("a row failed to convert, and then converted")  # pragma: no cover
