"""Run consecutive ``map``, ``starmap``, ``filter`` and ``tap`` stages as one generator.

A chain of separate generators costs one generator resume per stage per element; a
generator per chain with the stage functions called inline costs only the calls
themselves (CPython 3.11 inlines Python-to-Python calls). That difference is most of
headrace's per-element overhead budget, so stateless runs of stages are fused into a
function generated for the exact sequence of stage kinds. The generated code still
knows which stage raised and on which of its input elements, so error notes stay exact.
"""

from __future__ import annotations

import functools
import linecache
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from headrace.engine.guard import close_iterator
from headrace.errors import annotate

__all__ = ["fuse", "fused_counts", "inputs_taken"]

_KINDS = ("map", "starmap", "filter", "tap")


@functools.lru_cache(maxsize=256)
def _compile(kinds: tuple[str, ...]) -> Callable[..., Iterator[Any]]:
    """Generate the fused generator function for one sequence of stage kinds."""
    lines = []
    # n0: the input element last taken (numbered from ``first``, the input count a
    # resumed run starts at); d<k>: how many elements filter k dropped. Counting only
    # drops costs nothing for the elements that pass, and tells every count: stage k
    # received n0 + 1 - first minus the drops of the filters before it.
    drops: list[str] = []
    body: list[str] = []
    for k, kind in enumerate(kinds):
        if kind not in _KINDS:
            raise ValueError(f"cannot fuse a {kind!r} stage")
        current = " - ".join(["n0", *drops])  # the element's number in stage k's input
        call = {
            "map": f"x = f{k}(x)",
            "starmap": f"x = f{k}(*x)",
            # The truth test too: an array's may raise, and is the filter's error.
            "filter": f"drop = not f{k}(x)",
            "tap": f"f{k}(x)",
        }[kind]
        body += [
            "        try:",
            f"            {call}",
            "        except Exception as error:",
            f"            _annotate(error, labels[{k}], {current})",
            "            n0 -= 1  # not taken: a resumed run tries it again",
            "            raise",
        ]
        if kind == "filter":
            drops.append(f"d{k}")
            body += ["        if drop:", f"            d{k} += 1", "            continue"]
    params = ", ".join(f"f{k}" for k in range(len(kinds)))
    lines.append(f"def fused(upstream, {params}, labels, first, ends):")
    lines.append("    n0 = first - 1")
    lines += [f"    {d} = 0" for d in drops]
    lines.append("    try:")
    lines.append("        for n0, x in _enumerate(upstream, first):")
    lines += ["    " + line for line in body]
    lines.append("            yield x")
    lines.append("    finally:")
    lines.append(f"        ends.append((n0 + 1, [{', '.join(drops)}]))")
    lines.append("        _close(upstream)")
    source = "\n".join(lines) + "\n"
    filename = f"<headrace fused {'-'.join(kinds)}>"
    # Registered so that tracebacks through fused stages show the generated lines.
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace: dict[str, Any] = {
        "_annotate": annotate,
        "_enumerate": enumerate,
        "_close": close_iterator,
    }
    exec(compile(source, filename, "exec"), namespace)
    fused: Callable[..., Iterator[Any]] = namespace["fused"]
    return fused


def fuse(
    upstream: Iterable[Any],
    kinds: Sequence[str],
    fns: Sequence[Callable[[Any], Any]],
    labels: Sequence[str],
    first: int = 0,
    ends: list[tuple[int, list[int]]] | None = None,
) -> Iterator[Any]:
    """Apply map/filter/tap functions in order, in one generator.

    ``first``: the number of the first input element (the input count so far), for
    error notes and :func:`inputs_taken`; ``ends``: a list that gets the final input
    count when the generator ends.

    >>> list(fuse(range(6), ["map", "filter"], [lambda x: x * 10, lambda x: x % 20],
    ...           ["stage 1 'map'", "stage 2 'filter'"]))
    [10, 30, 50]
    """
    function = _compile(tuple(kinds))
    made: Iterator[Any] = function(
        upstream, *fns, tuple(labels), first, [] if ends is None else ends
    )
    return made


def inputs_taken(fused: Any, ends: list[tuple[int, list[int]]]) -> int:
    """How many input elements a generator :func:`fuse` made (with ``ends``) has taken,
    ``first`` included. Read from its frame, so counting costs nothing per element;
    call it while the generator is suspended or done.

    >>> ends = []
    >>> fused = fuse(range(9), ["filter"], [lambda x: x > 4], ["f"], first=0, ends=ends)
    >>> next(fused), inputs_taken(fused, ends), list(fused), inputs_taken(fused, ends)
    (5, 6, [6, 7, 8], 9)
    """
    return fused_counts(fused, ends)[0]


def fused_counts(fused: Any, ends: list[tuple[int, list[int]]]) -> tuple[int, list[int]]:
    """``(inputs taken, drops of each filter in order)`` of a :func:`fuse` generator,
    read from its frame while it is suspended, or from ``ends`` once it is done."""
    frame = fused.gi_frame
    if frame is None:
        return ends[-1] if ends else (0, [])
    found = frame.f_locals
    if "n0" not in found:  # not started
        return int(found["first"]), []
    drops = sorted(
        (int(name[1:]), value)
        for name, value in found.items()
        if name[0] == "d" and name[1:].isdigit()
    )
    return int(found["n0"]) + 1, [int(value) for _, value in drops]
