"""What every source that reads files shares.

- **Finding files:** glob patterns (``**`` crosses folders), brace lists and numbered
  ranges (``shard-{000..099}.tar``, ``{train,val}.csv``), and fsspec URLs
  (``s3://``, ``http://``, ``memory://``, ...) wherever a local path is accepted.
- **Opening them:** compression by extension (``.gz``, ``.bz2``, ``.xz``), locally or
  through fsspec.
- **Sharding by file:** ``num_shards`` / ``shard_index`` give each reader every
  ``num_shards``-th file of the sorted list, so shards are disjoint and cover all files.
- **The error policy** (:mod:`headrace.policy`): a file that cannot be opened, or is
  damaged, is rejected like a bad record.
- **A read position** (:class:`ReadPosition`): which file, and how many records of it
  have been handed out; a reader started from a position goes on from there.

>>> expand_braces("shard-{08..10}.tar")
['shard-08.tar', 'shard-09.tar', 'shard-10.tar']
>>> expand_braces("{train,val}/part-{0..1}.csv")
['train/part-0.csv', 'train/part-1.csv', 'val/part-0.csv', 'val/part-1.csv']
"""

from __future__ import annotations

import bz2
import contextlib
import copy
import glob
import gzip
import hashlib
import io
import itertools
import lzma
import os
import re
import string
import zlib
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, ClassVar, Self, cast

from headrace._checks import check_int
from headrace.engine.guard import close_iterator
from headrace.engine.stage import Length, Stage, StageContext
from headrace.policy import ErrorPolicy, Tally

__all__ = [
    "DAMAGED",
    "LINE_LIMIT",
    "MEMBER_LIMIT",
    "FileSource",
    "Overlong",
    "PathsArg",
    "ReadPosition",
    "bounded_lines",
    "check_limit",
    "check_position",
    "expand_braces",
    "file_fingerprint",
    "find_files",
    "is_url",
    "line_file",
    "local_path",
    "normalise_paths",
    "open_binary",
    "open_or_reject",
    "overlong_reason",
    "past_end",
    "remote_filesystem",
]

PathsArg = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]

# The stream is closed by the ``with`` block of the reader that asked for it.
_OPENERS: dict[str, Callable[[io.BufferedIOBase], io.BufferedIOBase]] = {
    ".gz": lambda raw: gzip.GzipFile(fileobj=raw, mode="rb"),
    ".bz2": lambda raw: bz2.BZ2File(raw, "rb"),
    ".xz": lambda raw: lzma.LZMAFile(cast("IO[bytes]", raw), "rb"),  # noqa: SIM115
    ".lzma": lambda raw: lzma.LZMAFile(cast("IO[bytes]", raw), "rb"),  # noqa: SIM115
}
_MAGIC = frozenset("*?[")
#: In these URLs ``?`` starts the query (a signed link, a version), not a wildcard.
_HTTP = ("http://", "https://")
#: Bytes a remote file is read in (fsspec fetches it in blocks of several megabytes).
_REMOTE_BUFFER = 1 << 20
_LETTERS = re.compile(r"([A-Za-z])\.\.([A-Za-z])")
_RANGE = re.compile(r"(-?\d+)\.\.(-?\d+)(?:\.\.(-?\d+))?")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")

#: The default ``max_record_bytes`` of the readers of lines (a text line, a JSON
#: Lines value, a CSV row): far above any real record, and a hostile one of gigabytes
#: costs this much memory at most.
LINE_LIMIT = 64 << 20
#: The default ``max_record_bytes`` of ``read_tar_shards`` (one member).
MEMBER_LIMIT = 1 << 30
#: Bytes a line over the limit is read past in.
_PASS_BYTES = 1 << 20


def check_limit(value: object) -> int:
    """``max_record_bytes`` checked: a positive int."""
    return check_int("max_record_bytes", value, minimum=1)


@dataclass(frozen=True, slots=True)
class Overlong:
    """A line longer than the limit, read past without being kept."""

    #: Its bytes, not counting the newline.
    size: int
    #: The bytes read past, newline included.
    consumed: int


