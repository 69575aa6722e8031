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

import bz2
import codecs
import glob
import gzip
import io
import logging
import lzma
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from headrace._checks import check_bool, check_seed
from headrace._seeds import python_rng
from headrace.errors import DecodeError
from headrace.stages._base import Length, Stage, StageContext

__all__ = ["Files", "TextLines", "expand_paths"]

logger = logging.getLogger("headrace")

PathsArg = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]

# The stream is closed by the ``with`` block of the reader that asked for it.
_OPENERS: dict[str, Callable[[str], io.BufferedIOBase]] = {
    ".gz": lambda path: gzip.open(path, "rb"),  # noqa: SIM115
    ".bz2": lambda path: bz2.open(path, "rb"),  # noqa: SIM115
    ".xz": lambda path: lzma.open(path, "rb"),  # noqa: SIM115
    ".lzma": lambda path: lzma.open(path, "rb"),  # noqa: SIM115
}
_MAGIC = frozenset("*?[")


def _normalise(paths: PathsArg, argument: str) -> tuple[str, ...]:
    if isinstance(paths, str | os.PathLike):
        items = [paths]
    elif isinstance(paths, Sequence):
        items = list(paths)
    else:
        raise TypeError(
            f"{argument} must be a path, a glob pattern or a list of them, "
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


def expand_paths(patterns: Sequence[str]) -> list[str]:
    """Expand glob patterns (``**`` crosses folders) into a sorted list of files.

    Plain paths are kept as given. Raises ``FileNotFoundError`` naming the first
    pattern that matches nothing, so a typo never becomes a silently empty epoch.
    """
    found: set[str] = set()
    for pattern in patterns:
        if _MAGIC.intersection(pattern):
            matches = [p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p)]
        else:
            matches = [pattern] if os.path.isfile(pattern) else []
        if not matches:
            raise FileNotFoundError(f"no files match {pattern!r}")
        found.update(matches)
    return sorted(found)


class Files(Stage):
    """Paths of the files matching patterns, sorted; optionally shuffled per epoch."""

    __slots__ = ("_patterns", "_seed", "_shuffle")
    is_source = True

    def __init__(
        self, patterns: PathsArg, *, shuffle: bool = False, seed: int | None = None
    ) -> None:
        self._patterns = _normalise(patterns, "pattern")
        self._shuffle = check_bool("shuffle", shuffle)
        self._seed = check_seed(seed)
        if self._seed is not None and not self._shuffle:
            raise ValueError(
                f"seed={self._seed} has no effect without shuffle=True; pass shuffle=True "
                "to shuffle the paths reproducibly, or drop the seed"
            )

    @property
    def name(self) -> str:
        shown = self._patterns[0] if len(self._patterns) == 1 else f"{len(self._patterns)} patterns"
        extra = ", shuffle=True" if self._shuffle else ""
        if self._seed is not None:
            extra += f", seed={self._seed}"
        return f"files({shown!r}{extra})"

    def open(self, upstream: Iterator[Any], ctx: StageContext) -> Iterator[Any]:
        paths = expand_paths(self._patterns)
        if self._shuffle:
            python_rng(self._seed, ctx.epoch).shuffle(paths)
        return iter(paths)

    def length(self, upstream: Length) -> Length:
        # Unknown: counting would glob the filesystem on every len() (and list() asks
        # for one), and the files present may change before the run starts anyway.
        return None


_ERROR_POLICIES = ("strict", "replace", "skip")


class TextLines(Stage):
    """Lines of text files, streamed; compressed by extension (.gz, .bz2, .xz)."""

    __slots__ = ("_encoding", "_errors", "_keep_ends", "_patterns")
    is_source = True

    def __init__(
        self,
        paths: PathsArg,
        *,
        encoding: str = "utf-8",
        errors: str = "strict",
        keep_ends: bool = False,
    ) -> None:
        self._patterns = _normalise(paths, "path")
        try:
            codecs.lookup(encoding)
        except (LookupError, TypeError):
            raise ValueError(f"encoding {encoding!r} is not a known text encoding") from None
        if "\n".encode(encoding) != b"\n":
            raise ValueError(
                f"encoding {encoding!r} does not write newline as one byte; text_lines "
                "splits lines on bytes and needs an ASCII-compatible encoding such as utf-8"
            )
        if errors not in _ERROR_POLICIES:
            raise ValueError(f"errors must be one of {_ERROR_POLICIES}, got {errors!r}")
        self._encoding = encoding
        self._errors = errors
        self._keep_ends = check_bool("keep_ends", keep_ends)

    @property
    def name(self) -> str:
        shown = self._patterns[0] if len(self._patterns) == 1 else f"{len(self._patterns)} paths"
        return f"text_lines({shown!r})"

    def open(self, upstream: Iterator[Any], ctx: StageContext) -> Iterator[Any]:
        paths = expand_paths(self._patterns)
        return _lines(paths, self._encoding, self._errors, self._keep_ends)


def _open_binary(path: str) -> io.BufferedIOBase:
    opener = _OPENERS.get(os.path.splitext(path)[1].lower())
    return opener(path) if opener else open(path, "rb")


def _lines(paths: list[str], encoding: str, errors: str, keep_ends: bool) -> Iterator[str]:
    for path in paths:
        bad = 0
        first_bad = 0
        with _open_binary(path) as stream:
            for number, raw in enumerate(stream, 1):
                if not keep_ends and raw.endswith(b"\n"):
                    raw = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
                try:
                    line = raw.decode(encoding)
                except UnicodeDecodeError as error:
                    if errors == "strict":
                        raise DecodeError(
                            f"{path}:{number}: cannot decode byte {error.start} of the line "
                            f"as {encoding} ({error.reason}); pass errors='replace' or "
                            "errors='skip' to text_lines to continue past bad lines"
                        ) from error
                    bad += 1
                    first_bad = first_bad or number
                    if errors == "skip":
                        continue
                    line = raw.decode(encoding, "replace")
                yield line
        if bad:
            action = "skipped" if errors == "skip" else "replaced undecodable bytes in"
            logger.warning(
                "text_lines %s %d lines of %s that are not valid %s (first at line %d)",
                action,
                bad,
                path,
                encoding,
                first_bad,
            )
