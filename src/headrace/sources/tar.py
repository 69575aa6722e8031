"""``read_tar_shards``: samples of WebDataset-style tar shards, streamed member by member.

A shard is a tar archive whose members are named ``KEY.EXT``; consecutive members with
the same key form one sample, ``{"__key__": KEY, "__url__": shard, EXT: bytes, ...}``,
as the ``webdataset`` library groups them. The key ends at the first dot of the
member's file name (``images/cat.0001.jpg`` is key ``images/cat``, field
``0001.jpg``); fields are lower-cased; bytes are not decoded.
"""

from __future__ import annotations

import re
import tarfile
from collections.abc import Iterator
from typing import Any, Final, Self

from headrace.policy import Tally
from headrace.sources.files import (
    DAMAGED,
    MEMBER_LIMIT,
    FileSource,
    ReadPosition,
    open_or_reject,
    overlong_reason,
    past_end,
)

__all__ = ["ReadTarShards"]

# webdataset's ``base_plus_ext``: the key runs to the first dot of the last path part.
_KEY_EXT: Final = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")
# webdataset's ``skip_meta``: ``__name__`` members and folders hold no sample fields.
_META: Final = re.compile(r"__[^/]*__($|/)")
_PARTS: Final = re.compile(r"[/\\]")
_SPECIAL: Final = {
    tarfile.SYMTYPE: "a symbolic link",
    tarfile.LNKTYPE: "a hard link",
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
    tarfile.FIFOTYPE: "a FIFO",
}
_BROKEN: Final = (*DAMAGED, tarfile.TarError)
# Left out of typeshed (not in tarfile.__all__), but in tarfile since Python 3.2.
_PROPER_END: Final[type[Exception]] = tarfile.EOFHeaderError  # type: ignore[attr-defined]
_NO_END: Final[type[Exception]] = tarfile.EmptyHeaderError  # type: ignore[attr-defined]


class _Header(tarfile.TarInfo):
    """A member header that leaves on its archive why the list of members ended.

    ``tarfile`` ends the list quietly at an empty, cut-short or corrupt header after the
    first member, so a shard cut between two members would read as a whole one. Only
    an end-of-archive block (``EOFHeaderError``) is a proper end.
    """

    @classmethod
    def fromtarfile(cls, archive: tarfile.TarFile) -> Self:
        try:
            return super().fromtarfile(archive)
        except tarfile.HeaderError as error:
            archive.headrace_end = error  # type: ignore[attr-defined]
            raise


_NO_FIELD: Final = (
    "the member's file name has no extension to name its field (shard members are KEY.EXT)"
)


def _check_end(archive: tarfile.TarFile) -> None:
    """Raise ``ReadError`` unless the members ended at an end-of-archive block."""
    end = getattr(archive, "headrace_end", None)
    if isinstance(end, _PROPER_END):
        return
    if end is None or isinstance(end, _NO_END):
        raise tarfile.ReadError("it ends without the end-of-archive block")
    raise tarfile.ReadError(str(end))


def _refusal(member: tarfile.TarInfo) -> str | None:
    """Why a member is not read as a sample field, or ``None`` for a regular file."""
    name = member.name
    if name.startswith(("/", "\\")):
        return "its path is absolute; a shard holds relative paths only"
    if ".." in _PARTS.split(name):
        return "its path leaves the shard's folder ('..')"
    if member.isreg():
        return None
    kind = _SPECIAL.get(member.type, f"of tar type {member.type!r}")
    target = f" to {member.linkname!r}" if member.issym() or member.islnk() else ""
    return f"the member is {kind}{target}; only regular files are read"


class ReadTarShards(FileSource):
    """WebDataset-style tar shards: one sample per run of members sharing a key.

    Position unit: tar members (headers) of the shard consumed before the next sample's
    first member. A restarted reader passes over that many headers; ``tarfile`` reads
    past their data without keeping it.
    """

    __slots__ = ()
    kind = "read_tar_shards"
    record_limit = MEMBER_LIMIT

    def read_file(
        self, path: str, tally: Tally, position: ReadPosition
    ) -> Iterator[dict[str, Any]]:
        stream = open_or_reject(path, tally)
        if stream is None:
            return
        skip = position.records
        consumed = 0  # member headers read
        current: str | None = None  # the member being read
        complete: str | None = None  # the last member read to its end
        sample: dict[str, Any] | None = None
        with stream:
            try:
                with tarfile.open(fileobj=stream, mode="r|*", tarinfo=_Header) as archive:
                    while (member := archive.next()) is not None:
                        # Streaming: keep no list of every header read.
                        archive.members.clear()  # type: ignore[attr-defined]
                        complete, current = current, member.name
                        consumed += 1
                        if consumed <= skip or member.isdir():
                            continue
                        where = f"{path} member {member.name!r}"
                        refusal = _refusal(member)
                        if refusal is None and member.size > self._limit:
                            refusal = overlong_reason("the member", member.size, self._limit)
                        if refusal is not None:
                            tally.read += 1
                            tally.reject(where, refusal, member.name)
                            continue
                        if _META.match(member.name):
                            continue
                        split = _KEY_EXT.match(member.name)
                        if split is None:
                            tally.read += 1
                            tally.reject(where, _NO_FIELD, member.name)
                            continue
                        key, field = split.group(1), split.group(2).lower()
                        if sample is not None and key != sample["__key__"]:
                            position.records = consumed - 1
                            tally.read += 1
                            yield sample
                            sample = None
                        if sample is None:
                            sample = {"__key__": key, "__url__": path}
                        elif field in sample:
                            tally.read += 1
                            reason = f"sample {key!r} already has a field {field!r}"
                            tally.reject(where, reason, member.name)
                            continue
                        data = archive.extractfile(member)
                        assert data is not None  # a regular file always has data
                        sample[field] = data.read()
                        complete = current
                    _check_end(archive)
            except _BROKEN as error:
                tally.read += 1
                if current is None and isinstance(error, tarfile.ReadError):
                    reason = f"not a tar archive ({error})"
                else:
                    after = "its start" if complete is None else f"member {complete!r}"
                    dropped = "" if sample is None else f"; sample {sample['__key__']!r} dropped"
                    reason = f"the shard is damaged or cut short after {after} ({error}){dropped}"
                tally.reject(path, reason)
                return
        if consumed < skip:
            where = f"{tally.label}: {path}"
            raise past_end(where, f"member {skip}", f"the shard has {consumed}", "shard")
        if sample is not None:
            position.records = consumed
            tally.read += 1
            yield sample