def overlong_reason(what: str, size: int, limit: int) -> str:
    """Why a record over ``max_record_bytes`` is rejected, and how to read it."""
    return (
        f"{what} is {size:,} bytes, more than max_record_bytes={limit:,}; pass a larger "
        "max_record_bytes= to read it (it is held in memory whole)"
    )


def bounded_lines(stream: Any, limit: int) -> Iterator[bytes | Overlong]:
    """The raw lines of ``stream``, newline kept; a line of more than ``limit`` bytes
    (newline not counted) comes as :class:`Overlong` instead, read past in pieces, so
    memory stays within ``limit`` whatever the file holds.

    >>> list(bounded_lines(io.BytesIO(b"ab\\nabcdef\\nxyz"), 3))
    [b'ab\\n', Overlong(size=6, consumed=7), b'xyz']
    """
    readline = stream.readline
    while line := readline(limit + 1):
        if len(line) <= limit or line.endswith(b"\n"):
            yield line
            continue
        consumed = len(line)
        while more := readline(_PASS_BYTES):
            consumed += len(more)
            if more.endswith(b"\n"):
                yield Overlong(consumed - 1, consumed)
                break
        else:
            yield Overlong(consumed, consumed)


def normalise_paths(paths: PathsArg, argument: str) -> tuple[str, ...]:
    """``paths`` as a non-empty tuple of strings; a clear error for anything else."""
    if isinstance(paths, str | os.PathLike):
        items = [paths]
    elif isinstance(paths, Sequence):
        items = list(paths)
    else:
        raise TypeError(
            f"{argument} must be a path, a glob pattern, a URL or a list of them, "
            f"got {type(paths).__name__}"
        )
    out = []
    for item in items:
        if not isinstance(item, str | os.PathLike):
            raise TypeError(f"{argument} must hold str or os.PathLike, got {type(item).__name__}")
        out.append(os.fspath(item))
    if not out:
        raise ValueError(f"{argument} is empty")
    return tuple(out)


def expand_braces(pattern: str) -> list[str]:
    """Every name a brace pattern stands for, in the order written.

    ``{a,b}`` lists alternatives (they may nest); ``{3..12}`` counts, ``{0..20..5}``
    counts in steps, ``{003..012}`` keeps the zeros and ``{a..e}`` runs through
    letters, as bash and webdataset's ``braceexpand`` do. Braces holding neither a
    comma nor a range stay as they are.

    >>> expand_braces("{a,{b,c}}-{3..1}")
    ['a-3', 'a-2', 'a-1', 'b-3', 'b-2', 'b-1', 'c-3', 'c-2', 'c-1']
    """
    for start, end, parts in _groups(pattern):
        if len(parts) == 1:
            options = _range(parts[0])
            if options is None:  # literal braces, around what their inside stands for
                inside = expand_braces(parts[0])
                if inside == parts:
                    continue
                options = ["{" + name + "}" for name in inside]
        else:
            options = [name for part in parts for name in expand_braces(part)]
        head, tail = pattern[:start], expand_braces(pattern[end + 1 :])
        return [head + option + rest for option in options for rest in tail]
    return [pattern]


def _groups(pattern: str, offset: int = 0) -> Iterator[tuple[int, int, list[str]]]:
    """Outermost ``{...}`` groups: where they open and close, and their top-level parts.

    A brace that never closes is a literal character; scanning goes on after it.
    """
    depth = 0
    start = 0
    cuts: list[int] = []
    for index in range(offset, len(pattern)):
        char = pattern[index]
        if char == "{":
            if depth == 0:
                start, cuts = index, []
            depth += 1
        elif char == "}" and depth:
            depth -= 1
            if depth == 0:
                bounds = [start, *cuts, index]
                yield start, index, [pattern[a + 1 : b] for a, b in itertools.pairwise(bounds)]
        elif char == "," and depth == 1:
            cuts.append(index)
    if depth:
        yield from _groups(pattern, start + 1)


