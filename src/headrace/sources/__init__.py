"""Functions that start a pipeline.

The readers of particular formats live in modules of their own (``csv``, ``parquet``,
``tar``, ``sql``, ``images``) and are re-exported here.

>>> import headrace as hr
>>> list(hr.range(2, 8, 3)), len(hr.range(10)), list(hr.from_iterable({"a": 1}))
([2, 5], 10, ['a'])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from headrace.pipeline import Pipeline, as_pipeline
from headrace.policy import OnError
from headrace.sources._files import PathsArg
from headrace.sources.basic import FromGenerator, FromIterable, Range
from headrace.sources.csv import read_csv
from headrace.sources.filesystem import Files, TextLines
from headrace.sources.images import image_folder
from headrace.sources.jsonl import ReadJsonl
from headrace.sources.parquet import read_parquet
from headrace.sources.sql import read_sql
from headrace.sources.tar import read_tar_shards
from headrace.stages.combine import Concat, Zip

__all__ = [
    "concat",
    "files",
    "from_generator",
    "from_iterable",
    "image_folder",
    "range",
    "read_csv",
    "read_jsonl",
    "read_parquet",
    "read_sql",
    "read_tar_shards",
    "text_lines",
    "zip",
]

T = TypeVar("T")


def from_iterable(iterable: Iterable[T]) -> Pipeline[T]:
    """A pipeline over the elements of ``iterable``.

    A list, tuple, range or other re-iterable container gives the same elements every
    run. A one-shot iterator (a generator object, a file) feeds only the first run;
    a second run raises ``RuntimeError`` rather than silently yielding nothing. Use
    :func:`from_generator` to make a generator re-runnable.

    >>> import headrace as hr
    >>> list(hr.from_iterable([3, 1, 2]).map(abs))
    [3, 1, 2]
    """
    return Pipeline((FromIterable(iterable),))


def from_generator(fn: Callable[..., Iterable[T]], *args: Any, **kwargs: Any) -> Pipeline[T]:
    """A pipeline over ``fn(*args, **kwargs)``, called anew for every run.

    >>> import headrace as hr, itertools
    >>> def fib():
    ...     a, b = 0, 1
    ...     while True:
    ...         yield a
    ...         a, b = b, a + b
    >>> list(hr.from_generator(fib).take(10))
    [0, 1, 1, 2, 3, 5, 8, 13, 21, 34]
    """
    return Pipeline((FromGenerator(fn, args, kwargs),))


def range(start: int, stop: int | None = None, step: int = 1) -> Pipeline[int]:
    """The integers of ``builtins.range(start, stop, step)``; the length is known.

    >>> import headrace as hr
    >>> list(hr.range(3)), list(hr.range(1, 10, 4))
    ([0, 1, 2], [1, 5, 9])
    """
    return Pipeline((Range(start, stop, step),))


def files(pattern: PathsArg, *, shuffle: bool = False, seed: int | None = None) -> Pipeline[str]:
    """Paths of the files matching ``pattern`` (a glob, a path, or a list of them).

    Like tf.data's ``list_files``: ``**`` matches any number of folders; paths come
    sorted, or shuffled anew every epoch with ``shuffle=True`` (reproducibly with a
    ``seed``). Duplicate paths are removed: a path matched more than once (by two
    patterns, or listed twice) is yielded once; paths are compared as spelt, so
    ``a.txt`` and ``./a.txt`` count as two. Patterns are expanded when a run starts,
    so each epoch sees the files present then; for the same reason the length is not
    known beforehand, and ``len()`` raises ``TypeError`` rather than searching the
    filesystem. A pattern that matches nothing raises ``FileNotFoundError``.

    >>> import headrace as hr, pathlib, tempfile
    >>> scratch = tempfile.TemporaryDirectory()
    >>> folder = pathlib.Path(scratch.name)
    >>> _ = (folder / "a.txt").write_text("a")
    >>> [pathlib.Path(p).name for p in hr.files([str(folder / "*.txt"), folder / "a.txt"])]
    ['a.txt']
    >>> scratch.cleanup()

    Args:
        pattern: glob pattern, path, or a list of them.
        shuffle: shuffle the list every epoch (a bool).
        seed: makes the shuffled order reproducible; only with ``shuffle=True``.

    Raises:
        TypeError: ``pattern`` is not a path or a list of paths, or ``shuffle`` is
            not a bool.
        ValueError: ``pattern`` is empty, or ``seed`` is negative or given without
            ``shuffle=True``.
    """
    return Pipeline((Files(pattern, shuffle=shuffle, seed=seed),))


def text_lines(
    path: PathsArg,
    *,
    encoding: str = "utf-8",
    errors: str = "strict",
    keep_ends: bool = False,
    on_error: OnError = "raise",
    num_shards: int = 1,
    shard_index: int = 0,
) -> Pipeline[str]:
    """Lines of one or more text files, streamed without loading whole files.

    Files named ``*.gz``, ``*.bz2`` and ``*.xz`` are decompressed on the fly. Several
    files (a glob, a brace pattern such as ``logs-{01..31}.txt``, or a list) are read
    one after another in sorted order. fsspec URLs (``s3://``, ``http://``, ...) work
    wherever a path does.

    Args:
        path: file path, glob or brace pattern, URL, or a list of them.
        encoding: an ASCII-compatible encoding (utf-8, latin-1, cp1252, ...).
        errors: ``"strict"`` (default) treats a line that does not decode as a bad
            record, handled by ``on_error``; ``"replace"`` keeps it with U+FFFD in
            place of the bad bytes and logs a warning per file with the count.
        keep_ends: keep the ``\\n`` / ``\\r\\n`` at the end of each line.
        on_error: what to do with an undecodable line, a file that cannot be opened,
            or a compressed file that is damaged or cut short: ``"raise"`` (default;
            :class:`headrace.DecodeError` or :class:`headrace.ParseError` naming
            ``file:line``), ``"skip"``, or a quarantine file path (see
            :mod:`headrace.policy`).
        num_shards, shard_index: read only every ``num_shards``-th file of the sorted
            list, starting at ``shard_index`` (one share of the files per rank or
            worker).
    """
    return Pipeline(
        (
            TextLines(
                path,
                encoding=encoding,
                errors=errors,
                keep_ends=keep_ends,
                on_error=on_error,
                num_shards=num_shards,
                shard_index=shard_index,
            ),
        )
    )


def read_jsonl(
    path: PathsArg, *, on_error: OnError = "raise", num_shards: int = 1, shard_index: int = 0
) -> Pipeline[Any]:
    """The JSON values of JSON Lines files, one per non-blank line, streamed.

    Files named ``*.gz``, ``*.bz2`` and ``*.xz`` are decompressed on the fly; several
    files (a glob, a brace pattern or a list) are read in sorted order; fsspec URLs
    work wherever a path does.

    Args:
        path: file path, glob or brace pattern, URL, or a list of them.
        on_error: what to do with a line that is not valid UTF-8 or JSON, a file that
            cannot be opened, or a compressed file that is damaged or cut short:
            ``"raise"`` (default) raises :class:`headrace.ParseError` naming
            ``file:line`` and the reason; ``"skip"`` drops it, counts it and logs a
            summary; a file path also appends each as a JSON line to that file.
        num_shards, shard_index: read only every ``num_shards``-th file of the sorted
            list, starting at ``shard_index``.
    """
    return Pipeline(
        (ReadJsonl(path, on_error=on_error, num_shards=num_shards, shard_index=shard_index),)
    )


def zip(*pipelines: Iterable[Any], strict: bool = False) -> Pipeline[tuple[Any, ...]]:
    """Tuples of the elements of several pipelines (or iterables), in step.

    >>> import headrace as hr
    >>> list(hr.zip(hr.range(3), "abc"))
    [(0, 'a'), (1, 'b'), (2, 'c')]
    """
    return Pipeline((Zip([as_pipeline(p) for p in pipelines], strict=strict),))


def concat(*pipelines: Iterable[Any]) -> Pipeline[Any]:
    """The elements of each pipeline (or iterable) in turn.

    >>> import headrace as hr
    >>> list(hr.concat(hr.range(2), [9]))
    [0, 1, 9]
    """
    return Pipeline((Concat([as_pipeline(p) for p in pipelines]),))
