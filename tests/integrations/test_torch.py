"""headrace.torch: tensors from pipelines, DataLoader workers sharing a pipeline, training."""

from __future__ import annotations

import ast
import collections
import os
import pickle
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

import headrace as hr
import headrace.torch as hrt
from headrace.engine.plan import Plan
from headrace.sharding import shard

# The machines this suite runs on may have fewer cores than the workers these tests
# start (3), which torch warns about.
pytestmark = pytest.mark.filterwarnings(
    "ignore:This DataLoader will create:UserWarning:torch.utils.data.dataloader"
)


class Pair(NamedTuple):
    x: Any
    y: Any


def loader(dataset: Any, workers: int, **options: Any) -> DataLoader[Any]:
    options.setdefault("batch_size", None)
    return DataLoader(dataset, num_workers=workers, **options)


def items(values: Iterable[Any]) -> list[Any]:
    """Plain Python values of what a DataLoader yielded (0-d tensors, tuples, strings)."""
    out: list[Any] = []
    for value in values:
        if isinstance(value, torch.Tensor):
            out.extend(value.tolist() if value.ndim else [value.item()])
        else:
            out.append(value)
    return out


def error_from_workers(dataset: Any, workers: int) -> str:
    """The message of the ``ValueError`` a DataLoader's workers raise.

    The frames of the traceback are cleared: they hold the DataLoader's iterator in a
    reference cycle, and one shut down by the garbage collector waits 5 s per worker.
    """
    with pytest.raises(ValueError) as caught:  # noqa: PT011 (the message is returned)
        list(loader(dataset, workers))
    traceback.clear_frames(caught.tb)
    return str(caught.value)


def worker_id() -> int:
    info = get_worker_info()
    return -1 if info is None else info.id


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


# -- tensors ------------------------------------------------------------------------

DTYPES = [
    (np.bool_, torch.bool),
    (np.uint8, torch.uint8),
    (np.int8, torch.int8),
    (np.int16, torch.int16),
    (np.int32, torch.int32),
    (np.int64, torch.int64),
    (np.float16, torch.float16),
    (np.float32, torch.float32),
    (np.float64, torch.float64),
    (np.complex64, torch.complex64),
    (np.complex128, torch.complex128),
]


@pytest.mark.parametrize(("numpy_dtype", "torch_dtype"), DTYPES)
def test_numeric_arrays_become_tensors_over_the_same_memory(
    numpy_dtype: Any, torch_dtype: torch.dtype
) -> None:
    array = (np.arange(12) % 3).astype(numpy_dtype).reshape(3, 4)
    tensor = hrt.to_tensors(array)
    assert isinstance(tensor, torch.Tensor)
    assert tensor.dtype == torch_dtype
    assert tensor.shape == (3, 4)
    assert tensor.data_ptr() == array.ctypes.data
    assert np.shares_memory(tensor.numpy(), array)
    array[0, 0] = 1  # one buffer: the tensor sees the write
    assert tensor[0, 0].item() == 1


def test_arrays_torch_cannot_use_as_they_are_are_copied_with_their_values() -> None:
    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    frozen = base.copy()
    frozen.setflags(write=False)
    reversed_rows = base[::-1]
    big_endian = np.arange(5, dtype=">i4")
    for array in (frozen, reversed_rows, big_endian):
        tensor = hrt.to_tensors(array)  # no warning either: warnings are errors here
        assert isinstance(tensor, torch.Tensor)
        np.testing.assert_array_equal(tensor.numpy(), array)
        assert not np.shares_memory(tensor.numpy(), array)
    assert hrt.to_tensors(big_endian).dtype == torch.int32
    # Positive strides are fine: a column slice still shares the buffer.
    columns = base[:, ::2]
    tensor = hrt.to_tensors(columns)
    np.testing.assert_array_equal(tensor.numpy(), columns)
    assert np.shares_memory(tensor.numpy(), base)


