"""What the parent and a process-backend worker say to each other, and the calls they run.

Every frame starts with a kind byte. A task carries a run of consecutive elements: the
index of the first and the packed list of them. Its result carries the same index,
the seconds the calls took, the seconds the worker spent on the task outside the
calls (unpacking and packing), and the packed pair ``(values, failures)``: one value
per element, and for each element whose call raised, its offset mapped to the pickled
exception with its formatted traceback.

A worker first reads its setup, the stage's ``worker_init`` (pickled, or empty) and
the run's function, and answers ``READY`` or, when the init or the function fails,
``FAILURE`` with index ``-1``. A worker kept for the next run of its stage gets that
run's function in a ``CALL`` frame and answers the same way. Either side answers a
message that came through shared memory with ``FREE`` and the segment's name, once
it has copied the data out.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any, Final

import numpy as np

from headrace.errors import annotate

__all__ = [
    "CALL",
    "FAILURE",
    "FREE",
    "INDEX",
    "READY",
    "RESULT",
    "TASK",
    "TASK_DONE",
    "TIMED",
    "Joined",
    "Plain",
    "Seeded",
    "call_many",
    "element_rng",
]

TASK: Final = b"T"
#: Followed by a pickled function: a kept worker serves a new run with it.
CALL: Final = b"C"
RESULT: Final = b"R"
FAILURE: Final = b"E"
READY: Final = b"Y"
#: Followed by a segment name: the receiver has copied that segment out; reuse it.
FREE: Final = b"F"
#: After the kind byte of a task: the element index.
INDEX: Final = struct.Struct("<q")
#: After the kind byte of a failure to start: the index (-1) and busy seconds (0).
TIMED: Final = struct.Struct("<qd")
#: After the kind byte of a result: the first element's index, the seconds in calls
#: and the seconds the worker spent on the task outside them.
TASK_DONE: Final = struct.Struct("<qdd")


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


class Joined:
    """The calls of consecutive parallel stages, made one after another on each
    element in the same task: one trip to the workers for all of them.

    Only stages that give one output per input and raise on errors are joined, so an
    element's index is the same in each. An error raised by an earlier stage's call
    is noted here, with that stage's label; the pool notes the last stage's own.
    """

    __slots__ = ("calls", "labels")

    def __init__(self, calls: Sequence[Callable[[int, Any], Any]], labels: Sequence[str]) -> None:
        self.calls = tuple(calls)
        #: The labels of the stages of every call but the last.
        self.labels = tuple(labels)

    def __call__(self, index: int, item: Any) -> Any:
        *earlier, last = self.calls
        for call, label in zip(earlier, self.labels, strict=True):
            try:
                item = call(index, item)
            except Exception as error:
                annotate(error, label, index)
                raise
        return last(index, item)


def call_many(
    call: Callable[[int, Any], Any], first: int, items: Sequence[Any]
) -> tuple[list[Any], dict[int, BaseException] | None]:
    """``call(first + k, items[k])`` for every ``k``: the values (``None`` where a call
    raised) and the exceptions by offset (``None`` when none raised).

    A call that raises does not stop the others: each element's outcome is its own,
    as if it had been a task alone. The loop runs in C (``map`` into ``list.extend``),
    and with a plain ``map`` function calls it directly, so a task of many cheap
    elements costs little more than the calls.

    >>> call_many(Plain(lambda x: 10 // x), 5, [1, 0, 2])
    ([10, None, 5], {1: ZeroDivisionError('integer division or modulo by zero')})
    """
    # A guarded call (on_error="skip") turns a data error into a value; its inner
    # call runs in the loop itself, and the guard only when a call raises.
    rescue: Callable[[int, Any, BaseException], Any] | None = getattr(call, "rescue", None)
    if rescue is not None:
        call = call.call  # type: ignore[attr-defined]
    mapped = (
        map(call.fn, items)
        if type(call) is Plain
        else map(call, range(first, first + len(items)), items)
    )
    values: list[Any] = []
    failed: dict[int, BaseException] | None = None
    while True:
        try:
            # A map object goes on with the next element after a call raised, and
            # extend keeps what it appended before the exception.
            values.extend(mapped)
            if len(values) < len(items):
                # A call raised StopIteration, which map takes for the end of its
                # input: an error of that element, as a generator makes it one.
                raise RuntimeError("the function raised StopIteration")
        except BaseException as error:  # every outcome goes back to the consumer
            offset = len(values)
            if rescue is not None:
                try:
                    rejected = rescue(first + offset, items[offset], error)
                except BaseException as broken:  # showing the element failed
                    rejected, error = None, broken
                if rejected is not None:
                    values.append(rejected)
                    continue
            if failed is None:
                failed = {}
            failed[offset] = error
            values.append(None)
        else:
            return values, failed
