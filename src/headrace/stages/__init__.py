"""Every stage as a plain function from an iterable to an iterator.

These are the functions behind :class:`headrace.Pipeline`'s methods, usable on any
iterable and inside ``pipeline.pipe(...)``:

>>> import headrace as hr
>>> from headrace import stages
>>> [b.tolist() for b in stages.batch(stages.map(range(5), lambda x: x * 2), 2)]
[[0, 2], [4, 6], [8]]
>>> [b.tolist() for b in hr.range(5).pipe(stages.map, lambda x: x * 2).pipe(stages.batch, 2)]
[[0, 2], [4, 6], [8]]
"""

from headrace.stages.basic import (
    drop_while,
    enumerate,
    filter,
    flat_map,
    map,
    pipe,
    scan,
    skip,
    starmap,
    take,
    take_while,
    tap,
)
from headrace.stages.batching import batch, collate, padded_batch, unbatch
from headrace.stages.bucketing import bucket_by_length
from headrace.stages.combine import concat, interleave, repeat, sample_from, zip
from headrace.stages.coroutines import coroutine
from headrace.stages.parsing import parse
from headrace.stages.shuffling import shuffle
from headrace.stages.windows import window

__all__ = [
    "batch",
    "bucket_by_length",
    "collate",
    "concat",
    "coroutine",
    "drop_while",
    "enumerate",
    "filter",
    "flat_map",
    "interleave",
    "map",
    "padded_batch",
    "parse",
    "pipe",
    "repeat",
    "sample_from",
    "scan",
    "shuffle",
    "skip",
    "starmap",
    "take",
    "take_while",
    "tap",
    "unbatch",
    "window",
    "zip",
]
