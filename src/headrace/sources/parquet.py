"""``read_parquet``: rows or column batches of Parquet files, streamed by row group.

>>> import headrace as hr, pathlib, tempfile
>>> import pyarrow as pa, pyarrow.parquet as pq
>>> scratch = tempfile.TemporaryDirectory()
>>> path = str(pathlib.Path(scratch.name) / "rows.parquet")
>>> pq.write_table(pa.table({"x": [1, 2, 3], "y": ["a", "b", None]}), path)
>>> list(hr.read_parquet(path))
[{'x': 1, 'y': 'a'}, {'x': 2, 'y': 'b'}, {'x': 3, 'y': None}]
>>> scratch.cleanup()
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from headrace._checks import check_optional_int
from headrace.policy import Tally
from headrace.sources.files import (
    FileSource,
    PathsArg,
    ReadPosition,
    open_or_reject,
    overlong_reason,
    past_end,
)

__all__ = ["ReadParquet"]

#: Rows turned into dicts at a time when records are handed out one by one: enough
#: that the per-chunk cost vanishes, few enough that the dicts waiting take little memory.
_RECORD_CHUNK = 1024
#: Column names listed when a file lacks a column that was asked for.
_LISTED = 20


def _arrow() -> tuple[Any, Any, Any]:
    try:
        import pyarrow as pa  # type: ignore[import-untyped]  # optional: the "arrow" extra
        import pyarrow.compute as pc  # type: ignore[import-untyped]
        import pyarrow.parquet as pq  # type: ignore[import-untyped]
    except ImportError:
        raise ImportError("read_parquet needs pyarrow: pip install 'headrace[arrow]'") from None
    return pa, pc, pq


#: The default ``max_record_bytes`` of ``read_parquet``: the largest row group read,
#: in the uncompressed bytes of the columns read.
GROUP_LIMIT = 4 << 30


def _column_indices(parquet: Any, columns: list[str] | None) -> list[int] | None:
    """The indices, among the file's leaf columns, of those read (None: all)."""
    if columns is None:
        return None
    schema = parquet.metadata.schema
    wanted = set(columns)
    return [i for i in range(len(schema)) if schema.column(i).path.split(".", 1)[0] in wanted]


def _group_bytes(group: Any, columns: list[int] | None) -> int:
    """The uncompressed bytes of a row group's columns that are read."""
    if columns is None:
        return int(group.total_byte_size)
    return sum(int(group.column(i).total_uncompressed_size) for i in columns)


