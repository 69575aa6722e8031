"""``read_csv``: rows of CSV files as dicts, or as columnar numpy batches, streamed.

Two engines read the same files the same way: pyarrow's CSV parser (the fast path,
``pip install 'headrace[arrow]'``) and the standard library's :mod:`csv` module (no
dependencies). ``engine="auto"`` takes pyarrow when it is installed.

The pyarrow engine (in :mod:`headrace.sources._csv_arrow`) parses segments of the
file on a pool of threads, and goes over to pyarrow's streaming reader from the first
quote character on; whatever pyarrow cannot read as asked is read again by the Python
engine, which names the exact row: both engines yield the same rows and reject the
same ones.

>>> import pathlib, tempfile
>>> scratch = tempfile.TemporaryDirectory()
>>> path = pathlib.Path(scratch.name) / "points.csv"
>>> _ = path.write_text('x,y,label\\n1.5,2,"a, b"\\n3,4,c\\n')
>>> list(read_csv(str(path), columns=["label", "x"]))
[{'label': 'a, b', 'x': '1.5'}, {'label': 'c', 'x': '3'}]
>>> [b["x"] for b in read_csv(str(path), dtype={"x": "float32"}, batch_size=2)]
[array([1.5, 3. ], dtype=float32)]
>>> scratch.cleanup()
"""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import io
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from typing import IO, Any, Final, cast

import numpy as np

from headrace._checks import check_bool, check_optional_int
from headrace.errors import DecodeError, ParseError
from headrace.pipeline import Pipeline
from headrace.policy import OnError, Tally
from headrace.sources._files import DAMAGED, FileSource, PathsArg, ReadPosition, open_or_reject

__all__ = ["ReadCsv", "read_csv"]

#: Rows the Python engine converts to arrays at a time.
CHUNK_ROWS: Final = 4096

_ENGINES = ("auto", "pyarrow", "python")
# The spellings both engines read as booleans (pyarrow's defaults, stated for both).
_TRUE: Final = ("1", "True", "TRUE", "true")
_FALSE: Final = ("0", "False", "FALSE", "false")
_TRUTH: Final = dict.fromkeys(_TRUE, True) | dict.fromkeys(_FALSE, False)
_BOM: Final = b"\xef\xbb\xbf"

#: ``(ordinal of the row before the first, one array per selected column)``: a run of
#: consecutive good rows; rejected rows fall between chunks, never inside one.
Chunk = tuple[int, list[np.ndarray]]
DTypeArg = Any  # anything np.dtype() accepts, or str for text


def _as_dtype(value: DTypeArg, argument: str) -> np.dtype[Any] | None:
    """The numpy dtype a column converts to, or None to keep the text."""
    if value is None or value is str or value is object:
        return None
    if isinstance(value, str) and value in ("str", "string", "object"):
        return None
    try:
        dtype = np.dtype(value)
    except TypeError:
        raise TypeError(f"{argument} must be a numpy dtype or str, got {value!r}") from None
    if dtype.kind in "OU":
        return None
    if dtype.kind not in "biuf" or dtype.itemsize > 8:
        raise ValueError(
            f"{argument} must be a bool, integer or float dtype (or str to keep the text), "
            f"got {dtype}"
        )
    return dtype


class _Unconvertible(Exception):
    """A column of a parsed block that pyarrow could not give as asked."""


class _NotUtf8(ValueError):
    pass


def _text(value: str) -> str:
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # undecodable bytes, kept as lone surrogates
            raise _NotUtf8 from None
    return value


def _to_float(value: str) -> float:
    return float(value) if value else float("nan")


def _converter(dtype: np.dtype[Any] | None) -> Callable[[str], Any]:
    """Text to the Python value the column's array is built from; ValueError if not."""
    if dtype is None:
        return _text
    if dtype.kind == "f":
        return _to_float
    if dtype.kind == "b":

        def to_bool(value: str) -> bool:
            try:
                return _TRUTH[value]
            except KeyError:
                raise ValueError(value) from None

        return to_bool
    low, high = int(np.iinfo(dtype).min), int(np.iinfo(dtype).max)

    def to_int(value: str) -> int:
        number = int(value)
        if not low <= number <= high:
            raise ValueError(value)
        return number

    return to_int


