"""Running stages off the consumer's thread: parallel ``map`` and ``prefetch``.

>>> import headrace as hr
>>> list(hr.range(6).map(lambda x: x * x, workers=2))
[0, 1, 4, 9, 16, 25]
>>> list(hr.range(4).prefetch(2))
[0, 1, 2, 3]
"""

from headrace.parallel.prefetch import Prefetch
from headrace.parallel.random import RandomMap, element_rng
from headrace.parallel.threads import ThreadMap

__all__ = ["Prefetch", "RandomMap", "ThreadMap", "element_rng"]
