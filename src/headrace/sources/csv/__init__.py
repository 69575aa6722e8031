"""The source of ``read_csv``: rows of CSV files as dicts, or columnar numpy batches.

Two engines read the same files the same way: pyarrow's CSV parser (the fast path,
``pip install 'headrace[arrow]'``) and the standard library's :mod:`csv` module (no
dependencies). ``engine="auto"`` takes pyarrow when it is installed.

The pyarrow engine (in :mod:`headrace.sources.csv.arrow`) parses segments of the
file on a pool of threads, and goes over to pyarrow's streaming reader from the first
quote character on; whatever pyarrow cannot read as asked is read again by the Python
engine (in :mod:`headrace.sources.csv.python`), which names the exact row: both
engines yield the same rows and reject the same ones. What the stage and the engines
share is in :mod:`headrace.sources.csv.common`. The column types ``dtype=`` does not
give are inferred by the stage, from rows it reads before either engine starts and
hands back to it (:mod:`headrace.sources.csv.infer`).

>>> import headrace as hr, pathlib, tempfile
>>> scratch = tempfile.TemporaryDirectory()
>>> path = pathlib.Path(scratch.name) / "points.csv"
>>> _ = path.write_text('x,y,label\\n1.5,2,"a, b"\\n3,4,c\\n')
>>> list(hr.read_csv(str(path), columns=["label", "x"], dtype=str))
[{'label': 'a, b', 'x': '1.5'}, {'label': 'c', 'x': '3'}]
>>> [b["y"] for b in hr.read_csv(str(path), batch_size=2)]  # inferred: int64
[array([2, 4])]
>>> [b["x"] for b in hr.read_csv(str(path), dtype={"x": "float32"}, batch_size=2)]
[array([1.5, 3. ], dtype=float32)]
>>> scratch.cleanup()
"""

from __future__ import annotations

import csv
import importlib.util
import io
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from typing import Any, Final

import numpy as np

from headrace._checks import check_bool, check_optional_int
from headrace.policy import Tally
from headrace.sources.csv.arrow import ArrowReader
from headrace.sources.csv.common import (
    Broken,
    Chunk,
    Layout,
    Prefixed,
    RowTooLong,
    batches,
    records,
    unique_names,
)
from headrace.sources.csv.infer import GUESS, INFER_BYTES, INFER_ROWS, Guess, infer
from headrace.sources.csv.python import allow_fields, python_chunks
from headrace.sources.files import (
    DAMAGED,
    FileSource,
    Overlong,
    PathsArg,
    ReadPosition,
    bounded_lines,
    find_files,
    open_binary,
    open_or_reject,
    overlong_reason,
    past_end,
)

__all__ = ["ReadCsv"]

_ENGINES = ("auto", "pyarrow", "python")
_BOM: Final = b"\xef\xbb\xbf"

DTypeArg = Any  # anything np.dtype() accepts, or str for text
#: What a column converts to: a numpy dtype, None (text) or GUESS (inferred).
Spec = np.dtype[Any] | Guess | None


def _as_dtype(value: DTypeArg, argument: str) -> np.dtype[Any] | Guess | None:
    """The numpy dtype a column converts to, None to keep the text, or GUESS to infer it."""
    if value is None:
        return GUESS
    if value is str or value is object:
        return None
    if isinstance(value, str) and value in ("str", "string", "object"):
        return None
    try:
        dtype = np.dtype(value)
    except TypeError:
        if isinstance(value, str):
            raise TypeError(
                f"{argument}={value!r} is no numpy dtype name: give one such as 'float32', "
                "'int64' or 'bool', or str to keep the text"
            ) from None
        raise TypeError(f"{argument} must be a numpy dtype or str, got {value!r}") from None
    if dtype.kind in "OU":
        return None
    if dtype.kind not in "biuf" or dtype.itemsize > 8:
        raise ValueError(
            f"{argument} must be a bool, integer or float dtype (or str to keep the text), "
            f"got {dtype}"
        )
    return dtype


