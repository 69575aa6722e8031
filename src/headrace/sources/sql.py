"""``read_sql``: the rows of a query, streamed from any DB-API 2 connection.

>>> import sqlite3
>>> import headrace as hr
>>> db = sqlite3.connect(":memory:")
>>> _ = db.execute("CREATE TABLE t (id INTEGER, name TEXT)")
>>> _ = db.executemany("INSERT INTO t VALUES (?, ?)", [(1, "a"), (2, None)])
>>> list(hr.read_sql(db, "SELECT id, name FROM t ORDER BY id"))
[{'id': 1, 'name': 'a'}, {'id': 2, 'name': None}]
>>> db.close()
"""

from __future__ import annotations

import copy
import datetime
import decimal
import numbers
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from headrace._checks import check_callable, check_int, check_optional_int
from headrace.engine.guard import close_iterator
from headrace.engine.stage import Length, Stage, StageContext
from headrace.errors import annotate
from headrace.policy import ErrorPolicy, Tally
from headrace.sources.files import ReadPosition, open_reader

__all__ = ["ReadSql"]

#: The dtype kinds a batch column may have: bool, integers, floats, datetime64,
#: timedelta64 and object.
_KINDS = "biufMmO"
_SHOWN = 60  # characters of the query in repr and error messages


class ReadSql(Stage):
    """The rows of one query: a dict per row, or dicts of numpy columns of
    ``batch_size`` rows.

    The read position counts rows of the result; a reader started from a position
    runs the query again and passes over that many rows.
    """

    __slots__ = (
        "_batch_size",
        "_connect",
        "_connection",
        "_cursor",
        "_dtypes",
        "_fetch_size",
        "_params",
        "_policy",
        "_query",
    )
    is_source = True

    def __init__(
        self,
        connection: Any,
        query: str,
        params: Sequence[Any] | Mapping[str, Any] | None = None,
        *,
        batch_size: int | None = None,
        dtypes: Mapping[str, Any] | None = None,
        fetch_size: int = 1000,
        cursor: Callable[[Any], Any] | None = None,
        on_error: object = "raise",
    ) -> None:
        if hasattr(connection, "cursor"):
            self._connection, self._connect = connection, None
        elif callable(connection):
            self._connection, self._connect = None, connection
        else:
            raise TypeError(
                "connection must be a DB-API connection (with a cursor() method) or a "
                f"function that returns one, got {type(connection).__name__}: {connection!r}"
            )
        if not isinstance(query, str):
            raise TypeError(f"query must be a str, got {type(query).__name__}: {query!r}")
        if not query.strip():
            raise ValueError("query is empty")
        if params is not None and (
            isinstance(params, str | bytes) or not isinstance(params, Sequence | Mapping)
        ):
            raise TypeError(
                "params must be a sequence (for ? or %s placeholders) or a mapping (for "
                f"named ones), got {type(params).__name__}: {params!r}"
            )
        self._query = query
        self._params = params
        self._batch_size = check_optional_int("batch_size", batch_size, minimum=1)
        self._dtypes = _check_dtypes(dtypes)
        if self._dtypes and self._batch_size is None:
            raise ValueError(
                "dtypes sets the dtypes of batch columns and has no effect without "
                "batch_size; pass batch_size=N, or drop dtypes"
            )
        self._fetch_size = check_int("fetch_size", fetch_size, minimum=1)
        self._cursor = None if cursor is None else check_callable("cursor", cursor)
        self._policy = ErrorPolicy(on_error)

    @property
    def batching(self) -> str | None:
        return None if self._batch_size is None else "batch"

    @property
    def name(self) -> str:
        extra = "" if self._batch_size is None else f", batch_size={self._batch_size}"
        if self._policy.mode != "raise":
            extra += f", on_error={self._policy!r}"
        return f"read_sql({_short(self._query)!r}{extra})"

    def open(self, upstream: Iterator[Any], ctx: StageContext) -> Iterator[Any]:
        return open_reader(self.reader, ctx)

    def reader(
        self, ctx: StageContext, position: ReadPosition | None = None
    ) -> tuple[Iterator[Any], ReadPosition]:
        """A run of the query and its live position; from ``position`` if given.

        ``position.records`` counts the rows of the result consumed so far (rejected
        ones too); ``file`` and ``path`` are unused.
        """
        start = ReadPosition() if position is None else copy.copy(position)
        return self._run(ctx, self._policy.tally(ctx), start), start

    def length(self, upstream: Length) -> Length:
        return None

    def _run(self, ctx: StageContext, tally: Tally, position: ReadPosition) -> Iterator[Any]:
        opened = cursor = None
        try:
            if self._connect is None:
                connection = self._connection
            else:
                connection = opened = self._connect()
                if not hasattr(connection, "cursor"):
                    raise TypeError(
                        f"{ctx.label}: the connection function returned "
                        f"{type(connection).__name__}, not a DB-API connection"
                    )
            cursor = connection.cursor() if self._cursor is None else self._cursor(connection)
            try:
                if self._params is None:
                    cursor.execute(self._query)
                else:
                    cursor.execute(self._query, self._params)
                names = _names(cursor, self._query, self._dtypes)
            except Exception as error:
                annotate(error, ctx.label, detail="running its query")
                raise
            chunks = self._fetch(cursor, ctx)
            if self._batch_size is None:
                yield from _records(chunks, names, tally, position)
            else:
                yield from self._batches(chunks, names, tally, position, self._batch_size)
        finally:
            try:
                close_iterator(cursor)
            finally:
                try:
                    close_iterator(opened)
                finally:
                    tally.close()

    def _fetch(self, cursor: Any, ctx: StageContext) -> Iterator[tuple[int, list[Any]]]:
        """``(rows before it, chunk)`` over the whole result, ``fetch_size`` rows a chunk."""
        before, size = 0, self._fetch_size
        while True:
            try:
                chunk = cursor.fetchmany(size)
            except Exception as error:
                rows = f"rows {before + 1} to {before + size}"
                annotate(error, ctx.label, detail=f"fetching {rows} of its query's result")
                raise
            if not chunk:
                return
            yield before, chunk
            before += len(chunk)

    def _batches(
        self,
        chunks: Iterator[tuple[int, list[Any]]],
        names: list[str],
        tally: Tally,
        position: ReadPosition,
        size: int,
    ) -> Iterator[dict[str, np.ndarray]]:
        columns: list[_Column] | None = None
        filled, number, skip = 0, position.records, position.records
        for number, raw in _numbered(chunks):
            values = list(raw) if type(raw) is tuple else _values(raw)
            if columns is None:
                # From the result's first row, even when resuming past it, so that a
                # resumed run makes the same columns as the run it goes on from.
                columns = self._columns(names, values, size)
            if number <= skip:
                continue
            tally.read += 1
            if self._fill(columns, filled, values, number, names, tally):
                filled += 1
            if filled == size:
                position.records = number
                yield {column.name: column.take(size) for column in columns}
                filled = 0
        if columns is not None and filled:
            position.records = number
            yield {column.name: column.take(filled) for column in columns}

    def _fill(
        self,
        columns: list[_Column],
        index: int,
        values: list[Any],
        number: int,
        names: list[str],
        tally: Tally,
    ) -> bool:
        """Put a row's values at ``index`` of the columns; reject the row if one does
        not fit (the next row then writes over its slot)."""
        for column, value in zip(columns, values, strict=True):
            problem = column.store(index, value)
            if problem is not None:
                tally.reject(
                    f"{_short(self._query)!r}, row {number}",
                    f"column {column.name!r} {problem}",
                    dict(zip(names, values, strict=True)),
                )
                return False
        return True

    def _columns(self, names: list[str], first: list[Any], size: int) -> list[_Column]:
        dtypes = self._dtypes or {}
        return [
            _Column(name, dtypes[name], size, "")
            if name in dtypes
            else _Column(name, _dtype_of(value), size, " (taken from the first row)")
            for name, value in zip(names, first, strict=True)
        ]