class _Layout:
    """How one file's columns map to the records: which columns, keys and dtypes."""

    __slots__ = ("converters", "dtypes", "keys", "selected", "width")

    def __init__(
        self, width: int, selected: list[int], keys: list[Any], dtypes: list[np.dtype[Any] | None]
    ) -> None:
        self.width = width
        self.selected = selected
        self.keys = keys
        self.dtypes = dtypes
        self.converters = [_converter(d) for d in dtypes]


def _unique_names(names: list[str]) -> list[str]:
    """Header names as pandas gives them: blanks become ``Unnamed: i``, repeats ``a.1``."""
    out: list[str] = []
    seen: set[str] = set()
    for index, name in enumerate(names):
        name = name or f"Unnamed: {index}"
        candidate, count = name, 0
        while candidate in seen:
            count += 1
            candidate = f"{name}.{count}"
        seen.add(candidate)
        out.append(candidate)
    return out


class _Prefixed(io.RawIOBase):
    """Bytes already read, then the rest of a stream: what pyarrow's reader reads from."""

    def __init__(self, prefix: bytes, stream: io.BufferedIOBase | None) -> None:
        self._prefix = memoryview(prefix)
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        target = memoryview(buffer).cast("B")
        filled = 0
        if self._prefix:
            filled = min(len(target), len(self._prefix))
            target[:filled] = self._prefix[:filled]
            self._prefix = self._prefix[filled:]
        while filled < len(target) and self._stream is not None:
            data = self._stream.read(len(target) - filled)
            if not data:
                break
            target[filled : filled + len(data)] = data
            filled += len(data)
        return filled


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
        on_error: object = "raise",
        num_shards: int = 1,
        shard_index: int = 0,
    ) -> None:
        super().__init__(paths, on_error=on_error, num_shards=num_shards, shard_index=shard_index)
        self._header = check_bool("header", header)
        self._names = self._check_names(names)
        self._columns = self._check_columns(columns)
        self._dtype: np.dtype[Any] | dict[str | int, np.dtype[Any] | None] | None
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
            shown = {k: "str" if v is None else v.name for k, v in self._dtype.items()}
            extra += f", dtype={shown}"
        elif self._dtype is not None:
            extra += f", dtype={self._dtype.name!r}"
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
            if fields is None:  # empty, or blank lines only: no rows, nothing wrong
                return
            layout = self._layout(path, fields, tally)
            if layout is None:
                return
            # Without a header the first row is data: it is read again, from ``raw``.
            again = [] if self._header else raw
            if self._uses_pyarrow():
                # Imported here: the engine's module imports this one.
                from headrace.sources._csv_arrow import ArrowReader

                prefix = b"".join(again)
                reader = ArrowReader(self, path, layout, tally)
                chunks = reader.chunks(stream, prefix, consumed - len(prefix), position.records)
            else:
                if again:
                    stream = io.BufferedReader(_Prefixed(b"".join(again), stream))
                chunks = _python_chunks(self, stream, path, layout, tally, 0, position.records)
            if self._batch_size is None:
                yield from _records(chunks, layout.keys, tally, position)
            else:
                yield from _batches(chunks, layout.keys, self._batch_size, tally, position)

    def _first_record(self, stream: io.BufferedIOBase) -> tuple[list[str] | None, list[bytes], int]:
        """The first non-blank row, its raw lines, and the bytes read to get it; read
        line by line, so the stream stops right after the row."""
        raw: list[bytes] = []
        consumed = 0

        def lines() -> Iterator[str]:
            nonlocal consumed
            for line in iter(stream.readline, b""):
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

    def _layout(self, path: str, first: list[str], tally: Tally) -> _Layout | None:
        """The file's column layout, or None after rejecting the file."""
        width = len(first) if self._names is None else len(self._names)
        if self._header and self._names is not None and len(first) != width:
            reason = f"the header row has {len(first)} columns but names= gives {width}"
            return self._reject_file(path, reason, tally)
        if self._names is not None:
            all_keys: list[Any] = list(self._names)
        elif self._header:
            if any(not name.isascii() and _is_undecodable(name) for name in first):
                return self._reject_file(path, "the header row is not valid UTF-8", tally)
            all_keys = _unique_names(first)
        else:
            all_keys = list(range(width))
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
            dtypes = [
                self._dtype.get(key, self._dtype.get(index))
                for key, index in zip(keys, selected, strict=True)
            ]
        else:
            dtypes = [self._dtype] * len(keys)
        return _Layout(width, selected, keys, dtypes)

    @staticmethod
    def _reject_file(path: str, reason: str, tally: Tally) -> None:
        tally.read += 1
        tally.reject(path, reason)


