"""PyTorch: a pipeline as a ``torch.utils.data.IterableDataset`` that yields tensors.

>>> import headrace as hr
>>> import headrace.torch as hrt
>>> pairs = hr.range(3).map(lambda i: (i, i / 2)).batch(3)
>>> x, y = next(iter(hrt.to_torch(pairs)))
>>> x, y
(tensor([0, 1, 2]), tensor([0.0000, 0.5000, 1.0000], dtype=torch.float64))

Two ways to feed a training loop:

- **Recommended: headrace does the parallelism.** Give the pipeline its workers
  (``.map(decode, workers=8)``, ``.prefetch()``), batch it, and iterate the dataset
  directly, or through ``DataLoader(dataset, batch_size=None, num_workers=0)`` where
  the loop expects a DataLoader. Tensors share memory with the pipeline's numpy
  arrays, nothing is pickled between processes, and the order is the pipeline's.
- **DataLoader worker processes** (``num_workers=N``): every worker runs its own share
  of the pipeline (see :meth:`headrace.Pipeline.shard`), so together they yield every
  element exactly once. Batching in the pipeline then batches each worker's share.

What becomes a tensor (:func:`to_tensors`): numpy arrays of numbers and booleans
(sharing memory with the array where torch can: a read-only array, one with negative
strides or one in a foreign byte order is copied first), numpy scalars and Python
numbers (with numpy's dtype: ``int`` -> int64, ``float`` -> float64, as ``batch()``
gives them). Tuples (named ones too), lists and dicts keep their structure, converted
inside. Everything else is left as it is: strings, bytes, ``str`` and ``object``
arrays, ``datetime64`` arrays, masked arrays (a tensor has no mask), and dtypes the
installed torch cannot hold.

Checkpoints follow torchdata's convention: :meth:`TorchDataset.state_dict` gives the
data's position as plain data to save beside the model's, and
:meth:`TorchDataset.load_state_dict` makes the next iteration go on from it, with the
next batch. It covers iterating the dataset directly and ``DataLoader(dataset,
batch_size=None, num_workers=0)``; with DataLoader workers the positions are in the
workers, and ``state_dict()`` refuses, saying so. A DataLoader that would batch the
batches of a pipeline that makes them (its default ``batch_size=1``) is refused too.

``pin_memory=True`` pins each tensor (``tensor.pin_memory()``) when CUDA is available,
for faster, asynchronous copies to the GPU; without CUDA it does nothing. ``device=``
moves each tensor there (``non_blocking`` when pinned). Both act in the process that
iterates the dataset, and are refused inside DataLoader worker processes, which cannot
use CUDA: there, pass ``pin_memory=True`` to the DataLoader and move batches in the
loop.
"""

from __future__ import annotations

import gc
import pickle
import sys
from collections.abc import Callable, Generator, Iterable, Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

try:  # what a DataLoader opens an IterableDataset with (torch's own, not public)
    from torch.utils.data._utils.fetch import _IterableDatasetFetcher
except ImportError:  # pragma: no cover - a torch that moved it: the check is skipped
    _IterableDatasetFetcher = None  # type: ignore[misc, assignment]

from headrace import _pickling
from headrace._checks import check_bool, check_int
from headrace.engine.plan import Plan
from headrace.run import Run, start
from headrace.sharding import shard
from headrace.sources.basic import as_plan
from headrace.stages.batching import NUMERIC_KINDS

__all__ = ["TorchDataset", "to_tensors", "to_torch"]

Device = str | torch.device

_NUMBERS = (bool, int, float, complex, np.generic)


def to_torch(
    pipeline: Iterable[Any], *, device: Device | None = None, pin_memory: bool = False
) -> TorchDataset:
    """``pipeline`` as a PyTorch ``IterableDataset`` of tensors (see :class:`TorchDataset`).

    ``pipeline`` is a :class:`headrace.Pipeline`; any other iterable is wrapped in a
    plan of one source (:func:`headrace.sources.basic.as_plan`), which iterates it again
    on every pass.

    >>> import headrace as hr
    >>> [t.item() for t in to_torch(hr.range(3))]
    [0, 1, 2]
    """
    return TorchDataset(pipeline, device=device, pin_memory=pin_memory)