def test_numbers_become_tensors_with_numpys_dtypes() -> None:
    got = hrt.to_tensors([3, 2.5, True, 1 + 2j, np.float32(1.5), np.int8(-4)])
    expected = [
        (3, torch.int64),
        (2.5, torch.float64),
        (True, torch.bool),
        (1 + 2j, torch.complex128),
        (1.5, torch.float32),
        (-4, torch.int8),
    ]
    assert len(got) == len(expected)
    for tensor, (value, dtype) in zip(got, expected, strict=True):
        assert isinstance(tensor, torch.Tensor)
        assert tensor.ndim == 0
        assert tensor.dtype == dtype
        assert tensor.item() == value


def test_structures_are_kept_and_non_numeric_values_left_as_they_are() -> None:
    text = np.array(["a", "b"])
    objects = np.array([{"k": 1}, None], dtype=object)
    when = np.array(["2024-01-01"], dtype="datetime64[D]")
    masked = np.ma.masked_array([1, 2], mask=[False, True])
    huge = 2**70
    raw = b"\x00\x01"
    element = {
        "pair": Pair(np.zeros(2, np.float32), 7),
        "nested": [(1, "name"), {"inner": np.ones(3, np.int16)}],
        "leave": (text, objects, when, masked, huge, raw, None, "s", np.str_("t")),
        "ordered": collections.OrderedDict(a=1),
    }
    got = hrt.to_tensors(element)
    assert set(got) == set(element)
    pair = got["pair"]
    assert type(pair) is Pair
    assert pair.x.dtype == torch.float32
    assert pair.y.dtype == torch.int64
    assert pair.y.item() == 7
    first, second = got["nested"]
    assert isinstance(got["nested"], list)
    assert type(first) is tuple
    assert first[0].item() == 1
    assert first[1] == "name"
    assert second["inner"].dtype == torch.int16
    for kept, original in zip(got["leave"], element["leave"], strict=True):
        assert kept is original
    assert type(got["ordered"]) is collections.OrderedDict
    assert got["ordered"]["a"].item() == 1


def test_batches_of_a_pipeline_arrive_as_tensors_with_the_same_values() -> None:
    pipeline = hr.range(10).map(lambda i: {"x": np.full(3, i, np.float32), "y": i}).batch(4)
    expected = list(pipeline)
    got = list(hrt.to_torch(pipeline))
    assert len(got) == len(expected) == 3
    for batch, reference in zip(got, expected, strict=True):
        assert batch["x"].dtype == torch.float32
        assert batch["y"].dtype == torch.int64
        np.testing.assert_array_equal(batch["x"].numpy(), reference["x"])
        np.testing.assert_array_equal(batch["y"].numpy(), reference["y"])


def test_pin_memory_without_cuda_does_nothing_and_device_moves_tensors() -> None:
    assert not torch.cuda.is_available()  # this suite runs on CPU-only machines
    array = np.arange(6, dtype=np.float32)
    pinned = hrt.to_tensors(array, pin_memory=True)
    assert not pinned.is_pinned()
    assert pinned.data_ptr() == array.ctypes.data  # not even copied
    moved = hrt.to_tensors((array, 1), device="cpu", pin_memory=True)
    assert moved[0].device == torch.device("cpu")
    assert moved[1].device == torch.device("cpu")
    dataset = hrt.to_torch(hr.range(3).batch(3), device=torch.device("cpu"), pin_memory=True)
    assert repr(dataset) == "TorchDataset(Pipeline(range(0, 3) -> batch(3)), " + (
        "device='cpu', pin_memory=True)"
    )
    (batch,) = list(dataset)
    assert batch.tolist() == [0, 1, 2]
    with pytest.raises(RuntimeError):
        hrt.to_torch(hr.range(3), device="no-such-device")
    with pytest.raises(TypeError, match="pin_memory"):
        hrt.to_torch(hr.range(3), pin_memory="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be iterable"):
        hrt.to_torch(5)  # type: ignore[arg-type]


# -- the dataset --------------------------------------------------------------------


