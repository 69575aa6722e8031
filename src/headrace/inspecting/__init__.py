"""What is in a dataset on disk, and what is wrong with it: the library behind
``headrace inspect PATH`` (whose options and printing are :mod:`headrace.cli.inspect`).

For CSV, JSON Lines, Parquet, WebDataset tar shards and folders holding one subfolder of
images per class: the files, how many records they hold, the columns (keys, fields or
classes) with their types and counts, a few sample records, and the problems found on
the way, named by file and line as the readers name them. The files are read by
headrace's own readers with ``on_error="skip"``, so a damaged file or a malformed
record is counted and reported, never a crash; what the report says is what a
pipeline reading the same files would meet.

:func:`inspect_path` gives the report as plain data (what ``--json`` prints) and
:func:`format_report` the text a person reads.

>>> import pathlib, tempfile
>>> scratch = tempfile.TemporaryDirectory()
>>> path = pathlib.Path(scratch.name) / "rows.jsonl"
>>> _ = path.write_text('{"x": 1}\\n{"x": 2.5, "y": "a"}\\nnot json\\n')
>>> (part,) = inspect_path(str(path), samples=1)["datasets"]
>>> part["kind"], part["records"], part["rejected"], part["samples"]
('jsonl', 2, 1, [{'x': 1}])
>>> [(key["name"], key["count"], key["types"]) for key in part["keys"]]
[('x', 2, {'int': 1, 'float': 1}), ('y', 1, {'str': 1})]
>>> part["problems"][0].endswith("rows.jsonl:3: not valid JSON: Expecting value at column 1")
True
>>> scratch.cleanup()
"""

from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass, field
from typing import Any, Final

from headrace.inspecting.formats import COMPRESSIONS, INSPECTORS, SNIFF, inspect_images
from headrace.inspecting.formats import PROBLEMS as PROBLEMS
from headrace.inspecting.text import format_report
from headrace.sources.files import expand_braces, find_files, is_url, local_path, open_binary

__all__ = ["KINDS", "format_report", "inspect_path"]

#: The formats ``inspect`` reads, as ``--format`` names them.
KINDS: Final = ("csv", "jsonl", "parquet", "tar", "images")
_SUFFIXES: Final = {
    ".csv": "csv",
    ".tsv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".jsonlines": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".tar": "tar",
    ".tgz": "tar",
}
_MAGIC: Final = frozenset("*?[")


# -- finding the files ---------------------------------------------------------------------


def kind_of(name: str) -> str | None:
    """The format a file's name says it holds, or None.

    >>> kind_of("part-0.csv.gz"), kind_of("shard-000.tgz"), kind_of("notes.txt")
    ('csv', 'tar', None)
    """
    stem, suffix = os.path.splitext(os.path.basename(name.rstrip("/")).lower())
    if suffix in COMPRESSIONS:
        stem, suffix = os.path.splitext(stem)
    return _SUFFIXES.get(suffix)


@dataclass
class _Found:
    """The files a PATH names, by format, and what was left out."""

    kind: str | None
    groups: dict[str, list[str]] = field(default_factory=dict)
    images: str | None = None
    problems: list[str] = field(default_factory=list)
    ignored: int = 0

    def add(self, path: str, *, named: bool) -> None:
        kind = self.kind or kind_of(path)
        if kind is None:
            if named:
                self.problems.append(
                    f"{path}: its name says no format inspect reads (--format says which)"
                )
            else:
                self.ignored += 1
            return
        if kind == "jsonl" and self.kind is None and not _json_lines(path):
            self.problems.append(
                f"{path}: its first line is not a whole JSON value, so it is one "
                "JSON document rather than JSON Lines (--format jsonl reads it anyway)"
            )
            return
        self.groups.setdefault(kind, []).append(path)


def _json_lines(path: str) -> bool:
    """Whether a ``.json`` file's first non-blank line is a whole JSON value."""
    try:
        with open_binary(path) as stream:
            for line in iter(lambda: stream.readline(SNIFF), b""):
                if line.strip():
                    try:
                        json.loads(line)
                    except ValueError:
                        return False
                    return True
    except (OSError, EOFError):
        pass  # a file that cannot be read is left to the reader, which says why
    return True


