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
import sys
from collections.abc import Iterator
from typing import Any

from headrace.policy import Tally
from headrace.sources.files import (
    FileSource,
    Overlong,
    ReadPosition,
    bounded_lines,
    line_file,
    overlong_reason,
)

__all__ = ["ReadJsonl"]


class ReadJsonl(FileSource):
    """JSON Lines files: each non-blank line is one JSON value."""

    __slots__ = ()
    kind = "read_jsonl"

    def read_file(self, path: str, tally: Tally, position: ReadPosition) -> Iterator[Any]:
        limit = self._limit
        with line_file(path, tally, position, limit) as stream:
            for number, raw in enumerate(bounded_lines(stream, limit), position.records + 1):
                position.records = number
                if isinstance(raw, Overlong):
                    tally.read += 1
                    tally.reject(f"{path}:{number}", overlong_reason("the line", raw.size, limit))
                    continue
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
                except RecursionError:  # the decoder's depth is Python's recursion limit
                    limit = sys.getrecursionlimit()
                    reason = f"a JSON value nested deeper than the decoder goes ({limit} levels)"
                    tally.reject(f"{path}:{number}", reason, raw[:200])
                    continue
                yield value