class TorchDataset(IterableDataset[Any]):
    """A pipeline as an ``IterableDataset``: every ``iter()`` is a fresh run, in tensors.

    Any other iterable than a :class:`headrace.Pipeline` is wrapped in a plan of one
    source (see :func:`headrace.sources.basic.as_plan`), which iterates it again on
    every pass.

    Iterated in the main process (directly, or by a DataLoader with ``num_workers=0``),
    each ``iter()`` is the pipeline's next epoch, as ``iter(pipeline)`` is. In a
    DataLoader worker process, it runs that worker's share (``Pipeline.shard``) of the
    pipeline, every worker with the same epoch number: one that torch's shared seed for
    the DataLoader's workers picks (a new one every epoch, reproducible under
    ``torch.manual_seed``) unless :meth:`set_epoch` pins it.

    ``len(dataset)`` is the length of one run of the whole pipeline, when it is known
    (``TypeError`` otherwise, as ``len(pipeline)``). With DataLoader workers it is also
    the total over all workers, unless the pipeline groups elements after the point
    where it is shared (``batch``, ``padded_batch``): each worker's last batch may then
    be short, so the workers yield more batches in all. Batch in the DataLoader when
    its workers share the pipeline, or let headrace do the parallelism.

    ``iter(dataset)`` is a generator: closing it (or dropping it, as leaving a ``for``
    loop does) stops the run and the workers headrace started for it.

    The dataset pickles with cloudpickle, lambdas included, so DataLoaders with the
    ``spawn`` and ``forkserver`` contexts can send it to their workers.
    """

    def __init__(
        self,
        pipeline: Iterable[Any],
        *,
        device: Device | None = None,
        pin_memory: bool = False,
    ) -> None:
        self._pipeline = as_plan(pipeline)
        self._device = None if device is None else torch.device(device)
        self._pin_memory = check_bool("pin_memory", pin_memory)
        self._epoch: int | None = None
        #: Runs this copy made in worker processes: a persistent worker's epochs.
        self._worker_runs = 0
        #: This worker's share of the pipeline, built once per worker count.
        self._shares: dict[tuple[int, int], Plan[Any]] = {}
        #: The run going on in this process, or the last one: its state and statistics.
        self._run: Run[Any] | None = None
        #: A state to start the next iteration from (:meth:`load_state_dict`).
        self._resume: dict[str, Any] | None = None

    @property
    def pipeline(self) -> Plan[Any]:
        """The pipeline this dataset runs."""
        return self._pipeline

    def set_epoch(self, epoch: int | None) -> None:
        """Run epoch ``epoch`` from now on (``None``: back to counting by itself).

        Worker processes see the epoch set before the DataLoader starts them: with
        ``persistent_workers=True`` they run the epoch they started with, then the next
        one at each later iteration.
        """
        self._epoch = None if epoch is None else check_int("epoch", epoch, minimum=0)

    def state_dict(self) -> dict[str, Any]:
        """Where the data stands, as plain data to save beside the model (torchdata's
        ``StatefulDataLoader`` convention): the next iteration after
        :meth:`load_state_dict` of it goes on with the element after the last one this
        dataset handed out, in the same epoch; taken after an epoch ended, the next
        epoch. Before any iteration, the next iteration starts as it would anyway.

        >>> import headrace as hr
        >>> dataset = to_torch(hr.range(6).batch(2))
        >>> batches = iter(dataset)
        >>> next(batches).tolist()
        [0, 1]
        >>> saved = dataset.state_dict()
        >>> again = to_torch(hr.range(6).batch(2))
        >>> again.load_state_dict(saved)
        >>> [b.tolist() for b in again]
        [[2, 3], [4, 5]]

        In a DataLoader worker process, the state of that worker's share. In the main
        process of a ``DataLoader(num_workers=N)``, which cannot see its workers'
        positions, a ``ValueError`` says how to get one.
        """
        if get_worker_info() is None:
            loader = _loader_with_workers(self)
            if loader is not None:
                raise ValueError(
                    f"state_dict(): this dataset is read by a DataLoader with "
                    f"num_workers={loader}, whose worker processes hold the positions, "
                    "out of reach here. Resume needs the data's position in this "
                    "process: iterate the dataset directly, or through DataLoader("
                    "dataset, batch_size=None, num_workers=0), and let the pipeline "
                    "do the parallel work (map(fn, workers=N)); its state covers that"
                )
        if self._run is not None:
            return {"headrace": self._run.state()}
        return {"headrace": self._resume}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Make the next iteration go on where :meth:`state_dict` gave ``state``."""
        if not isinstance(state, Mapping) or "headrace" not in state:
            raise ValueError(
                f"load_state_dict() takes what TorchDataset.state_dict() gave (a dict "
                f"with 'headrace'), got {state!r:.80}"
            )
        saved = state["headrace"]
        if saved is not None and not isinstance(saved, Mapping):
            raise ValueError(
                f"load_state_dict(): the saved headrace state is not a dict: {saved!r:.80}"
            )
        self._resume = None if saved is None else dict(saved)
        self._run = None

    def stats(self) -> list[dict[str, Any]]:
        """The per-stage figures of the run going on in this process, or of the last
        one (see :meth:`headrace.Run.stats`)."""
        return self._last_run().stats()

    def report(self) -> str:
        """The statistics of the run going on, or of the last one, as text."""
        return self._last_run().report()

    def _last_run(self) -> Run[Any]:
        if self._run is None:
            raise RuntimeError(
                "no run yet: the dataset has not been iterated in this process (in a "
                "DataLoader with num_workers > 0, its worker processes run it)"
            )
        return self._run

    def __iter__(self) -> Generator[Any, None, None]:
        info = get_worker_info()
        _refuse_a_second_batch_dimension(self._pipeline)
        if info is None:
            return self._tensors(self._pipeline, self._epoch, self._pin_memory)
        if self._pin_memory or (self._device is not None and self._device.type != "cpu"):
            raise ValueError(
                "pin_memory and a CUDA device act in the process that iterates the "
                "dataset, and DataLoader worker processes cannot use CUDA: pass "
                "pin_memory=True to the DataLoader and move batches to the device in the "
                "training loop (or iterate the dataset in the main process)"
            )
        key = (info.num_workers, info.id)
        share = self._shares.get(key)
        if share is None:
            share = self._shares[key] = shard(self._pipeline, info.num_workers, info.id)
        # Every worker of one DataLoader iteration has the same base seed; a persistent
        # worker runs once per epoch, and so do all its peers.
        start = (info.seed - info.id) % (1 << 32) if self._epoch is None else self._epoch
        epoch = start + self._worker_runs
        self._worker_runs += 1
        return self._tensors(share, epoch, pin_memory=False)

    def _tensors(
        self, pipeline: Plan[Any], epoch: int | None, pin_memory: bool
    ) -> Generator[Any, None, None]:
        convert = _converter(self._device, pin_memory)
        resume, self._resume = self._resume, None
        if resume is not None:
            run = start(pipeline, state=resume)
        else:
            run = start(pipeline) if epoch is None else start(pipeline, epoch=epoch)
        self._run = run
        with run:
            for element in run:
                yield convert(element)

    def __len__(self) -> int:
        return len(self._pipeline)

    def __repr__(self) -> str:
        extra = "" if self._device is None else f", device={str(self._device)!r}"
        if self._pin_memory:
            extra += ", pin_memory=True"
        return f"TorchDataset({self._pipeline!r}{extra})"

    def restored(self, epoch: int | None, worker_runs: int) -> TorchDataset:
        """This dataset with the epoch and the runs counted of the one it was pickled
        from, so a copy in a DataLoader worker goes on counting (used by pickle)."""
        self._epoch = epoch
        self._worker_runs = worker_runs
        return self

    def __reduce__(self) -> tuple[Callable[[bytes], TorchDataset], tuple[bytes]]:
        state = (self._pipeline, self._device, self._pin_memory, self._epoch, self._worker_runs)
        return (_restore, (_pickling.dumps(state),))


def _loader_with_workers(dataset: TorchDataset) -> int | None:
    """The ``num_workers`` of a live DataLoader over ``dataset`` that has workers."""
    for holder in gc.get_referrers(dataset):
        # The DataLoader, or (in Pythons that keep it apart) its __dict__.
        found = vars(holder) if isinstance(holder, DataLoader) else holder
        if isinstance(found, dict) and found.get("dataset") is dataset:
            workers = found.get("num_workers")
            if isinstance(workers, int) and workers > 0:
                return workers
    return None


def _refuse_a_second_batch_dimension(pipeline: Plan[Any]) -> None:
    """Refuse a DataLoader that batches (its default ``batch_size=1``) the batches of
    a pipeline that makes them: every tensor would come out ``[1, B, ...]``.

    The DataLoader's fetcher opens the dataset; its frame says whether it batches.
    """
    if _IterableDatasetFetcher is None:
        return
    caller = sys._getframe(2)  # __iter__, then the fetcher that called it
    fetcher = caller.f_locals.get("self")
    if not isinstance(fetcher, _IterableDatasetFetcher) or not fetcher.auto_collation:
        return
    for stage in reversed(pipeline.stages):
        if stage.batching == "unbatch":
            return
        if stage.batching in ("batch", "fixed", "padded"):
            raise ValueError(
                f"the pipeline already makes batches ({stage.name}), and this "
                "DataLoader batches again (its batch_size, 1 by default): every tensor "
                "would come out as [1, batch, ...]. Pass DataLoader(dataset, "
                "batch_size=None), or batch in the DataLoader instead of the pipeline"
            )


def _restore(payload: bytes) -> TorchDataset:
    pipeline, device, pin_memory, epoch, worker_runs = pickle.loads(payload)
    return TorchDataset(pipeline, device=device, pin_memory=pin_memory).restored(epoch, worker_runs)


# -- tensors ------------------------------------------------------------------------


def to_tensors(value: Any, *, device: Device | None = None, pin_memory: bool = False) -> Any:
    """``value`` with its numbers and numeric arrays as tensors, its structure kept.

    See the module documentation for what converts. Arrays become tensors that share
    their memory (``torch.from_numpy``) unless torch cannot use it as it is.

    >>> import numpy as np
    >>> to_tensors({"x": np.arange(3, dtype=np.float32), "name": "a", "n": [1, 2.5]})
    {'x': tensor([0., 1., 2.]), 'name': 'a',
     'n': [tensor(1), tensor(2.5000, dtype=torch.float64)]}
    """
    target = None if device is None else torch.device(device)
    return _converter(target, check_bool("pin_memory", pin_memory))(value)


def _converter(device: torch.device | None, pin_memory: bool) -> Callable[[Any], Any]:
    pin = pin_memory and torch.cuda.is_available()

    def move(tensor: torch.Tensor) -> torch.Tensor:
        if pin:
            tensor = tensor.pin_memory()
        if device is not None:
            tensor = tensor.to(device, non_blocking=pin)
        return tensor

    def convert(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return move(value)
        if isinstance(value, np.ndarray):
            if isinstance(value, np.ma.MaskedArray) or value.dtype.kind not in NUMERIC_KINDS:
                return value
            tensor = _from_numpy(value)
            return value if tensor is None else move(tensor)
        if isinstance(value, _NUMBERS):
            array = np.asarray(value)
            if array.dtype.kind not in NUMERIC_KINDS:  # str_, datetime64, a huge int
                return value
            tensor = _from_numpy(array)
            return value if tensor is None else move(tensor)
        if isinstance(value, tuple):
            items = [convert(item) for item in value]
            if hasattr(value, "_fields"):  # a named tuple
                return type(value)(*items)
            return tuple(items)
        if isinstance(value, list):
            return [convert(item) for item in value]
        if isinstance(value, Mapping):
            converted = {key: convert(item) for key, item in value.items()}
            if type(value) is dict:
                return converted
            factory: Any = type(value)
            try:  # OrderedDict and other mappings built from a dict
                return factory(converted)
            except TypeError:
                return converted
        return value

    return convert


def _from_numpy(array: np.ndarray[Any, Any]) -> torch.Tensor | None:
    """A tensor over ``array``'s memory, over a copy where torch cannot use it; ``None``
    for a dtype this torch lacks."""
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    elif not array.flags.writeable or any(
        step < 0 or step % array.itemsize for step in array.strides
    ):
        # torch.from_numpy refuses negative strides, and warns on read-only memory
        # (a tensor could write into it): both get a contiguous copy of their own.
        array = np.array(array, order="C")
    try:
        return torch.from_numpy(array)
    except TypeError:  # unsigned 16/32/64-bit on torch before 2.3
        return None