def test_the_dataset_is_an_iterable_dataset_whose_every_iteration_is_a_new_epoch() -> None:
    pipeline = hr.range(20).shuffle(20, seed=3)
    dataset = hrt.to_torch(pipeline)
    assert isinstance(dataset, IterableDataset)
    first, second = items(dataset), items(dataset)
    assert sorted(first) == sorted(second) == list(range(20))
    assert first != second  # a seeded shuffle reshuffles every epoch
    assert first == list(pipeline.iter(epoch=0))
    assert second == list(pipeline.iter(epoch=1))
    through_loader = items(loader(dataset, 0))  # the third epoch, through a DataLoader
    assert through_loader == list(pipeline.iter(epoch=2))
    dataset.set_epoch(7)
    assert items(dataset) == items(dataset) == list(pipeline.iter(epoch=7))
    dataset.set_epoch(None)
    assert items(dataset) == list(pipeline.iter(epoch=3))


def test_any_other_iterable_is_wrapped_in_a_pipeline_run_again_every_pass() -> None:
    batches = [(np.full((2, 3), i, np.float32), np.array([i, i])) for i in range(3)]
    for dataset in (hrt.to_torch(batches), hrt.TorchDataset(batches)):
        assert isinstance(dataset.pipeline, Plan)  # a plan of one source over the list
        assert len(dataset) == 3
        for _ in range(2):  # every pass iterates the list again
            got = list(dataset)
            assert [y.tolist() for _, y in got] == [[0, 0], [1, 1], [2, 2]]
            assert all(x.dtype == torch.float32 and x.shape == (2, 3) for x, _ in got)
        # DataLoader workers share it out as they do any pipeline.
        assert sorted(int(y[0]) for _, y in loader(dataset, 2)) == [0, 1, 2]
    assert items(hrt.to_torch(range(5))) == [0, 1, 2, 3, 4]


def test_len_is_the_pipelines_length_when_it_is_known() -> None:
    dataset = hrt.to_torch(hr.range(10).map(lambda x: x).batch(3))
    assert len(dataset) == 4
    assert len(loader(dataset, 0)) == 4
    assert len(loader(hrt.to_torch(hr.range(10)), 0, batch_size=4)) == 3
    unknown = hrt.to_torch(hr.range(10).filter(lambda x: x % 2))
    with pytest.raises(TypeError, match="not known"):
        len(unknown)
    with pytest.raises(TypeError, match="endless"):
        len(hrt.to_torch(hr.range(3).repeat()))


# -- DataLoader workers share the pipeline ----------------------------------------


@pytest.mark.parametrize("workers", [0, 2, 3])
def test_dataloader_workers_yield_every_element_exactly_once(workers: int) -> None:
    pipeline = hr.from_iterable(list(range(100))).map(lambda x: (x, worker_id()))
    pairs = [(int(x), int(w)) for x, w in loader(hrt.to_torch(pipeline), workers)]
    assert sorted(x for x, _ in pairs) == list(range(100))
    by_worker = collections.defaultdict(list)
    for x, w in pairs:
        by_worker[w].append(x)
    if workers == 0:
        assert set(by_worker) == {-1}
    else:
        # Round-robin shares: worker w has every element with x % workers == w.
        assert set(by_worker) == set(range(workers))
        for w, xs in by_worker.items():
            assert sorted(xs) == list(range(w, 100, workers))


def test_dataloader_workers_with_batching_inside_the_dataloader() -> None:
    dataset = hrt.to_torch(hr.range(50).map(lambda x: np.array([x, -x])))
    batches = list(loader(dataset, 3, batch_size=8))
    rows = torch.cat(batches).tolist()
    assert sorted(rows) == [[x, -x] for x in range(50)]


def write_files(root: Path, count: int, lines: int) -> list[str]:
    expected = []
    for f in range(count):
        content = [f"file{f}-line{n}" for n in range(lines)]
        (root / f"part-{f}.txt").write_text("\n".join(content) + "\n")
        expected.extend(content)
    return sorted(expected)


