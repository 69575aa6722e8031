"""The pyarrow engine of :func:`headrace.read_csv`.

A file is read in segments of about :data:`SEGMENT_SIZE` bytes cut at line ends, each
parsed by ``pyarrow.csv.read_csv`` on one core. A pool of threads (one per core, at
most :data:`MAX_WORKERS`) parses them, and keeps ``workers + 1`` segments parsed or
being parsed ahead of the one whose rows are being handed out: several segments in
flight keep every core busy, where one large segment parsed by pyarrow on all cores
left them waiting on each other at its start and end. A file of one segment is
parsed on the calling thread, without a pool.

Where the bytes come from:

- a local, uncompressed file: each task reads its own byte range (``os.preadv``, into
  a buffer its thread keeps), so the reading is spread over the pool too; the thread
  handing out rows only finds the line ends between segments, with a small read near
  each. The file is not memory-mapped: a file cut short while it was mapped would
  kill the process with ``SIGBUS`` when a task touched its pages; here a task that
  reads fewer bytes than asked reports the file cut short, under the error policy.
- a compressed, remote or unseekable stream: the thread handing out rows reads each
  segment and hands it to the pool to parse.

A segment holding a quote character may hold a line end inside a quoted field, so the
line ends that cut the segments after it may be no row ends: from the first such
segment on, pyarrow's streaming reader (which tracks quotes, on one core) reads the
rest of the file. Whatever pyarrow cannot read as asked (a value that does not
convert, an empty integer, bytes that are not UTF-8, a row bigger than a block) is
read again by the Python engine, from the start of that segment or streamed part,
which then names the exact row; so both engines yield the same rows and reject the
same ones. Float columns of a segment without ``.`` or ``-`` are parsed as integers
first (see :meth:`ArrowReader._parse`), which gives the same floats, faster.

pyarrow is imported when a reader is made, never when this module is: ``import
headrace`` needs only numpy.
"""

from __future__ import annotations

import codecs
import csv
import functools
import importlib
import io
import itertools
import os
import stat
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from headrace.policy import Tally
from headrace.sources.csv.common import (
    FALSE,
    TRUE,
    Chunk,
    Layout,
    Prefixed,
    RowTooLong,
    longest_line,
    shown,
)
from headrace.sources.csv.python import python_chunks
from headrace.sources.files import DAMAGED, LINE_LIMIT, open_or_reject

__all__ = ["ArrowReader"]

#: Bytes of a segment: what one task reads and parses at a time.
SEGMENT_SIZE: Final = 2 << 20
#: pyarrow's block size: the unit it parses in, and the largest row it takes.
BLOCK_SIZE: Final = 2 << 20
#: The most threads that parse segments, whatever the number of cores: past a few, the
#: thread handing out the rows is the bottleneck.
MAX_WORKERS: Final = 4
#: Bytes read near a segment's end to find the line end that closes it.
_WINDOW: Final = 4096

#: A row pyarrow found with a wrong number of fields: (row number in the part, its
#: text, its number of fields).
_Bad = tuple[int | None, str, int]
#: Work for the pool: makes one part (reads its bytes or is given them, and parses them).
_Job = Callable[[], "_Part"]
#: A job, and whether it makes the file's last part.
_Jobs = Generator[tuple[_Job, bool], None, None]


class _Unconvertible(Exception):
    """A column of a parsed block that pyarrow could not give as asked."""


