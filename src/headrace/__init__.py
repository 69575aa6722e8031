"""headrace: stream datasets bigger than memory through generator stages into training.

>>> import headrace as hr
>>> pipeline = hr.range(1_000).map(lambda x: x * 0.5).shuffle(100, seed=0).batch(256)
>>> [len(batch) for batch in pipeline]
[256, 256, 256, 232]
"""

from headrace import stages
from headrace.errors import DecodeError, HeadraceError, WorkerError
from headrace.pipeline import Pipeline
from headrace.run import Run
from headrace.sources import (
    concat,
    files,
    from_generator,
    from_iterable,
    range,
    text_lines,
    zip,
)
from headrace.stages.caching import CacheFileError
from headrace.stages.coroutines import GeneratorPipeline

__version__ = "0.1.0"

__all__ = [
    "CacheFileError",
    "DecodeError",
    "GeneratorPipeline",
    "HeadraceError",
    "Pipeline",
    "Run",
    "WorkerError",
    "__version__",
    "concat",
    "files",
    "from_generator",
    "from_iterable",
    "range",
    "stages",
    "text_lines",
    "zip",
]
