"""What the parent and a process-backend worker say to each other, and the calls they run.

Every frame starts with a kind byte. A task carries the element's index and the
packed element; a result or a failure carries the index, the seconds the call took
and the packed value (or the pickled exception with its formatted traceback). The
first frame a worker sends is ``READY`` or, when it cannot load the stage's function,
a failure with index ``-1``. Either side answers a message that came through shared
memory with ``FREE`` and the segment's name, once it has copied the data out.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, Final

import numpy as np

__all__ = [
    "FAILURE",
    "FREE",
    "INDEX",
    "READY",
    "RESULT",
    "TASK",
    "TIMED",
    "Plain",
    "Seeded",
    "element_rng",
]

TASK: Final = b"T"
RESULT: Final = b"R"
FAILURE: Final = b"E"
READY: Final = b"Y"
#: Followed by a segment name: the receiver has copied that segment out; reuse it.
FREE: Final = b"F"
#: After the kind byte of a task: the element index.
INDEX: Final = struct.Struct("<q")
#: After the kind byte of a result or failure: the element index and busy seconds.
TIMED: Final = struct.Struct("<qd")


def element_rng(seed: int, epoch: tuple[int, ...], index: int) -> np.random.Generator:
    """The generator element ``index`` of a run with epoch path ``epoch`` draws from.

    >>> bool(element_rng(1, (0,), 5).integers(100) == element_rng(1, (0,), 5).integers(100))
    True
    """
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, *epoch, index])))


class Plain:
    """``fn(element)``: the call of ``map``."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self.fn = fn

    def __call__(self, index: int, item: Any) -> Any:
        return self.fn(item)


class Seeded:
    """``fn(element, rng)`` with the element's own generator: the call of ``random_map``."""

    __slots__ = ("epoch", "fn", "seed")

    def __init__(self, fn: Callable[[Any, Any], Any], seed: int, epoch: tuple[int, ...]) -> None:
        self.fn, self.seed, self.epoch = fn, seed, epoch

    def __call__(self, index: int, item: Any) -> Any:
        return self.fn(item, element_rng(self.seed, self.epoch, index))
