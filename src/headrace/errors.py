"""Errors raised by headrace and the notes it attaches to errors raised by user code.

A user function that raises inside a stage keeps its own exception type and traceback;
headrace only adds a PEP 678 note naming the stage and the element, so ``except
ValueError`` in user code still works and the traceback still points at the user's line.

>>> import headrace as hr
>>> try:
...     list(hr.range(5).map(lambda x: 10 // (x - 3)))
... except ZeroDivisionError as error:
...     print(error.__notes__[0])
headrace: raised in stage 1 'map(<lambda>)' on its input element 3 (0-based)
"""

from __future__ import annotations

import contextlib
import itertools
import os
import weakref
from typing import Final

__all__ = [
    "DecodeError",
    "HeadraceError",
    "ParseError",
    "Scope",
    "StageLabel",
    "WorkerError",
    "annotate",
    "describe_callable",
    "quoted",
]

# Marks an exception that already carries a headrace note, so that a stage further
# down the chain (which sees the same exception pass through) does not add a second,
# misleading one.
_NOTED: Final = "__headrace_noted__"


class HeadraceError(Exception):
    """Base class of the errors that headrace itself raises about data or usage."""


class ParseError(HeadraceError, ValueError):
    """A record could not be read or parsed; the message says where and why."""


class DecodeError(ParseError):
    """Bytes could not be decoded: text in a source (the message names file and line)
    or an image (it names the file, or ``<bytes>``).

    A :class:`ParseError`, and so a ``ValueError``: code that handles
    ``UnicodeDecodeError``-like problems generically keeps working.
    """


class WorkerError(HeadraceError):
    """A worker process died, or failed in a way its own exception could not carry.

    The message names the stage, the worker's pid and how it ended (the signal, or
    the exit code) and the element it was working on.
    """


class Scope:
    """The identity of one opened chain in error notes (see :class:`StageLabel`).

    It keeps its identity across a round trip to a worker process: a copy pickled in
    this process and sent back from a worker is this very object again, so that an
    error noted by a stage running in the worker is recognised as noted here.
    """

    __slots__ = ("__weakref__", "_token")
    _live: Final[weakref.WeakValueDictionary[tuple[int, int], Scope]] = (
        weakref.WeakValueDictionary()
    )
    _numbers: Final = itertools.count()

    def __init__(self, token: tuple[int, int] | None = None) -> None:
        self._token = (os.getpid(), next(Scope._numbers)) if token is None else token
        Scope._live[self._token] = self

    def __reduce__(self) -> tuple[object, tuple[tuple[int, int]]]:
        return _scope, (self._token,)

    def __repr__(self) -> str:
        return f"Scope{self._token}"


def _scope(token: tuple[int, int]) -> Scope:
    """The live scope of ``token`` in this process, or a new one standing for it."""
    found = Scope._live.get(token)
    return Scope(token) if found is None else found


class StageLabel(str):
    """A stage's name in notes, carrying the identity of the opened chain it is in.

    An exception that passes from a nested pipeline (inside ``zip``, ``interleave`` or
    a user function that iterates another pipeline) into an outer stage's user code
    gets a second note from the outer stage, while one that only travels down its own
    chain keeps a single note.
    """

    __slots__ = ("scope",)

    scope: object

    def __new__(cls, text: str, scope: object) -> StageLabel:
        label = super().__new__(cls, text)
        label.scope = scope
        return label

    def __reduce__(self) -> tuple[type[StageLabel], tuple[str, object]]:
        return StageLabel, (str(self), self.scope)


def annotate(
    error: BaseException,
    stage: str,
    index: int | None = None,
    *,
    produced: int | None = None,
    detail: str | None = None,
) -> None:
    """Attach a note naming ``stage`` and the element to ``error``, once.

    ``index`` is the position of the failing element in the stage's input; sources,
    which have no input, give ``produced``, the number of elements made before failing;
    stages that fail on a group of elements describe it in ``detail``.

    >>> e = ValueError("bad")
    >>> annotate(e, "stage 2 'map(parse)'", 7)
    >>> annotate(e, "stage 3 'batch(4)'", 1)  # already noted: left as it is
    >>> e.__notes__
    ["headrace: raised in stage 2 'map(parse)' on its input element 7 (0-based)"]
    """
    scope = getattr(stage, "scope", True)
    seen = getattr(error, _NOTED, None)
    if seen is not None and (seen is scope or scope is True):
        return
    where = f"headrace: raised in {stage}"
    if index is not None:
        where += f" on its input element {index} (0-based)"
    elif detail is not None:
        where += f" {detail}"
    elif produced is not None:
        where += f" after producing {produced} element{'' if produced == 1 else 's'}"
    error.add_note(where)
    mark(error, scope)


def mark(error: BaseException, scope: object = True) -> None:
    """Record that ``error`` has been attributed in ``scope``, without adding a note."""
    # Exception types with __slots__ and no __dict__ cannot be marked; they may then
    # get a second note further down the chain, which is untidy but not wrong.
    with contextlib.suppress(AttributeError):
        setattr(error, _NOTED, scope)


def describe_callable(fn: object) -> str:
    """A short, stable name for ``fn`` for reprs and error notes.

    >>> describe_callable(len)
    'len'
    >>> import functools
    >>> describe_callable(functools.partial(int, base=2))
    'partial(int)'
    """
    if hasattr(fn, "func") and hasattr(fn, "args"):  # functools.partial
        return f"partial({describe_callable(fn.func)})"
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if name is None:
        name = type(fn).__qualname__
    return str(name).replace(".<locals>", "")


def quoted(name: str) -> str:
    r"""``name`` in quotes as ``repr`` would choose them, but with nothing escaped, so
    that a stage name holding a regular expression shows its backslashes once.

    >>> print(quoted("map(f)"), quoted(r"parse(r'\d+')"))
    'map(f)' "parse(r'\d+')"
    """
    mark = "'" if "'" not in name else '"'
    return f"{mark}{name}{mark}"