def _range(body: str) -> list[str] | None:
    numbers = _RANGE.fullmatch(body)
    if numbers is None:
        letters = _LETTERS.fullmatch(body)
        if letters is None:
            return None
        low, high = (string.ascii_letters.index(letter) for letter in letters.groups())
        way = 1 if high >= low else -1
        return [string.ascii_letters[n] for n in range(low, high + way, way)]
    first, last, step_text = numbers.groups()
    digits = [n.lstrip("-") for n in (first, last)]
    width = max(len(first), len(last)) if any(len(d) > 1 and d[0] == "0" for d in digits) else 0
    start, stop, step = int(first), int(last), abs(int(step_text or 1)) or 1
    if stop < start:
        step = -step
    return [str(n).zfill(width) for n in range(start, stop + (1 if step > 0 else -1), step)]


def is_url(path: str) -> bool:
    """Whether ``path`` names a file fsspec opens (``s3://...``), not a local one.

    >>> is_url("s3://bucket/a.csv"), is_url("file:///tmp/a.csv"), is_url("C:/data")
    (True, False, False)
    """
    return bool(_SCHEME.match(path)) and not path.startswith("file://")


def local_path(path: str) -> str:
    """``path`` without a ``file://`` prefix."""
    return path[len("file://") :] if path.startswith("file://") else path


def find_files(patterns: Sequence[str]) -> list[str]:
    """The files that ``patterns`` name, sorted and without repeats.

    A pattern (after brace expansion) that is a glob and matches no file raises
    ``FileNotFoundError`` naming it, so a typo never becomes an empty epoch; so does
    a plain local path that is not a file. A plain URL is kept without asking the
    server: a missing remote file shows when it is opened.
    """
    found: set[str] = set()
    for pattern in patterns:
        for name in expand_braces(pattern):
            if is_url(name):
                magic = _MAGIC - {"?"} if name.startswith(_HTTP) else _MAGIC
                matches = _remote_glob(name) if magic.intersection(name) else [name]
            elif _MAGIC.intersection(name):
                found_here = glob.glob(local_path(name), recursive=True)
                matches = [p for p in found_here if os.path.isfile(p)]
            else:
                path = local_path(name)
                matches = [path] if os.path.exists(path) else []
            if not matches:
                shown = name if name == pattern else f"{name} (from {pattern})"
                raise FileNotFoundError(f"no files match {shown!r}")
            found.update(matches)
    return sorted(found)


def _fsspec(url: str) -> Any:
    """The fsspec module, or an ImportError that says what reading ``url`` needs."""
    try:
        import fsspec  # type: ignore[import-untyped]  # optional: the "remote" extra
    except ImportError:
        raise ImportError(
            f"reading {url!r} needs fsspec (and the package for its protocol, such as "
            "s3fs or aiohttp): pip install 'headrace[remote]'"
        ) from None
    return fsspec


def remote_filesystem(url: str) -> tuple[Any, str]:
    """The fsspec filesystem that holds ``url``, and the path within it."""
    fs, path = _fsspec(url).core.url_to_fs(url)
    return fs, str(path)


def _remote_glob(pattern: str) -> list[str]:
    fs, path = remote_filesystem(pattern)
    # Filesystems list paths without their protocol; give back full URLs.
    found = fs.glob(path, detail=True)
    return [fs.unstrip_protocol(name) for name, info in found.items() if info["type"] == "file"]


def open_binary(path: str) -> io.BufferedIOBase:
    """A binary stream of the file's content, decompressed by extension.

    Closing it closes every layer, down to the file or connection.
    """
    if is_url(path):
        raw: io.BufferedIOBase = _open_remote(path)
    else:
        raw = open(local_path(path), "rb")  # noqa: SIM115
    opener = _OPENERS.get(os.path.splitext(path)[1].lower())
    if opener is None:
        return raw
    try:
        stream = opener(raw)
    except BaseException:
        raw.close()
        raise
    return _Layered(stream, raw)