@pytest.mark.parametrize("workers", [2, 3])
def test_dataloader_workers_read_disjoint_files_of_a_file_source(
    tmp_path: Path, workers: int
) -> None:
    expected = write_files(tmp_path, 5, 7)
    pipeline = hr.text_lines(str(tmp_path / "*.txt")).map(lambda s: (s, worker_id()))
    got = list(loader(hrt.to_torch(pipeline), workers))
    assert sorted(line for line, _ in got) == expected
    # Sharded by file: every file was read by one worker alone.
    readers = collections.defaultdict(set)
    for line, worker in got:
        readers[line.split("-")[0]].add(int(worker))
    assert len(readers) == 5
    assert all(len(ws) == 1 for ws in readers.values())
    assert set().union(*readers.values()) == set(range(workers))


def test_fewer_files_than_workers_share_the_lines_instead(tmp_path: Path) -> None:
    expected = write_files(tmp_path, 2, 9)
    pipeline = hr.text_lines(str(tmp_path / "*.txt")).map(lambda s: (s, worker_id()))
    got = list(loader(hrt.to_torch(pipeline), 3))
    assert sorted(line for line, _ in got) == expected
    # Shared line by line: every worker has lines of both files.
    files_by_worker = collections.defaultdict(set)
    for line, worker in got:
        files_by_worker[int(worker)].add(line.split("-")[0])
    assert files_by_worker == {w: {"file0", "file1"} for w in range(3)}


def test_shard_splits_after_the_last_stage_that_needs_the_whole_stream(tmp_path: Path) -> None:
    seen: list[int] = []
    pipeline = hr.range(30).tap(seen.append).map(lambda x: x * 10)
    share = shard(pipeline, 3, 1)
    names = [stage.name.split("(")[0] for stage in share.stages]
    assert names == ["range", "share", "tap", "map"]
    assert share.stages[1].name == "share(1 of 3)"
    assert list(share) == list(range(10, 300, 30))
    assert seen == list(range(1, 30, 3))  # the stages after the share see it alone
    assert len(share) == 10
    # take / enumerate / window need the whole stream: the share comes after them, and
    # the shares together give exactly what the pipeline gives.
    for whole in (
        hr.range(50).take(20).map(lambda x: x + 1),
        hr.range(12).enumerate().skip(1),
        hr.range(10).window(3, shift=1).take_while(lambda w: w[0] < 6),
        hr.range(40).shuffle(40, seed=2).take(9).batch(2).unbatch(),
        hr.range(5).repeat(2),
    ):
        union = [x for i in range(3) for x in shard(whole, 3, i).iter(epoch=4)]
        assert sorted(union) == sorted(whole.iter(epoch=4))
    # A file source with enough files reads only its files.
    write_files(tmp_path, 4, 3)
    lines = hr.text_lines(str(tmp_path / "*.txt"))
    assert "num_shards=2, shard_index=1" in repr(shard(lines, 2, 1))
    assert {s.split("-")[0] for s in shard(lines, 2, 1)} == {"file1", "file3"}
    assert shard(lines, 1, 0) is lines
    with pytest.raises(ValueError, match="below num_shards"):
        shard(lines, 2, 2)


def test_a_filled_memory_cache_is_not_shared_out_whole() -> None:
    cached = hr.range(10).cache()
    assert list(cached) == list(range(10))  # filled in this process
    assert list(shard(cached.map(lambda x: x), 2, 0)) == [0, 2, 4, 6, 8]
    mapped_then_cached = hr.range(10).map(lambda x: -x).cache()
    assert list(mapped_then_cached) == [-x for x in range(10)]
    assert list(shard(mapped_then_cached, 2, 1)) == [-1, -3, -5, -7, -9]


