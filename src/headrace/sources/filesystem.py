"""File sources: lists of paths (tf.data's ``list_files``) and lines of text files.

>>> import headrace as hr, pathlib, tempfile
>>> scratch = tempfile.TemporaryDirectory()
>>> folder = pathlib.Path(scratch.name)
>>> _ = (folder / "b.txt").write_text("beta\\n")
>>> _ = (folder / "a.txt").write_text("alpha\\nalpha 2\\n")
>>> [pathlib.Path(p).name for p in hr.files(str(folder / "*.txt"))]
['a.txt', 'b.txt']
>>> list(hr.text_lines(str(folder / "*.txt")))
['alpha', 'alpha 2', 'beta']
>>> scratch.cleanup()
"""

from __future__ import annotations

import codecs
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from headrace._checks import check_bool, check_shuffle
from headrace._seeds import python_rng
from headrace.engine.stage import Length, Stage, StageContext
from headrace.errors import DecodeError
from headrace.policy import Tally
from headrace.sources.files import (
    LINE_LIMIT,
    FileSource,
    Overlong,
    PathsArg,
    ReadPosition,
    find_files,
    line_file,
    normalise_paths,
    overlong_reason,
)

__all__ = ["Files", "TextLines"]

logger = logging.getLogger("headrace")


class Files(Stage):
    """Paths of the files matching patterns, sorted; optionally shuffled per epoch."""

    __slots__ = ("_patterns", "_seed", "_shuffle")
    is_source = True

    def __init__(
        self, patterns: PathsArg, *, shuffle: bool = False, seed: int | None = None
    ) -> None:
        self._patterns = normalise_paths(patterns, "pattern")
        self._shuffle, self._seed = check_shuffle(shuffle, seed, "paths")

    @property
    def patterns(self) -> tuple[str, ...]:
        """The patterns the files are found by."""
        return self._patterns

    @property
    def shuffled(self) -> bool:
        """Whether every run shuffles the list."""
        return self._shuffle

    @property
    def name(self) -> str:
        shown = self._patterns[0] if len(self._patterns) == 1 else f"{len(self._patterns)} patterns"
        extra = ", shuffle=True" if self._shuffle else ""
        if self._seed is not None:
            extra += f", seed={self._seed}"
        return f"files({shown!r}{extra})"

    def open(self, upstream: Iterator[Any], ctx: StageContext) -> Iterator[Any]:
        paths = find_files(self._patterns)
        if self._shuffle:
            seed = self._seed if self._seed is not None else ctx.seed
            python_rng(seed, ctx.epoch).shuffle(paths)
        return iter(paths[ctx.start :])

    seekable = True

    def length(self, upstream: Length) -> Length:
        # Unknown: counting would glob the filesystem on every len() (and list() asks
        # for one), and the files present may change before the run starts anyway.
        return None

    #: Read by index, the files are found anew as each run starts.
    fixed_index = False

    def index_problem(self) -> str | None:
        if self._shuffle:
            return (
                f"global_shuffle of {self.name}: the files are shuffled already; "
                "leave out shuffle=True (global_shuffle permutes them every epoch)"
            )
        return None

    def by_index(self) -> Sequence[Any]:
        """The files as they are now, sorted."""
        return find_files(self._patterns)

    def unfixed_order(self, *, seeded: bool = False) -> str | None:
        if self._shuffle and self._seed is None and not seeded:
            return "shuffle=True without a seed"
        return None


_DECODING = ("strict", "replace")

#: Encodings whose characters other than newline never hold a newline byte.
_NEWLINE_SAFE = frozenset({"utf-8", "ascii"})

#: How many bytes of whole lines text_lines reads and decodes at a time.
BLOCK_BYTES = 64 * 1024


def _split(data: bytes, encoding: str, keep_ends: bool) -> list[str] | None:
    """The lines of ``data`` (whole lines, each but perhaps the last ending in a
    newline) decoded; ``None`` when one does not decode strictly.

    >>> _split(b"a\\r\\nb\\nc", "utf-8", False)
    ['a', 'b', 'c']
    >>> _split(b"a\\n\\xff\\n", "utf-8", False) is None
    True
    """
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        return None
    # In another encoding a newline byte may be part of a character; in UTF-8 and
    # the single-byte ones (the decoded text as long as the bytes) it never is.
    if (
        codecs.lookup(encoding).name not in _NEWLINE_SAFE
        and len(text) != len(data)
        and text.count("\n") != data.count(b"\n")
    ):
        return None
    lines = text.split("\n")
    ends = data.endswith(b"\n")
    if ends:
        lines.pop()  # the empty string after the last newline
    if keep_ends:
        last = None if ends else lines.pop()
        lines = [line + "\n" for line in lines]
        if last is not None:
            lines.append(last)
    elif "\r" in text:
        cut = len(lines) if ends else len(lines) - 1
        lines[:cut] = [line[:-1] if line.endswith("\r") else line for line in lines[:cut]]
    return lines


