"""Running stages off the consumer's thread: parallel ``map`` and ``prefetch``.

>>> import headrace as hr
>>> list(hr.range(6).map(lambda x: x * x, workers=2))
[0, 1, 4, 9, 16, 25]
>>> list(hr.range(6).map(lambda x: x * x, workers=2, backend="process"))
[0, 1, 4, 9, 16, 25]
>>> list(hr.range(4).prefetch(2))
[0, 1, 2, 3]
"""

from headrace.parallel.pool import ParallelMap
from headrace.parallel.prefetch import Prefetch
from headrace.parallel.random import RandomMap, element_rng

__all__ = ["ParallelMap", "Prefetch", "RandomMap", "element_rng"]