def test_orders_that_differ_between_workers_are_refused(tmp_path: Path) -> None:
    unseeded = hr.range(10).shuffle(10).take(5)
    with pytest.raises(ValueError, match="shuffle without a seed"):
        shard(unseeded, 2, 0)
    unordered = hr.range(10).map(lambda x: x, workers=2, ordered=False).enumerate()
    with pytest.raises(ValueError, match="ordered=False"):
        shard(unordered, 2, 0)
    inside_concat = hr.concat(hr.range(5).shuffle(5), [7])
    with pytest.raises(ValueError, match="shuffle without a seed"):
        shard(inside_concat, 2, 0)
    with pytest.raises(ValueError, match="one file"):
        shard(hr.range(10).cache(tmp_path / "cache.bin"), 2, 0)
    # After the share, an unseeded shuffle only mixes each worker's own share.
    mixed = [x for i in range(2) for x in shard(hr.range(10).shuffle(10), 2, i)]
    assert sorted(mixed) == list(range(10))
    # Through a DataLoader, the worker's error reaches the loop.
    assert "shuffle without a seed" in error_from_workers(hrt.to_torch(unseeded), 2)


def test_workers_agree_on_the_epoch_and_every_epoch_is_new() -> None:
    # The share comes after take(): every worker runs the seeded shuffle in full, so
    # they must all draw the same order to share out one set of 12 elements.
    pipeline = hr.range(60).shuffle(60, seed=1).take(12)
    dataset = hrt.to_torch(pipeline)
    torch.manual_seed(0)
    epochs = [items(loader(dataset, 3)) for _ in range(3)]
    for got in epochs:
        assert len(got) == len(set(got)) == 12
    assert len({frozenset(got) for got in epochs}) == 3  # a new draw every epoch
    dataset.set_epoch(5)
    assert sorted(items(loader(dataset, 3))) == sorted(pipeline.iter(epoch=5))
    dataset.set_epoch(None)
    persistent = loader(dataset, 2, persistent_workers=True)
    runs = [items(persistent) for _ in range(3)]
    for got in runs:
        assert len(got) == len(set(got)) == 12
    assert len({frozenset(got) for got in runs}) == 3
    del persistent
    dataset.set_epoch(8)  # persistent workers start there and count on
    persistent = loader(dataset, 2, persistent_workers=True)
    for epoch in (8, 9):
        assert sorted(items(persistent)) == sorted(pipeline.iter(epoch=epoch))
    del persistent


SPAWNED = """
import sys
import headrace as hr
from headrace.engine.plan import Plan
import headrace.torch as hrt
from torch.utils.data import DataLoader


def refuse_three(x):
    if x % 1000 == 3:
        raise ValueError(f"refused {x}")  # the line a worker's traceback shows
    return x


if __name__ == "__main__":
    offset = int(sys.argv[1])
    dataset = hrt.to_torch(hr.range(40).map(lambda x: x + offset).filter(lambda x: x % 2))
    loader = DataLoader(dataset, batch_size=None, num_workers=2, multiprocessing_context="spawn")
    print(sorted(int(x) for x in loader))
    failing = hrt.to_torch(hr.range(8).map(lambda x: x + offset).map(refuse_three))
    try:
        list(DataLoader(failing, batch_size=None, num_workers=1, multiprocessing_context="spawn"))
    except ValueError as error:
        print(repr(str(error)))
"""