def _records(
    chunks: Iterator[tuple[int, list[Any]]], names: list[str], tally: Tally, position: ReadPosition
) -> Iterator[dict[str, Any]]:
    skip = position.records
    for before, chunk in chunks:
        if before + len(chunk) <= skip:
            continue
        begin = max(skip - before, 0)
        rows = chunk[begin:] if begin else chunk
        # Drivers return rows of one kind: tuples (or sqlite3.Row), or dicts by a row
        # factory (psycopg's dict_row) which are already what we hand out.
        mappings = isinstance(rows[0], Mapping)
        for number, row in enumerate(rows, before + begin + 1):
            tally.read += 1
            position.records = number
            yield dict(row) if mappings else dict(zip(names, row, strict=False))


def _values(row: Any) -> list[Any]:
    return list(row.values()) if isinstance(row, Mapping) else list(row)


def _numbered(chunks: Iterator[tuple[int, list[Any]]]) -> Iterator[tuple[int, Any]]:
    for before, chunk in chunks:
        yield from enumerate(chunk, before + 1)


class _Column:
    """One column of the batch being filled: its values and where they are NULL."""

    __slots__ = ("data", "dtype", "exact", "mask", "name", "origin")

    def __init__(self, name: str, dtype: np.dtype[Any], size: int, origin: str) -> None:
        self.name, self.dtype, self.origin = name, dtype, origin
        self.data = np.empty(size, dtype)
        self.mask = np.zeros(size, bool)
        #: Types stored without further checks: the common case, kept cheap.
        self.exact = _EXACT.get(dtype.kind, frozenset())

    def store(self, index: int, value: Any) -> str | None:
        """Put ``value`` at ``index``; what is wrong with it if it does not fit."""
        if type(value) in self.exact or self.dtype.kind == "O":
            try:
                self.data[index] = value
            except OverflowError:
                return self._problem(value)
            self.mask[index] = False
            return None
        return self._store_checked(index, value)

    def _store_checked(self, index: int, value: Any) -> str | None:
        kind = self.dtype.kind
        if value is None:
            # Under a NULL: NaN, NaT or zero, so the unmasked data is harmless too.
            self.data[index] = _NULL_FILL.get(kind, 0)
            self.mask[index] = True
            return None
        if kind in "iu":
            fits = isinstance(value, numbers.Integral)
        elif kind == "b":
            fits = isinstance(value, bool | np.bool_) or (
                isinstance(value, numbers.Integral) and value in (0, 1)  # SQLite's booleans
            )
        elif kind == "f":
            fits = isinstance(value, numbers.Real | decimal.Decimal)
        else:  # datetime64 / timedelta64: numpy parses text and converts date objects
            fits = not isinstance(value, numbers.Number)
            if isinstance(value, datetime.datetime) and value.tzinfo is not None:
                value = value.astimezone(datetime.UTC).replace(tzinfo=None)
        if fits:
            try:
                self.data[index] = value
            except (TypeError, ValueError, OverflowError):
                return self._problem(value)
            self.mask[index] = False
            return None
        return self._problem(value)

    def _problem(self, value: Any) -> str:
        return (
            f"holds {value!r} ({type(value).__name__}), which does not convert to "
            f"{self.dtype}{self.origin}; set its dtype with dtypes={{{self.name!r}: ...}}"
        )

    def take(self, count: int) -> np.ndarray:
        """The first ``count`` values as a batch column; new buffers for the next batch."""
        data, mask = self.data[:count], self.mask[:count]
        self.data = np.empty(len(self.data), self.dtype)
        self.mask = np.zeros(len(self.mask), bool)
        return np.ma.MaskedArray(data, mask=mask) if mask.any() else data


