"""Running stages off the consumer's thread: parallel ``map`` and ``prefetch``.

>>> import headrace as hr
>>> list(hr.range(6).map(lambda x: x * x, workers=2))
[0, 1, 4, 9, 16, 25]
>>> list(hr.range(6).map(lambda x: x * x, workers=2, backend="process"))
[0, 1, 4, 9, 16, 25]
>>> list(hr.range(4).prefetch(2))
[0, 1, 2, 3]

Imported when first used, like the names of :mod:`headrace`: a worker process loads
only its own loop.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "ParallelMap": "headrace.parallel.pool",
    "Prefetch": "headrace.parallel.prefetch",
    "RandomMap": "headrace.parallel.random",
    "element_rng": "headrace.parallel.random",
}

__all__ = ["ParallelMap", "Prefetch", "RandomMap", "element_rng"]

if TYPE_CHECKING:
    from headrace.parallel.pool import ParallelMap
    from headrace.parallel.prefetch import Prefetch
    from headrace.parallel.random import RandomMap, element_rng
else:

    def __getattr__(name: str) -> Any:
        module = _EXPORTS.get(name)
        if module is None:
            raise AttributeError(f"module 'headrace.parallel' has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value
