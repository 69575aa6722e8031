"""Grouping elements into numpy batches and splitting batches back into elements.

Collation rules (:func:`collate`), applied recursively:

- a ``dict`` (any mapping) becomes a dict of collated values, key by key;
- a ``tuple`` (named tuples too) becomes a tuple of collated fields;
- numbers, numpy scalars, numpy arrays (subclasses such as ``np.memmap`` too) and
  lists of numbers become one stacked array with a leading batch axis (a ``list`` is
  a value, as in tf.data, not a structure); ``datetime64`` and ``timedelta64`` values
  stack the same way, but never together with numbers or with each other; masked
  arrays stack into a masked array that keeps their masks;
- ``str`` and ``bytes`` (and lists of them) become a numpy ``object`` array holding the
  exact values: fixed-width numpy strings would drop trailing NUL characters and size
  every entry by the longest one;
- anything else (``None``, images, custom objects) is kept as a plain list.

>>> import numpy as np
>>> from headrace import stages
>>> batch = next(stages.batch([({"x": [1, 2]}, 0), ({"x": [3, 4]}, 1)], 2))
>>> batch[0]["x"], batch[1]
(array([[1, 2],
       [3, 4]]), array([0, 1]))
"""

from __future__ import annotations

import builtins
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from headrace._checks import check_bool, check_callable, check_int
from headrace.engine.guard import close_iterator
from headrace.engine.opening import apply
from headrace.engine.stage import INFINITE, Length, Stage, StageContext
from headrace.errors import annotate
from headrace.stages.expansion import ExpansionState

__all__ = ["batch", "collate", "padded_batch", "unbatch"]

_NUMBERS = (int, float, bool, complex, np.generic)
NUMERIC_KINDS = "biufc"
# Which dtype kinds stack together: numbers with numbers, datetimes with datetimes,
# timedeltas with timedeltas, and object arrays (text, lists of objects) with each
# other. numpy itself would turn ``[np.timedelta64(1, "s"), 5]`` into timedeltas.
_STACKING: dict[str, str] = {
    **dict.fromkeys(NUMERIC_KINDS, "numbers"),
    "M": "datetime64 values",
    "m": "timedelta64 values",
    "O": "objects",
}


def collate(items: Sequence[Any]) -> Any:
    """Combine a sequence of same-structured elements into one batch.

    >>> collate([(1, "a"), (2, "b")])
    (array([1, 2]), array(['a', 'b'], dtype=object))

    Raises:
        ValueError: elements differ in structure or in array shape.
        TypeError: a numeric field holds a non-numeric value in some element.
    """
    return _collate(items, "", None)


def collate_padded(items: Sequence[Any], padding: Padding) -> Any:
    """``items`` collated as :func:`padded_batch` collates a batch."""
    return _collate(items, "", padding)


def _collate(items: Sequence[Any], path: str, pad: Padding | None) -> Any:
    first = items[0]
    if isinstance(first, (*_NUMBERS, np.ndarray, list)):
        return _stack(items, path, pad)
    if isinstance(first, Mapping):
        keys = list(first)
        if not keys:
            raise ValueError(f"cannot batch{_at(path)}: element 0 is an empty mapping")
        # Key order is not structure: dicts built in different orders still batch, in
        # element 0's key order.
        key_set = set(keys)
        for position, item in builtins.enumerate(items):
            if not isinstance(item, Mapping) or item.keys() != key_set:
                raise ValueError(
                    f"cannot batch{_at(path)}: element {position} is {_shape_of(item)} "
                    f"but element 0 is a mapping with keys {keys}"
                )
        return {
            key: _collate([item[key] for item in items], f"{path}[{key!r}]", _child(pad, key))
            for key in keys
        }
    if isinstance(first, tuple):
        width = len(first)
        if not width:
            # A batch of () would have no batch axis: unbatch could not restore the rows.
            raise ValueError(f"cannot batch{_at(path)}: element 0 is an empty tuple")
        for position, item in builtins.enumerate(items):
            if not isinstance(item, tuple) or len(item) != width:
                raise ValueError(
                    f"cannot batch{_at(path)}: element {position} is {_shape_of(item)} "
                    f"but element 0 is a tuple of length {width}"
                )
        fields = [
            _collate([item[i] for item in items], f"{path}[{i}]", _child(pad, i))
            for i in builtins.range(width)
        ]
        if hasattr(first, "_fields"):  # named tuple: keep its type
            return type(first)(*fields)
        return tuple(fields)
    if isinstance(first, str | bytes):
        kind = type(first)
        for position, item in builtins.enumerate(items):
            if not isinstance(item, kind):
                raise TypeError(
                    f"cannot batch{_at(path)}: element {position} is "
                    f"{type(item).__name__} but element 0 is {kind.__name__}"
                )
        out = np.empty(len(items), dtype=object)
        out[:] = items
        return out
    return list(items)