def _line_blocks(read: Callable[[int], bytes], limit: int) -> Iterator[bytes | Overlong]:
    """Blocks of whole lines read with ``read``; a line of more than ``limit`` bytes
    (newline not counted) comes as :class:`Overlong` in its place, read past without
    being kept. The last block may end without a newline.

    ``read`` is the stream's ``read1``: what one step of the stream gives, so that the
    lines before a damaged part of a compressed file still come out.

    >>> chunks = iter([b"ab", b"c\\nd", b"ddddd", b"d\\ne\\nff", b""])
    >>> list(_line_blocks(lambda size: next(chunks), 4))
    [b'abc\\n', Overlong(size=7, consumed=8), b'e\\n', b'ff']
    """
    pending: list[bytes] = []  # the start of a line whose end is not read yet
    held = 0  # bytes in pending
    chunk = b""
    while True:
        if not chunk:
            chunk = read(BLOCK_BYTES)
            if not chunk:
                break
        cut = chunk.rfind(b"\n") + 1
        if not cut:  # a line longer than this piece
            pending.append(chunk)
            held += len(chunk)
            chunk = b""
            if held > limit:  # read on to its end, keeping nothing
                pending.clear()
                while chunk := read(BLOCK_BYTES):
                    end = chunk.find(b"\n")
                    if end >= 0:
                        yield Overlong(held + end, held + end + 1)
                        chunk = chunk[end + 1 :]
                        break
                    held += len(chunk)
                else:
                    yield Overlong(held, held)
                held = 0
            continue
        if pending:
            end = chunk.index(b"\n")
            if held + end > limit:
                pending.clear()
                yield Overlong(held + end, held + end + 1)
                held, chunk = 0, chunk[end + 1 :]
                continue
        rest = chunk[cut:]
        if cut < len(chunk):
            chunk = chunk[:cut]
        if pending:
            pending.append(chunk)
            chunk = b"".join(pending)
            pending.clear()
        data, chunk, held = chunk, b"", len(rest)
        if rest:
            pending.append(rest)
        if limit < BLOCK_BYTES:  # a line inside the block may be over the limit too
            yield from _within(data, limit)
        else:
            yield data
    if pending:
        yield b"".join(pending)  # the last line, without a newline


def _within(data: bytes, limit: int) -> Iterator[bytes | Overlong]:
    """``data``, a block of whole lines, with each line over ``limit`` bytes as an
    :class:`Overlong` of its own."""
    if max(map(len, data.split(b"\n"))) <= limit:
        yield data
        return
    kept: list[bytes] = []
    for raw in _raw_lines(data):
        size = len(raw) - raw.endswith(b"\n")
        if size <= limit:
            kept.append(raw)
            continue
        if kept:
            yield b"".join(kept)
            kept.clear()
        yield Overlong(size, len(raw))
    if kept:
        yield b"".join(kept)


def _raw_lines(data: bytes) -> list[bytes]:
    """``data`` cut after each newline, kept (``bytes.splitlines`` would also cut at
    a lone CR)."""
    parts = data.split(b"\n")
    last = parts.pop()
    raw = [part + b"\n" for part in parts]
    if last:
        raw.append(last)
    return raw


