"""How elements and results cross between processes: pickle, with big buffers in shared memory.

A message is pickled with protocol 5 by cloudpickle (through
:func:`headrace._pickling.dumps`), so that instances of classes defined in a script's
``__main__`` cross too, and come back as the same class, untouched. Every buffer the
pickler offers out of band (the data of contiguous numpy arrays, wherever they sit
in tuples, dicts or objects) of at least ``threshold`` bytes is copied into
a POSIX shared-memory segment; the pipe carries only the pickle stream and the
segment's name.

Each side of a pipe owns an :class:`Arena`: the segments it sends through, kept
mapped and reused. The receiver copies the buffers out of the segment into memory of
its own and hands the segment back (the caller sends a ``FREE`` frame), so a segment
is written again only after it has been read, and the arrays the consumer gets are
ordinary numpy arrays that own their memory. In steady state a message costs two
memory copies and no page allocation; pickling through the pipe costs several copies
and a system call per 64 KiB.

Small payloads, systems without POSIX shared memory, and a full ``/dev/shm`` take
the plain path: everything in the pickle stream. Segment names start with a per-run
prefix, so the owner of a run can remove whatever a killed process left behind.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import mmap
import os
import pickle
import struct
import sys
from collections import OrderedDict
from typing import Any, Final

import numpy as np

from headrace._pickling import dumps

try:
    import _posixshmem
except ImportError:  # pragma: no cover - Windows
    _posixshmem = None

__all__ = ["DEFAULT_THRESHOLD", "SHM_AVAILABLE", "Arena", "remove_segments"]

#: Buffers smaller than this stay in the pickle stream: below it, the extra frame
#: that hands the segment back costs more than the copy it saves.
DEFAULT_THRESHOLD: Final = 64 * 1024

SHM_AVAILABLE: Final = _posixshmem is not None

_PLAIN: Final = b"P"
_SHARED: Final = b"S"
_ALIGN: Final = 64
#: New segments are at least this big, and a power of two, so they are reused well.
_MIN_SEGMENT: Final = 1 << 20
#: Peer segments a receiver keeps mapped (each mapping holds a file descriptor);
#: the least recently used is unmapped.
_ATTACHED: Final = 16
_HEAD: Final = struct.Struct("<I")


class Arena:
    """The shared-memory segments one process sends through, and those it has read from.

    Args:
        prefix: names of the segments this arena makes start with it.
        threshold: buffers from this many bytes up go through shared memory;
            ``None`` sends everything through the pipe.
    """

    def __init__(self, prefix: str, threshold: int | None) -> None:
        self.prefix = prefix
        self.threshold = threshold if SHM_AVAILABLE else None
        self._names = itertools.count()
        #: Own segments: name -> mapping; and the names free for reuse.
        self._own: dict[str, mmap.mmap] = {}
        self._free: list[str] = []
        self._peer: OrderedDict[str, mmap.mmap] = OrderedDict()

    def pack(self, obj: object) -> bytes:
        """The bytes that carry ``obj``."""
        threshold = self.threshold
        if threshold is None:
            return _PLAIN + dumps(obj, protocol=5)
        buffers: list[memoryview] = []

        def in_band(buffer: pickle.PickleBuffer) -> bool:
            try:
                raw = buffer.raw()
            except BufferError:  # not contiguous: pickle copies it into the stream
                return True
            if raw.nbytes < threshold:
                return True
            buffers.append(raw)
            return False

        body = dumps(obj, protocol=5, buffer_callback=in_band)
        # A big pickle stream (a long string, a list of many objects) goes through the
        # segment too: through the pipe it would block the sender until the receiver,
        # perhaps busy with a long call, reads it.
        shared_body = len(body) >= threshold
        if not buffers and not shared_body:
            return _PLAIN + body
        parts: list[memoryview] = [*buffers, memoryview(body)] if shared_body else buffers
        spans: list[tuple[int, int]] = []
        size = 0
        for part in parts:
            spans.append((size, part.nbytes))
            size += -(-part.nbytes // _ALIGN) * _ALIGN
        try:
            name = self._take(size)
        except OSError:
            # /dev/shm is full or unavailable: the pipe still works.
            return _PLAIN + dumps(obj, protocol=5)
        mapped = self._own[name]
        for (offset, length), part in zip(spans, parts, strict=True):
            mapped[offset : offset + length] = part
        meta = pickle.dumps((name, len(mapped), spans, shared_body), protocol=5)
        return b"".join((_SHARED, _HEAD.pack(len(meta)), meta, b"" if shared_body else body))

    def unpack(self, data: bytes) -> tuple[Any, str | None]:
        """The object :meth:`pack` encoded, and the segment to hand back (if any).

        The buffers are copied out of the segment, so the segment can be reused as
        soon as the sender learns it is free.
        """
        kind = data[:1]
        if kind == _PLAIN:
            return pickle.loads(memoryview(data)[1:]), None
        if kind != _SHARED:
            raise ValueError(f"not a headrace message (starts with {kind!r})")
        (meta_length,) = _HEAD.unpack_from(data, 1)
        start = 1 + _HEAD.size
        name, size, spans, shared_body = pickle.loads(data[start : start + meta_length])
        view = memoryview(self._attach(name, size))
        parts = []
        for offset, length in spans:
            copy = np.empty(length, np.uint8)
            copy[:] = np.frombuffer(view[offset : offset + length], np.uint8)
            parts.append(copy)
        view.release()
        body = parts.pop().data if shared_body else memoryview(data)[start + meta_length :]
        return pickle.loads(body, buffers=parts), name

    def free(self, name: str) -> None:
        """The receiver has read segment ``name``: reuse it."""
        if name in self._own:
            self._free.append(name)

    def close(self) -> None:
        """Unmap everything and remove this arena's own segments."""
        for mapped in (*self._own.values(), *self._peer.values()):
            with contextlib.suppress(BufferError):
                mapped.close()
        for name in self._own:
            _unlink(name)
        self._own.clear()
        self._free.clear()
        self._peer.clear()

    def _take(self, size: int) -> str:
        fits = [name for name in self._free if len(self._own[name]) >= size]
        if fits:
            name = min(fits, key=lambda n: len(self._own[n]))
            self._free.remove(name)
            return name
        name = f"{self.prefix}_{next(self._names)}"
        self._own[name] = _create(name, max(_MIN_SEGMENT, 1 << (size - 1).bit_length()))
        return name

    def _attach(self, name: str, size: int) -> mmap.mmap:
        mapped = self._peer.get(name)
        if mapped is not None:
            self._peer.move_to_end(name)
            return mapped
        assert _posixshmem is not None
        fd = _posixshmem.shm_open("/" + name, os.O_RDWR, mode=0o600)
        try:
            mapped = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self._peer[name] = mapped
        if len(self._peer) > _ATTACHED:
            _, oldest = self._peer.popitem(last=False)
            oldest.close()
        return mapped


