"""``read_parquet``: rows or column batches of Parquet files, streamed by row group.

>>> import headrace.sources.parquet as hp, pathlib, tempfile
>>> import pyarrow as pa, pyarrow.parquet as pq
>>> scratch = tempfile.TemporaryDirectory()
>>> path = str(pathlib.Path(scratch.name) / "rows.parquet")
>>> pq.write_table(pa.table({"x": [1, 2, 3], "y": ["a", "b", None]}), path)
>>> list(hp.read_parquet(path))
[{'x': 1, 'y': 'a'}, {'x': 2, 'y': 'b'}, {'x': 3, 'y': None}]
>>> scratch.cleanup()
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from headrace._checks import check_optional_int
from headrace.pipeline import Pipeline
from headrace.policy import OnError, Tally
from headrace.sources._files import FileSource, PathsArg, ReadPosition, open_or_reject

__all__ = ["ReadParquet", "read_parquet"]

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


class ReadParquet(FileSource):
    """Parquet files: one dict per row, or dicts of numpy columns of ``batch_size`` rows.

    The read position counts rows of the current file. A reader started from a
    position skips the row groups before it by the file's metadata, without reading
    them, then the rows before it in its row group.
    """

    __slots__ = ("_batch_size", "_columns")
    kind = "read_parquet"

    def __init__(
        self,
        paths: PathsArg,
        *,
        columns: Sequence[str] | None = None,
        batch_size: int | None = None,
        on_error: object = "raise",
        num_shards: int = 1,
        shard_index: int = 0,
    ) -> None:
        super().__init__(paths, on_error=on_error, num_shards=num_shards, shard_index=shard_index)
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
        group, row = 0, 0
        while group < metadata.num_row_groups:
            rows = metadata.row_group(group).num_rows
            if row + rows > skip:
                break
            group, row = group + 1, row + rows
        columns = None if self._columns is None else list(self._columns)
        # One row group at a time, so that a damaged group costs only its own rows.
        for index in range(group, metadata.num_row_groups):
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
            for number, record in enumerate(batch.to_pylist(), first + 1):
                tally.read += 1
                position.records = number
                yield record

    def _batches(
        self, parquet: Any, path: str, tally: Tally, position: ReadPosition, size: int
    ) -> Iterator[dict[str, np.ndarray]]:
        pa, _, _ = _arrow()
        pending: list[Any] = []
        count = end = 0
        for first, batch in self._chunks(parquet, path, tally, position, size):
            pending.append(batch)
            count, end = count + batch.num_rows, first + batch.num_rows
            while count >= size:
                table = pa.Table.from_batches(pending)
                pending, count = table.slice(size).to_batches(), count - size
                tally.read += size
                position.records = end - count
                yield _numpy_columns(table.slice(0, size))
        # A file's last batch may be short: batches never mix rows of two files.
        if count:
            tally.read += count
            position.records = end
            yield _numpy_columns(pa.Table.from_batches(pending))


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


def read_parquet(
    path: PathsArg,
    *,
    columns: Sequence[str] | None = None,
    batch_size: int | None = None,
    on_error: OnError = "raise",
    num_shards: int = 1,
    shard_index: int = 0,
) -> Pipeline[Any]:
    """The rows of Parquet files, streamed a row group at a time.

    By default each row is a dict of Python values, as pyarrow gives them: ``None``
    for a null, ``str``, ``bytes``, ``datetime`` (time-zone aware if the column is),
    ``date``, ``Decimal``, lists for list columns and dicts for struct columns.

    With ``batch_size=N`` the elements are dicts of numpy arrays holding ``N`` rows
    each: integer, float and bool columns keep their dtype, timestamps and dates become
    ``datetime64`` (in UTC for time-zone aware columns), durations ``timedelta64``, and
    fixed-size lists of numbers (embeddings) a 2-D array; every other column (text,
    bytes, lists, structs, decimals) is an ``object`` array of the Python values. A
    batch whose column holds nulls gives that column as a ``numpy.ma.MaskedArray`` of
    the same dtype, masked at the nulls, so a null never turns an integer into a
    float. Batches never mix rows of two files: a file's last batch may be shorter.

    Several files (a glob, a brace pattern or a list) are read in sorted order; fsspec
    URLs work wherever a path does. Columns are as stored: a pandas index that is not
    a plain range is stored as a column (``__index_level_0__`` if unnamed), so it
    appears too unless ``columns`` leaves it out.

    A saved read position counts rows of the current file: resuming passes over whole
    row groups by the file's metadata without reading them.

    >>> import headrace.sources.parquet as hp, pathlib, tempfile
    >>> import pyarrow as pa, pyarrow.parquet as pq
    >>> scratch = tempfile.TemporaryDirectory()
    >>> path = str(pathlib.Path(scratch.name) / "rows.parquet")
    >>> pq.write_table(pa.table({"x": [1, 2, 3], "y": [0.5, None, 2.0]}), path)
    >>> for batch in hp.read_parquet(path, columns=["x"], batch_size=2):
    ...     print(batch)
    {'x': array([1, 2])}
    {'x': array([3])}
    >>> scratch.cleanup()

    Args:
        path: file path, glob or brace pattern, URL, or a list of them.
        columns: read only these columns (a list of top-level column names), in
            this order.
        batch_size: hand out dicts of numpy arrays of this many rows instead of one
            dict per row.
        on_error: what to do with a file that cannot be opened, is not Parquet, is
            cut short or damaged, or lacks a column of ``columns``: ``"raise"``
            (default) raises :class:`headrace.ParseError` naming the file and the
            reason; ``"skip"`` drops the rest of the file, counts it as one rejected
            record and logs a summary; a file path also appends it there as a JSON
            line (see :mod:`headrace.policy`). The ``read`` count is in rows.
        num_shards, shard_index: read only every ``num_shards``-th file of the sorted
            list, starting at ``shard_index``.

    Raises:
        TypeError: ``columns`` is not a list of names, or ``batch_size`` not an int.
        ValueError: ``columns`` is empty or repeats a name, or ``batch_size`` is
            below 1.
        ImportError: pyarrow is not installed (``pip install 'headrace[arrow]'``).
    """
    return Pipeline(
        (
            ReadParquet(
                path,
                columns=columns,
                batch_size=batch_size,
                on_error=on_error,
                num_shards=num_shards,
                shard_index=shard_index,
            ),
        )
    )
