"""Where a run stands, stage by stage: saving it and reopening a chain from it.

A run's state is a list with one entry per stage (``None`` or a small JSON-safe dict),
read from the consumer's end towards the source. Two kinds of stage fill it:

* Stages whose input count follows from their output count (``map``: as many;
  ``batch(n)``: ``n`` times as many) need nothing live: the entry is
  ``{"start": inputs}`` and the count goes on down to the stage below.
* Stages that keep something a count cannot tell (a file reader's position, a filter's
  input count, a shuffle buffer) register a *getter* when they open. The getter gives
  the stage's entry; ``"start"`` in it is the stage's input count, which goes on down.
  A stage that holds elements it took earlier (a shuffle buffer, a thread that reads
  ahead) gives the state of the stages below it as they were when it took them, as
  ``"upstream"`` (a list like this one), and the walk stops there.

Reopening hands every stage its entry (``ctx.resume``, and ``ctx.start`` from
``"start"``); a stage whose entry has ``"upstream"`` gets its input opened from that.
Nothing is replayed but what a stage holds in its buffer, so a resumed run starts in a
time that does not grow with how far into the epoch the saved run was.
"""

from __future__ import annotations

import base64
import itertools
import operator
import types
from collections.abc import Callable, Iterator, Sequence
from typing import Any

__all__ = [
    "Entries",
    "Entry",
    "Getter",
    "count_of",
    "counting",
    "decode_plain",
    "encode_plain",
    "pack_counts",
    "passing_over",
    "saved_count",
    "unpack_counts",
]

#: One stage's part of a state: ``None`` when it needs nothing.
Entry = dict[str, Any] | None
#: One entry per stage of a chain, source first.
Entries = list[Entry]
#: A live stage's state, given how many elements it has handed out (its position in
#: the epoch); ``None`` when it cannot tell (the run then replays to resume).
Getter = Callable[[int], Entry]


def count_of(counter: Any) -> int:
    """The next value of an ``itertools.count`` without taking it.

    ``repr``, not ``__reduce__``: the value without the pickling API that Python 3.12
    deprecates for itertools.
    """
    text = repr(counter)
    return int(text[text.index("(") + 1 : -1])


class _Counted(map):  # type: ignore[type-arg]
    """``map`` (iterated in C) that closes the iterator it counts, as stages expect of
    their upstream."""

    __slots__ = ("_source",)
    _source: Iterator[Any]

    def __new__(cls, source: Iterator[Any], counter: itertools.count[int]) -> _Counted:
        self = super().__new__(cls, operator.itemgetter(0), zip(source, counter, strict=False))
        self._source = source
        return self

    def close(self) -> None:
        close = getattr(self._source, "close", None)
        if close is not None:
            close()


def stops_once_closed(iterator: Iterator[Any]) -> bool:
    """Whether ``iterator`` ends (raises ``StopIteration``) once closed: a generator
    does, and so does a count of one; a C iterator (range, a list's) would go on."""
    while type(iterator) is _Counted:
        iterator = iterator._source
    return isinstance(iterator, types.GeneratorType)


def saved_count(entry: Entry, name: str, where: str) -> int:
    """The count ``name`` of a stage's saved ``entry`` (0 when it has none), checked:
    ``ValueError`` naming ``where`` (the stage) when it is not a non-negative int."""
    value = 0 if entry is None else entry.get(name, 0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(
            f"{where}: its saved {name!r} must be a non-negative int, got {value!r:.80}"
        )
    return value


def passing_over(upstream: Iterator[Any], count: int) -> Iterator[Any]:
    """``upstream`` after its first ``count`` elements; closing it closes ``upstream``."""
    try:
        for _ in itertools.islice(upstream, count):
            pass
        yield from upstream
    finally:
        close = getattr(upstream, "close", None)
        if close is not None:
            close()


def counting(upstream: Iterator[Any], first: int) -> tuple[Iterator[Any], itertools.count[int]]:
    """``upstream`` counted in C: ``count_of(counter)`` is ``first`` plus what was taken
    (some tens of nanoseconds an element). Closing the result closes ``upstream``."""
    counter = itertools.count(first)
    return _Counted(upstream, counter), counter


def pack_counts(values: Sequence[int]) -> str | list[int]:
    """Non-negative ints as compact JSON-safe text (base64 of 32-bit words), or the
    list itself when one does not fit in 32 bits. :func:`unpack_counts` reverses it.

    >>> pack_counts([1, 2, 3]), unpack_counts(pack_counts([1, 2, 3]))
    ('AQAAAAIAAAADAAAA', [1, 2, 3])
    """
    import numpy as np

    if values and (min(values) < 0 or max(values) >= 1 << 32):
        return list(values)
    return base64.b64encode(np.asarray(values, dtype="<u4").tobytes()).decode("ascii")


def unpack_counts(data: Any) -> list[int]:
    """The ints :func:`pack_counts` packed; ``ValueError`` when ``data`` is not such."""
    import numpy as np

    if isinstance(data, list):
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in data):
            raise ValueError("not a list of counts")
        return data
    if not isinstance(data, str):
        raise ValueError("not packed counts")
    raw = base64.b64decode(data.encode("ascii"), validate=True)
    if len(raw) % 4:
        raise ValueError("packed counts of a broken length")
    return [int(v) for v in np.frombuffer(raw, dtype="<u4")]


_SCALARS = (str, int, float, bool, type(None))


def encode_plain(value: Any) -> Any:
    """``value`` as JSON-safe data that :func:`decode_plain` turns back into an equal
    value of the same types (tuples stay tuples); ``TypeError`` for anything else.

    >>> decode_plain(encode_plain((1, [2.5, "x"], {"k": None})), "")
    (1, [2.5, 'x'], {'k': None})
    """
    if type(value) in _SCALARS:
        return value
    if type(value) is list:
        return {"list": [encode_plain(v) for v in value]}
    if type(value) is tuple:
        return {"tuple": [encode_plain(v) for v in value]}
    if type(value) is dict and all(type(k) is str for k in value):
        return {"dict": {k: encode_plain(v) for k, v in value.items()}}
    raise TypeError(f"{type(value).__name__} is not plain data")


def decode_plain(data: Any, where: str) -> Any:
    """The value :func:`encode_plain` encoded; ``ValueError`` naming ``where`` if damaged."""
    if type(data) in _SCALARS:
        return data
    if isinstance(data, dict) and len(data) == 1:
        ((kind, inside),) = data.items()
        if kind in ("list", "tuple") and isinstance(inside, list):
            items = [decode_plain(v, where) for v in inside]
            return items if kind == "list" else tuple(items)
        if kind == "dict" and isinstance(inside, dict):
            return {k: decode_plain(v, where) for k, v in inside.items()}
    raise ValueError(f"{where}: its saved value is damaged: {data!r:.80}")