class ReadParquet(FileSource):
    """Parquet files: one dict per row, or dicts of numpy columns of ``batch_size`` rows.

    The read position counts rows of the current file. A reader started from a
    position skips the row groups before it by the file's metadata, without reading
    them, then the rows before it in its row group.
    """

    __slots__ = ("_batch_size", "_columns")
    kind = "read_parquet"
    record_limit = GROUP_LIMIT

    def __init__(
        self,
        paths: PathsArg,
        *,
        columns: Sequence[str] | None = None,
        batch_size: int | None = None,
        max_record_bytes: int | None = None,
        on_error: object = "raise",
        num_shards: int = 1,
        shard_index: int = 0,
    ) -> None:
        super().__init__(
            paths,
            max_record_bytes=max_record_bytes,
            on_error=on_error,
            num_shards=num_shards,
            shard_index=shard_index,
        )
        self._columns = _check_columns(columns)
        self._batch_size = check_optional_int("batch_size", batch_size, minimum=1)

    @property
    def batching(self) -> str | None:
        return None if self._batch_size is None else "batch"

    def options(self) -> str:
        extra = "" if self._columns is None else f", columns={list(self._columns)!r}"
        return extra + ("" if self._batch_size is None else f", batch_size={self._batch_size}")

    def read_file(self, path: str, tally: Tally, position: ReadPosition) -> Iterator[Any]:
        pa, _, pq = _arrow()
        stream = open_or_reject(path, tally)
        if stream is None:
            return
        with stream:
            if not stream.seekable():
                tally.read += 1
                tally.reject(
                    path,
                    "Parquet needs random access, and a file compressed as a whole (.gz, "
                    ".bz2, .xz) has none; Parquet compresses inside the file, so store it "
                    "uncompressed",
                )
                return
            try:
                parquet = pq.ParquetFile(stream)
            except (pa.ArrowException, OSError) as error:
                tally.read += 1
                tally.reject(path, f"not a readable Parquet file ({_message(error)})")
                return
            names = parquet.schema_arrow.names
            missing = [c for c in self._columns or () if c not in names]
            if missing:
                shown = ", ".join(map(repr, names[:_LISTED]))
                if len(names) > _LISTED:
                    shown += f", ... ({len(names)} in all)"
                tally.read += 1
                tally.reject(path, f"the file has no column {missing[0]!r} (it has {shown})")
                return
            if self._batch_size is None:
                yield from self._records(parquet, path, tally, position)
            else:
                yield from self._batches(parquet, path, tally, position, self._batch_size)

    def _chunks(
        self, parquet: Any, path: str, tally: Tally, position: ReadPosition, size: int
    ) -> Iterator[tuple[int, Any]]:
        """``(first row, record batch)`` from row ``position.records`` on.

        Whole row groups before that row are passed over by the footer's row counts, so
        their pages are never read. A file that fails part way is rejected, after the
        rows before the failure.
        """
        pa, _, _ = _arrow()
        skip = position.records
        metadata = parquet.metadata
        if skip > metadata.num_rows:
            has = f"the file has {metadata.num_rows} rows"
            raise past_end(f"{tally.label}: {path}", f"row {skip}", has)
        group, row = 0, 0
        while group < metadata.num_row_groups:
            rows = metadata.row_group(group).num_rows
            if row + rows > skip:
                break
            group, row = group + 1, row + rows
        columns = None if self._columns is None else list(self._columns)
        read = _column_indices(parquet, columns)
        # One row group at a time, so that a damaged group costs only its own rows.
        for index in range(group, metadata.num_row_groups):
            held = _group_bytes(metadata.row_group(index), read)
            if held > self._limit:
                rows = metadata.row_group(index).num_rows
                tally.read += 1
                reason = overlong_reason(f"row group {index} ({rows} rows)", held, self._limit)
                tally.reject(f"{path}, rows {row + 1} to {row + rows}", reason)
                row += rows
                continue
            batches = parquet.iter_batches(batch_size=size, row_groups=[index], columns=columns)
            while True:
                try:
                    batch = next(batches, None)
                except (pa.ArrowException, OSError) as error:
                    tally.read += 1
                    reason = f"cannot read the file past row {row} ({_message(error)})"
                    tally.reject(f"{path}, row {row + 1}", reason)
                    return
                if batch is None:
                    break
                if row < skip:
                    drop = min(skip - row, batch.num_rows)
                    batch, row = batch.slice(drop), row + drop
                if batch.num_rows:
                    yield row, batch
                    row += batch.num_rows

    def _records(
        self, parquet: Any, path: str, tally: Tally, position: ReadPosition
    ) -> Iterator[dict[str, Any]]:
        for first, batch in self._chunks(parquet, path, tally, position, _RECORD_CHUNK):
            try:
                records = batch.to_pylist()
            except UnicodeDecodeError as error:
                _not_utf8(path, first, error, tally)
                return
            for number, record in enumerate(records, first + 1):
                tally.read += 1
                position.records = number
                yield record

    def _batches(
        self, parquet: Any, path: str, tally: Tally, position: ReadPosition, size: int
    ) -> Iterator[dict[str, np.ndarray]]:
        pa, _, _ = _arrow()
        pending: list[Any] = []
        count = end = 0

        def converted(table: Any, row: int) -> dict[str, np.ndarray] | None:
            """The table's numpy columns; None after rejecting the rest of the file
            from ``row``, where a string is not UTF-8."""
            try:
                return _numpy_columns(table)
            except (UnicodeDecodeError, pa.ArrowException) as error:
                _not_utf8(path, row, error, tally)
                return None

        for first, batch in self._chunks(parquet, path, tally, position, size):
            pending.append(batch)
            count, end = count + batch.num_rows, first + batch.num_rows
            while count >= size:
                table = pa.Table.from_batches(pending)
                pending, count = table.slice(size).to_batches(), count - size
                columns = converted(table.slice(0, size), end - count - size)
                if columns is None:
                    return
                tally.read += size
                position.records = end - count
                yield columns
        # A file's last batch may be short: batches never mix rows of two files.
        if count:
            columns = converted(pa.Table.from_batches(pending), end - count)
            if columns is None:
                return
            tally.read += count
            position.records = end
            yield columns