def _workers() -> int:
    """Threads to parse on: the cores this process may run on, up to MAX_WORKERS."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_WORKERS))


@dataclass(slots=True, eq=False)
class _Part:
    """What a task hands over: a parsed segment (``batches``, ``bad``), a segment
    pyarrow cannot read as asked (``unparsed``), or the rest of the file from the
    first segment with a quote, which starts at byte ``offset`` (``quoted``: the bytes
    of it read from the stream already; empty when the stream is to be sought there).
    """

    batches: list[list[np.ndarray]] = field(default_factory=list)
    bad: list[_Bad] = field(default_factory=list)
    unparsed: bytes | None = None
    quoted: bytes | None = None
    offset: int = 0
    #: The file broke off after this part (a damaged compressed file, a file cut short).
    damage: BaseException | None = None
    #: Nothing follows this part.
    last: bool = False
    #: The rest of the file (from ``offset``, after ``quoted``) holds a row over
    #: ``max_record_bytes``: the Python engine reads it, a line at a time.
    python: bool = False


def _done(part: _Part) -> _Part:
    """The job of a part made already (a quote found, the file at its end)."""
    return part


def _here(job: _Job) -> Future[_Part]:
    """``job`` run on this thread, as a finished future."""
    future: Future[_Part] = Future()
    future.set_result(job())
    return future


class ArrowReader:
    """The pyarrow engine for one file: quote-free segments parsed on a pool of
    threads; once a quote appears, pyarrow's streaming reader; the Python engine for
    what they cannot read as asked."""

    def __init__(
        self,
        path: str,
        layout: Layout,
        tally: Tally,
        *,
        delimiter: str,
        quotechar: str,
        limit: int = LINE_LIMIT,
    ) -> None:
        self.pa = importlib.import_module("pyarrow")
        #: ``max_record_bytes``: a segment longer than a segment and this holds a row
        #: over it, and goes to the Python engine unread.
        self.limit = limit
        self.pacsv = importlib.import_module("pyarrow.csv")
        self.path, self.layout, self.tally = path, layout, tally
        self.delimiter, self.quotechar = delimiter, quotechar
        self.quote = quotechar.encode()
        self.names = [f"f{i}" for i in range(layout.width)]
        self.convert_options = self._convert_options(ints=False)
        #: The options that parse float columns as integers (see :meth:`_parse`); None
        #: when there are no float columns, or once a segment of this file needed floats.
        self.int_options: Any = None
        if any(dtype is not None and dtype.kind == "f" for dtype in layout.dtypes):
            self.int_options = self._convert_options(ints=True)
        #: Each pool thread's buffer for the segments it reads (``buffer``).
        self.buffers = threading.local()
        #: The bad rows of the part being handed out, in order.
        self.bad: deque[_Bad] = deque()
        #: The number of the last row handed out in a chunk, or rejected.
        self.consumed = 0

    def _convert_options(self, *, ints: bool) -> Any:
        types = {}
        for index, dtype in zip(self.layout.selected, self.layout.dtypes, strict=True):
            types[f"f{index}"] = self._arrow_type(dtype, ints=ints)
        return self.pacsv.ConvertOptions(
            include_columns=[f"f{i}" for i in self.layout.selected],
            column_types=types,
            null_values=[""],
            true_values=list(TRUE),
            false_values=list(FALSE),
            strings_can_be_null=False,
        )

    def _arrow_type(self, dtype: np.dtype[Any] | None, *, ints: bool) -> Any:
        if dtype is None:
            return self.pa.string()
        if dtype.kind == "f":
            # As float64, then narrowed by numpy, as the Python engine does (float(),
            # then the dtype): both round the same, and pyarrow parses float64 faster.
            # Or as int64, faster still, where every value is an integer.
            return self.pa.int64() if ints else self.pa.float64()
        return self.pa.from_numpy_dtype(dtype)

    def _options(self, bad: list[_Bad], *, quoted: bool, ints: Any = None) -> dict[str, Any]:
        """pyarrow's options; rows with a wrong number of fields are noted in ``bad``.
        A segment is known to be quote-free: quotes are not looked for in it."""

        def note(row: Any) -> str:
            bad.append((row.number, row.text, row.actual_columns))
            return "skip"

        pacsv = self.pacsv
        return {
            # On one core: parallel parsing is the pool's, and it numbers the bad rows.
            "read_options": pacsv.ReadOptions(
                column_names=self.names, block_size=BLOCK_SIZE, use_threads=False
            ),
            "parse_options": pacsv.ParseOptions(
                delimiter=self.delimiter,
                quote_char=self.quotechar if quoted else False,
                newlines_in_values=quoted,
                invalid_row_handler=note,
            ),
            "convert_options": self.convert_options if ints is None else ints,
        }

    # -- the segments, in order ----------------------------------------------------------

    def chunks(
        self, stream: io.BufferedIOBase, prefix: bytes, offset: int, skip: int
    ) -> Generator[Chunk, None, None]:
        """The chunks of the file. ``stream`` is after the header; ``prefix`` holds rows
        read from it already (a headerless file's first row); ``offset`` is where
        ``prefix`` starts in the (decompressed) file. Rows up to ``skip`` are passed over.

        The pool's threads are joined before this returns or is closed.
        """
        fd = _local_file(stream, len(prefix) + offset)
        jobs = (
            self._read_segments(stream, prefix, offset)
            if fd is None
            else self._find_segments(fd, offset)
        )
        workers = _workers()
        pool: ThreadPoolExecutor | None = None
        # In flight: what the pool parses, and what waits for the caller, ahead of the
        # part being handed out; each holds at most a segment's bytes and its arrays.
        ahead = workers + 1
        pending: deque[Future[_Part]] = deque()
        try:
            while True:
                for job, last in itertools.islice(jobs, max(0, ahead + 1 - len(pending))):
                    if pool is None and last and not pending:
                        pending.append(_here(job))  # a file of one segment: no threads
                        continue
                    if pool is None:
                        pool = ThreadPoolExecutor(workers, thread_name_prefix="headrace read_csv")
                    pending.append(pool.submit(job))
                if not pending:
                    return
                part = pending.popleft().result()
                if part.last:  # a quote, the end, or damage: what was sent ahead is moot
                    jobs.close()
                    for future in pending:
                        future.cancel()
                    pending.clear()
                if part.quoted is not None and fd is not None:
                    stream.seek(part.offset)
                yield from self._take(part, stream, skip)
                if part.last:
                    return
        finally:
            jobs.close()
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)

    def _take(self, part: _Part, stream: io.BufferedIOBase, skip: int) -> Iterator[Chunk]:
        """The chunks of one part, with its bad rows rejected in place."""
        if part.quoted is not None:
            # A limit below a block's size is checked on the bytes: pyarrow takes rows
            # up to a block.
            small = self.limit if self.limit < BLOCK_SIZE and not part.python else None
            rest = Prefixed(
                part.quoted,
                stream if part.damage is None else None,
                utf8=not part.python,
                line_limit=small,
            )
            if part.python:
                yield from self._python(io.BufferedReader(rest), self.consumed, skip)
            elif (yield from self._streamed(rest, part.offset, skip)):
                return  # the Python engine read the file to its end, damage included
        elif part.unparsed is not None:
            yield from self._python(io.BytesIO(part.unparsed), self.consumed, skip)
        else:
            self.bad = deque(part.bad)
            yield from self._interleave(part.batches, self.consumed, skip)
            self._trailing(skip)
        if part.damage is not None:
            self._damaged(part.damage)

    def _find_segments(self, fd: int, start: int) -> _Jobs:
        """Jobs that each read and parse a segment of a local file, from byte ``start``.

        A segment ends at the last line end before ``start + SEGMENT_SIZE`` (so that
        it is one pyarrow block), or, when a row is longer than the window looked at,
        at the first line end after it.
        """
        size = os.fstat(fd).st_size
        while True:
            if start + SEGMENT_SIZE >= size:
                size = os.fstat(fd).st_size  # the file may have grown since
            if size < start:
                error = EOFError(f"the file ended at byte {size}, before byte {start}")
                yield functools.partial(_done, _Part(damage=error, last=True)), True
                return
            if start + SEGMENT_SIZE >= size:
                yield functools.partial(self._read_segment, fd, start, size, last=True), True
                return
            window = min(_WINDOW, SEGMENT_SIZE)
            probe = start + SEGMENT_SIZE - window
            try:
                found = _pread(fd, window, probe).rfind(b"\n")
                end = probe + found + 1 if found >= 0 else _line_end(fd, probe + window)
            except OSError as error:
                yield functools.partial(_done, _Part(damage=error, last=True)), True
                return
            if (size if end is None else end) - start > SEGMENT_SIZE + self.limit:
                # A row over max_record_bytes: never read whole.
                yield (
                    functools.partial(
                        _done, _Part(quoted=b"", offset=start, last=True, python=True)
                    ),
                    True,
                )
                return
            if end is None:  # a row runs to the end of the file
                yield functools.partial(self._read_segment, fd, start, size, last=True), True
                return
            yield functools.partial(self._read_segment, fd, start, end, last=False), False
            start = end

    def _read_segment(self, fd: int, start: int, end: int, *, last: bool) -> _Part:
        """Bytes ``start`` to ``end`` of a local file, parsed (on a pool thread).

        Read into a buffer the thread keeps (nothing parsed refers to it): a fresh one
        per segment would cost the kernel's zeroing of its pages every time.
        """
        size = end - start
        buffer: bytearray | None = getattr(self.buffers, "buffer", None)
        if buffer is None or len(buffer) < size:
            buffer = self.buffers.buffer = bytearray(max(size, SEGMENT_SIZE))
        try:
            count = _pread_into(fd, buffer, size, start)
        except OSError as error:
            return _Part(damage=error, last=True)
        if buffer.find(self.quote, 0, count) >= 0:
            return _Part(quoted=b"", offset=start, last=True)
        damage = None
        if count < size:  # cut short since its size was taken
            damage = EOFError(f"the file ended at byte {start + count}, not {end}")
            count = buffer.rfind(b"\n", 0, count) + 1
            last = True
        return self._parse_part(buffer, count, damage, last)

    def _read_segments(self, stream: io.BufferedIOBase, prefix: bytes, offset: int) -> _Jobs:
        """Jobs that each parse a segment of ``stream``, read here (on the thread that
        asks), after ``prefix``; ``offset`` is where ``prefix`` starts in the file."""
        quote = self.quote
        buffer = bytearray(max(SEGMENT_SIZE, 2 * len(prefix)))
        buffer[: len(prefix)] = prefix
        filled, checked = len(prefix), 0  # bytes in the buffer; bytes known quote-free
        while True:
            if filled == len(buffer):  # a row longer than a segment: make room
                if filled > SEGMENT_SIZE + self.limit:  # a row over max_record_bytes
                    part = _Part(quoted=bytes(buffer), offset=offset, last=True, python=True)
                    yield functools.partial(_done, part), True
                    return
                buffer += bytes(len(buffer))
            count, damage = _read_into(stream, buffer, filled)
            end = filled + count
            if buffer.find(quote, checked, end) >= 0:
                # A quote may hide a line end: pyarrow's streaming reader takes over,
                # from the whole rows before the damage if there is some.
                keep = end if damage is None else buffer.rfind(b"\n", 0, end) + 1
                part = _Part(quoted=bytes(buffer[:keep]), offset=offset, damage=damage, last=True)
                yield functools.partial(_done, part), True
                return
            cut = end if count == 0 and not damage else buffer.rfind(b"\n", 0, end) + 1
            last = count == 0 or damage is not None
            if cut:
                # The segment's bytes go to the pool; the rest starts the next buffer.
                rest = buffer[cut:end]
                yield functools.partial(self._parse_part, buffer, cut, damage, last), last
                offset += cut
                buffer = bytearray(max(SEGMENT_SIZE, 2 * len(rest)))
                buffer[: len(rest)] = rest
                filled = checked = len(rest)
            else:
                filled = checked = end
                if last:
                    yield functools.partial(_done, _Part(damage=damage, last=True)), True
            if last:
                return

    def _parse_part(
        self, buffer: bytearray, cut: int, damage: BaseException | None, last: bool
    ) -> _Part:
        """The first ``cut`` bytes of ``buffer`` parsed (on a pool thread)."""
        part = _Part()
        if cut and self.limit < SEGMENT_SIZE and _over(memoryview(buffer)[:cut], self.limit):
            part = _Part(unparsed=bytes(buffer[:cut]))  # the Python engine rejects the row
        elif cut:
            ints = buffer.find(b".", 0, cut) < 0 and buffer.find(b"-", 0, cut) < 0
            part = self._parse(memoryview(buffer)[:cut], ints=ints)
        part.damage, part.last = damage, last
        return part

    def _parse(self, data: bytes | memoryview, *, ints: bool) -> _Part:
        """One segment (whole rows, no quote character) parsed on this thread.

        With ``ints`` (the segment holds neither a ``.`` nor a ``-``), float columns
        are parsed as integers first: pyarrow parses int64 an eighth faster than
        float64, and an integer converts to the float that ``float()`` reads from its
        text (exactly below 2**53, rounded to nearest above, as the text is), but for
        ``-0``, which would lose its sign. (Both are a ``memchr``; looking for ``-0``
        itself takes a hundred times longer.) Once a segment of the file needs floats,
        its float columns are parsed as floats.
        """
        pa, pacsv = self.pa, self.pacsv
        if not _utf8(data):
            # pyarrow fails to hand a row of such bytes to the handler of bad rows (and
            # prints that failure): the Python engine reads the segment, and names it.
            return _Part(unparsed=bytes(data))
        options = self.int_options if ints else None
        bad: list[_Bad] = []
        try:
            if options is not None:
                try:
                    table = pacsv.read_csv(
                        _reader(pa, data), **self._options(bad, quoted=False, ints=options)
                    )
                    return self._table(table, bad, ints=True)
                except (pa.ArrowInvalid, _Unconvertible):
                    bad.clear()
            table = pacsv.read_csv(_reader(pa, data), **self._options(bad, quoted=False))
            part = self._table(table, bad, ints=False)
            if options is not None:
                self.int_options = None  # this file's floats are not all integers
            return part
        except (pa.ArrowInvalid, _Unconvertible):
            return _Part(unparsed=bytes(data))

    def _table(self, table: Any, bad: list[_Bad], *, ints: bool) -> _Part:
        if any(number is None for number, _, _ in bad):
            raise _Unconvertible  # unplaced bad rows: the Python engine places them
        batches = [self._arrays(b, ints=ints) for b in table.to_batches() if b.num_rows]
        return _Part(batches=batches, bad=bad)

    def _streamed(self, stream: Prefixed, offset: int, skip: int) -> Generator[Chunk, None, bool]:
        """The chunks from pyarrow's streaming reader, which tracks quoted line ends;
        ``stream`` starts at byte ``offset`` of the file. True when the Python engine
        took over and read the file to its end."""
        pa = self.pa
        before = self.consumed
        bad: list[_Bad] = []
        self.bad = deque()
        try:
            reader = self.pacsv.open_csv(stream, **self._options(bad, quoted=True))
            for batch in reader:
                # pyarrow notes a block's bad rows before it returns the block's rows.
                self.bad.extend(bad)
                bad.clear()
                yield from self._interleave([self._arrays(batch)], before, skip)
            self.bad.extend(bad)
        except (pa.ArrowInvalid, _Unconvertible, UnicodeDecodeError, RowTooLong):
            # The Python engine reads again from where this reader started, passing over
            # the rows handed out already.
            again = open_or_reject(self.path, self.tally)
            if again is None:
                return True
            with again:
                try:
                    _skip_bytes(again, offset)
                except DAMAGED as error:
                    self._damaged(error)
                    return True
                yield from self._python(again, before, max(skip, self.consumed))
            return True
        except DAMAGED as error:
            self._damaged(error)
            return True
        self._trailing(skip)
        return False

    def _python(self, stream: io.BufferedIOBase, before: int, skip: int) -> Iterator[Chunk]:
        self.consumed = yield from python_chunks(
            stream,
            self.path,
            self.layout,
            self.tally,
            before,
            skip,
            delimiter=self.delimiter,
            quotechar=self.quotechar,
            limit=self.limit,
        )

    def _arrays(self, batch: Any, *, ints: bool = False) -> list[np.ndarray]:
        arrays = []
        for column, dtype in zip(batch.columns, self.layout.dtypes, strict=True):
            if dtype is not None and dtype.kind != "f" and column.null_count:
                raise _Unconvertible  # an empty integer or bool: the Python engine says where
            arrays.append(_numpy(column, dtype, ints=ints))
        return arrays

    def _interleave(
        self, batches: list[list[np.ndarray]], before: int, skip: int
    ) -> Iterator[Chunk]:
        """Chunks of the parsed rows, with the bad rows pyarrow reported (numbered from 1
        after row ``before``) rejected at their places in between."""
        bad = self.bad
        for arrays in batches:
            size, start = len(arrays[0]), 0
            while start < size:
                while bad and bad[0][0] is not None and before + bad[0][0] <= self.consumed + 1:
                    self._reject_bad(bad.popleft(), skip)
                run = size - start
                if bad and bad[0][0] is not None:
                    run = min(run, before + bad[0][0] - self.consumed - 1)
                first = self.consumed
                self.consumed += run
                low = min(run, max(0, skip - first))
                if low < run:
                    yield first + low, [a[start + low : start + run] for a in arrays]
                start += run

    def _trailing(self, skip: int) -> None:
        """Reject the bad rows after the last good row of a part."""
        while self.bad:
            self._reject_bad(self.bad.popleft(), skip)

    def _reject_bad(self, bad: _Bad, skip: int) -> None:
        self.consumed += 1
        if self.consumed <= skip:
            return
        _, text, found = bad
        self.tally.read += 1
        reason = f"expected {self.layout.width} fields, found {found}"
        lines = io.StringIO(text, newline="")
        reader = csv.reader(lines, delimiter=self.delimiter, quotechar=self.quotechar)
        fields = [field for row in reader for field in row]  # as the Python engine parses it
        self.tally.reject(f"{self.path} row {self.consumed}", reason, shown(fields))

    def _damaged(self, error: BaseException) -> None:
        self.tally.read += 1
        reason = f"the file is damaged or cut short after row {self.consumed} ({error})"
        self.tally.reject(f"{self.path} row {self.consumed + 1}", reason)


def _numpy(column: Any, dtype: np.dtype[Any] | None, *, ints: bool = False) -> np.ndarray:
    """A pyarrow array as a fresh, writable numpy array of ``dtype`` (text: ``str``s);
    ``ints``: a float column parsed as int64.

    Read from the array's buffers: pyarrow's own ``to_numpy`` imports pandas on first
    use (a fifth of a second and 40 MiB), and gives read-only views, which
    ``torch.from_numpy`` warns about.
    """
    if dtype is None:
        return np.array(column.to_pylist(), dtype=object)
    offset, length = column.offset, len(column)
    validity, data = column.buffers()[:2]
    if dtype.kind == "b":
        bits = np.unpackbits(
            np.frombuffer(data, np.uint8), count=offset + length, bitorder="little"
        )
        return bits[offset:].astype(bool)
    if dtype.kind != "f":  # no nulls: the caller sees to it
        return np.frombuffer(data, dtype, count=offset + length)[offset:].copy()
    values = np.frombuffer(data, np.int64 if ints else np.float64, count=offset + length)
    values = values[offset:].astype(np.float64, copy=False)  # as float() reads the text
    if column.null_count:  # empty fields
        valid = np.unpackbits(
            np.frombuffer(validity, np.uint8), count=offset + length, bitorder="little"
        )
        values = np.where(valid[offset:].astype(bool), values, np.nan)
    with np.errstate(over="ignore"):  # 1e39 as float32 is inf
        return values.astype(dtype)


def _over(data: memoryview, limit: int) -> bool:
    """Whether a line of ``data`` may be longer than ``limit`` bytes."""
    try:
        longest_line(data, 0, limit)
    except RowTooLong:
        return True
    return False


def _utf8(data: bytes | memoryview) -> bool:
    """Whether ``data`` is valid UTF-8 (at memory speed for ASCII)."""
    try:
        codecs.utf_8_decode(data, "strict", True)
    except UnicodeDecodeError:
        return False
    return True


def _reader(pa: Any, data: bytes | memoryview) -> Any:
    """What pyarrow's ``read_csv`` reads ``data`` from, without a copy."""
    return pa.BufferReader(pa.py_buffer(data))


def _read_into(
    stream: io.BufferedIOBase, buffer: bytearray, start: int
) -> tuple[int, BaseException | None]:
    """Fill ``buffer`` from ``start`` as far as the stream goes: the count read, and the
    error that stopped it early if the stream is damaged.

    A block at a time, so that a damaged compressed file loses at most the block it
    was decompressing when the damage showed.
    """
    filled = start
    with memoryview(buffer) as view:
        while filled < len(buffer):
            end = min(len(buffer), filled + BLOCK_SIZE)
            try:
                if hasattr(stream, "readinto"):
                    count = stream.readinto(view[filled:end])
                else:  # some fsspec files
                    data = stream.read(end - filled)
                    count = len(data)
                    view[filled : filled + count] = data
            except DAMAGED as error:
                return filled - start, error
            if not count:
                break
            filled += count
    return filled - start, None


def _skip_bytes(stream: io.BufferedIOBase, count: int) -> None:
    while count > 0:
        data = stream.read(min(count, SEGMENT_SIZE))
        if not data:
            raise EOFError(f"the file ended {count} bytes early")
        count -= len(data)


def _local_file(stream: io.BufferedIOBase, position: int) -> int | None:
    """The descriptor of ``stream`` when it is a local, uncompressed regular file read
    up to ``position`` (so that bytes can be read at any offset of it), else None."""
    if not hasattr(os, "preadv") or not isinstance(stream, io.BufferedReader):
        return None
    if not isinstance(stream.raw, io.FileIO):
        return None
    try:
        fd = stream.fileno()
        if not stat.S_ISREG(os.fstat(fd).st_mode) or stream.tell() != position:
            return None
    except OSError:
        return None
    return fd


def _pread_into(fd: int, buffer: bytearray, count: int, offset: int) -> int:
    """Read ``count`` bytes of a file from ``offset`` into ``buffer``: the count read,
    fewer where the file ends."""
    filled = 0
    with memoryview(buffer) as view:
        while filled < count:
            got = os.preadv(fd, [view[filled:count]], offset + filled)
            if not got:
                break
            filled += got
    return filled


def _pread(fd: int, count: int, offset: int) -> bytes:
    """``count`` bytes of a file from ``offset``, or fewer where it ends."""
    data = os.pread(fd, count, offset)
    if len(data) == count or not data:
        return data
    pieces = [data]  # a short read before the end (rare for a regular file)
    while count > (got := sum(map(len, pieces))):
        more = os.pread(fd, count - got, offset + got)
        if not more:
            break
        pieces.append(more)
    return b"".join(pieces)


def _line_end(fd: int, offset: int) -> int | None:
    """Where the first line at or after byte ``offset`` of a file ends (after its
    ``\\n``), or None if none does before the end of the file."""
    window = _WINDOW
    while True:
        data = _pread(fd, window, offset)
        found = data.find(b"\n")
        if found >= 0:
            return offset + found + 1
        if len(data) < window:
            return None
        offset += window
        window = min(2 * window, SEGMENT_SIZE)
