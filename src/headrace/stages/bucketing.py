"""Batches of sequences of similar length: tf.data's ``bucket_by_sequence_length``.

Each element goes to the bucket of its length (``length_fn(element)``): bucket ``i``
holds lengths from ``boundaries[i - 1]`` up to, not including, ``boundaries[i]`` (the
first from 0, the last with no upper end). A bucket that holds its batch size is
handed out as one batch, padded to its longest element as ``padded_batch`` pads; at
the end of the input the buckets still holding elements are handed out, shortest
lengths first, unless ``drop_remainder``. Little padding is wasted, and every element
is in exactly one batch.

>>> import headrace as hr
>>> words = hr.from_iterable(["a", "to", "cat", "be", "i", "tree", "sun", "on"])
>>> batches = words.map(lambda w: [ord(c) - 96 for c in w]).bucket_by_length(len, [3], [2, 2])
>>> [b.tolist() for b in batches]
[[[1, 0], [20, 15]], [[2, 5], [9, 0]], [[3, 1, 20, 0], [20, 18, 5, 5]], [[15, 14]], [[19, 21, 14]]]
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from headrace._checks import check_bool, check_callable, check_int
from headrace.engine.guard import close_iterator
from headrace.engine.opening import apply
from headrace.engine.stage import Length, Stage, StageContext
from headrace.engine.state import Entry, pack_counts, unpack_counts
from headrace.errors import annotate, describe_callable
from headrace.stages.batching import Padding, collate_padded
from headrace.stages.held import InputNotes

__all__ = ["BucketByLength", "bucket_by_length"]


class BucketByLength(Stage):
    __slots__ = ("_boundaries", "_drop_remainder", "_length_fn", "_padding", "_sizes")
    per_element = True

    def __init__(
        self,
        length_fn: Callable[[Any], int],
        boundaries: Sequence[int],
        batch_sizes: Sequence[int],
        *,
        padding_value: Any = 0,
        drop_remainder: bool = False,
    ) -> None:
        self._length_fn = check_callable("length_fn", length_fn)
        if isinstance(boundaries, str | bytes) or not isinstance(boundaries, Sequence):
            raise TypeError(f"boundaries must be a list of ints, got {boundaries!r}")
        self._boundaries = tuple(check_int("boundaries", b, minimum=1) for b in boundaries)
        if any(a >= b for a, b in zip(self._boundaries, self._boundaries[1:], strict=False)):
            raise ValueError(f"boundaries must increase, got {list(boundaries)}")
        if isinstance(batch_sizes, str | bytes) or not isinstance(batch_sizes, Sequence):
            raise TypeError(f"batch_sizes must be a list of ints, got {batch_sizes!r}")
        self._sizes = tuple(check_int("batch_sizes", n, minimum=1) for n in batch_sizes)
        if len(self._sizes) != len(self._boundaries) + 1:
            raise ValueError(
                f"batch_sizes must give one size per bucket, len(boundaries) + 1 = "
                f"{len(self._boundaries) + 1}, got {len(self._sizes)}"
            )
        self._padding = Padding(None, padding_value)
        self._drop_remainder = check_bool("drop_remainder", drop_remainder)

    @property
    def name(self) -> str:
        extra = ", drop_remainder=True" if self._drop_remainder else ""
        if self._padding.values != 0:
            extra += f", padding_value={self._padding.values!r}"
        return (
            f"bucket_by_length({describe_callable(self._length_fn)}, "
            f"{list(self._boundaries)}, {list(self._sizes)}{extra})"
        )

    @property
    def batching(self) -> str | None:
        return "padded"

    def length(self, upstream: Length) -> Length:
        return None  # how the elements fall into buckets decides it

    def open(self, upstream: Iterator[Any], ctx: StageContext) -> Iterator[Any]:
        return _Bucketing(self, upstream, ctx).run()


class _Bucketing:
    """One run of ``bucket_by_length``, and its state: the elements in the buckets,
    named by their places in the input (a resumed run reads its input again from
    before the oldest of them), and how many input elements were taken."""

    __slots__ = ("buckets", "ctx", "indices", "notes", "pulled", "stage", "started", "upstream")

    def __init__(self, stage: BucketByLength, upstream: Iterator[Any], ctx: StageContext) -> None:
        self.stage, self.upstream, self.ctx = stage, upstream, ctx
        count = len(stage._sizes)
        self.buckets: list[list[Any]] = [[] for _ in range(count)]
        self.indices: list[list[int]] = [[] for _ in range(count)]
        self.pulled = ctx.start
        # With live stages below, the input's state is noted every largest batch size
        # of elements, so that one from before the oldest bucketed element is at hand.
        self.notes = InputNotes(ctx, max(stage._sizes))
        self.started = False
        ctx.track_state(self.entry)

    def _oldest(self) -> int:
        return min((held[0] for held in self.indices if held), default=self.pulled)

    def entry(self, position: int) -> Entry:
        if not self.started:
            return self.ctx.resume or {}
        below, start = self.notes.before(self._oldest())
        if below is None:
            return None
        return {
            "upstream": below,
            "start": start,
            "pulled": self.pulled - start,
            "buckets": [pack_counts([i - start for i in held]) for held in self.indices],
        }

    def _restore(self) -> None:
        ctx, saved = self.ctx, self.ctx.resume or {}
        start = ctx.start
        try:
            pulled = start + int(saved["pulled"])
            held = [[start + i for i in unpack_counts(b)] for b in saved["buckets"]]
            if len(held) != len(self.buckets) or any(i >= pulled for b in held for i in b):
                raise ValueError(f"{len(held)} buckets")
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{ctx.label}: its saved buckets are damaged ({error!r})") from None
        wanted = {index: number for number, indices in enumerate(held) for index in indices}
        if pulled > start:
            for index, item in enumerate(self.upstream, start):
                number = wanted.get(index)
                if number is not None:
                    self.buckets[number].append(item)
                    self.indices[number].append(index)
                if index + 1 >= pulled:
                    break
            else:
                raise ValueError(f"{ctx.label}: its input is shorter than its saved state says")
        self.pulled = pulled

    def run(self) -> Iterator[Any]:
        stage, ctx, upstream = self.stage, self.ctx, self.upstream
        boundaries, sizes, length_fn = stage._boundaries, stage._sizes, stage._length_fn
        buckets, indices = self.buckets, self.indices
        try:
            if ctx.resume:
                self._restore()
            self.started = True
            for item in upstream:
                index = self.pulled
                try:
                    length = length_fn(item)
                    if isinstance(length, bool) or not hasattr(length, "__index__"):
                        raise TypeError(f"length_fn must return an int, got {length!r}")
                    if length < 0:
                        raise ValueError(
                            f"length_fn must return a length of at least 0, got {length}"
                        )
                except Exception as error:
                    annotate(error, ctx.label, index)
                    raise
                number = bisect.bisect_right(boundaries, length)
                buckets[number].append(item)
                indices[number].append(index)
                self.pulled += 1
                self.notes.note(self.pulled, self._oldest)
                if len(buckets[number]) >= sizes[number]:
                    yield self._hand_out(number)
            for number in range(len(buckets)):
                if buckets[number] and not stage._drop_remainder:
                    yield self._hand_out(number)
        finally:
            close_iterator(upstream)

    def _hand_out(self, number: int) -> Any:
        items, first = self.buckets[number], self.indices[number][0]
        self.buckets[number], self.indices[number] = [], []
        try:
            return collate_padded(items, self.stage._padding)
        except Exception as error:
            annotate(
                error,
                self.ctx.label,
                detail=f"while padding a batch of bucket {number} (its first element is "
                f"input element {first}, 0-based)",
            )
            raise


def bucket_by_length(
    iterable: Iterable[Any],
    length_fn: Callable[[Any], int],
    boundaries: Sequence[int],
    batch_sizes: Sequence[int],
    *,
    padding_value: Any = 0,
    drop_remainder: bool = False,
) -> Iterator[Any]:
    """Padded batches of elements of similar length (see the module documentation).

    >>> [b.tolist() for b in bucket_by_length([[1], [1, 2, 3], [4]], len, [2], [2, 2])]
    [[[1], [4]], [[1, 2, 3]]]
    """
    stage = BucketByLength(
        length_fn,
        boundaries,
        batch_sizes,
        padding_value=padding_value,
        drop_remainder=drop_remainder,
    )
    return apply(stage, iterable)
