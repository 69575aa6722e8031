"""What the package knows of the interpreter's life: whether it is exiting.

``headrace/__init__.py`` registers :func:`at_exit` when the package is imported, so it
runs after the exit hooks registered later (hooks run last registered first); a
statistics timer still running when the interpreter resets its signal handlers would
end the process.
"""

from __future__ import annotations

import sys

__all__ = ["at_exit", "exiting"]

#: Set when the interpreter exits: runs started from then on sample no signal.
exiting = False


def at_exit() -> None:
    """Note that the interpreter is exiting, and stop the statistics' timer signal."""
    global exiting
    exiting = True
    stats = sys.modules.get("headrace.stats")
    if stats is not None:
        stats.stop_signals()