def _create(name: str, size: int) -> mmap.mmap:
    assert _posixshmem is not None
    fd = _posixshmem.shm_open("/" + name, os.O_CREAT | os.O_EXCL | os.O_RDWR, mode=0o600)
    try:
        # Reserving the pages now turns a full /dev/shm into an OSError here instead
        # of a SIGBUS when a copy touches a page that cannot be backed.
        try:
            os.posix_fallocate(fd, 0, size)
        except (AttributeError, OSError) as error:
            if isinstance(error, OSError) and error.errno not in (errno.EINVAL, errno.EOPNOTSUPP):
                raise
            os.ftruncate(fd, size)
        return mmap.mmap(fd, size)
    except BaseException:
        _unlink(name)
        raise
    finally:
        os.close(fd)


def _unlink(name: str) -> None:
    if _posixshmem is not None:
        with contextlib.suppress(FileNotFoundError):
            _posixshmem.shm_unlink("/" + name)


def remove_segments(prefix: str) -> list[str]:
    """Remove every segment whose name starts with ``prefix``; return their names.

    Only Linux lists segments (under ``/dev/shm``); elsewhere this finds none.
    """
    if not sys.platform.startswith("linux"):
        return []
    try:
        names = [n for n in os.listdir("/dev/shm") if n.startswith(prefix)]
    except OSError:
        return []
    for name in names:
        _unlink(name)
    return names