class TextLines(FileSource):
    """Lines of text files, streamed; compressed by extension (.gz, .bz2, .xz)."""

    __slots__ = ("_encoding", "_errors", "_keep_ends")
    kind = "text_lines"

    def __init__(
        self,
        paths: PathsArg,
        *,
        encoding: str = "utf-8",
        errors: str = "strict",
        keep_ends: bool = False,
        max_record_bytes: int = LINE_LIMIT,
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
        try:
            codecs.lookup(encoding)
        except (LookupError, TypeError):
            raise ValueError(f"encoding {encoding!r} is not a known text encoding") from None
        if "\n".encode(encoding) != b"\n":
            raise ValueError(
                f"encoding {encoding!r} does not write newline as one byte; text_lines "
                "splits lines on bytes and needs an ASCII-compatible encoding such as utf-8"
            )
        if errors == "skip":
            raise ValueError(
                "errors='skip' is spelt on_error='skip' (counted and reported like every "
                "other rejected record); errors= chooses 'strict' or 'replace' decoding"
            )
        if errors not in _DECODING:
            raise ValueError(f"errors must be one of {_DECODING}, got {errors!r}")
        self._encoding = encoding
        self._errors = errors
        self._keep_ends = check_bool("keep_ends", keep_ends)

    def _blocks(
        self,
        stream: Any,
        path: str,
        tally: Tally,
        position: ReadPosition,
        replaced: list[int],
    ) -> Iterator[Iterable[str]]:
        """The lines of ``stream``, read and decoded a block at a time.

        A block of whole lines is read with one call, decoded as one string and split
        in C; the block's lines are handed out by a list iterator, whose remaining
        length tells ``position.sync`` how many have gone. A block in which a line
        does not decode goes line by line (:meth:`_lines`), to reject or replace
        exactly the lines that do not. A line over ``max_record_bytes`` is rejected
        without being held.
        """
        encoding, keep_ends = self._encoding, self._keep_ends
        records = position.records
        try:
            offset = int(stream.tell())
        except (OSError, ValueError, AttributeError):
            offset = -1
        read = getattr(stream, "read1", None) or stream.read
        data = b""
        lines: list[str] = []
        handing: Any = iter(lines)  # a list iterator: it knows how many are left
        # Where the last sync found itself in ``data``: lines handed out, bytes.
        synced = [0, 0]

        def sync() -> None:
            done = len(lines) - handing.__length_hint__()
            position.records = records + done
            if offset < 0:
                return
            if done == len(lines):  # the last line may have no newline
                position.offset = offset + len(data)
                return
            count, at = synced if synced[0] <= done else (0, 0)
            for _ in range(done - count):
                at = data.index(b"\n", at) + 1
            synced[:] = done, at
            position.offset = offset + at

        def kept() -> None:  # the slow path keeps position itself
            pass

        position.sync = sync
        for block in _line_blocks(read, self._limit):
            if isinstance(block, Overlong):
                records += 1
                if offset >= 0:
                    offset += block.consumed
                size, data, lines = block.size, b"", []
                handing = iter(lines)
                reason = overlong_reason("the line", size, self._limit)
                tally.reject(f"{path}:{records}", reason)
                continue
            data = block
            split = _split(data, encoding, keep_ends)
            if split is None:  # a line that does not decode: one at a time
                position.records, position.offset = records, offset
                position.sync = kept
                yield self._lines(data, path, tally, position, replaced)
                records = position.records
            else:
                lines, handing, synced[:] = split, iter(split), (0, 0)
                yield handing
                records += len(lines)
            position.sync = sync
            if offset >= 0:
                offset += len(data)
            lines = []
            handing = iter(lines)

    def _lines(
        self,
        data: bytes,
        path: str,
        tally: Tally,
        position: ReadPosition,
        replaced: list[int],
    ) -> Iterator[str]:
        """The lines of ``data`` decoded one by one: those that do not decode are
        replaced (``errors="replace"``) or rejected under the policy."""
        encoding, replace, keep_ends = self._encoding, self._errors == "replace", self._keep_ends
        for raw in _raw_lines(data):
            position.records += 1
            if position.offset >= 0:
                position.offset += len(raw)
            number = position.records
            if not keep_ends and raw.endswith(b"\n"):
                raw = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
            try:
                line = raw.decode(encoding)
            except UnicodeDecodeError as error:
                if replace:
                    line = raw.decode(encoding, "replace")
                    replaced.append(number)
                else:
                    reason = (
                        f"cannot decode byte {error.start} of the line as {encoding} "
                        f"({error.reason})"
                    )
                    if tally.policy.mode == "raise":
                        reason += (
                            "; pass on_error='skip' to count and drop such lines, or "
                            "errors='replace' to keep them with U+FFFD"
                        )
                    tally.reject(f"{path}:{number}", reason, raw, error=DecodeError)
                    continue
            yield line

    def options(self) -> str:
        extra = "" if self._encoding == "utf-8" else f", encoding={self._encoding!r}"
        return extra + ("" if self._errors == "strict" else f", errors={self._errors!r}")

    def read_pieces(
        self, path: str, tally: Tally, position: ReadPosition
    ) -> Iterator[Iterable[str]]:
        replaced: list[int] = []
        start = position.records
        with line_file(path, tally, position, self._limit) as stream:
            try:
                yield from self._blocks(stream, path, tally, position, replaced)
            finally:
                if position.sync is not None:
                    position.sync()
                    position.sync = None
                tally.read += position.records - start  # counted once, not per line
        if replaced:
            logger.warning(
                "text_lines replaced undecodable bytes in %d lines of %s that are not valid "
                "%s (first at line %d)",
                len(replaced),
                path,
                self._encoding,
                replaced[0],
            )
