"""The iterators of one opened chain of stages, closed together.

Who closes what: every stage generator closes its upstream when it ends (exhausted,
failed or closed), so an ending anywhere releases everything upstream of it. On top
of that a :class:`Chain` remembers every closeable node it opened, so closing a run
from outside reaches them all, downstream first, even nodes that never started.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from headrace.engine.state import Entries

__all__ = ["Chain"]


class Chain:
    """The iterators of one opened chain of stages, closed together."""

    __slots__ = ("_entries", "closed", "iterator", "nodes")

    def __init__(
        self,
        iterator: Iterator[Any],
        nodes: list[Any],
        entries: Callable[[int], Entries | None] | None = None,
    ) -> None:
        self.iterator = iterator
        self.nodes = nodes
        self.closed = False
        self._entries = entries

    def entries(self, position: int) -> Entries | None:
        """The chain's state after it handed out ``position`` elements of its epoch (see
        ``headrace.engine.state``), or ``None`` when only replaying can resume it."""
        return None if self._entries is None else self._entries(position)

    def closing(self) -> Iterator[Any]:
        """Yield from the chain and close all of it however the consumer stops."""
        try:
            yield from self.iterator
        finally:
            self.close()

    def close(self) -> None:
        """Close every node that can be closed, downstream first.

        A node that cannot be closed now (a generator that another thread, or the
        caller itself, is running) stays on the list, so ``close`` can be retried;
        the first such error is raised after the other nodes are closed.
        """
        if self.nodes and getattr(self.nodes[-1], "gi_running", False):
            # Every element passes through the last node: while it runs, closing
            # anything would pull the stages out from under the element in progress.
            raise ValueError(
                "cannot close a run while it is producing an element (from one of its "
                "own stages or from another thread); close it once next() has returned"
            )
        errors: list[BaseException] = []
        kept: list[Any] = []
        for node in reversed(self.nodes):
            try:
                node.close()
            except Exception as error:
                errors.append(error)
                kept.append(node)
        self.nodes = kept[::-1]
        if errors:
            raise errors[0]
        self.closed = True