def _not_utf8(path: str, row: int, error: Exception, tally: Tally) -> None:
    """Reject the rest of a file whose strings from ``row`` on are not UTF-8 (pyarrow
    does not check them as it reads; they fail as they become Python strings)."""
    tally.read += 1
    why = error.reason if isinstance(error, UnicodeDecodeError) else _message(error)
    reason = f"cannot read the file past row {row} (a string is not valid UTF-8: {why})"
    tally.reject(f"{path}, row {row + 1}", reason)


def _message(error: BaseException) -> str:
    # pyarrow's messages run over several lines; a reject example is one line.
    return " ".join(str(error).split())


def _check_columns(columns: object) -> tuple[str, ...] | None:
    if columns is None:
        return None
    if isinstance(columns, str) or not isinstance(columns, Sequence):
        raise TypeError(
            f"columns must be a list of column names, got {type(columns).__name__}: {columns!r}"
        )
    names = tuple(columns)
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"columns must hold str, got {type(name).__name__}: {name!r}")
    if not names:
        raise ValueError("columns is empty; pass None to read every column")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"columns names {repeated[0]!r} more than once")
    return names


def _numpy_columns(table: Any) -> dict[str, np.ndarray]:
    return {
        name: _numpy(column) for name, column in zip(table.column_names, table.columns, strict=True)
    }


def _numpy(column: Any) -> np.ndarray:
    """One Arrow column as a numpy array, nulls masked (see :func:`read_parquet`)."""
    pa, pc, _ = _arrow()
    kind = column.type
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
        column = column.cast(kind)
    types = pa.types
    if types.is_integer(kind) or types.is_boolean(kind):
        if not column.null_count:
            return np.asarray(column.to_numpy())
        mask = np.asarray(column.is_null().to_numpy())
        filled = pc.fill_null(column, pa.scalar(False if types.is_boolean(kind) else 0, kind))
        return np.ma.MaskedArray(filled.to_numpy(), mask=mask)
    temporal = types.is_timestamp(kind) or types.is_date(kind) or types.is_duration(kind)
    if types.is_floating(kind) or temporal:
        # Arrow puts NaN / NaT under the nulls already.
        data = np.asarray(column.to_numpy())
        if not column.null_count:
            return data
        return np.ma.MaskedArray(data, mask=np.asarray(column.is_null().to_numpy()))
    if (
        types.is_fixed_size_list(kind)
        and (types.is_integer(kind.value_type) or types.is_floating(kind.value_type))
        and not column.null_count
    ):
        flat = column.combine_chunks().flatten()
        if not flat.null_count:
            return np.asarray(flat.to_numpy()).reshape(len(column), kind.list_size)
    text = types.is_string(kind) or types.is_large_string(kind)
    if text or types.is_binary(kind) or types.is_large_binary(kind):
        return np.asarray(column.to_numpy())  # str / bytes objects, None at the nulls
    values = column.to_pylist()
    array = np.empty(len(values), dtype=object)
    for index, value in enumerate(values):  # one by one: lists must stay list entries
        array[index] = value
    return array