def _open_remote(url: str) -> io.BufferedIOBase:
    stream = _fsspec(url).open(url, "rb").open()
    # fsspec's files copy out of their block cache on every call, some hundreds of
    # microseconds each: a line at a time, a 6 MB text file took 13 s over HTTP. A C
    # buffer in front asks for a megabyte at a time, as fast as a local file.
    if not hasattr(stream, "readinto"):
        return cast("io.BufferedIOBase", stream)
    return io.BufferedReader(stream, _REMOTE_BUFFER)


class _Layered(io.BufferedIOBase):
    """A decompressing stream that also closes the stream it reads from."""

    def __init__(self, stream: io.BufferedIOBase, raw: io.BufferedIOBase) -> None:
        self._stream = stream
        self._raw = raw

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        return self._stream.read(-1 if size is None else size)

    def read1(self, size: int = -1) -> bytes:
        read1 = getattr(self._stream, "read1", self._stream.read)
        data: bytes = read1(size)
        return data

    def readinto(self, buffer: Any) -> int:
        count: int = self._stream.readinto(buffer)
        return count

    def readline(self, size: int | None = -1) -> bytes:
        return self._stream.readline(-1 if size is None else size)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._stream)

    def tell(self) -> int:
        return self._stream.tell()

    def skip_to(self, offset: int) -> None:
        """Go forward to ``offset`` of the decompressed bytes (decompressing up to
        there). Not ``seek``: a reader that seeks about (pyarrow in a compressed
        Parquet file) would decompress from the start at every backward seek."""
        self._stream.seek(offset)

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            self._raw.close()
            super().close()


@dataclass(slots=True)
class ReadPosition:
    """Where a file reader is: the file (an index into the run's sorted, sharded list),
    how many of its input records (lines, rows, members) are behind the last record
    handed out and, for the line readers, the byte offset after them.

    Plain data: :meth:`as_dict` and :meth:`from_dict` round-trip through JSON. A reader
    started from a position yields what the reader it was taken from would have
    yielded next.
    """

    file: int = 0
    records: int = 0
    path: str = ""
    #: Where the line readers stand in the file's (decompressed) bytes after
    #: ``records`` lines, or -1: a resumed reader seeks there instead of reading
    #: those lines again. Taken from ``stream`` when the position is saved.
    offset: int = -1
    #: The open stream of a line reader (not saved).
    stream: Any = field(default=None, compare=False, repr=False)
    #: Set by a reader that reads a block of records ahead of those it has handed
    #: out: brings ``records`` and ``offset`` up to the last one handed out (not saved).
    sync: Callable[[], None] | None = field(default=None, compare=False, repr=False)
    #: What a reader keeps for the whole run, across its files (not saved).
    memo: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    #: The fingerprint of the local file at ``path`` (see :func:`file_fingerprint`),
    #: worked out when a position is first saved in the file; "" for none.
    fingerprint: str = field(default="", compare=False)

    def as_dict(self) -> dict[str, Any]:
        if self.sync is not None:
            self.sync()
        saved: dict[str, Any] = {"file": self.file, "records": self.records, "path": self.path}
        if self.path and not self.fingerprint:
            self.fingerprint = file_fingerprint(self.path)
        if self.fingerprint:
            saved["fingerprint"] = self.fingerprint
        if self.sync is not None:  # the reader keeps the offset itself
            if self.offset >= 0:
                saved["offset"] = self.offset
        elif self.stream is not None:
            with contextlib.suppress(OSError, ValueError, AttributeError):  # cannot tell
                saved["offset"] = int(self.stream.tell())
        return saved

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReadPosition:
        offset = int(data.get("offset", -1))
        position = cls(int(data["file"]), int(data["records"]), str(data.get("path", "")), offset)
        position.fingerprint = str(data.get("fingerprint", ""))
        return position


#: Bytes at the head of a file that its fingerprint hashes.
_HEAD_BYTES = 16 << 10