def _stack(items: Sequence[Any], path: str, pad: Padding | None) -> np.ndarray:
    # np.asarray would drop the masks of masked arrays; they take the slow path.
    masked = isinstance(items[0], np.ndarray) and any(
        isinstance(item, np.ma.MaskedArray) for item in items
    )
    if pad is None and not masked:
        try:
            out = np.asarray(items)
        except ValueError:
            out = None  # ragged: numpy refuses; find the element that differs below
        if out is not None and out.dtype.kind in NUMERIC_KINDS:
            return out
    arrays = [
        _as_array(item, path, position, keep_mask=masked)
        for position, item in builtins.enumerate(items)
    ]
    reference = arrays[0]
    group = _STACKING.get(reference.dtype.kind)
    if group is None:
        raise TypeError(
            f"cannot batch{_at(path)}: element 0 is {type(items[0]).__name__} "
            f"{_short(items[0])}, whose numpy dtype {reference.dtype} does not stack "
            "(numbers, datetime64, timedelta64 and text do); pass collate=None to "
            "batch into plain lists"
        )
    for position, array in builtins.enumerate(arrays):
        if _STACKING.get(array.dtype.kind) != group:
            raise TypeError(
                f"cannot batch{_at(path)}: element {position} is "
                f"{type(items[position]).__name__} {_short(items[position])}, "
                f"which does not batch with element 0 ({type(items[0]).__name__}); "
                f"{group} do not batch with other kinds"
            )
        if pad is None and array.shape != reference.shape:
            raise ValueError(
                f"cannot batch{_at(path)}: element {position} has shape {array.shape} "
                f"but element 0 has shape {reference.shape}; use padded_batch for "
                "variable-size arrays"
            )
    if pad is None:
        return np.ma.stack(arrays) if masked else np.stack(arrays)
    return pad.stack(arrays, path)


def _as_array(item: Any, path: str, position: int, *, keep_mask: bool = False) -> np.ndarray:
    """``item`` as an array; text becomes an object array of the exact strings."""
    array = np.asanyarray(item) if keep_mask else np.asarray(item)
    if array.dtype.kind not in "SU":
        return array
    exact = np.asarray(item, dtype=object)
    leaves = exact.ravel().tolist()
    kind = type(leaves[0]) if leaves else str
    if not all(type(leaf) is kind for leaf in leaves):
        raise TypeError(
            f"cannot batch{_at(path)}: element {position} mixes text with other values "
            f"({_short(item)})"
        )
    return exact


class Padding:
    """Target shapes and fill values for ``padded_batch``, possibly per field."""

    __slots__ = ("shapes", "values")

    def __init__(self, shapes: Any, values: Any) -> None:
        self.shapes = shapes
        self.values = values

    def stack(self, arrays: list[np.ndarray], path: str) -> np.ndarray:
        ndim = arrays[0].ndim
        for position, array in builtins.enumerate(arrays):
            if array.ndim != ndim:
                raise ValueError(
                    f"cannot pad{_at(path)}: element {position} has {array.ndim} "
                    f"dimensions but element 0 has {ndim}"
                )
        longest = [builtins.max(a.shape[d] for a in arrays) for d in builtins.range(ndim)]
        target = longest
        if self.shapes is not None:
            wanted = tuple(self.shapes)
            if len(wanted) != ndim:
                raise ValueError(
                    f"cannot pad{_at(path)}: padded_shapes {wanted} has {len(wanted)} "
                    f"dimensions but the elements have {ndim}"
                )
            target = [
                longest[d] if size is None else size for d, size in builtins.enumerate(wanted)
            ]
            for d, size in builtins.enumerate(target):
                if size < longest[d]:
                    raise ValueError(
                        f"cannot pad{_at(path)}: an element has size {longest[d]} in "
                        f"dimension {d}, larger than padded_shapes allows ({size})"
                    )
        dtype = np.result_type(*arrays)
        out = np.full((len(arrays), *target), self.values, dtype=dtype)
        for row, array in builtins.enumerate(arrays):
            out[(row, *(slice(0, n) for n in array.shape))] = array  # type: ignore[index]
        return out


