"""Sending functions to other processes by value, with their source file kept.

The process backend sends a stage's function to its workers with cloudpickle, and
:mod:`headrace.torch` sends a pipeline to DataLoader workers the same way. Functions
that cannot be imported there (those of a script run as ``__main__``, lambdas,
closures, nested functions, methods of classes defined in a script, functions of
modules registered with ``cloudpickle.register_pickle_by_value``) travel *by value*:
their code objects are rebuilt in the worker.

Since cloudpickle 3.1.3 a rebuilt code object's file is ``<dynamic-code>`` (to make
payloads independent of where the code was written), so a worker's traceback would
lose the user's file, and with it the source line. :func:`dumps` keeps the file: each
code object travels with its real ``co_filename``, restored when it is rebuilt. A file
that exists only in the sending process's :mod:`linecache` (a notebook cell, code
given to ``exec`` with its lines registered there) travels with its lines, which the
receiving process registers in its own :mod:`linecache`, so its tracebacks show them
too.

>>> import pickle
>>> square = lambda x: x * x
>>> rebuilt = pickle.loads(dumps(square))
>>> rebuilt(4), rebuilt.__code__.co_filename == square.__code__.co_filename
(16, True)
"""

from __future__ import annotations

import io
import linecache
import os
import pickle
import types
from collections import ChainMap
from collections.abc import Callable
from typing import Any, ClassVar, Final

import cloudpickle

__all__ = ["dumps"]

#: cloudpickle's own reduction of code objects, which :func:`_reduce_code` wraps.
_REDUCE_CODE: Final[Callable[[types.CodeType], Any]] = cloudpickle.Pickler.dispatch_table[
    types.CodeType
]


def dumps(obj: object, protocol: int = pickle.HIGHEST_PROTOCOL) -> bytes:
    """``cloudpickle.dumps(obj)``, with the files of code sent by value kept."""
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=protocol).dump(obj)
    return buffer.getvalue()


def _reduce_code(code: types.CodeType) -> Any:
    reduced = _REDUCE_CODE(code)
    if not (isinstance(reduced, tuple) and len(reduced) == 2):
        return reduced  # a form this module does not know: sent as cloudpickle sends it
    build, args = reduced
    filename = code.co_filename
    return _rebuild_code, (build, args, filename, _lines_in_memory(filename))


def _lines_in_memory(filename: str) -> list[str] | None:
    """The source lines :mod:`linecache` holds for ``filename`` when no file has them."""
    entry = linecache.cache.get(filename)
    # IPython's cells, the REPL of Python 3.13 and code given to exec register their
    # lines by hand under a name that is no file; a lazy entry (one field) has none.
    if entry is None or len(entry) != 4 or os.path.isfile(entry[3]):
        return None
    lines = entry[2]
    if isinstance(lines, list) and all(isinstance(line, str) for line in lines):
        return lines
    return None


def _rebuild_code(
    build: Callable[..., types.CodeType],
    args: tuple[Any, ...],
    filename: str,
    lines: list[str] | None,
) -> types.CodeType:
    """The code object cloudpickle rebuilds, with its own file back."""
    code = build(*args)
    if code.co_filename != filename:
        code = code.replace(co_filename=filename)
    if lines is not None and filename not in linecache.cache:
        # mtime None: linecache.checkcache keeps the entry (there is no file to check).
        linecache.cache[filename] = (sum(map(len, lines)), None, lines, filename)
    return code


class _Pickler(cloudpickle.Pickler):  # type: ignore[misc]  # cloudpickle has no types
    # The C pickler reads dispatch_table once, when it is created; code objects are
    # not functions or classes, so cloudpickle reduces them through this table.
    dispatch_table: ClassVar[ChainMap[type, Callable[[Any], Any]]] = ChainMap(
        {types.CodeType: _reduce_code}, cloudpickle.Pickler.dispatch_table
    )
