"""``read_jsonl``: one JSON value per line, streamed from plain or compressed files.

>>> import headrace as hr, pathlib, tempfile
>>> scratch = tempfile.TemporaryDirectory()
>>> path = pathlib.Path(scratch.name) / "rows.jsonl"
>>> _ = path.write_text('{"x": 1}\\n\\n{"x": 2}\\n')
>>> list(hr.read_jsonl(str(path)))
[{'x': 1}, {'x': 2}]
>>> scratch.cleanup()
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from typing import Any

from headrace.policy import ErrorPolicy, Tally
from headrace.sources.filesystem import PathsArg, _normalise, _open_binary, expand_paths
from headrace.stages._base import Length, Stage, StageContext

__all__ = ["ReadJsonl"]

#: What a damaged compressed file raises when read to its end.
_TRUNCATED = (EOFError, zlib.error, OSError)


class ReadJsonl(Stage):
    """JSON Lines files: each non-blank line is one JSON value."""

    __slots__ = ("_patterns", "_policy")
    is_source = True

    def __init__(self, paths: PathsArg, *, on_error: object = "raise") -> None:
        self._patterns = _normalise(paths, "path")
        self._policy = ErrorPolicy(on_error)

    @property
    def name(self) -> str:
        shown = self._patterns[0] if len(self._patterns) == 1 else f"{len(self._patterns)} paths"
        extra = "" if self._policy.mode == "raise" else f", on_error={self._policy!r}"
        return f"read_jsonl({shown!r}{extra})"

    def open(self, upstream: Iterator[Any], ctx: StageContext) -> Iterator[Any]:
        return _records(expand_paths(self._patterns), self._policy.tally(ctx))

    def length(self, upstream: Length) -> Length:
        return None


def _records(paths: list[str], tally: Tally) -> Iterator[Any]:
    try:
        for path in paths:
            yield from _file_records(path, tally)
    finally:
        tally.close()


def _file_records(path: str, tally: Tally) -> Iterator[Any]:
    try:
        stream = _open_binary(path)
    except OSError as error:  # unreadable: a record-level problem only under skip
        tally.read += 1
        tally.reject(path, f"cannot open the file: {error.strerror or error}")
        return
    number = 0
    with stream:
        try:
            for number, raw in enumerate(stream, 1):
                if not raw.strip():
                    continue
                tally.read += 1
                try:
                    value = json.loads(raw)
                except UnicodeDecodeError as error:
                    tally.reject(f"{path}:{number}", f"not valid UTF-8 ({error.reason})", raw)
                    continue
                except json.JSONDecodeError as error:
                    reason = f"not valid JSON: {error.msg} at column {error.colno}"
                    tally.reject(f"{path}:{number}", reason, raw)
                    continue
                yield value
        except _TRUNCATED as error:
            tally.read += 1
            tally.reject(
                f"{path}:{number + 1}",
                f"the file is damaged or cut short after line {number} ({error})",
            )
