"""headrace: stream datasets bigger than memory through generator stages into training.

>>> import headrace as hr
>>> pipeline = hr.range(1_000).map(lambda x: x * 0.5).shuffle(100, seed=0).batch(256)
>>> [len(batch) for batch in pipeline]
[256, 256, 256, 232]

The names below are imported when first used, so ``import headrace`` is quick and a
process-backend worker, which needs only the worker loop, never loads the rest.
"""

from __future__ import annotations

import atexit
import importlib
from typing import TYPE_CHECKING, Any

from headrace import _lifecycle

__version__ = "0.1.0"

atexit.register(_lifecycle.at_exit)  # see headrace._lifecycle

#: Public name -> the module that defines it.
_EXPORTS = {
    "CacheFileError": "headrace.stages.caching",
    "DecodeError": "headrace.errors",
    "GeneratorPipeline": "headrace.generator_pipeline",
    "HeadraceError": "headrace.errors",
    "ParseError": "headrace.errors",
    "Pipeline": "headrace.pipeline",
    "Run": "headrace.run",
    "WorkerError": "headrace.errors",
    "concat": "headrace.readers",
    "files": "headrace.readers",
    "from_generator": "headrace.readers",
    "from_iterable": "headrace.readers",
    "image_folder": "headrace.readers",
    "range": "headrace.readers",
    "read_csv": "headrace.readers",
    "read_jsonl": "headrace.readers",
    "read_parquet": "headrace.readers",
    "read_ray_dataset": "headrace.readers",
    "read_sql": "headrace.readers",
    "read_tar_shards": "headrace.readers",
    "sample_from": "headrace.readers",
    "text_lines": "headrace.readers",
    "zip": "headrace.readers",
}

__all__ = [
    "CacheFileError",
    "DecodeError",
    "GeneratorPipeline",
    "HeadraceError",
    "ParseError",
    "Pipeline",
    "Run",
    "WorkerError",
    "__version__",
    "concat",
    "files",
    "from_generator",
    "from_iterable",
    "image_folder",
    "range",
    "read_csv",
    "read_jsonl",
    "read_parquet",
    "read_ray_dataset",
    "read_sql",
    "read_tar_shards",
    "sample_from",
    "stages",
    "text_lines",
    "zip",
]

if TYPE_CHECKING:
    from headrace import stages
    from headrace.errors import DecodeError, HeadraceError, ParseError, WorkerError
    from headrace.generator_pipeline import GeneratorPipeline
    from headrace.pipeline import Pipeline
    from headrace.readers import (
        concat,
        files,
        from_generator,
        from_iterable,
        image_folder,
        range,
        read_csv,
        read_jsonl,
        read_parquet,
        read_ray_dataset,
        read_sql,
        read_tar_shards,
        sample_from,
        text_lines,
        zip,
    )
    from headrace.run import Run
    from headrace.stages.caching import CacheFileError
else:

    def __getattr__(name: str) -> Any:
        module = _EXPORTS.get(name)
        if module is not None:
            value = getattr(importlib.import_module(module), name)
        elif not name.startswith("__"):
            try:  # a submodule: headrace.stages, headrace.stats, ...
                value = importlib.import_module(f"{__name__}.{name}")
            except ModuleNotFoundError as error:
                if error.name != f"{__name__}.{name}":
                    raise
                raise AttributeError(f"module 'headrace' has no attribute {name!r}") from None
        else:
            raise AttributeError(f"module 'headrace' has no attribute {name!r}")
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*__all__, "__doc__", "__file__", "__name__", "__path__"})