def past_end(where: str, after: str, has: str, container: str = "file") -> ValueError:
    """The error for a saved position past the end of what it points into:
    ``past_end("x.tar", "member 40", "the shard has 4", "shard")``."""
    return ValueError(
        f"{where}: the saved position is after {after}, but {has}; the state is from "
        f"other data, or the {container} changed since it was saved"
    )


def file_fingerprint(path: str) -> str:
    """``"SIZE:DIGEST"`` of a local file: its size and a hash of its first 16 KiB
    (compressed bytes as stored); "" for a URL or a file that cannot be read.

    A saved read position keeps it, so a resumed reader tells a file rewritten under
    the same name (or copied from other data) from the file it was reading. A copy of
    the same file, whatever its modification time, has the same fingerprint.
    """
    if is_url(path):
        return ""
    try:
        with open(local_path(path), "rb") as file:
            size = os.fstat(file.fileno()).st_size
            head = file.read(_HEAD_BYTES)
    except OSError:
        return ""
    return f"{size}:{hashlib.blake2b(head, digest_size=8).hexdigest()}"


def open_reader(
    reader: Callable[[StageContext, ReadPosition | None], tuple[Iterator[Any], ReadPosition]],
    ctx: StageContext,
) -> Iterator[Any]:
    """A reader's run, from the position in the state it resumes from, if any, and
    keeping its live position as the stage's state."""
    saved = None
    if ctx.resume is not None:
        try:
            saved = ReadPosition.from_dict(ctx.resume["read"])
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(
                f"{ctx.label}: its saved read position is damaged ({error!r})"
            ) from None
        if saved.file < 0 or saved.records < 0:
            raise ValueError(f"{ctx.label}: its saved read position is negative: {saved}")
    iterator, position = reader(ctx, saved)
    ctx.track_state(lambda _: {"read": position.as_dict()})
    return iterator


def check_position(label: str, position: ReadPosition, paths: Sequence[str]) -> None:
    """Refuse a saved position that does not point into ``paths`` as they are now:
    a file index out of range, another file at that index, or a file whose
    fingerprint changed since the position was saved."""
    count = len(paths)
    if position.file > count or (position.file == count and position.records):
        raise ValueError(
            f"{label}: the saved position is in file {position.file} (records "
            f"{position.records}), but this run reads {count} file(s); the state is from "
            "other data, or files were removed since it was saved"
        )
    if position.file == count or not position.path:
        return
    path = paths[position.file]
    if path != position.path:
        raise ValueError(
            f"{label}: the saved position is in {position.path!r}, but file "
            f"{position.file} of this run is {path!r}; the files changed since the "
            "position was saved"
        )
    if position.fingerprint and position.fingerprint != (now := file_fingerprint(path)):
        raise ValueError(
            f"{label}: the saved position is in {path!r}, which has changed since it was "
            f"saved (size and head {position.fingerprint!r}, now {now!r}); a position "
            "in a changed file would resume at an arbitrary record, so start the epoch "
            "afresh (iter(epoch=n))"
        )