def _find(path: str, kind: str | None) -> _Found:
    found = _Found(kind)
    if kind == "images":
        found.images = path if is_url(path) else local_path(path)
        return found
    if is_url(path):
        for name in find_files([path]):
            found.add(name, named=True)
        return found
    for name in expand_braces(local_path(path)):
        shown = name if name == path else f"{name} (from {path})"
        if _MAGIC.intersection(name):
            matches = sorted(glob.glob(name, recursive=True))
            if not matches:
                raise FileNotFoundError(f"no files match {shown!r}")
        elif os.path.lexists(name):
            matches = [name]
        else:
            raise FileNotFoundError(f"no such file or folder: {shown!r}")
        for match in matches:
            if os.path.isdir(match):
                _scan(match, found)
            else:
                found.add(match, named=True)
    for group in found.groups.values():
        group.sort()
    return found


def _scan(folder: str, found: _Found) -> None:
    """Add the data files under ``folder``, or take it as an image folder."""
    from headrace.sources.images import IMAGE_EXTENSIONS

    files: list[tuple[str, str | None]] = []
    named_like_files: list[str] = []
    images = False

    def unreadable(error: OSError) -> None:
        found.problems.append(f"{error.filename}: cannot list the folder: {error.strerror}")

    for top, subfolders, names in os.walk(folder, onerror=unreadable):
        subfolders[:] = sorted(s for s in subfolders if not s.startswith("."))
        named_like_files.extend(os.path.join(top, s) for s in subfolders if kind_of(s))
        for name in sorted(names):
            if not name.startswith("."):
                files.append((os.path.join(top, name), kind_of(name)))
                images = images or (top != folder and name.lower().endswith(IMAGE_EXTENSIONS))
    wanted = [path for path, kind in files if kind is not None and found.kind in (None, kind)]
    if found.kind is not None and not wanted:  # none named as the format: read them all
        wanted = [path for path, _ in files]
    for path in wanted:
        found.add(path, named=False)
    if wanted or not images:  # the files beside an image folder's class folders are no data
        found.ignored += len(files) - len(wanted)
    for path in named_like_files:
        if not any(name.startswith(path + os.sep) for name in wanted):
            found.problems.append(f"{path}: a folder, not a {kind_of(path)} file")
    if not wanted:
        if images and found.images is None:
            found.images = folder
        elif not images:
            found.problems.append(f"{folder}: no data files in the folder")


# -- the report ----------------------------------------------------------------------------


def inspect_path(
    path: str | os.PathLike[str],
    *,
    kind: str | None = None,
    samples: int = 3,
    limit: int | None = None,
    check: int = 200,
) -> dict[str, Any]:
    """The report on what the files at ``path`` hold, as plain JSON-safe data.

    Args:
        path: a file, a folder, a glob or brace pattern, or an fsspec URL.
        kind: one of :data:`KINDS` to read every file as that format; by default the
            file names say.
        samples: records to keep as samples, per format.
        limit: stop reading each format after this many records (Parquet row counts
            come from the file footers whatever the limit).
        check: images of an image folder to decode, spread evenly over the folder.

    Returns:
        ``{"path", "datasets": [one report per format found], "problems": [files left
        out, and why], "ignored": files of other formats}``. Each dataset report has
        ``kind``, ``files``, ``bytes``, ``records``, ``rejected``, ``problems`` (the
        first :data:`PROBLEMS`), ``stopped_early``, ``samples``, ``per_file`` (each
        file's counts; ``records`` None for a file not read; not for image folders),
        and what the format has: ``columns`` (CSV, Parquet), ``keys`` (JSON Lines),
        ``fields`` (tar), ``classes`` and ``images`` (image folders).

    Raises:
        FileNotFoundError: nothing at ``path``, or no data files in it.
        ValueError: a bad argument.
    """
    path = os.fspath(path)
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS} or None, got {kind!r}")
    for name, value in (("samples", samples), ("check", check)):
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be an int of at least 0, got {value!r}")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be None or an int of at least 1, got {limit!r}")
    found = _find(path, kind)
    datasets = [
        INSPECTORS[name](found.groups[name], samples=samples, limit=limit)
        for name in KINDS
        if name in found.groups
    ]
    if found.images is not None:
        datasets.append(inspect_images(found.images, samples=samples, limit=limit, check=check))
    if not datasets:
        reason = f": {found.problems[0]}" if found.problems else ""
        raise FileNotFoundError(
            f"found no CSV, JSON Lines, Parquet or tar files, nor class folders of images, "
            f"at {path!r}{reason}"
        )
    return {
        "path": path,
        "datasets": datasets,
        "problems": found.problems,
        "ignored": found.ignored,
    }
