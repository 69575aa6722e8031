"""What the stage and both engines of :func:`headrace.read_csv` share.

The engines hand out chunks of converted columns (:data:`Chunk`); a file's
:class:`Layout` says which columns they convert and how (:func:`converter`, with the
boolean spellings :data:`TRUE` and :data:`FALSE`); :func:`records` and :func:`batches`
turn the chunks of either engine into what the stage yields. Also here: the header
names as pandas gives them (:func:`unique_names`), a rejected row's fields as the
quarantine file shows them (:func:`shown`), and a stream with bytes read from it
already put back in front (:class:`Prefixed`).
"""

from __future__ import annotations

import codecs
import io
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final

import numpy as np

from headrace.policy import Tally
from headrace.sources.files import DAMAGED, ReadPosition

__all__ = [
    "FALSE",
    "TRUE",
    "TRUTH",
    "BoundedLines",
    "Broken",
    "Chunk",
    "Layout",
    "NotUtf8",
    "Prefixed",
    "RowTooLong",
    "batches",
    "converter",
    "longest_line",
    "records",
    "shown",
    "to_float",
    "unique_names",
    "utf8_text",
]

# The spellings both engines read as booleans (pyarrow's defaults, stated for both).
TRUE: Final = ("1", "True", "TRUE", "true")
FALSE: Final = ("0", "False", "FALSE", "false")
TRUTH: Final = dict.fromkeys(TRUE, True) | dict.fromkeys(FALSE, False)

#: ``(ordinal of the row before the first, one array per selected column)``: a run of
#: consecutive good rows; rejected rows fall between chunks, never inside one.
Chunk = tuple[int, list[np.ndarray]]


class NotUtf8(ValueError):
    """A text value holds bytes that are not UTF-8 (kept as lone surrogates)."""


def utf8_text(value: str) -> str:
    """``value`` itself; NotUtf8 if it holds undecodable bytes."""
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # undecodable bytes, kept as lone surrogates
            raise NotUtf8 from None
    return value


def to_float(value: str) -> float:
    """The float of a text value; an empty one is NaN."""
    return float(value) if value else float("nan")


def converter(dtype: np.dtype[Any] | None) -> Callable[[str], Any]:
    """Text to the Python value the column's array is built from; ValueError if not."""
    if dtype is None:
        return utf8_text
    if dtype.kind == "f":
        return to_float
    if dtype.kind == "b":

        def to_bool(value: str) -> bool:
            try:
                return TRUTH[value]
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


class Layout:
    """How one file's columns map to the records: which columns, keys and dtypes."""

    __slots__ = ("converters", "dtypes", "inferred", "keys", "selected", "width")

    def __init__(
        self,
        width: int,
        selected: list[int],
        keys: list[Any],
        dtypes: list[np.dtype[Any] | None],
        inferred: list[str | None] | None = None,
    ) -> None:
        self.width = width
        self.selected = selected
        self.keys = keys
        self.dtypes = dtypes
        #: For each column whose dtype was inferred, the file whose first rows gave it.
        self.inferred: list[str | None] = inferred or [None] * len(dtypes)
        self.converters = [converter(d) for d in dtypes]


def unique_names(names: list[str]) -> list[str]:
    """Header names as pandas gives them: blanks become ``Unnamed: i``, repeats ``a.1``.

    >>> unique_names(["a", "", "a", "a.1"])
    ['a', 'Unnamed: 1', 'a.1', 'a.1.1']
    """
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


def shown(fields: list[str] | None) -> list[str] | None:
    """A rejected row's fields for the quarantine file: undecodable bytes as ``\\xe9``."""
    if fields is None:
        return None
    return [
        f
        if f.isascii()
        else f.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        for f in fields
    ]


