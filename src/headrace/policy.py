"""What a source or parsing stage does with a record it cannot read: ``on_error=``.

One mechanism for every reader:

- ``"raise"`` (the default): stop with :class:`ParseError`, whose message names where
  the record is (``file:line``, ``element 17``) and why it was rejected.
- ``"skip"``: drop the record, count it and keep the first few as examples; the run
  logs a summary when the reader finishes, and ``run.stats()`` reports the count.
- a path (``str`` or ``os.PathLike``): drop the record and append it, with where and
  why, as one JSON line to that quarantine file, for a later look or a re-run.

Every record is accounted for: a reader counts what it read, and what it did not
yield is in ``rejected``.

>>> import headrace as hr
>>> lines = hr.from_iterable(["a=1", "oops", "b=2"])
>>> with lines.parse(r"(?P<key>\\w+)=(?P<value>\\d+)", on_error="skip").iter(stats=True) as run:
...     records = list(run)
>>> records
[{'key': 'a', 'value': '1'}, {'key': 'b', 'value': '2'}]
>>> [(row["read"], row["rejected"]) for row in run.stats() if "rejected" in row]
[(3, 1)]
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, TextIO

from headrace.errors import ParseError

if TYPE_CHECKING:
    from collections.abc import Callable

    from headrace.engine.stage import StageContext

__all__ = ["ErrorPolicy", "OnError", "ParseError", "Tally"]

logger = logging.getLogger("headrace")

#: Rejected records a tally keeps as examples.
EXAMPLES: Final = 5

#: ``"raise"``, ``"skip"`` or a quarantine file path.
OnError = str | os.PathLike[str]


class ErrorPolicy:
    """A checked ``on_error=`` value; :meth:`tally` starts counting for one run."""

    __slots__ = ("mode", "quarantine")

    def __init__(self, on_error: object) -> None:
        self.quarantine: str | None = None
        if on_error in ("raise", "skip"):
            self.mode = str(on_error)
        elif isinstance(on_error, os.PathLike) or (
            isinstance(on_error, str) and on_error and on_error not in ("raise", "skip")
        ):
            path = os.fspath(on_error)
            if not isinstance(path, str):
                raise TypeError(f"on_error path must be text, got {path!r}")
            if isinstance(on_error, str) and os.sep not in path and "." not in path:
                # "ignore", "warn", "Skip": a misspelt mode, not a file name.
                raise ValueError(
                    f"on_error must be 'raise', 'skip' or a quarantine file path, got "
                    f"{on_error!r} (a path needs a directory or an extension)"
                )
            self.mode = "quarantine"
            self.quarantine = path
        else:
            raise ValueError(
                f"on_error must be 'raise', 'skip' or a quarantine file path, got {on_error!r}"
            )

    def __repr__(self) -> str:
        return repr(self.quarantine if self.mode == "quarantine" else self.mode)

    def tally(self, ctx: StageContext) -> Tally:
        """The counts of one run of the stage ``ctx`` describes."""
        tally = Tally(self, ctx.label)
        if ctx.stats is not None:  # opened again in the same run (repeat): count on
            tally = ctx.stats.shared(ctx.index, ctx.name, "tally", tally)
        return tally


@dataclass(slots=True, eq=False)
class Tally:
    """Records read and rejected by one reader in one run, and the first rejects."""

    policy: ErrorPolicy
    label: str
    read: int = 0
    rejected: int = 0
    examples: list[str] = field(default_factory=list)
    #: Records taken but not yet added to ``read``, for a reader that counts them in
    #: C and adds them up when it stops.
    taking: Callable[[], int] | None = None
    _file: TextIO | None = None

    def records_read(self) -> int:
        """``read``, with what a reader counting in C has taken so far."""
        return self.read + (0 if self.taking is None else self.taking())

    def reject(
        self,
        where: str,
        reason: str,
        record: object = None,
        *,
        error: type[ParseError] = ParseError,
    ) -> None:
        """Account for a record that was not yielded; raise ``error`` under "raise"."""
        if self.policy.mode == "raise":
            raise error(f"{where}: {reason}")
        if self.policy.quarantine is not None and self._file is None:
            try:
                self._file = open(self.policy.quarantine, "a", encoding="utf-8")  # noqa: SIM115
            except OSError as failure:
                failure.add_note(f"headrace: {self.label} cannot open its quarantine file")
                raise
        self.rejected += 1
        if len(self.examples) < EXAMPLES:
            self.examples.append(f"{where}: {reason}")
        if self._file is not None:
            if isinstance(record, bytes):
                record = record.decode("utf-8", "backslashreplace")
            entry = {"stage": str(self.label), "where": where, "reason": reason, "record": record}
            self._file.write(json.dumps(entry, default=repr) + "\n")

    def close(self) -> None:
        """Close the quarantine file and log what was rejected, once per run."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self.rejected:
            where = f" to {self.policy.quarantine}" if self.policy.quarantine else ""
            logger.warning(
                "%s rejected %d of %d records%s; first: %s",
                self.label,
                self.rejected,
                self.records_read(),
                where,
                self.examples[0],
            )

    def as_dict(self) -> dict[str, Any]:
        """The figures for a stats row."""
        return {
            "read": self.records_read(),
            "rejected": self.rejected,
            "examples": list(self.examples),
        }