def _child(pad: Padding | None, key: Any) -> Padding | None:
    if pad is None:
        return None
    shapes = (
        pad.shapes[key]
        if isinstance(pad.shapes, Mapping | tuple) and not _is_shape(pad.shapes)
        else pad.shapes
    )
    values = pad.values[key] if isinstance(pad.values, Mapping | tuple) else pad.values
    return Padding(shapes, values)


def _is_shape(value: Any) -> bool:
    return isinstance(value, tuple) and all(v is None or isinstance(v, int) for v in value)


def _at(path: str) -> str:
    return f" at {path}" if path else ""


def _shape_of(item: Any) -> str:
    if isinstance(item, tuple):
        return f"a tuple of length {len(item)}"
    if isinstance(item, Mapping):
        return f"a mapping with keys {list(item)}"
    return f"a {type(item).__name__}"


def _short(item: Any) -> str:
    text = repr(item)
    return text if len(text) <= 40 else text[:37] + "..."


class Batch(Stage):
    __slots__ = ("_collate", "_drop_remainder", "_pad", "_size")
    per_element = True

    def __init__(
        self,
        size: int,
        *,
        drop_remainder: bool = False,
        collate: Callable[[list[Any]], Any] | None = collate,
        pad: Padding | None = None,
    ) -> None:
        self._size = check_int("size", size, minimum=1)
        self._drop_remainder = check_bool("drop_remainder", drop_remainder)
        self._collate = None if collate is None else check_callable("collate", collate)
        self._pad = pad

    @property
    def name(self) -> str:
        kind = "padded_batch" if self._pad is not None else "batch"
        extra = ", drop_remainder=True" if self._drop_remainder else ""
        return f"{kind}({self._size}{extra})"

    def open(self, upstream: Iterator[Any], ctx: StageContext) -> Iterator[Any]:
        if self._pad is not None:
            pad = self._pad
            return _batch(
                upstream,
                self._size,
                self._drop_remainder,
                lambda items: _collate(items, "", pad),
                ctx.label,
            )
        return _batch(upstream, self._size, self._drop_remainder, self._collate, ctx.label)

    def resume_upstream(self, position: int) -> int | None:
        # Every batch before the last is full, so a count of batches is one of inputs.
        return position * self._size

    @property
    def batching(self) -> str | None:
        if self._pad is not None:
            return "padded"
        return "fixed" if self._drop_remainder else "batch"

    def length(self, upstream: Length) -> Length:
        if upstream is None or upstream == INFINITE:
            return upstream
        whole, rest = divmod(int(upstream), self._size)
        return whole + (1 if rest and not self._drop_remainder else 0)


def _batch(
    upstream: Iterator[Any],
    size: int,
    drop_remainder: bool,
    combine: Callable[[list[Any]], Any] | None,
    label: str,
) -> Iterator[Any]:
    try:
        islice = itertools.islice
        for number in itertools.count():
            items = list(islice(upstream, size))
            if not items or (drop_remainder and len(items) < size):
                return
            if combine is None:
                yield items
                continue
            try:
                out = combine(items)
            except Exception as error:
                first = number * size
                annotate(
                    error,
                    label,
                    detail=f"while collating batch {number} (its input elements {first} to "
                    f"{first + len(items) - 1}, 0-based)",
                )
                raise
            yield out
    finally:
        close_iterator(upstream)


def batch(
    iterable: Iterable[Any],
    size: int,
    *,
    drop_remainder: bool = False,
    collate: Callable[[list[Any]], Any] | None = collate,
) -> Iterator[Any]:
    """Group ``size`` consecutive elements into one batch.

    Args:
        size: elements per batch (at least 1).
        drop_remainder: drop a final batch smaller than ``size`` instead of yielding it.
        collate: turns a list of elements into a batch (default :func:`collate`);
            ``None`` yields plain lists.

    >>> [b.tolist() for b in batch(range(7), 3)]
    [[0, 1, 2], [3, 4, 5], [6]]
    >>> list(batch(range(7), 3, drop_remainder=True, collate=None))
    [[0, 1, 2], [3, 4, 5]]
    """
    stage = Batch(size, drop_remainder=drop_remainder, collate=collate)
    return apply(stage, iterable)