class FileSource(Stage):
    """Base of the sources that read records from a list of files.

    A subclass implements :meth:`read_file`; this class finds the files, shards them,
    keeps the read position and applies the error policy to files that fail.
    """

    __slots__ = ("_limit", "_num_shards", "_patterns", "_policy", "_shard_index")
    is_source = True
    #: The public function's name, for ``repr``.
    kind: ClassVar[str] = "files"
    #: The default ``max_record_bytes`` of a reader that takes one.
    record_limit: ClassVar[int] = LINE_LIMIT

    def __init__(
        self,
        paths: PathsArg,
        *,
        max_record_bytes: int | None = None,
        on_error: object = "raise",
        num_shards: int = 1,
        shard_index: int = 0,
    ) -> None:
        limit = self.record_limit if max_record_bytes is None else max_record_bytes
        self._limit = check_limit(limit)
        self._patterns = normalise_paths(paths, "path")
        self._policy = ErrorPolicy(on_error)
        self._num_shards = check_int("num_shards", num_shards, minimum=1)
        self._shard_index = check_int("shard_index", shard_index, minimum=0)
        if self._shard_index >= self._num_shards:
            raise ValueError(
                f"shard_index must be below num_shards ({self._num_shards}), "
                f"got {self._shard_index}"
            )

    def options(self) -> str:
        """Extra ``repr`` text for the subclass's own arguments, such as ``, batch_size=2``."""
        return ""

    @property
    def name(self) -> str:
        patterns = self._patterns
        shown = repr(patterns[0]) if len(patterns) == 1 else f"{len(patterns)} paths"
        extra = self.options()
        if self._limit != self.record_limit:
            extra += f", max_record_bytes={self._limit}"
        if self._policy.mode != "raise":
            extra += f", on_error={self._policy!r}"
        if self._num_shards > 1:
            extra += f", num_shards={self._num_shards}, shard_index={self._shard_index}"
        return f"{self.kind}({shown}{extra})"

    def sharded(self, num_shards: int, shard_index: int) -> Self:
        """This source reading only its share of the files: every ``num_shards``-th,
        from ``shard_index``. Applied to a source already sharded, it splits that shard.
        """
        count = check_int("num_shards", num_shards, minimum=1)
        index = check_int("shard_index", shard_index, minimum=0)
        if index >= count:
            raise ValueError(f"shard_index must be below num_shards ({count}), got {index}")
        twin = copy.copy(self)
        twin._shard_index = self._shard_index + index * self._num_shards
        twin._num_shards = self._num_shards * count
        return twin

    shards_itself = True

    def shard_itself(self, num_shards: int, index: int) -> Stage | None:
        twin = self.sharded(num_shards, index)
        try:
            twin.paths()
        except ValueError:  # fewer files than shares: share the elements instead
            return None
        return twin

    def paths(self) -> list[str]:
        """This shard's files for a run starting now."""
        every = find_files(self._patterns)
        if self._num_shards > len(every):
            raise ValueError(
                f"{self.kind} has {len(every)} file(s) to share among {self._num_shards} "
                "shards; every shard needs at least one file (split the data into more "
                "files, or shard the elements after the source)"
            )
        return every[self._shard_index :: self._num_shards]

    def open(self, upstream: Iterator[Any], ctx: StageContext) -> Iterator[Any]:
        return open_reader(self.reader, ctx)

    def reader(
        self, ctx: StageContext, position: ReadPosition | None = None
    ) -> tuple[Iterator[Any], ReadPosition]:
        """A run of this source and its live position; from ``position`` if given."""
        start = ReadPosition() if position is None else copy.copy(position)
        paths = self.paths()
        check_position(ctx.label, start, paths)
        tally = self._policy.tally(ctx)
        return self._run(paths, tally, start), start

    def _run(self, paths: list[str], tally: Tally, position: ReadPosition) -> Iterator[Any]:
        # One generator over a C chain of the readers' pieces: a reader that hands
        # out lists of records costs no Python frame per record.
        current: list[Iterable[Any]] = []  # the piece being handed out
        pieces = self._pieces(paths, tally, position, current)
        try:
            yield from itertools.chain.from_iterable(pieces)
        except (MemoryError, RecursionError) as error:
            # Not a bad record the policy can pass over (the process may be short of
            # memory), but never un-named: where the reader was.
            error.add_note(
                f"headrace: {tally.label} was reading {position.path or 'its files'}, "
                f"around record {position.records} of it; max_record_bytes= bounds what "
                "one record may take"
            )
            raise
        finally:
            try:
                pieces.close()  # closes the piece being handed out, then its reader
            finally:
                tally.close()

    def _pieces(
        self,
        paths: list[str],
        tally: Tally,
        position: ReadPosition,
        current: list[Iterable[Any]],
    ) -> Generator[Iterable[Any], None, None]:
        for index in range(position.file, len(paths)):
            if index != position.file:
                position.fingerprint = ""
            position.file, position.path = index, paths[index]
            reader = self.read_pieces(paths[index], tally, position)
            try:
                for piece in reader:
                    current[:] = [piece]
                    yield piece
            finally:
                for piece in current:
                    close_iterator(piece)
                current.clear()
                close_iterator(reader)
            position.records = 0
        position.file, position.path, position.fingerprint = len(paths), "", ""

    def read_pieces(
        self, path: str, tally: Tally, position: ReadPosition
    ) -> Iterator[Iterable[Any]]:
        """The records of one file, as iterables handed out one after the other.

        The default is the one iterable :meth:`read_file` gives. A reader that reads
        records a block at a time yields each block's iterator instead, and keeps
        ``position`` right through ``position.sync``.
        """
        yield self.read_file(path, tally, position)

    def read_file(self, path: str, tally: Tally, position: ReadPosition) -> Iterator[Any]:
        """The records of one file, counting each in ``tally``.

        ``position.records`` says how many of the file's input records (lines, rows,
        members) to pass over first, without counting them again; before yielding, the
        reader sets it to the number of input records consumed so far, so a reader
        started from a copy yields what this one would yield next.
        """
        raise NotImplementedError

    def length(self, upstream: Length) -> Length:
        return None


