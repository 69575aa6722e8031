"""Sending functions, classes and data to other processes: cloudpickle, with two repairs.

Everything that crosses to a process worker (the stage's function, each element, each
result, a worker's exception) and a pipeline sent to DataLoader workers by
:mod:`headrace.torch` is pickled by :func:`dumps`. Functions and classes that cannot
be imported on the other side (those of a script run as ``__main__``, lambdas,
closures, nested functions, classes defined in a script, the contents of modules
registered with ``cloudpickle.register_pickle_by_value``) travel *by value*: their
code is rebuilt there. cloudpickle does that; :func:`dumps` mends two things it does
on the way.

**The file of the code.** Since cloudpickle 3.1.3 a rebuilt code object's file is
``<dynamic-code>`` (so that payloads do not depend on where code was written), and a
worker's traceback lost the user's file and source line. Here each code object
travels with its real ``co_filename``, put back when it is rebuilt. Code whose lines
exist only in the sender's :mod:`linecache` (a notebook cell, code given to ``exec``
with its lines registered there) travels with its lines, which the receiver registers
in its own :mod:`linecache`, so its tracebacks show them too.

**Classes that are already whole.** cloudpickle recognises a class it has seen
before (the user's ``Sample``, coming back inside a result) and reuses it, but then
sets every attribute of the class again from the payload: the parent's own class had
its methods replaced by copies whose globals were a snapshot taken in the worker, so
changing a module global afterwards no longer reached them. Here a class that is
complete in the receiving process (defined there, or rebuilt there once already) is
reused as it is.

>>> import pickle
>>> square = lambda x: x * x
>>> rebuilt = pickle.loads(dumps(square))
>>> rebuilt(4), rebuilt.__code__.co_filename == square.__code__.co_filename
(16, True)
"""

from __future__ import annotations

import functools
import io
import linecache
import os
import pickle
import types
import weakref
from collections import ChainMap
from collections.abc import Callable
from typing import Any, ClassVar, Final

import cloudpickle

__all__ = ["KEPT", "dumps", "loads"]

#: cloudpickle's own reduction of code objects, which :func:`_reduce_code` wraps (None
#: if a cloudpickle to come reduces them elsewhere: they are then sent as it sends them).
_REDUCE_CODE: Final[Callable[[types.CodeType], Any] | None] = (
    cloudpickle.Pickler.dispatch_table.get(types.CodeType)
)

#: Classes whose attributes are all set in this process: sent from here by value (so
#: defined or completed here), or rebuilt here once. A payload that names one of them
#: again reuses it without setting its attributes again.
_COMPLETE: weakref.WeakSet[type] = weakref.WeakSet()


def dumps(
    obj: object,
    protocol: int = pickle.HIGHEST_PROTOCOL,
    buffer_callback: Callable[[pickle.PickleBuffer], Any] | None = None,
    kept: object = None,
) -> bytes:
    """``cloudpickle.dumps(obj)``, keeping the files of code and classes already whole.

    ``kept``, where ``obj`` holds it, is written as a reference that :func:`loads`
    resolves to an object the receiver already has (its ``kept``), not by value. A
    tuple ``kept`` is a tuple of such objects, each written as a reference.
    """
    buffer = io.BytesIO()
    pickler = _Pickler(buffer, protocol=protocol, buffer_callback=buffer_callback)
    if isinstance(kept, tuple):
        # By identity: the objects are alive (in ``kept``), so no other has their id.
        numbers = {id(one): f"{KEPT}.{n}" for n, one in enumerate(kept)}
        pickler.persistent_id = lambda found: numbers.get(id(found))
    elif kept is not None:
        pickler.persistent_id = lambda found: KEPT if found is kept else None
    pickler.dump(obj)
    return buffer.getvalue()


#: The reference :func:`dumps` writes for its ``kept`` object.
KEPT = "headrace.kept"