def padded_batch(
    iterable: Iterable[Any],
    size: int,
    *,
    padded_shapes: Any = None,
    padding_value: Any = 0,
    drop_remainder: bool = False,
) -> Iterator[Any]:
    """Like :func:`batch`, padding variable-size arrays to a common shape.

    Each array field is padded at the end of every dimension to the largest size in
    the batch, or to ``padded_shapes`` (a shape with ``None`` for "largest", or a
    dict/tuple of shapes matching the element's structure). ``padding_value`` may be
    given per field the same way.

    >>> padded_batch([[1], [2, 3], [4, 5, 6]], 3, padding_value=-1).__next__()
    array([[ 1, -1, -1],
           [ 2,  3, -1],
           [ 4,  5,  6]])
    """
    stage = padded_batch_stage(size, padded_shapes, padding_value, drop_remainder)
    return apply(stage, iterable)


def padded_batch_stage(
    size: int, padded_shapes: Any, padding_value: Any, drop_remainder: bool
) -> Batch:
    """The stage behind :func:`padded_batch` (validates the padding arguments)."""
    if padded_shapes is not None and not isinstance(padded_shapes, Mapping | tuple | list):
        raise TypeError(
            "padded_shapes must be a shape tuple or a dict/tuple of shapes, got "
            f"{type(padded_shapes).__name__}"
        )
    if isinstance(padded_shapes, list):
        padded_shapes = tuple(padded_shapes)
    return Batch(size, drop_remainder=drop_remainder, pad=Padding(padded_shapes, padding_value))


class Unbatch(Stage):
    __slots__ = ()
    per_element = True

    @property
    def name(self) -> str:
        return "unbatch()"

    @property
    def batching(self) -> str | None:
        return "unbatch"

    def open(self, upstream: Iterator[Any], ctx: StageContext) -> Iterator[Any]:
        # Resuming splits the batch being handed out again and passes over what of it
        # was handed out; the input's state is noted once per batch.
        state = ExpansionState.opened(ctx)
        ctx.track_state(lambda position: state.entry(ctx))
        return _unbatch(upstream, ctx, state)


def _unbatch(upstream: Iterator[Any], ctx: StageContext, state: ExpansionState) -> Iterator[Any]:
    label = ctx.label
    try:
        for index, group in builtins.enumerate(upstream, ctx.start):
            try:
                items = _split(group, "")
            except Exception as error:
                annotate(error, label, index)
                raise
            for item in itertools.islice(items, state.handed_out, None):
                state.handed_out += 1
                yield item
            state.next_element(ctx, index + 1)
    finally:
        close_iterator(upstream)


def _split(group: Any, path: str) -> list[Any]:
    if isinstance(group, np.ndarray):
        if group.ndim == 0:
            raise ValueError(f"cannot unbatch{_at(path)}: a 0-dimensional array has no rows")
        return list(group)
    if isinstance(group, Mapping):
        columns = {key: _split(value, f"{path}[{key!r}]") for key, value in group.items()}
        _same_length(columns, path)
        keys = list(columns)
        return [dict(zip(keys, row, strict=True)) for row in zip(*columns.values(), strict=True)]
    if isinstance(group, tuple):
        fields = [_split(value, f"{path}[{i}]") for i, value in builtins.enumerate(group)]
        _same_length(dict(builtins.enumerate(fields)), path)
        rows = zip(*fields, strict=True)
        if hasattr(group, "_fields"):
            return [type(group)(*row) for row in rows]
        return [tuple(row) for row in rows]
    if isinstance(group, list):
        return list(group)
    raise TypeError(
        f"cannot unbatch{_at(path)}: a {type(group).__name__} is not a batch "
        "(expected an array, list, tuple or dict of those)"
    )


def _same_length(columns: Mapping[Any, list[Any]], path: str) -> None:
    lengths = {key: len(column) for key, column in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"cannot unbatch{_at(path)}: fields have different lengths {lengths}")


def unbatch(iterable: Iterable[Any]) -> Iterator[Any]:
    """Split every batch back into its elements (the inverse of :func:`batch`).

    >>> [(int(x), str(y)) for x, y in unbatch([(np.array([1, 2]), np.array(["a", "b"]))])]
    [(1, 'a'), (2, 'b')]
    """
    return apply(Unbatch(), iterable)