def _is_undecodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


# -- the Python engine ---------------------------------------------------------------------


def _python_chunks(
    source: ReadCsv,
    stream: io.BufferedIOBase,
    path: str,
    layout: _Layout,
    tally: Tally,
    before: int,
    skip: int,
) -> Generator[Chunk, None, int]:
    """Chunks of the rows in ``stream`` (the bytes after the header), parsed by the csv
    module. The first row is row ``before + 1``; rows up to ``skip`` are passed over
    uncounted. Returns the number of the last row read.

    Rows are gathered :data:`CHUNK_ROWS` at a time and converted a column at a time; a
    chunk with a value that does not convert is converted again row by row, to reject
    just the rows at fault.
    """
    # Undecodable bytes become lone surrogates, so a bad byte only rejects the row when
    # it is in a column that is read (as with pyarrow).
    binary = cast("IO[bytes]", stream)
    text = io.TextIOWrapper(binary, encoding="utf-8", errors="surrogateescape", newline="")
    reader = csv.reader(text, delimiter=source._delimiter, quotechar=source._quotechar)
    width, selected, dtypes = layout.width, layout.selected, layout.dtypes
    rows: list[list[str]] = []
    number = first = before

    def reject(where: int, fields: list[str] | None, reason: str, error: type[ParseError]) -> None:
        tally.read += 1
        tally.reject(f"{path} row {where}", reason, _shown(fields), error=error)

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
                    reject(number, None, f"cannot parse the row: {error}", ParseError)
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


def _shown(fields: list[str] | None) -> list[str] | None:
    """A rejected row's fields for the quarantine file: undecodable bytes as ``\\xe9``."""
    if fields is None:
        return None
    return [
        f
        if f.isascii()
        else f.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        for f in fields
    ]


def _column(strings: Sequence[str], dtype: np.dtype[Any] | None) -> np.ndarray:
    """A column of text as an array; ValueError, KeyError or OverflowError if a value
    does not convert (the caller then goes row by row)."""
    if dtype is None:
        if not all(map(str.isascii, strings)):
            for value in strings:
                _text(value)
        return np.array(strings, dtype=object)
    values: list[Any]
    if dtype.kind == "f":
        try:
            values = list(map(float, strings))
        except ValueError:  # an empty field is NaN
            values = list(map(_to_float, strings))
    elif dtype.kind == "b":
        values = list(map(_TRUTH.__getitem__, strings))
    else:
        values = list(map(int, strings))
    with np.errstate(over="ignore"):  # 1e39 as float32 is inf, as pyarrow reads it
        return np.array(values, dtype=dtype)


def _row_by_row(
    rows: list[list[str]],
    before: int,
    layout: _Layout,
    reject: Callable[[int, list[str], str, type[ParseError]], None],
) -> Iterator[Chunk]:
    """Chunks of the rows that convert; the others rejected, in their places."""
    converters, keys, dtypes = layout.converters, layout.keys, layout.dtypes
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
            reason, error = _why([fields[i] for i in layout.selected], converters, keys, dtypes)
            reject(before + offset + 1, fields, reason, error)
            continue
        if not good[0]:
            first = before + offset
        for column, value in zip(good, values, strict=True):
            column.append(value)
    if good[0]:
        yield chunk()


def _why(
    row: Sequence[str],
    converters: list[Callable[[str], Any]],
    keys: list[Any],
    dtypes: list[np.dtype[Any] | None],
) -> tuple[str, type[ParseError]]:
    """The reason a row's values do not convert, naming the first bad column."""
    for value, convert, key, dtype in zip(row, converters, keys, dtypes, strict=True):
        try:
            convert(value)
        except _NotUtf8:
            return f"column {key!r} is not valid UTF-8", DecodeError
        except ValueError:
            return f"column {key!r}: cannot convert {value!r} to {dtype}", ParseError
    raise AssertionError("a row failed to convert, and then converted")  # pragma: no cover


# -- records and batches -------------------------------------------------------------------


def _records(
    chunks: Iterator[Chunk], keys: list[Any], tally: Tally, position: ReadPosition
) -> Iterator[dict[Any, Any]]:
    for first, arrays in chunks:
        for number, values in enumerate(zip(*arrays, strict=True), first + 1):
            position.records = number
            tally.read += 1
            yield dict(zip(keys, values, strict=True))