def loads(data: bytes, kept: object) -> Any:
    """What :func:`dumps` pickled with a ``kept`` object, with ``kept`` for it here."""

    def resolve(reference: Any) -> object:
        if reference == KEPT and not isinstance(kept, tuple):
            return kept
        number = str(reference).removeprefix(f"{KEPT}.")
        if isinstance(kept, tuple) and number.isdigit() and int(number) < len(kept):
            return kept[int(number)]
        raise pickle.UnpicklingError(f"unknown reference {reference!r}")

    unpickler = pickle.Unpickler(io.BytesIO(data))
    unpickler.persistent_load = resolve  # type: ignore[method-assign]
    return unpickler.load()


def _reduce_code(code: types.CodeType) -> Any:
    assert _REDUCE_CODE is not None  # registered only then
    reduced = _REDUCE_CODE(code)
    if not (isinstance(reduced, tuple) and len(reduced) == 2):
        return reduced  # a form this module does not know: sent as cloudpickle sends it
    build, args = reduced
    filename = code.co_filename
    return _rebuild_code, (build, args, filename, _lines_in_memory(filename))


def _lines_in_memory(filename: str) -> list[str] | None:
    """The source lines :mod:`linecache` holds for ``filename`` when no file has them."""
    entry = linecache.cache.get(filename)
    # IPython's cells and code given to exec register their lines by hand under a name
    # that is no file; a lazy entry (one field) has none.
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


def _set_state_once(set_state: Callable[[type, Any], Any], cls: type, state: Any) -> None:
    """cloudpickle's ``set_state(cls, state)``, unless ``cls`` is complete here already."""
    try:
        if cls in _COMPLETE:
            return
    except TypeError:  # a metaclass that makes its classes unhashable
        set_state(cls, state)
        return
    set_state(cls, state)
    _COMPLETE.add(cls)


def _cloudpickle_class_setter() -> Callable[[type, Any], Any] | None:
    """The function cloudpickle sets a rebuilt class's attributes with, asked of it."""

    class Probe:  # defined in a function: cloudpickle sends it by value
        pass

    reduced = cloudpickle.Pickler(io.BytesIO()).reducer_override(Probe)
    if type(reduced) is tuple and len(reduced) == 6 and callable(reduced[5]):
        return reduced[5]  # type: ignore[no-any-return]
    return None


_CLASS_SETTER: Final = _cloudpickle_class_setter()


def _set_class_state(cls: type, state: Any) -> None:
    """The usual case of :func:`_set_state_once`, named, so a payload names it once."""
    assert _CLASS_SETTER is not None  # used only then
    _set_state_once(_CLASS_SETTER, cls, state)


#: cloudpickle's table of reductions: its own (fixed), then copyreg's (kept live).
_BASE_TABLE: Final = cloudpickle.Pickler.dispatch_table
_BASE_OVERRIDE: Final = cloudpickle.Pickler.reducer_override


class _Pickler(cloudpickle.Pickler):  # type: ignore[misc]  # cloudpickle has no types
    # The C pickler reads dispatch_table once, when it is created; code objects are
    # not functions or classes, so cloudpickle reduces them through this table. One
    # map for cloudpickle's reductions and ours: each map a lookup misses costs a
    # raised KeyError, for every object pickled.
    dispatch_table: ClassVar[ChainMap[type, Callable[[Any], Any]]] = ChainMap(
        {
            **ChainMap(*_BASE_TABLE.maps[:-1]),
            **({types.CodeType: _reduce_code} if _REDUCE_CODE is not None else {}),
        },
        _BASE_TABLE.maps[-1],
    )

    def reducer_override(self, obj: Any) -> Any:
        reduced = _BASE_OVERRIDE(self, obj)
        # A class sent by value: (make skeleton, its arguments, state, None, None,
        # set state). Its state is set only where the class is not complete yet.
        if type(reduced) is tuple and len(reduced) == 6 and isinstance(obj, type):
            try:
                _COMPLETE.add(obj)
            except TypeError:  # an unhashable class: left to cloudpickle's own handling
                return reduced
            if reduced[5] is _CLASS_SETTER:
                return (*reduced[:5], _set_class_state)
            return (*reduced[:5], functools.partial(_set_state_once, reduced[5]))
        return reduced
