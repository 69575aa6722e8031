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
from collections.abc import Iterator, Sequence
from typing import Any

from headrace._checks import check_bool, check_shuffle
from headrace._seeds import python_rng
from headrace.engine.stage import Length, Stage, StageContext
from headrace.errors import DecodeError
from headrace.policy import Tally
from headrace.sources.files import (
    FileSource,
    PathsArg,
    ReadPosition,
    find_files,
    line_file,
    normalise_paths,
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
        on_error: object = "raise",
        num_shards: int = 1,
        shard_index: int = 0,
    ) -> None:
        super().__init__(paths, on_error=on_error, num_shards=num_shards, shard_index=shard_index)
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

    def options(self) -> str:
        extra = "" if self._encoding == "utf-8" else f", encoding={self._encoding!r}"
        return extra + ("" if self._errors == "strict" else f", errors={self._errors!r}")

    def read_file(self, path: str, tally: Tally, position: ReadPosition) -> Iterator[str]:
        encoding, replace, keep_ends = self._encoding, self._errors == "replace", self._keep_ends
        replaced: list[int] = []
        start = position.records
        with line_file(path, tally, position) as lines:
            try:
                for number, raw in enumerate(lines, start + 1):
                    position.records = number
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
                                f"({error.reason}); pass on_error='skip' to count and drop "
                                "such lines, or errors='replace' to keep them with U+FFFD"
                            )
                            tally.reject(f"{path}:{number}", reason, raw, error=DecodeError)
                            continue
                    yield line
            finally:
                tally.read += position.records - start  # counted once, not per line
        if replaced:
            logger.warning(
                "text_lines replaced undecodable bytes in %d lines of %s that are not valid "
                "%s (first at line %d)",
                len(replaced),
                path,
                encoding,
                replaced[0],
            )