def _batches(
    chunks: Iterator[Chunk], keys: list[Any], size: int, tally: Tally, position: ReadPosition
) -> Iterator[dict[Any, np.ndarray]]:
    """Batches of ``size`` rows; the last of the file may be short. A batch within one
    chunk is made of views of its arrays; one that spans chunks is joined."""
    pieces: list[list[np.ndarray]] = []
    count = last = 0
    batch = _dict_maker(keys)
    for first, arrays in chunks:
        length, start = len(arrays[0]), 0
        if pieces:  # the batch begun in the chunks before
            start = min(size - count, length)
            pieces.append([a[:start] for a in arrays])
            count += start
            last = first + start
            if count < size:
                continue
            position.records = last
            tally.read += size
            yield _joined(keys, pieces)
            pieces, count = [], 0
        whole = (length - start) // size
        if whole:
            # The chunk's whole batches are the rows of its arrays seen as tables of
            # ``size`` columns: numpy makes those views faster than slices.
            stop = start + whole * size
            tables = [a[start:stop].reshape(whole, size) for a in arrays]
            done = first + start
            for columns in zip(*tables, strict=True):
                done += size
                position.records = done
                tally.read += size
                yield batch(columns)
            start = stop
        if start < length:
            pieces.append([a[start:] for a in arrays])
            count = length - start
            last = first + length
    if pieces:
        position.records = last
        tally.read += count
        yield _joined(keys, pieces)


def _dict_maker(keys: list[Any]) -> Callable[[Sequence[np.ndarray]], dict[Any, np.ndarray]]:
    """A function from one array per key to the batch dict: for up to three keys, a
    dict display, which takes half the time of ``dict(zip(keys, arrays))`` (the
    larger part of the time it takes to hand out a batch of a few columns).

    >>> _dict_maker(["x", "y"])([1, 2])
    {'x': 1, 'y': 2}
    """
    if len(keys) == 1:
        (k0,) = keys
        return lambda a: {k0: a[0]}
    if len(keys) == 2:
        k0, k1 = keys
        return lambda a: {k0: a[0], k1: a[1]}
    if len(keys) == 3:
        k0, k1, k2 = keys
        return lambda a: {k0: a[0], k1: a[1], k2: a[2]}
    return lambda a: dict(zip(keys, a, strict=True))


def _joined(keys: list[Any], pieces: list[list[np.ndarray]]) -> dict[Any, np.ndarray]:
    if len(pieces) == 1:
        return dict(zip(keys, pieces[0], strict=True))
    columns = zip(*pieces, strict=True)
    return {k: np.concatenate(c) for k, c in zip(keys, columns, strict=True)}


# -- the public function -------------------------------------------------------------------