class RowTooLong(Exception):  # not an error of the caller's: a record's
    """A CSV line over ``max_record_bytes``, read past without being held."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        #: The line's bytes, line ending not counted.
        self.size = size


class BoundedLines:
    """The lines of a text stream for the csv module, each at most ``limit`` bytes.

    A longer line is read past in pieces and raises :class:`RowTooLong`; the csv
    reader reading these lines can be asked for its next row after that (it starts
    each row afresh), so the rows after it are read as usual.
    """

    __slots__ = ("_chars", "_limit", "_readline")

    def __init__(self, text: io.TextIOBase, limit: int) -> None:
        self._readline = text.readline
        self._limit = limit
        self._chars = limit + 2  # and a line ending of up to two characters

    def __iter__(self) -> BoundedLines:
        return self

    def __next__(self) -> str:
        line = self._readline(self._chars)
        if not line:
            raise StopIteration
        ended = line.endswith(("\n", "\r"))
        if len(line) < self._chars and 4 * len(line) <= self._limit:
            return line  # short enough whatever its characters (UTF-8: 4 bytes at most)
        content = line.rstrip("\r\n") if ended else line
        size = len(content.encode("utf-8", "surrogateescape"))
        # Whole (ended, or the last line, shorter than asked for) and within the limit.
        if size <= self._limit and (ended or len(line) < self._chars):
            return line
        while not ended:  # read past the rest of the line
            more = self._readline(1 << 20)
            if not more:
                break
            ended = more.endswith(("\n", "\r"))
            size += len((more.rstrip("\r\n") if ended else more).encode("utf-8", "surrogateescape"))
        raise RowTooLong(size)


def longest_line(data: Any, run: int, limit: int) -> int:
    """Raise :class:`RowTooLong` if a line of ``data``, after ``run`` bytes of its
    first line read before, is longer than ``limit`` (a ``\\r`` before the ``\\n``
    counted: a trigger for the Python engine, which decides); else the bytes of the
    last line so far."""
    ends = np.flatnonzero(np.frombuffer(data, np.uint8) == 10)
    if not ends.size:
        run += len(data)
    else:
        longest = max(run + int(ends[0]), int(np.diff(ends).max()) - 1 if ends.size > 1 else 0)
        run = len(data) - int(ends[-1]) - 1
        if longest > limit:
            raise RowTooLong(longest)
    if run > limit:
        raise RowTooLong(run)
    return run


class Prefixed(io.RawIOBase):
    """Bytes already read, then the rest of a stream: what pyarrow's reader reads from."""

    def __init__(
        self,
        prefix: bytes,
        stream: io.BufferedIOBase | None,
        *,
        utf8: bool = False,
        line_limit: int | None = None,
    ) -> None:
        self._prefix = memoryview(prefix)
        self._stream = stream
        #: An error the stream raised after some bytes, raised at the next read.
        self._error: BaseException | None = None
        #: With ``utf8``, bytes that are not UTF-8 raise ``UnicodeDecodeError`` as
        #: they are read (pyarrow cannot hand a bad row of them to its handler).
        self._utf8 = codecs.getincrementaldecoder("utf-8")() if utf8 else None
        #: With ``line_limit``, a line longer than that raises :class:`RowTooLong` as it
        #: is read.
        self._line_limit = line_limit
        self._run = 0  # bytes since the last line end

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        target = memoryview(buffer).cast("B")
        filled = 0
        if self._prefix:
            filled = min(len(target), len(self._prefix))
            target[:filled] = self._prefix[:filled]
            self._prefix = self._prefix[filled:]
        while filled < len(target) and self._stream is not None:
            try:
                # read1: what one step of a decompressor gives, so a damaged compressed
                # file keeps the bytes before the damage (read(n) drops them).
                read = getattr(self._stream, "read1", self._stream.read)
                data = read(len(target) - filled)
            except DAMAGED as error:
                if not filled:
                    raise
                self._error = error  # the bytes before it first, then the error
                break
            if not data:
                break
            target[filled : filled + len(data)] = data
            filled += len(data)
        if self._utf8 is not None:
            self._utf8.decode(target[:filled], not filled)
        if self._line_limit is not None:
            self._run = longest_line(target[:filled], self._run, self._line_limit)
        return filled


class Broken(io.RawIOBase):
    """A stream whose next read raises ``error``: the rest of a file that broke off
    while its first rows were read (then read again, before this, from a prefix)."""

    def __init__(self, error: BaseException) -> None:
        self._error = error

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        raise self._error


# -- records and batches -------------------------------------------------------------------


def records(
    chunks: Iterator[Chunk], keys: list[Any], tally: Tally, position: ReadPosition
) -> Iterator[dict[Any, Any]]:
    """The rows of the chunks as dicts ``{key: value}``."""
    for first, arrays in chunks:
        for number, values in enumerate(zip(*arrays, strict=True), first + 1):
            position.records = number
            tally.read += 1
            yield dict(zip(keys, values, strict=True))


def batches(
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