class ReadCsv(FileSource):
    """CSV files: one record per row, or columnar batches of ``batch_size`` rows."""

    __slots__ = (
        "_batch_size",
        "_columns",
        "_delimiter",
        "_dtype",
        "_engine",
        "_header",
        "_names",
        "_quotechar",
    )
    kind = "read_csv"

    def __init__(
        self,
        paths: PathsArg,
        *,
        columns: Sequence[str | int] | None = None,
        dtype: DTypeArg | Mapping[str | int, DTypeArg] = None,
        header: bool = True,
        names: Sequence[str] | None = None,
        batch_size: int | None = None,
        delimiter: str = ",",
        quotechar: str = '"',
        engine: str = "auto",
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
        self._header = check_bool("header", header)
        self._names = self._check_names(names)
        self._columns = self._check_columns(columns)
        self._dtype: Spec | dict[str | int, Spec]
        if isinstance(dtype, Mapping):
            self._dtype = {}
            for key, value in dtype.items():
                if not isinstance(key, str | int) or isinstance(key, bool):
                    raise TypeError(f"dtype keys must be column names or indices, got {key!r}")
                self._dtype[key] = _as_dtype(value, f"dtype[{key!r}]")
        else:
            self._dtype = _as_dtype(dtype, "dtype")
        self._batch_size = check_optional_int("batch_size", batch_size, minimum=1)
        for name, char in (("delimiter", delimiter), ("quotechar", quotechar)):
            if not isinstance(char, str) or len(char) != 1 or char in "\r\n":
                raise ValueError(
                    f"{name} must be one character other than a line end, got {char!r}"
                )
        if delimiter == quotechar:
            raise ValueError(f"delimiter and quotechar must differ, both are {delimiter!r}")
        self._delimiter, self._quotechar = delimiter, quotechar
        if engine not in _ENGINES:
            raise ValueError(f"engine must be one of {_ENGINES}, got {engine!r}")
        if engine == "pyarrow" and importlib.util.find_spec("pyarrow") is None:
            raise ImportError("engine='pyarrow' needs pyarrow: pip install 'headrace[arrow]'")
        self._engine = engine

    @staticmethod
    def _check_names(names: Sequence[str] | None) -> tuple[str, ...] | None:
        if names is None:
            return None
        if isinstance(names, str) or not all(isinstance(n, str) for n in names):
            raise TypeError(f"names must be a list of str, got {names!r}")
        if not names or len(set(names)) != len(names):
            raise ValueError(f"names must be non-empty and without repeats, got {list(names)}")
        return tuple(names)

    @staticmethod
    def _check_columns(columns: Sequence[str | int] | None) -> tuple[str | int, ...] | None:
        if columns is None:
            return None
        if isinstance(columns, str | bytes) or not isinstance(columns, Sequence):
            raise TypeError(f"columns must be a list of column names or indices, got {columns!r}")
        for column in columns:
            if isinstance(column, bool) or not isinstance(column, str | int):
                raise TypeError(f"columns must hold names (str) or indices (int), got {column!r}")
            if isinstance(column, int) and column < 0:
                raise ValueError(f"column indices must be at least 0, got {column}")
        if not columns or len(set(columns)) != len(columns):
            raise ValueError(f"columns must be non-empty and without repeats, got {list(columns)}")
        return tuple(columns)

    @property
    def batching(self) -> str | None:
        return None if self._batch_size is None else "batch"

    def options(self) -> str:
        extra = ""
        if self._columns is not None:
            extra += f", columns={list(self._columns)}"
        if isinstance(self._dtype, dict):
            shown = {k: _spec_name(v) for k, v in self._dtype.items() if v is not GUESS}
            extra += f", dtype={shown}"
        elif self._dtype is not GUESS:
            extra += f", dtype={_spec_name(self._dtype)!r}"
        if not self._header:
            extra += ", header=False"
        if self._names is not None:
            extra += f", names={list(self._names)}"
        if self._batch_size is not None:
            extra += f", batch_size={self._batch_size}"
        if self._delimiter != ",":
            extra += f", delimiter={self._delimiter!r}"
        if self._quotechar != '"':
            extra += f", quotechar={self._quotechar!r}"
        if self._engine != "auto":
            extra += f", engine={self._engine!r}"
        return extra

    def _uses_pyarrow(self) -> bool:
        if self._engine == "auto":
            return importlib.util.find_spec("pyarrow") is not None
        return self._engine == "pyarrow"

    # -- one file ------------------------------------------------------------------------

    def read_file(self, path: str, tally: Tally, position: ReadPosition) -> Iterator[Any]:
        allow_fields(self._limit)  # the header and the sample are the csv module's too
        stream = open_or_reject(path, tally)
        if stream is None:
            return
        with stream:
            try:
                fields, raw, consumed = self._first_record(stream)
            except DAMAGED as error:
                reason = f"the file is damaged or cut short in its first row ({error})"
                self._reject_file(path, reason, tally)
                return
            except csv.Error as error:  # a field over the csv module's size limit
                self._reject_file(path, f"cannot parse the first row: {error}", tally)
                return
            except RowTooLong as error:
                reason = overlong_reason("the first row", error.size, self._limit)
                self._reject_file(path, reason, tally)
                return
            if fields is None:  # empty, or blank lines only: no rows, nothing wrong
                return
            sample = _Sample(stream, self._delimiter, self._quotechar, self._limit)
            layout = self._layout(path, fields, tally, sample, position.memo)
            if layout is None:
                return
            # Without a header the first row is data: it is read again, from ``raw``;
            # so are the rows read to infer the column types.
            again = ([] if self._header else raw) + sample.raw
            consumed += sample.consumed
            if sample.damage is not None:  # the rest of the file is its damage
                stream = io.BufferedReader(Broken(sample.damage))
            delimiter, quotechar = self._delimiter, self._quotechar
            if self._uses_pyarrow():
                prefix = b"".join(again)
                reader = ArrowReader(
                    path, layout, tally, delimiter=delimiter, quotechar=quotechar, limit=self._limit
                )
                chunks = _counted(
                    reader.chunks(stream, prefix, consumed - len(prefix), position.records),
                    lambda: reader.consumed,
                    position.records,
                    f"{tally.label}: {path}",
                )
            else:
                if again:
                    stream = io.BufferedReader(Prefixed(b"".join(again), stream))
                rows = python_chunks(
                    stream,
                    path,
                    layout,
                    tally,
                    0,
                    position.records,
                    delimiter=delimiter,
                    quotechar=quotechar,
                    limit=self._limit,
                )
                chunks = _counted(rows, None, position.records, f"{tally.label}: {path}")
            if self._batch_size is None:
                yield from records(chunks, layout.keys, tally, position)
            else:
                yield from batches(chunks, layout.keys, self._batch_size, tally, position)

    def _first_record(self, stream: io.BufferedIOBase) -> tuple[list[str] | None, list[bytes], int]:
        """The first non-blank row, its raw lines, and the bytes read to get it; read
        line by line, so the stream stops right after the row."""
        raw: list[bytes] = []
        consumed = 0

        def lines() -> Iterator[str]:
            nonlocal consumed
            for line in bounded_lines(stream, self._limit):
                if isinstance(line, Overlong):
                    raise RowTooLong(line.size)
                if consumed == 0 and line.startswith(_BOM):
                    line = line[len(_BOM) :]
                    consumed += len(_BOM)
                consumed += len(line)
                raw.append(line)
                yield line.decode("utf-8", "surrogateescape")

        reader = csv.reader(lines(), delimiter=self._delimiter, quotechar=self._quotechar)
        for fields in reader:
            if fields:
                return fields, raw, consumed
            raw.clear()  # a blank line before the first row is no part of it
        return None, raw, consumed

    def _layout(
        self,
        path: str,
        first: list[str],
        tally: Tally,
        sample: _Sample,
        memo: dict[str, Any] | None = None,
    ) -> Layout | None:
        """The file's column layout, or None after rejecting the file.

        Column types left to inference are the dataset's: those inferred from the
        first rows of its first file (``memo["reference"]``, inferred once a run), for
        the columns that file has; the others are inferred from this file's first row
        (without a header) and ``sample``."""
        width = len(first) if self._names is None else len(self._names)
        if self._header and self._names is not None and len(first) != width:
            reason = f"the header row has {len(first)} columns but names= gives {width}"
            return self._reject_file(path, reason, tally)
        header_names = self._names is None and self._header
        if header_names and any(not n.isascii() and _is_undecodable(n) for n in first):
            return self._reject_file(path, "the header row is not valid UTF-8", tally)
        all_keys = self._keys(first)
        wanted = list(self._columns) if self._columns is not None else list(range(width))
        selected: list[int] = []
        for column in wanted:
            if isinstance(column, int):
                index = column if column < width else -1
            else:
                index = all_keys.index(column) if column in all_keys else -1
            if index < 0:
                shown = ", ".join(map(repr, all_keys[:20])) + (", ..." if width > 20 else "")
                hint = " (a file without a header row needs header=False)" if self._header else ""
                reason = f"columns names {column!r}, but the file's columns are {shown}{hint}"
                return self._reject_file(path, reason, tally)
            if index in selected:
                return self._reject_file(path, f"columns selects column {index} twice", tally)
            selected.append(index)
        keys = [all_keys[i] for i in selected]
        if isinstance(self._dtype, dict):
            for key in self._dtype:
                if key not in keys and not (isinstance(key, int) and key in selected):
                    reason = f"dtype names column {key!r}, which is not among the columns read"
                    return self._reject_file(path, f"{reason} ({keys})", tally)
            specs = [
                self._dtype.get(key, self._dtype.get(index, GUESS))
                for key, index in zip(keys, selected, strict=True)
            ]
        else:
            specs = [self._dtype] * len(keys)
        # Where each inferred type comes from: the file whose first rows gave it.
        inferred: list[str | None] = [None] * len(specs)
        if any(spec is GUESS for spec in specs):
            own: dict[Any, Any] | None = None
            dataset = self._dataset_types(path, memo)
            for number, (spec, key) in enumerate(zip(specs, keys, strict=True)):
                if spec is not GUESS:
                    continue
                if key in dataset and memo is not None:
                    specs[number], inferred[number] = dataset[key], memo["reference"]
                    continue
                inferred[number] = path
                if own is None:
                    own = self._file_types(first, sample)
                    if memo is not None and memo.get("reference") == path:
                        memo["types"] = own
                specs[number] = own[key]
        dtypes = [None if isinstance(spec, Guess) else spec for spec in specs]
        return Layout(width, selected, keys, dtypes, inferred)

    def _dataset_types(self, path: str, memo: dict[str, Any] | None) -> dict[Any, Any]:
        """The column types inferred from the dataset's first file, by column; empty
        while that file is the one being read (its own rows give them), or when it
        cannot be read (each file's own rows give them then)."""
        if memo is None:
            return {}
        if "reference" not in memo:  # a shard's: the first of all the files
            memo["reference"] = next(iter(find_files(self._patterns)), None)
        if memo["reference"] in (None, path):
            return {}
        types: dict[Any, Any] | None = memo.get("types")
        if types is None:
            types = memo["types"] = self._types_of(memo["reference"])
        return types

    def _types_of(self, path: str) -> dict[Any, Any]:
        """The types of every column of the file at ``path``, from its first rows."""
        try:
            with open_binary(path) as stream:
                fields, _, _ = self._first_record(stream)
                if fields is None:
                    return {}
                sample = _Sample(stream, self._delimiter, self._quotechar, self._limit)
                return self._file_types(fields, sample)
        except (*DAMAGED, csv.Error):
            return {}

    def _keys(self, first: list[str]) -> list[Any]:
        """The keys of a file's columns, given its first row."""
        if self._names is not None:
            return list(self._names)
        return unique_names(first) if self._header else list(range(len(first)))

    def _file_types(self, first: list[str], sample: _Sample) -> dict[Any, Any]:
        """Each column's inferred type (None: text), by key, from a file's first row (a
        header, or data) and the rows of ``sample`` that have every column."""
        keys = self._keys(first)
        rows = ([] if self._header else [first]) + sample.rows()
        whole = [row for row in rows if len(row) == len(keys)]
        return {key: infer(row[index] for row in whole) for index, key in enumerate(keys)}

    def _run(self, paths: list[str], tally: Tally, position: ReadPosition) -> Iterator[Any]:
        # The dataset's first file gives the column types that dtype= leaves open,
        # whichever file a shard or a resumed run starts with (a shard's is found only
        # when a type is left open).
        position.memo = {"reference": paths[0]} if paths and self._num_shards == 1 else {}
        return super()._run(paths, tally, position)

    @staticmethod
    def _reject_file(path: str, reason: str, tally: Tally) -> None:
        tally.read += 1
        tally.reject(path, reason)


def _spec_name(spec: Spec) -> str:
    return "str" if spec is None else "infer" if isinstance(spec, Guess) else spec.name


class _Sample:
    """The rows after the header that a file's column types are inferred from, read
    from the stream when first asked for: up to :data:`INFER_ROWS` rows or
    :data:`INFER_BYTES` bytes. The engine reads them again, from ``raw``."""

    __slots__ = ("_delimiter", "_limit", "_quotechar", "_stream", "consumed", "damage", "raw")

    def __init__(
        self, stream: io.BufferedIOBase, delimiter: str, quotechar: str, limit: int
    ) -> None:
        self._stream, self._delimiter, self._quotechar = stream, delimiter, quotechar
        self._limit = limit
        #: The lines read, and their bytes.
        self.raw: list[bytes] = []
        self.consumed = 0
        #: What broke off the file while the rows were read (a damaged compressed file).
        self.damage: BaseException | None = None

    def rows(self) -> list[list[str]]:
        rows: list[list[str]] = []

        def lines() -> Iterator[str]:
            stream = self._stream
            while len(rows) < INFER_ROWS and self.consumed < INFER_BYTES:
                # A line cut short by the bound is read again by the engine, whole, and
                # is no part of the sample.
                line = stream.readline(min(self._limit, INFER_BYTES) + 1)
                if not line:
                    return
                self.consumed += len(line)
                self.raw.append(line)
                if not line.endswith(b"\n") and len(line) > min(self._limit, INFER_BYTES):
                    return
                yield line.decode("utf-8", "surrogateescape")

        reader = csv.reader(lines(), delimiter=self._delimiter, quotechar=self._quotechar)
        whole = 0  # the lines of the whole rows read
        try:
            for fields in reader:
                whole = len(self.raw)
                if fields:
                    rows.append(fields)
        except csv.Error:  # a field over the csv module's size limit: the engine says so
            pass
        except DAMAGED as error:
            # The engine reads the whole rows again, then the damage; a row it cut off
            # (a quoted field's line end may come before) is lost to it, as it would be.
            self.damage = error
            self.consumed -= sum(map(len, self.raw[whole:]))
            del self.raw[whole:]
        return rows


def _is_undecodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


# -- the public function -------------------------------------------------------------------


def _counted(
    chunks: Generator[Chunk, None, Any],
    count: Callable[[], int] | None,
    skip: int,
    where: str,
) -> Generator[Chunk, None, None]:
    """``chunks``, refusing at their end a saved position past the file's last row.

    The rows read are what ``chunks`` returns, or ``count()`` after them."""
    last: Any = yield from chunks
    rows = int(last) if count is None else count()
    if rows < skip:
        raise past_end(where, f"row {skip}", f"the file has {rows} rows")
