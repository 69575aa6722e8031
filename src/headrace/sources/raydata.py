"""``read_ray_dataset``: the rows or batches of a Ray Data dataset, as a headrace source.

For teams whose preprocessing already lives in Ray Data: a ``ray.data.Dataset``, or
one share of ``Dataset.streaming_split(n)`` (a ``DataIterator``), feeds a headrace
pipeline as any other source. Every run iterates it anew (Ray Data executes the
dataset again, streaming). Nothing of Ray is imported here: the dataset brings it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from headrace._checks import check_optional_int
from headrace.engine.guard import drive
from headrace.engine.stage import Stage, StageContext

__all__ = ["ReadRayDataset"]


class ReadRayDataset(Stage):
    """The rows (dicts) or numpy batches (dicts of arrays) of a Ray Data dataset."""

    __slots__ = ("_batch_size", "_dataset")
    is_source = True

    def __init__(self, dataset: Any, *, batch_size: int | None = None) -> None:
        if not all(hasattr(dataset, name) for name in ("iter_rows", "iter_batches")):
            raise TypeError(
                "read_ray_dataset takes a ray.data.Dataset or a DataIterator (a share of "
                f"Dataset.streaming_split), got {type(dataset).__name__}"
            )
        self._dataset = dataset
        self._batch_size = check_optional_int("batch_size", batch_size, minimum=1)

    @property
    def name(self) -> str:
        extra = "" if self._batch_size is None else f", batch_size={self._batch_size}"
        return f"read_ray_dataset({type(self._dataset).__name__}{extra})"

    @property
    def batching(self) -> str | None:
        return None if self._batch_size is None else "batch"

    def open(self, upstream: Iterator[Any], ctx: StageContext) -> Iterator[Any]:
        dataset, size = self._dataset, self._batch_size
        if size is None:
            make = dataset.iter_rows
        else:

            def make() -> Iterator[Any]:
                return iter(dataset.iter_batches(batch_size=size, batch_format="numpy"))

        return drive(make, ctx.label, lambda n: {"produced": n})

    def unfixed_order(self, *, seeded: bool = False) -> str | None:
        if not hasattr(dataset_context(self._dataset), "execution_options"):
            return "a share of a Ray Data streaming_split, whose rows go to whichever share asks"
        if not dataset_context(self._dataset).execution_options.preserve_order:
            return (
                "a Ray Data dataset that does not preserve its order (set "
                "ray.data.DataContext.get_current().execution_options.preserve_order = "
                "True before making it)"
            )
        return None


def dataset_context(dataset: Any) -> Any:
    """The ``DataContext`` a dataset runs with (``None`` for a DataIterator)."""
    return getattr(dataset, "context", None)
