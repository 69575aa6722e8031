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
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from headrace.engine.guard import close_iterator
from headrace.engine.stage import RUN_LOCK, Length, OpenUpstream, Stage, StageContext
from headrace.engine.state import Entry, passing_over
from headrace.errors import HeadraceError

__all__ = ["Cache", "CacheFileError"]


class CacheFileError(HeadraceError, ValueError):
    """A cache file is incomplete or damaged; the message names the file.

    Raised before the replay yields anything when the file does not end with the
    end-of-cache record (it was cut short), and while replaying when the elements do
    not match the count that record holds. Deleting the file fills the cache anew.
    """


class Cache(Stage):
    """Keeps the elements of the first complete run, in memory or in a file.

    A run that stops early (``break``, ``take`` downstream, an error) caches nothing,
    so the cache never holds a partial epoch. Later runs replay the cache and do not
    open the upstream stages at all. Upstream randomness is frozen with the cache:
    put ``shuffle`` after ``cache`` to reshuffle every epoch. A pickled copy starts
    with an empty memory cache of its own; a file cache is shared through its path.
    A file cache ends with a record of its element count: replaying a file that was
    cut short raises :class:`CacheFileError` naming it, never a shorter epoch.
    """

    __slots__ = ("_filled_in", "_memory", "_path")

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        if path is not None and not isinstance(path, str | os.PathLike):
            raise TypeError(f"path must be a str, a path or None, got {type(path).__name__}")
        self._path = None if path is None else Path(path)
        self._memory: list[Any] | None = None
        #: The epoch path of the run that filled the memory cache.
        self._filled_in: tuple[int, ...] = ()

    per_element = True

    def in_share(self) -> Stage:
        if self._path is not None:
            raise ValueError(
                f"every share would write its part to the one file of {self.name!r}; use "
                "a memory cache (each share keeps its own part), or cache the whole "
                "pipeline where it is not shared"
            )
        return Cache()

    @property
    def name(self) -> str:
        return "cache()" if self._path is None else f"cache({str(self._path)!r})"

    lazy_upstream = True

    def open_lazy(self, upstream: OpenUpstream, ctx: StageContext) -> Iterator[Any]:
        # Resuming: a run that was filling goes on from the saved state of the stages
        # before (whether or not another run has filled the cache since), but caches
        # nothing (it lacks the epoch's start): the next complete run fills the cache.
        # A replay goes on at its element.
        mode = None if ctx.resume is None else ctx.resume.get("mode")
        if mode not in (None, "fill", "replay"):
            raise ValueError(f"{ctx.label}: its saved mode {mode!r} is not 'fill' or 'replay'")
        at = ctx.saved_count("at")
        if mode != "fill":
            if self._path is not None and self._path.exists():
                ctx.track_state(_replaying)
                replay = _replay_file(self._path)
                return passing_over(replay, at) if at else replay
            if self._path is None and self._memory is not None:
                filled = list(self._filled_in)
                ctx.track_state(lambda position: {**_replaying(position), "epoch": filled})
                return passing_over(iter(self._memory), at) if at else iter(self._memory)
        if mode == "replay":
            # A memory cache replayed in a process where it is empty (or a file cache
            # whose file is gone): the upstream again, in the epoch that filled it.
            assert ctx.resume is not None
            epoch = ctx.resume.get("epoch", list(ctx.epoch))
            if not (isinstance(epoch, list) and all(isinstance(e, int) for e in epoch)):
                raise ValueError(f"{ctx.label}: its saved epoch {epoch!r} is not a list of ints")
            chain = upstream(tuple(epoch), None)
            ctx.track_state(lambda position: {**_replaying(position), "epoch": epoch})
            return passing_over(chain.closing(), at)
        saved = ctx.resume.get("inner") if ctx.resume is not None else None
        chain = upstream(ctx.epoch, saved)

        def filling(position: int) -> Entry:
            inner = chain.entries(position)
            return None if inner is None else {"mode": "fill", "inner": inner}

        ctx.track_state(filling)
        if mode == "fill":
            return chain.closing()
        if self._path is not None:
            return _fill_file(chain.closing(), self._path)
        return self._fill_memory(chain.closing(), ctx.epoch)

    def _fill_memory(self, upstream: Iterator[Any], epoch: tuple[int, ...]) -> Iterator[Any]:
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
                self._filled_in = epoch

    def __getstate__(self) -> dict[str, Any]:
        # A copy (sent to a worker process, say) fills its own memory cache rather than
        # carrying every cached element through the pipe; a file cache is shared.
        return {"_path": self._path, "_memory": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._path = state["_path"]
        self._memory = state["_memory"]
        self._filled_in = ()

    def length(self, upstream: Length) -> Length:
        if self._memory is not None:
            return len(self._memory)
        return upstream


def _replaying(position: int) -> dict[str, Any]:
    return {"mode": "replay", "at": position}


# A cache file is one pickle per element, then this fixed-size trailer: the magic
# bytes and the element count. It is written last, just before the file is renamed
# into place, so a file cut short anywhere (a full disk, a copy that stopped, a crash
# before the data reached the disk) lacks it, and replay refuses the file up front
# instead of silently yielding a short epoch.
_MAGIC = b"\x00headrace-cache\x01"
_TRAILER = struct.Struct(f"<{len(_MAGIC)}sQ")


def _damaged(path: Path, problem: str) -> CacheFileError:
    return CacheFileError(
        f"cache file {str(path)!r} {problem}; delete it to fill the cache again from "
        "the upstream stages"
    )


def _replay_file(path: Path) -> Iterator[Any]:
    with path.open("rb") as stream:
        end = stream.seek(0, os.SEEK_END) - _TRAILER.size
        if end >= 0:
            stream.seek(end)
            magic, count = _TRAILER.unpack(stream.read(_TRAILER.size))
        if end < 0 or magic != _MAGIC:
            raise _damaged(
                path,
                "does not end with headrace's end-of-cache record: it was cut short (a "
                "crash, a full disk, an incomplete copy) or was not written by this "
                "version of headrace",
            )
        stream.seek(0)
        load = pickle.load
        for position in range(count):
            try:
                item = load(stream)
            except (EOFError, pickle.UnpicklingError) as error:
                raise _damaged(
                    path, f"is damaged: element {position} of {count} cannot be read ({error})"
                ) from error
            if stream.tell() > end:
                raise _damaged(path, f"is damaged: it holds fewer than the {count} elements")
            yield item
        if stream.tell() != end:
            raise _damaged(path, f"is damaged: it holds more than the {count} elements")


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
            count = 0
            for item in upstream:
                # One pickle per element: a shared Pickler's memo would keep every
                # element alive for the whole epoch.
                pickle.dump(item, stream, protocol=pickle.HIGHEST_PROTOCOL)
                count += 1
                yield item
            stream.write(_TRAILER.pack(_MAGIC, count))
            # On disk before the rename, or a crash could leave a renamed, empty file.
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(partial, path)
        complete = True
    finally:
        close_iterator(upstream)
        if not complete:
            partial.unlink(missing_ok=True)