def test_the_dataset_pickles_lambdas_and_all_for_spawned_workers(tmp_path: Path) -> None:
    offset = 1000
    dataset = hrt.to_torch(hr.range(40).map(lambda x: x + offset), device="cpu")
    dataset.set_epoch(3)
    copy = pickle.loads(pickle.dumps(dataset))
    assert repr(copy) == repr(dataset)
    assert items(copy) == list(range(1000, 1040))
    # A spawn-context DataLoader, in a process of its own (the spawn context starts a
    # resource tracker process that would outlive this test).
    script = tmp_path / "spawned.py"
    script.write_text(SPAWNED)
    completed = subprocess.run(
        [sys.executable, str(script), str(offset)],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    output, message = completed.stdout.strip().splitlines()
    assert output == str([x + offset for x in range(40) if (x + offset) % 2])
    # The worker's traceback names the script's own file, line and source line, though
    # the function travelled to the spawned worker by value.
    message = ast.literal_eval(message)
    line = (
        SPAWNED.splitlines().index(
            '        raise ValueError(f"refused {x}")  # the line a worker\'s traceback shows'
        )
        + 1
    )
    assert f'File "{script}", line {line}, in refuse_three' in message, message
    assert 'raise ValueError(f"refused {x}")' in message, message


def test_pin_memory_and_cuda_devices_are_refused_inside_worker_processes() -> None:
    for dataset in (
        hrt.to_torch(hr.range(4), pin_memory=True),
        hrt.to_torch(hr.range(4), device="cuda"),
    ):
        assert "pin_memory=True to the DataLoader" in error_from_workers(dataset, 2)
    # The DataLoader's own pin_memory is accepted (a warning-free no-op without CUDA)
    # and a CPU device is fine in workers.
    on_cpu = hrt.to_torch(hr.range(4), device="cpu")
    assert sorted(items(loader(on_cpu, 2))) == [0, 1, 2, 3]


# -- stopping -------------------------------------------------------------------------


@pytest.mark.usefixtures("nothing_left_running")
def test_leaving_a_loop_early_stops_headrace_workers() -> None:
    pipeline = hr.range(10_000).map(lambda x: np.full(4, x), workers=2).prefetch(4).batch(8)
    dataset = hrt.to_torch(pipeline)
    for number, _ in enumerate(dataset):
        if number == 3:
            break
    for number, _ in enumerate(loader(dataset, 0)):
        if number == 3:
            break
    iterator = iter(dataset)
    assert next(iterator).shape == (8, 4)
    iterator.close()
    processes = hr.range(1_000).map(lambda x: x + 1, workers=2, backend="process")
    for x in hrt.to_torch(processes):
        if x.item() == 5:
            break


def test_leaving_a_dataloader_loop_early_stops_its_workers_and_theirs(
    eventually: Callable[..., bool],
) -> None:
    # Each DataLoader worker runs a headrace process pool of its own; every element
    # carries the pids of the headrace worker and of the DataLoader worker.
    pipeline = (
        hr.range(10_000)
        .map(lambda x: (x, os.getpid()), workers=2, backend="process")
        .map(lambda pair: (*pair, os.getpid()))
    )
    ours: set[int] = set()
    torchs: set[int] = set()
    iterator = iter(loader(hrt.to_torch(pipeline), 2, batch_size=4))
    for _ in range(6):
        _, headrace_pids, torch_pids = next(iterator)
        ours.update(headrace_pids.tolist())
        torchs.update(torch_pids.tolist())
    del iterator
    assert len(torchs) == 2
    assert len(ours) >= 2
    assert os.getpid() not in ours | torchs
    assert eventually(lambda: not any(alive(pid) for pid in torchs), 10.0)
    assert eventually(lambda: not any(alive(pid) for pid in ours), 10.0)


# -- training -------------------------------------------------------------------------


def regression(samples: int) -> hr.Pipeline[Any]:
    """y = 2x + 1 with a little noise, each example drawn from its own generator."""

    def example(index: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        x = rng.uniform(-1, 1, size=1).astype(np.float32)
        return x, (2 * x + 1 + 0.05 * rng.normal(size=1)).astype(np.float32)

    return hr.range(samples).random_map(example, seed=0)


@pytest.mark.parametrize("how", ["direct", "dataloader-workers"])
def test_a_plain_training_loop_learns_from_a_pipeline(how: str) -> None:
    torch.manual_seed(0)
    model = nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.2)
    if how == "direct":
        data: Iterable[Any] = hrt.to_torch(regression(512).shuffle(512, seed=0).batch(16))
    else:
        data = loader(hrt.to_torch(regression(512)), 2, batch_size=16)
    losses = []
    for _ in range(6):
        total = 0.0
        count = 0
        for x, y in data:
            optimizer.zero_grad()
            loss = nn.functional.mse_loss(model(x), y)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            total += loss.item() * len(x)
            count += len(x)
        assert count == 512  # every example, once per epoch
        losses.append(total / count)
    assert losses[-1] < 0.05 * losses[0]
    assert model.weight.item() == pytest.approx(2, abs=0.1)
    assert model.bias.item() == pytest.approx(1, abs=0.1)


# -- checkpoints: state_dict() and load_state_dict(), statistics -----------------------


def checkpointed(tmp_path: Path, make: Callable[[], hrt.TorchDataset], stop: int) -> list[Any]:
    """Take ``stop`` batches, save the data state with torch.save beside a model's, and
    resume in a new dataset (as a restarted program does): the batches after."""
    dataset = make()
    batches = iter(loader(dataset, 0))
    for _ in range(stop):
        next(batches)
    model = nn.Linear(2, 1)
    torch.save({"model": model.state_dict(), "data": dataset.state_dict()}, tmp_path / "ck.pt")
    del batches
    saved = torch.load(tmp_path / "ck.pt")
    again = make()
    again.load_state_dict(saved["data"])
    return [b.tolist() for b in loader(again, 0)]


def test_a_checkpoint_resumes_with_the_next_batch(tmp_path: Path) -> None:
    def make() -> hrt.TorchDataset:
        pipeline = hr.range(100).shuffle(16, seed=2).map(lambda x: [x, -x], workers=2).batch(8)
        return hrt.to_torch(pipeline)

    whole = [b.tolist() for b in loader(make(), 0)]
    for stop in (1, 5, 12):
        assert checkpointed(tmp_path, make, stop) == whole[stop:]
    # At the end of an epoch the state is the start of the next one.
    dataset = make()
    first = [b.tolist() for b in dataset]
    saved = dataset.state_dict()
    again = make()
    again.load_state_dict(saved)
    assert [b.tolist() for b in again] == [b.tolist() for b in make().pipeline.iter(epoch=1)]
    assert first == whole


def test_a_dataset_gives_the_statistics_of_its_run() -> None:
    dataset = hrt.to_torch(hr.range(40).map(abs).batch(4))
    with pytest.raises(RuntimeError, match="no run yet"):
        dataset.stats()
    for _ in loader(dataset, 0):
        pass
    rows = dataset.stats()
    assert [(r["items_in"], r["items_out"]) for r in rows] == [(0, 40), (40, 40), (40, 10)]
    assert "batch(4)" in dataset.report()


def test_state_dict_is_refused_where_dataloader_workers_hold_the_positions() -> None:
    dataset = hrt.to_torch(hr.range(20))
    workers = loader(dataset, 2)
    with pytest.raises(ValueError, match="num_workers=2") as caught:
        dataset.state_dict()
    assert "num_workers=0" in str(caught.value)
    del workers
    assert dataset.state_dict() == {"headrace": None}  # no DataLoader with workers now


@pytest.mark.parametrize("bad", [None, {}, {"headrace": 3}, [1]])
def test_load_state_dict_refuses_what_state_dict_did_not_give(bad: Any) -> None:
    with pytest.raises(ValueError, match="load_state_dict"):
        hrt.to_torch(hr.range(3)).load_state_dict(bad)


def test_a_dataloader_that_would_batch_batches_is_refused() -> None:
    batched = hrt.to_torch(hr.range(12).batch(4))
    with pytest.raises(ValueError, match=r"\[1, batch, \.\.\.\].*batch_size=None"):
        list(DataLoader(batched))  # batch_size=1 by default
    assert [b.shape for b in DataLoader(batched, batch_size=None)] == [torch.Size([4])] * 3
    unbatched = hrt.to_torch(hr.range(12).batch(4).unbatch())
    assert len(list(DataLoader(unbatched, batch_size=3))) == 4
    with pytest.raises(ValueError, match=r"\[1, batch, \.\.\.\]") as caught:
        list(DataLoader(batched, num_workers=1))  # refused in the worker as well
    traceback.clear_frames(caught.tb)