def read_csv(
    path: PathsArg,
    *,
    columns: Sequence[str | int] | None = None,
    dtype: DTypeArg | Mapping[str | int, DTypeArg] = None,
    header: bool = True,
    names: Sequence[str] | None = None,
    batch_size: int | None = None,
    delimiter: str = ",",
    quotechar: str = '"',
    engine: str = "auto",
    on_error: OnError = "raise",
    num_shards: int = 1,
    shard_index: int = 0,
) -> Pipeline[dict[Any, Any]]:
    """The rows of CSV files, streamed in constant memory whatever the file size.

    Each row is a dict ``{column: value}``; with ``batch_size=N``, each element is a
    dict ``{column: numpy array of N values}`` instead (columnar batches). Values stay
    text unless ``dtype`` says otherwise: types are never guessed, because a streaming
    reader that guessed from the first rows could be proved wrong a million rows later.
    Converted values in rows are numpy scalars of the dtype (``np.float32(1.5)``).

    The x,y regression file of a Keras generator, as float32 ``(X, y)`` batches of 250:

    >>> import pathlib, tempfile
    >>> scratch = tempfile.TemporaryDirectory()
    >>> path = pathlib.Path(scratch.name) / "xy.csv"
    >>> _ = path.write_text("x,y\\n" + "".join(f"{i},{2 * i}\\n" for i in range(600)))
    >>> pairs = read_csv(str(path), dtype="float32", batch_size=250).map(
    ...     lambda b: (b["x"], b["y"]))
    >>> [(X.dtype.name, X.shape, y[:3]) for X, y in pairs]  # the last batch is short
    [('float32', (250,), array([0., 2., 4.], dtype=float32)),
     ('float32', (250,), array([500., 502., 504.], dtype=float32)),
     ('float32', (100,), array([1000., 1002., 1004.], dtype=float32))]
    >>> scratch.cleanup()

    Files named ``*.gz``, ``*.bz2`` and ``*.xz`` are decompressed on the fly; several
    files (a glob, a brace pattern such as ``part-{000..099}.csv``, or a list) are
    read in sorted order, each with its own header; fsspec URLs (``s3://...``) work
    wherever a path does. Text is UTF-8 (a leading byte-order mark is dropped); rows
    end with ``\\n`` or ``\\r\\n``; a quoted field may hold delimiters, doubled quotes
    and line ends, as pandas and the csv module write them. Blank lines are no rows.

    Memory stays flat whatever the file size: the pyarrow engine holds a few segments
    of 2 MiB and their arrays (one per core, up to 4, parsed ahead on a pool of
    threads, and one more), the Python engine 4,096 rows.

    Batches do not span files: the last batch of each file may be shorter than
    ``batch_size``. Batch arrays are fresh, writable numpy arrays; text columns are
    object arrays of ``str``. A position saved after a batch resumes with the next
    batch, the same rows as an uninterrupted run.

    The read position (``ReadPosition.records``) counts the file's data rows, good or
    rejected, from the first after the header; a reader started from it passes over
    those rows without counting them again (both engines re-parse them: CSV rows cannot
    be found without reading what comes before).

    Args:
        path: file path, glob or brace pattern, URL, or a list of them.
        columns: the columns to read, by name or by index (0 is the first), in the
            order the records should have them; all columns when None.
        dtype: the numpy dtype of the values: one for every column (``"float32"``),
            or a dict ``{column: dtype}`` (other columns stay text). Bool, integer and
            float dtypes are accepted, and ``str`` for text. An empty field is NaN in a
            float column and a bad value elsewhere. Booleans are ``1/0``, ``true/false``,
            ``True/False``, ``TRUE/FALSE``.
        header: whether the first row names the columns (the default, as pandas).
            Blank names become ``"Unnamed: i"`` and repeats ``"a.1"``, as in pandas.
            Without a header (``header=False``) columns are keyed 0, 1, ... unless
            ``names`` are given. A file without a header read with ``header=True``
            loses its first row to the names; columns or dtype naming a column the
            header lacks then reject the file, saying so.
        names: column names to use instead of the header's (with ``header=True`` the
            header row is passed over and must have as many columns).
        batch_size: yield columnar batches of this many rows instead of rows.
        delimiter: the field separator, one character (``"\\t"`` for TSV).
        quotechar: the quote character, one character; doubled inside a quoted field.
        engine: ``"pyarrow"`` (fast; ``pip install 'headrace[arrow]'``), ``"python"``
            (the csv module; no dependencies), or ``"auto"``: pyarrow when installed.
            Both give the same records and reject the same rows, but for one limit:
            the csv module takes fields up to ``csv.field_size_limit()`` characters
            (131,072 unless raised) and rejects rows with longer ones, which pyarrow
            reads when the row fits in a block (2 MiB).
        on_error: what to do with a bad row (a wrong number of fields, a value that does
            not convert to its dtype, bytes that are not UTF-8 in a column read), a file
            that cannot be opened or whose header does not fit the arguments, or a
            compressed file that is damaged or cut short: ``"raise"`` (default) raises
            :class:`headrace.ParseError` (:class:`headrace.DecodeError` for UTF-8)
            naming the file, the row (``data.csv row 7``, counting data rows from 1)
            and the reason; ``"skip"`` drops it, counts it and logs a summary; a file
            path also appends each, with the row's fields, as a JSON line to that file
            (see :mod:`headrace.policy`). An empty file, or a header alone, is no error: no
            rows. A missing file raises ``FileNotFoundError`` when the run starts.
        num_shards, shard_index: read only every ``num_shards``-th file of the sorted
            list, starting at ``shard_index``.

    Raises:
        TypeError, ValueError: an argument is malformed (named in the message).
        ImportError: ``engine="pyarrow"`` and pyarrow is not installed.
    """
    return Pipeline(
        (
            ReadCsv(
                path,
                columns=columns,
                dtype=dtype,
                header=header,
                names=names,
                batch_size=batch_size,
                delimiter=delimiter,
                quotechar=quotechar,
                engine=engine,
                on_error=on_error,
                num_shards=num_shards,
                shard_index=shard_index,
            ),
        )
    )