#: What a damaged or cut-short compressed file raises when read.
DAMAGED = (EOFError, zlib.error, OSError)


@contextlib.contextmanager
def line_file(
    path: str, tally: Tally, position: ReadPosition, limit: int = LINE_LIMIT
) -> Iterator[Any]:
    """The open stream of a file of lines, after the first ``position.records``, for a
    ``with`` block.

    Those lines are not read again when ``position.offset`` says where they end and the
    stream can go there (else they are read past, ``limit`` bytes at most at a time).
    The reader sets ``position.records`` to each line's number as it reads it;
    ``position.stream`` is the open stream meanwhile (its offset is saved with the
    position). A file that cannot be opened gives an empty stream; one that turns out
    damaged or cut short ends the block early. Both are rejected under the policy,
    the second with the line where reading stopped.
    """
    stream = open_or_reject(path, tally)
    if stream is None:
        yield io.BytesIO()
        return
    with stream:
        try:
            start = position.records
            where = f"{tally.label}: {path}"
            if start and not _seek(stream, position.offset, start, where):
                for _ in itertools.islice(bounded_lines(stream, limit), start):
                    pass
            position.stream = stream
            yield stream
        except DAMAGED as error:
            line = position.records
            tally.read += 1
            tally.reject(
                f"{path}:{line + 1}",
                f"the file is damaged or cut short after line {line} ({error})",
            )
        finally:
            position.stream, position.offset, position.sync = None, -1, None


def _seek(stream: io.BufferedIOBase, offset: int, records: int, where: str) -> bool:
    """Move ``stream`` to ``offset``, the end of line ``records``, if it can (a
    compressed stream decompresses up to there, in C); ``False`` when the lines must
    be read again instead. An offset that is not a line end, or is past the end of
    the file, is refused: ``ValueError`` naming ``where``."""
    if offset < 0:
        return False
    if offset == 0:
        raise ValueError(f"{where}: the saved offset is 0, but {records} line(s) are behind it")
    if isinstance(stream, _Layered):
        # Damage met on the way is the file's, as it would be reading the lines.
        stream.skip_to(offset - 1)
    else:
        try:
            if not stream.seekable():
                return False
            stream.seek(offset - 1)  # fails, if at all, before moving
        except (OSError, ValueError):
            return False
    before = stream.read(1)
    # The end of a file whose last line has no newline is a line end too.
    if before != b"\n" and not (before and not stream.read(1)):
        problem = "past the end of the file" if not before else "not at the start of a line"
        raise ValueError(
            f"{where}: the saved offset {offset} is {problem}; the state is from other "
            "data, or the file changed since it was saved"
        )
    return True


def open_or_reject(path: str, tally: Tally) -> io.BufferedIOBase | None:
    """``open_binary(path)``, or ``None`` after rejecting the file under the policy."""
    try:
        return open_binary(path)
    except OSError as error:
        tally.read += 1
        tally.reject(path, f"cannot open the file: {error.strerror or error}")
        return None
