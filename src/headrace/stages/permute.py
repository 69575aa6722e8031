"""Global shuffle: a seeded permutation of a random-access source, with no buffer.

A buffered ``shuffle`` can only mix elements that are near each other in the stream.
When the source can be read at any index (a ``range``, a list, a tuple, a numpy
array), every epoch can instead visit it in the order of a pseudo-random permutation
of ``range(n)``: element ``i`` of the epoch is ``source[perm(i)]``. The permutation
is a keyed bijection computed on the fly, so it holds no table of ``n`` indices, and
the position in the epoch is all a run needs to go on from there.

>>> import headrace as hr
>>> from headrace.stages.permute import global_shuffle
>>> shuffled = global_shuffle(hr.range(10), seed=0)
>>> first, second = list(shuffled), list(shuffled)
>>> sorted(first) == list(range(10)), first != second
(True, True)
>>> list(shuffled.iter(epoch=0)) == first
True

How the permutation is built. For ``n`` up to :data:`EXACT_UP_TO` it is a
Fisher-Yates shuffle of ``range(n)`` (a table of at most that many indices, uniform
over all ``n!`` orders). Above, it is a Feistel network of :data:`ROUNDS` rounds on
the smallest power-of-two domain that holds ``n``, its two halves as equal in bits as
they can be; each round function is a 64-bit integer hash (splitmix64's finalizer) of
the half and the round's key. Indices that land at ``n`` or beyond are mapped again
until they fall below ``n`` (cycle walking), which keeps the map a bijection of
``range(n)``; the domain is less than ``2 * n``, so that takes under two steps on
average. Indices are computed with numpy, in chunks of up to :data:`CHUNK` positions. The
keys, like the buffered shuffle's generator, come from ``(seed, *epoch)`` through
:func:`headrace._seeds.python_rng`: the same order on every machine for a seed, a
new order every epoch, and fresh entropy every run without a seed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Any, Final, TypeVar

import numpy as np

from headrace._checks import check_int, check_seed
from headrace._seeds import python_rng
from headrace.engine.plan import Plan
from headrace.engine.stage import Length, Stage, StageContext

__all__ = ["CHUNK", "EXACT_UP_TO", "ROUNDS", "GlobalShuffle", "IndexPermutation", "global_shuffle"]

P = TypeVar("P", bound=Plan[Any])

#: Sources of at most this many elements get an exact Fisher-Yates permutation: a
#: Feistel network on a domain of a few bits reaches its orders far from uniformly.
EXACT_UP_TO: Final = 1024
#: Feistel rounds. With four, the positions of pairs of elements are measurably far
#: from uniform on domains of 11 to 17 bits; six and eight pass the same checks.
ROUNDS: Final = 8
#: The most positions whose source indices are computed at once (with numpy, whose
#: per-call cost a chunk spreads out). A run starts with chunks of
#: :data:`FIRST_CHUNK`, doubling up to this, so its first elements come at once.
CHUNK: Final = 16384
FIRST_CHUNK: Final = 256
#: The largest source the Feistel network covers (two halves of 32 bits).
MAX_LENGTH: Final = 2**64

#: Below this many indices, plain Python beats numpy's per-call cost.
_FEW: Final = 16
_MASK64: Final = 2**64 - 1
_INT_GOLDEN: Final = 0x9E3779B97F4A7C15
_INT_MIX1: Final = 0xBF58476D1CE4E5B9
_INT_MIX2: Final = 0x94D049BB133111EB
_GOLDEN: Final = np.uint64(_INT_GOLDEN)
_MIX1: Final = np.uint64(_INT_MIX1)
_MIX2: Final = np.uint64(_INT_MIX2)
_S27, _S30, _S31 = np.uint64(27), np.uint64(30), np.uint64(31)


class IndexPermutation:
    """A bijection of ``range(n)`` drawn from ``rng``: position -> source index.

    >>> perm = IndexPermutation(5000, python_rng(1, (0,)))
    >>> indices = perm.at(np.arange(5000))
    >>> sorted(indices.tolist()) == list(range(5000)), perm[17] == int(indices[17])
    (True, True)

    Args:
        n: the number of elements, at most :data:`MAX_LENGTH`.
        rng: draws the permutation (a table for small ``n``, else the round keys).
        exact_up_to: ``n`` up to which the permutation is an exact Fisher-Yates
            table; larger ``n`` use the Feistel network.
    """

    __slots__ = ("_bits", "_int_keys", "_keys", "_n", "_table")

    def __init__(self, n: int, rng: random.Random, *, exact_up_to: int = EXACT_UP_TO) -> None:
        n = check_int("n", n, minimum=0)
        if n > MAX_LENGTH:
            raise ValueError(f"a global shuffle covers at most 2**64 elements, got {n}")
        self._n = n
        self._table: np.ndarray[Any, np.dtype[np.uint64]] | None = None
        self._keys: list[np.uint64] = []
        self._int_keys: list[int] = []
        self._bits = max(1, (n - 1).bit_length())
        if n <= exact_up_to:
            table = list(range(n))
            rng.shuffle(table)
            self._table = np.array(table, dtype=np.uint64)
        else:
            self._int_keys = [rng.getrandbits(64) for _ in range(ROUNDS)]
            self._keys = [np.uint64(key) for key in self._int_keys]

    @property
    def size(self) -> int:
        """``n``: the permutation is of ``range(n)`` (``len()`` stops at ``sys.maxsize``)."""
        return self._n

    def __getitem__(self, position: int) -> int:
        position = check_int("position", position, minimum=0)
        if position >= self._n:
            raise IndexError(f"position {position} is past the {self._n} elements")
        if self._table is not None:
            return int(self._table[position])
        index = self._feistel_int(position)
        while index >= self._n:
            index = self._feistel_int(index)
        return index

    def at(self, positions: np.ndarray[Any, Any]) -> np.ndarray[Any, np.dtype[np.uint64]]:
        """The source indices of ``positions`` (each in ``range(n)``), as ``uint64``."""
        positions = np.asarray(positions, dtype=np.uint64)
        if self._table is not None:
            exact: np.ndarray[Any, np.dtype[np.uint64]] = self._table[positions]
            return exact
        indices = self._feistel(positions)
        if self._n == 1 << self._bits:
            return indices
        n = np.uint64(self._n)
        outside = np.flatnonzero(indices >= n)
        while outside.size > _FEW:
            # Cycle walking: follow the permutation of the domain until it comes back
            # below n. Its cycle through a position below n always does.
            again = self._feistel(indices[outside])
            indices[outside] = again
            outside = outside[again >= n]
        for where in outside.tolist():  # the last few, without numpy's per-call cost
            index = self._feistel_int(int(indices[where]))
            while index >= self._n:
                index = self._feistel_int(index)
            indices[where] = index
        return indices

    def _feistel_int(self, value: int) -> int:
        """:meth:`_feistel` of one value, in plain Python: numpy's per-call cost is
        larger than the whole computation for a single index."""
        left_bits, right_bits = (self._bits + 1) // 2, self._bits // 2
        left, right = value >> right_bits, value & ((1 << right_bits) - 1)
        for key in self._int_keys:
            mixed = (right * _INT_GOLDEN + key) & _MASK64
            mixed ^= mixed >> 30
            mixed = (mixed * _INT_MIX1) & _MASK64
            mixed ^= mixed >> 27
            mixed = (mixed * _INT_MIX2) & _MASK64
            mixed ^= mixed >> 31
            left, right = right, left ^ (mixed & ((1 << left_bits) - 1))
            left_bits, right_bits = right_bits, left_bits
        return (left << right_bits) | right

    def _feistel(self, values: np.ndarray[Any, Any]) -> np.ndarray[Any, np.dtype[np.uint64]]:
        """The Feistel permutation of ``[0, 2**bits)`` applied to ``values``."""
        left_bits, right_bits = (self._bits + 1) // 2, self._bits // 2
        left = values >> np.uint64(right_bits)
        right = values & np.uint64((1 << right_bits) - 1)
        mixed, scratch = np.empty_like(left), np.empty_like(left)
        for key in self._keys:
            # (L, R) -> (R, L ^ F(R)): invertible whatever F is, also with halves of
            # unequal width, which trade places every round. In place, as numpy's
            # per-call cost dominates: unsigned arrays wrap modulo 2**64.
            np.multiply(right, _GOLDEN, out=mixed)
            mixed += key
            np.right_shift(mixed, _S30, out=scratch)
            mixed ^= scratch
            mixed *= _MIX1
            np.right_shift(mixed, _S27, out=scratch)
            mixed ^= scratch
            mixed *= _MIX2
            np.right_shift(mixed, _S31, out=scratch)
            mixed ^= scratch
            mixed &= np.uint64((1 << left_bits) - 1)
            mixed ^= left
            left, right, mixed = right, mixed, left
            left_bits, right_bits = right_bits, left_bits
        left <<= np.uint64(right_bits)
        left |= right
        return left


class GlobalShuffle(Stage):
    """A random-access source read in a new seeded permutation every epoch."""

    __slots__ = ("_data", "_seed", "_source")
    is_source = True

    def __init__(self, source: Stage, *, seed: int | None) -> None:
        problem = source.index_problem()
        if problem is not None:
            raise ValueError(problem)
        self._source = source
        # ``data[i]`` is the source's i-th element. ``None``: a sequence taken anew
        # as each run starts (a list of files).
        self._data = source.by_index() if source.fixed_index else None
        self._seed = check_seed(seed)

    @property
    def name(self) -> str:
        seed = "" if self._seed is None else f", seed={self._seed}"
        return f"global_shuffle({self._source.name}{seed})"

    def permutation(self, ctx: StageContext, size: int | None = None) -> IndexPermutation:
        """The permutation of the epoch ``ctx`` names (position -> source index).

        Without a seed of its own or the pipeline's, every call draws a new one.
        """
        seed = self._seed if self._seed is not None else ctx.seed
        size = self._size() if size is None else size
        return IndexPermutation(size, python_rng(seed, ctx.epoch))

    seekable = True

    def open(self, upstream: Iterator[Any], ctx: StageContext) -> Iterator[Any]:
        return self.open_at(ctx, ctx.start)

    def open_at(self, ctx: StageContext, start: int, step: int = 1) -> Iterator[Any]:
        """The elements at positions ``start``, ``start + step``, ... of the epoch.

        With a seed, ``open_at(ctx, k)`` yields what :meth:`open` yields after its
        first ``k`` elements, without computing or reading those. Without one, every
        opening draws a new order.
        """
        start = check_int("start", start, minimum=0)
        step = check_int("step", step, minimum=1)
        data, size = self._data, None
        if data is None:  # files: the list as it is now, sorted
            data = self._source.by_index()
            size = len(data)
        return _elements(data, self.permutation(ctx, size), start, step)

    def length(self, upstream: Length) -> Length:
        return None if self._data is None else self._size()

    def _size(self) -> int:
        size = self._source.length(None)
        if not isinstance(size, int):  # global_shuffle() admits only sized sources
            raise TypeError(f"{self._source.name} has no length: {size!r}")
        return size

    def unfixed_order(self, *, seeded: bool = False) -> str | None:
        if self._seed is None and not seeded:
            return "a global shuffle without a seed"
        return None

    def index_problem(self) -> str | None:
        return f"{self.name} is already a global shuffle"


def _elements(data: Sequence[Any], perm: IndexPermutation, start: int, step: int) -> Iterator[Any]:
    get = data.__getitem__
    n = perm.size
    low, size = start, FIRST_CHUNK
    while low < n:
        high = min(low + size * step, n)
        positions = np.arange(low, high, step, dtype=np.uint64)
        yield from map(get, perm.at(positions).tolist())
        low, size = high, min(2 * size, CHUNK)


def global_shuffle(pipeline: P, *, seed: int | None = None) -> P:
    """Read a random-access source in a new pseudo-random order every epoch.

    ``pipeline`` must be only a source that can be read at any index:
    ``headrace.range(...)``, ``headrace.from_iterable(x)`` where ``x`` is a
    sequence (list, tuple, range, ...) or a numpy array, or ``headrace.files(...)``
    (the files found when each run starts, sorted, then permuted: a reader such as
    ``map(decode)`` follows). Every element comes exactly
    once per epoch, in the order of a permutation drawn from ``seed`` and the epoch
    (and the repetition, inside ``repeat()``). Unlike ``shuffle(buffer_size)``, which
    only mixes elements that are close in the stream, any element can come at any
    position, and nothing is buffered: memory stays the same whatever the length,
    and the first element comes at once. Add other stages after this one.

    Args:
        pipeline: a pipeline that is just a random-access source.
        seed: makes the order reproducible: epoch ``n`` always gives the same order,
            on any machine, and each epoch its own. ``None`` takes the pipeline's seed
            (``with_seed``) if it has one, else draws fresh entropy every run.

    Raises:
        TypeError: ``pipeline`` is not a pipeline, or ``seed`` is not an int.
        ValueError: ``pipeline`` has stages after its source, its source cannot be
            read by index (a one-shot iterator, a generator, a file reader, a set, a
            mapping), it has more than ``2**64`` elements, or ``seed`` is negative.

    >>> import headrace as hr
    >>> order = global_shuffle(hr.from_iterable("abcdef"), seed=7).map(str.upper)
    >>> sorted(order) == list("ABCDEF")
    True
    """
    if not isinstance(pipeline, Plan):
        raise TypeError(
            f"global_shuffle needs a pipeline, got {type(pipeline).__name__}: {pipeline!r:.200}"
        )
    seed = check_seed(seed)
    source, *rest = pipeline.stages
    if rest:
        raise ValueError(
            f"global_shuffle reads its source by index, so it must come right after it, "
            f"but {pipeline!r} has stage 1 {rest[0].name!r} there; call global_shuffle on "
            f"the source alone and add the other stages after it"
        )
    problem = source.index_problem()
    if problem is not None:
        raise ValueError(problem)
    size = source.length(None) if source.fixed_index else None
    if isinstance(size, int) and size > MAX_LENGTH:
        raise ValueError(
            f"a global shuffle covers at most 2**64 elements, {source.name} has {size}"
        )
    return pipeline.with_stages((GlobalShuffle(source, seed=seed),))  # type: ignore[return-value]
