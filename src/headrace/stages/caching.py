"""Caching a pipeline's elements after the first complete run.

>>> import headrace as hr
>>> calls = []
>>> cached = hr.range(3).tap(calls.append).cache()
>>> list(cached), list(cached), calls
([0, 1, 2], [0, 1, 2], [0, 1, 2])
"""

from __future__ import annotations

import itertools
import os
import pickle
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from headrace.stages._base import RUN_LOCK, Length, OpenUpstream, Stage, StageContext
from headrace.stages._guard import close_iterator

__all__ = ["Cache"]


class Cache(Stage):
    """Keeps the elements of the first complete run, in memory or in a file.

    A run that stops early (``break``, ``take`` downstream, an error) caches nothing,
    so the cache never holds a partial epoch. Later runs replay the cache and do not
    open the upstream stages at all. Upstream randomness is frozen with the cache:
    put ``shuffle`` after ``cache`` to reshuffle every epoch. A pickled copy starts
    with an empty memory cache of its own; a file cache is shared through its path.
    """

    __slots__ = ("_memory", "_path")

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        if path is not None and not isinstance(path, str | os.PathLike):
            raise TypeError(f"path must be a str, a path or None, got {type(path).__name__}")
        self._path = None if path is None else Path(path)
        self._memory: list[Any] | None = None

    @property
    def name(self) -> str:
        return "cache()" if self._path is None else f"cache({str(self._path)!r})"

    lazy_upstream = True

    def open_lazy(self, upstream: OpenUpstream, ctx: StageContext) -> Iterator[Any]:
        if self._path is not None:
            if self._path.exists():
                return _replay_file(self._path)
            return _fill_file(upstream(ctx.epoch), self._path)
        if self._memory is not None:
            return iter(self._memory)
        return self._fill_memory(upstream(ctx.epoch))

    def _fill_memory(self, upstream: Iterator[Any]) -> Iterator[Any]:
        items: list[Any] = []
        append = items.append
        try:
            for item in upstream:
                append(item)
                yield item
        finally:
            close_iterator(upstream)
        with RUN_LOCK:
            if self._memory is None:
                self._memory = items

    def __getstate__(self) -> dict[str, Any]:
        # A copy (sent to a worker process, say) fills its own memory cache rather than
        # carrying every cached element through the pipe; a file cache is shared.
        return {"_path": self._path, "_memory": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._path = state["_path"]
        self._memory = state["_memory"]

    def length(self, upstream: Length) -> Length:
        if self._memory is not None:
            return len(self._memory)
        return upstream


def _replay_file(path: Path) -> Iterator[Any]:
    with path.open("rb") as stream:
        while True:
            try:
                yield pickle.load(stream)
            except EOFError:
                return


# Numbers the file-filling runs of this process (next() on a count is atomic in CPython).
_RUNS = itertools.count()


def _fill_file(upstream: Iterator[Any], path: Path) -> Iterator[Any]:
    # Write beside the target and rename at the end, so an interrupted run leaves no
    # file that a later run would mistake for a complete cache. The name is unique per
    # run: two runs filling the same cache at once (zip or interleave of one cached
    # pipeline, threads) must not write into, or delete, each other's file.
    run = next(_RUNS)
    partial = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.{run}.partial")
    path.parent.mkdir(parents=True, exist_ok=True)
    complete = False
    try:
        with partial.open("wb") as stream:
            for item in upstream:
                # One pickle per element: a shared Pickler's memo would keep every
                # element alive for the whole epoch.
                pickle.dump(item, stream, protocol=pickle.HIGHEST_PROTOCOL)
                yield item
        os.replace(partial, path)
        complete = True
    finally:
        close_iterator(upstream)
        if not complete:
            partial.unlink(missing_ok=True)
