"""``read_sql``: the rows of a query, streamed from any DB-API 2 connection.

>>> import sqlite3
>>> import headrace.sources.sql as hs
>>> db = sqlite3.connect(":memory:")
>>> _ = db.execute("CREATE TABLE t (id INTEGER, name TEXT)")
>>> _ = db.executemany("INSERT INTO t VALUES (?, ?)", [(1, "a"), (2, None)])
>>> list(hs.read_sql(db, "SELECT id, name FROM t ORDER BY id"))
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
from headrace.pipeline import Pipeline
from headrace.policy import ErrorPolicy, OnError, Tally
from headrace.sources._files import ReadPosition, open_reader

__all__ = ["ReadSql", "read_sql"]

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


def read_sql(
    connection: Any,
    query: str,
    params: Sequence[Any] | Mapping[str, Any] | None = None,
    *,
    batch_size: int | None = None,
    dtypes: Mapping[str, Any] | None = None,
    fetch_size: int = 1000,
    cursor: Callable[[Any], Any] | None = None,
    on_error: OnError = "raise",
) -> Pipeline[Any]:
    """The rows of a SQL query, fetched ``fetch_size`` at a time from a DB-API 2 driver.

    Each row is a dict keyed by the column names of the result, holding what the
    driver returns. With ``batch_size=N`` the elements are dicts of numpy arrays of
    ``N`` rows (the last batch may be shorter): a column takes its dtype from
    ``dtypes`` or else from its value in the first row (``bool``, ``int`` → int64,
    ``float`` → float64, anything else, NULL included, → ``object``). NULLs in a
    non-object column are masked: that batch's column is a ``numpy.ma.MaskedArray``
    of the same dtype (with NaN or NaT under the mask in float and datetime
    columns). Time-zone aware datetimes go into ``datetime64`` columns in UTC. A
    value that does not fit its column's dtype exactly (text in an integer column,
    2.5 in an int64 one, a number out of range) rejects its row under ``on_error``;
    the row's number in the result is in the message.

    Every run (every epoch) runs the query again. Pass a function that opens a
    connection rather than a connection where you can: each run then opens its own
    and closes it when the run ends, the pipeline can be sent to worker processes,
    and a run may read in another thread (a ``sqlite3`` connection works only in
    the thread that opened it). A connection you pass is used as it is, never
    closed, committed or rolled back. The cursor is closed when the run ends,
    however it ends.

    When a run starts, an error of the driver's (bad SQL, say) is raised as it is,
    with a note naming the stage and its query; a statement that makes no result
    (an ``UPDATE``), a result with two columns of one name, and ``dtypes`` naming a
    column the result lacks raise ``ValueError``.

    A saved read position counts the rows of the result consumed: resuming runs the
    query again and passes over that many rows. That is only right if the query
    returns its rows in the same order every time, so give it an ``ORDER BY`` on a
    unique key.

    Drivers that fetch the whole result when the query runs (psycopg's default
    cursor does) hold it all in memory; ask them for a server-side cursor with
    ``cursor=``, for PostgreSQL ``cursor=lambda conn: conn.cursor(name="rows")``
    (its rows then come ``fetch_size`` at a time; it needs a transaction, which
    psycopg opens unless the connection is in autocommit mode).

    >>> import sqlite3
    >>> import headrace.sources.sql as hs
    >>> db = sqlite3.connect(":memory:")
    >>> _ = db.execute("CREATE TABLE t (x REAL)")
    >>> _ = db.executemany("INSERT INTO t VALUES (?)", [(0.5,), (None,), (2.0,)])
    >>> for batch in hs.read_sql(db, "SELECT rowid AS id, x FROM t ORDER BY id", batch_size=2):
    ...     print(batch["id"], batch["x"])
    [1 2] [0.5 --]
    [3] [2.]
    >>> db.close()

    Args:
        connection: a DB-API 2 connection, or a function without arguments that
            returns a new one (``functools.partial(sqlite3.connect, path)``).
        query: the SQL text; use placeholders and ``params`` for values.
        params: the placeholders' values, as the driver takes them (a sequence or a
            mapping).
        batch_size: hand out dicts of numpy arrays of this many rows instead of one
            dict per row.
        dtypes: numpy dtypes of batch columns, by column name (bool, integer, float,
            ``datetime64``, ``timedelta64`` or ``object``); only with ``batch_size``.
        fetch_size: rows asked of the driver at a time (``cursor.fetchmany``).
        cursor: makes the cursor from the connection; default ``connection.cursor()``.
        on_error: what to do with a row whose value does not fit its batch column:
            ``"raise"`` (default) raises :class:`headrace.ParseError` naming the row
            and the column; ``"skip"`` drops the row and counts it; a file path also
            appends it there as a JSON line (see :mod:`headrace.policy`). The
            ``read`` count is in rows, in batches too.

    Raises:
        TypeError: ``connection`` is neither a connection nor callable, ``query`` is
            not a str, ``params`` is not a sequence or mapping, or a dtype is not a
            numpy dtype.
        ValueError: ``query`` is empty, a number is below 1, or ``dtypes`` is given
            without ``batch_size`` or names a dtype a batch column cannot have.
    """
    return Pipeline(
        (
            ReadSql(
                connection,
                query,
                params,
                batch_size=batch_size,
                dtypes=dtypes,
                fetch_size=fetch_size,
                cursor=cursor,
                on_error=on_error,
            ),
        )
    )