_NULL_FILL: dict[str, Any] = {"f": np.nan, "M": np.datetime64("NaT"), "m": np.timedelta64("NaT")}
_EXACT: dict[str, frozenset[type]] = {
    "i": frozenset({int}),
    "u": frozenset({int}),
    "f": frozenset({int, float}),
    "b": frozenset({bool}),
}


def _dtype_of(value: object) -> np.dtype[Any]:
    if isinstance(value, bool):
        return np.dtype(bool)
    if isinstance(value, int):
        return np.dtype(np.int64)
    if isinstance(value, float):
        return np.dtype(np.float64)
    return np.dtype(object)


def _check_dtypes(dtypes: object) -> dict[str, np.dtype[Any]] | None:
    if dtypes is None:
        return None
    if not isinstance(dtypes, Mapping):
        raise TypeError(
            f"dtypes must be a mapping of column name to dtype, got {type(dtypes).__name__}"
        )
    checked: dict[str, np.dtype[Any]] = {}
    for name, dtype in dtypes.items():
        if not isinstance(name, str):
            raise TypeError(f"dtypes keys must be column names (str), got {name!r}")
        try:
            checked[name] = np.dtype(dtype)
        except TypeError:
            raise TypeError(f"dtypes[{name!r}] is not a numpy dtype: {dtype!r}") from None
        if checked[name].kind not in _KINDS:
            raise ValueError(
                f"dtypes[{name!r}] is {checked[name]}; batch columns are bool, integer, "
                "float, datetime64, timedelta64 or object (text is an object column)"
            )
    return checked


def _names(cursor: Any, query: str, dtypes: Mapping[str, Any] | None) -> list[str]:
    """The result's column names; a usage error for results read_sql cannot hand out."""
    description = cursor.description
    if description is None:
        raise ValueError(
            f"the query {_short(query)!r} makes no result (its cursor has no "
            "description); read_sql runs queries that return rows, such as SELECT"
        )
    names = [str(column[0]) for column in description]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(
            f"the query {_short(query)!r} returns more than one column named "
            f"{repeated[0]!r}; rows are dicts, so give each column its own name (AS ...)"
        )
    unknown = sorted(set(dtypes or ()) - set(names))
    if unknown:
        raise ValueError(
            f"dtypes names column {unknown[0]!r}, which the query {_short(query)!r} does "
            f"not return (it returns {', '.join(names)})"
        )
    return names


def _short(query: str) -> str:
    text = " ".join(query.split())
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."
