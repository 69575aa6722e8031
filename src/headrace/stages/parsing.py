"""``parse(pattern)``: text records to dicts by a regular expression's named groups.

Seed 002's log parsing, with the shared ``on_error=`` policy for lines that do not
match: raise naming the element, skip and count, or quarantine.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator
from typing import Any

from headrace.engine.guard import close_iterator
from headrace.engine.opening import apply
from headrace.engine.stage import Length, Stage, StageContext
from headrace.engine.state import count_of, counting
from headrace.policy import ErrorPolicy

__all__ = ["Parse", "parse"]


class Parse(Stage):
    """Matches each ``str`` element against ``pattern``; yields its named groups as a dict."""

    __slots__ = ("_pattern", "_policy", "_search")
    per_element = True

    def __init__(
        self, pattern: str | re.Pattern[str], *, on_error: object = "raise", search: bool = False
    ) -> None:
        if not isinstance(pattern, str | re.Pattern):
            raise TypeError(f"pattern must be a str or compiled re.Pattern, got {pattern!r}")
        try:
            compiled = re.compile(pattern)
        except re.error as error:
            shown = _shown(pattern) if isinstance(pattern, str) else repr(pattern)
            raise ValueError(
                f"pattern {shown} is not a valid regular expression: {error}"
            ) from None
        if not compiled.groupindex:
            raise ValueError(
                f"pattern {_shown(compiled.pattern)} has no named groups (?P<name>...): they name "
                "the fields of the records it makes"
            )
        self._pattern = compiled
        self._policy = ErrorPolicy(on_error)
        self._search = bool(search)

    @property
    def name(self) -> str:
        extra = "" if self._policy.mode == "raise" else f", on_error={self._policy!r}"
        return f"parse({_shown(self._pattern.pattern)}{extra})"

    def open(self, upstream: Iterator[Any], ctx: StageContext) -> Iterator[Any]:
        match = self._pattern.search if self._search else self._pattern.fullmatch
        # Counted in C: the index of an element that fails, the records read, and
        # (rejects leave no output) the position to resume from.
        upstream, counter = counting(upstream, ctx.start)
        if self._policy.mode != "raise":
            ctx.track_state(lambda _: {"start": count_of(counter)})
        return _parse(upstream, counter, match, self._policy, ctx)

    def resume_upstream(self, position: int) -> int | None:
        return position if self._policy.mode == "raise" else None

    def length(self, upstream: Length) -> Length:
        return upstream if self._policy.mode == "raise" else None


def _parse(
    upstream: Iterator[Any],
    counter: itertools.count[int],
    match: Any,
    policy: ErrorPolicy,
    ctx: StageContext,
) -> Iterator[dict[str, Any]]:
    tally = policy.tally(ctx)
    first = ctx.start
    tally.taking = lambda: count_of(counter) - first
    try:
        # The loop does only what a match needs: what goes wrong is sorted out after.
        for text in upstream:
            try:
                found = match(text)
            except TypeError:
                found = None
            if found is None:
                taken = count_of(counter)
                where = f"{ctx.label} input element {taken - 1}{_line_of(ctx, taken)}"
                if not isinstance(text, str):
                    tally.reject(where, f"expected a str, got {type(text).__name__}", text)
                else:
                    shown = text if len(text) <= 80 else text[:77] + "..."
                    tally.reject(where, f"does not match: {shown!r}", text)
                continue
            yield found.groupdict()
    finally:
        tally.read += count_of(counter) - first
        tally.taking = None
        tally.close()
        close_iterator(upstream)


def _line_of(ctx: StageContext, taken: int) -> str:
    """`` (file:line)`` of the last element a file reader below handed out, when the
    stages between pass elements on one at a time (so that it is this element's
    line); "" otherwise."""
    try:
        entries = ctx.upstream_entries(ctx.input_state(taken))
    except Exception:  # a stage that cannot say: the index alone
        return ""
    for entry in reversed(entries or []):
        if not isinstance(entry, dict) or "upstream" in entry:
            return ""  # a stage that reads ahead: the reader is past this element
        read = entry.get("read")
        if isinstance(read, dict) and read.get("path"):
            return f" ({read['path']}:{read['records']})"
    return ""


def parse(
    iterable: Iterable[str],
    pattern: str | re.Pattern[str],
    *,
    on_error: object = "raise",
    search: bool = False,
) -> Iterator[dict[str, Any]]:
    """Dicts of the named groups of ``pattern`` matched against each string.

    The whole string must match, unless ``search=True`` (a match anywhere in it).
    ``on_error`` is ``"raise"`` (a :class:`headrace.ParseError` naming the element),
    ``"skip"`` or a quarantine file path (see :mod:`headrace.policy`).

    >>> list(parse(["GET /a 200", "POST /b 404"], r"(?P<verb>\\w+) (?P<path>\\S+) (?P<code>\\d+)"))
    [{'verb': 'GET', 'path': '/a', 'code': '200'}, {'verb': 'POST', 'path': '/b', 'code': '404'}]
    """
    return apply(Parse(pattern, on_error=on_error, search=search), iterable)


def _shown(pattern: str) -> str:
    """A pattern as it is written in code: raw when it has backslashes.

    >>> print(_shown(r"(?P<n>\\d+)"), _shown("a b"))
    r'(?P<n>\\d+)' 'a b'
    """
    raw = "\\" in pattern and "'" not in pattern and not pattern.endswith("\\")
    if raw and pattern.isprintable():
        return f"r'{pattern}'"
    return repr(pattern)
