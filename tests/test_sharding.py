"""Pipeline.shard: shares are disjoint, cover the data, and refuse orders that vary."""

from __future__ import annotations

import pickle
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import pytest
import torch.distributed as dist
from PIL import Image
from torch.testing._internal.distributed.fake_pg import FakeStore
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

import headrace as hr
from headrace.sharding import current_share, shard

# The machines this suite runs on may have fewer cores than the DataLoader workers these
# tests start (3), which torch warns about.
pytestmark = pytest.mark.filterwarnings(
    "ignore:This DataLoader will create:UserWarning:torch.utils.data.dataloader"
)


def union(pipeline: hr.Pipeline[Any], shares: int) -> Counter[Any]:
    return Counter(x for i in range(shares) for x in pipeline.shard(shares, i).iter(epoch=3))


def write_images(root: Path, count: int) -> None:
    for n in range(count):
        folder = root / ("a" if n % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4), (n, 0, 0)).save(folder / f"{n:02d}.png")


@pytest.mark.parametrize("shares", [1, 2, 3, 5])
def test_shares_partition_a_seeded_pipeline(shares: int) -> None:
    pipeline = hr.range(23).shuffle(7, seed=4).map(lambda x: x * 10)
    assert union(pipeline, shares) == Counter(x * 10 for x in range(23))
    # After a stage that needs the whole stream, too.
    counted = hr.range(23).shuffle(7, seed=4).enumerate().map(tuple)
    assert union(counted, shares) == Counter(counted.iter(epoch=3))


@pytest.mark.parametrize("shares", [2, 20])
def test_a_source_shuffling_without_a_seed_is_refused(tmp_path: Path, shares: int) -> None:
    write_images(tmp_path, 12)
    # Before a whole-stream stage, or with fewer files than shares, every share reads
    # the source in full: each would draw its own order and the shares would overlap.
    unseeded = hr.image_folder(tmp_path, shuffle=True).enumerate()
    with pytest.raises(ValueError, match="shuffle=True without a seed"):
        unseeded.shard(shares, 0)
    files = hr.files(str(tmp_path / "*" / "*.png"), shuffle=True).enumerate()
    with pytest.raises(ValueError, match="shuffle=True without a seed"):
        files.shard(shares, 1)
    seeded = hr.image_folder(tmp_path, shuffle=True, seed=1).enumerate()
    assert union(seeded, shares) == Counter(seeded.iter(epoch=3))
    assert len(union(seeded, shares)) == 12


def test_an_unseeded_shuffle_inside_a_zip_is_refused() -> None:
    inner = hr.range(5).shuffle(3)
    with pytest.raises(ValueError, match=r"a shuffle without a seed \(in Pipeline\(range"):
        hr.zip(inner, hr.range(5)).enumerate().shard(2, 0)
    with pytest.raises(ValueError, match="a parallel map with ordered=False"):
        hr.range(9).map(abs, workers=2, ordered=False).enumerate().shard(2, 0)


def test_a_file_cache_cannot_be_shared(tmp_path: Path) -> None:
    cached = hr.range(10).cache(tmp_path / "cache.bin").map(str)
    with pytest.raises(ValueError, match="every share would write its part to the one file"):
        cached.shard(2, 0)


# -- equal shares -----------------------------------------------------------------------

UNEVEN = [(2, 7), (3, 10), (3, 11), (4, 7), (5, 23)]


@pytest.mark.parametrize(("shares", "n"), UNEVEN)
def test_equal_shares_drop_the_surplus_or_pad_with_first_elements(shares: int, n: int) -> None:
    q, r = divmod(n, shares)
    assert r != 0
    pipeline = hr.range(n).map(lambda x: x * 10)
    dropped = [list(shard(pipeline, shares, i, equal="drop")) for i in range(shares)]
    padded = [list(shard(pipeline, shares, i, equal="pad")) for i in range(shares)]
    assert [len(share) for share in dropped] == [q] * shares
    assert [len(share) for share in padded] == [q + 1] * shares
    assert [len(shard(pipeline, shares, i, equal="drop")) for i in range(shares)] == [q] * shares
    # "drop": the r longer shares lose their last element, the last r of the data.
    kept = Counter(x for share in dropped for x in share)
    assert kept == Counter(x * 10 for x in range(q * shares))
    # "pad": everything once, and the first element of each shorter share twice.
    extra = Counter(x * 10 for x in range(r, shares))
    everything = Counter(x * 10 for x in range(n))
    assert Counter(x for share in padded for x in share) == everything + extra


@pytest.mark.parametrize(("shares", "n", "size"), [(2, 9, 2), (3, 20, 3), (4, 26, 3), (3, 7, 2)])
def test_equal_shares_of_a_batched_pipeline_count_batches(shares: int, n: int, size: int) -> None:
    pipeline = hr.range(n).shuffle(5, seed=2).batch(size)
    plain = [[b.tolist() for b in shard(pipeline, shares, i).iter(epoch=1)] for i in range(shares)]
    counts = [len(share) for share in plain]
    assert len(set(counts)) == 2  # these shares batch out unevenly without equal=
    low, high = min(counts), max(counts)
    for mode, count in (("drop", low), ("pad", high)):
        got = []
        for i in range(shares):
            share = shard(pipeline, shares, i, equal=mode)
            assert len(share) == count
            got.append([b.tolist() for b in share.iter(epoch=1)])
        assert [len(batches) for batches in got] == [count] * shares
        for batches, whole in zip(got, plain, strict=True):
            # Each share is its own share cut at the count, or followed by its first batches.
            assert batches == (whole + whole)[:count]
        elements = Counter(x for batches in got for batch in batches for x in batch)
        if mode == "drop":
            assert set(elements) <= set(range(n))
            assert max(elements.values()) == 1
            # The shortest share loses nothing: at most one batch from each other share.
            assert n - sum(elements.values()) <= (shares - 1) * size
        else:
            assert set(elements) == set(range(n))
            assert sum(elements.values()) - n <= (shares - 1) * size


def test_equal_shares_after_a_stage_that_needs_the_whole_stream() -> None:
    pipeline = hr.range(100).skip(3).take(10).enumerate()
    dropped = [list(shard(pipeline, 4, i, equal="drop")) for i in range(4)]
    assert [len(share) for share in dropped] == [2] * 4
    assert sorted(x for share in dropped for x in share) == list(pipeline)[:8]


def test_equal_shares_need_known_lengths(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("1\n2\n3\n")
    (tmp_path / "b.txt").write_text("4\n")
    unknown: list[hr.Pipeline[Any]] = [
        hr.range(10).filter(lambda x: x % 3),
        hr.text_lines(str(tmp_path / "*.txt")),  # shared by file: two shares
        hr.text_lines(str(tmp_path / "*.txt")).map(int),  # shared by line: three
    ]
    for pipeline, shares in zip(unknown, (2, 2, 3), strict=True):
        with pytest.raises(ValueError, match="needs the length of every share before running"):
            shard(pipeline, shares, 0, equal="drop")
        with pytest.raises(ValueError, match="needs the length of every share before running"):
            shard(pipeline, equal="pad")
    # Without equal=, the same pipelines share as before.
    assert sorted(union(unknown[2], 3)) == [1, 2, 3, 4]


def test_more_shares_than_elements() -> None:
    pipeline = hr.range(3)
    assert [list(shard(pipeline, 5, i, equal="drop")) for i in range(5)] == [[]] * 5
    assert list(shard(pipeline, 5, 1, equal="pad")) == [1]
    with pytest.raises(ValueError, match=r"share 4 of 5 .* has no element to repeat"):
        shard(pipeline, 5, 4, equal="pad")
    with pytest.raises(ValueError, match="equal must be 'drop', 'pad' or None, got 'even'"):
        shard(pipeline, 2, 0, equal="even")


def test_a_share_shorter_than_its_stages_promised_is_an_error() -> None:
    data = list(range(9))
    share = shard(hr.from_iterable(data), 2, 1, equal="pad")  # 4 of 5: pads one
    assert list(share) == [1, 3, 5, 7, 1]
    data.pop()
    data.pop()  # share 1 now yields 3 elements: equal shares can no longer hold
    with pytest.raises(ValueError, match=r"yielded 3 element\(s\) where its stages promised 4"):
        list(share)


def test_endless_shares() -> None:
    endless = hr.range(3).repeat()
    assert list(shard(endless, 2, 1, equal="pad").take(4)) == [1, 1, 1, 1]
    assert list(shard(endless, 4, 3, equal="drop")) == []  # share 3 has nothing to repeat
    one = hr.range(1).repeat()  # share 0 is endless, share 1 empty
    assert list(shard(one, 2, 0, equal="drop")) == list(shard(one, 2, 1, equal="drop")) == []
    with pytest.raises(ValueError, match=r"share 1 of 2 .* to the length of an endless share"):
        shard(one, 2, 1, equal="pad")


# -- this process's share: rank and DataLoader worker ------------------------------------

LAUNCHER = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@pytest.fixture(autouse=True)
def single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """No launcher variables from the environment the tests run in."""
    for name in LAUNCHER:
        monkeypatch.delenv(name, raising=False)


def launched(monkeypatch: pytest.MonkeyPatch, rank: int, world: int) -> None:
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("WORLD_SIZE", str(world))
    monkeypatch.setenv("LOCAL_RANK", str(rank % 2))  # never read: the node's rank


def tagged(x: int) -> tuple[int, int]:
    """``x`` and the DataLoader worker it went through (-1 outside any)."""
    info = get_worker_info()
    return x, -1 if info is None else info.id


class Plain(IterableDataset[Any]):
    """A pipeline iterated as it is in each DataLoader worker, with no sharing of its own."""

    def __init__(self, pipeline: hr.Pipeline[Any]) -> None:
        self.pipeline = pipeline

    def __iter__(self) -> Iterator[Any]:
        return iter(self.pipeline.iter(epoch=0))


def through_loader(dataset: IterableDataset[Any], workers: int) -> list[tuple[int, int]]:
    loader = DataLoader(dataset, batch_size=None, num_workers=workers)
    return [(int(x), int(w)) for x, w in loader]


@pytest.mark.parametrize(("world", "workers"), [(2, 2), (3, 1), (1, 3), (2, 3), (4, 2), (5, 4)])
def test_process_shares_partition_the_data(
    monkeypatch: pytest.MonkeyPatch, world: int, workers: int
) -> None:
    # The pipeline's seed fixes the shuffle's order, which every share runs in full.
    whole = hr.range(41).shuffle(9).enumerate().map(lambda p: p[0] * 100 + p[1]).with_seed(3)
    pipeline = shard(whole)
    expected = Counter(whole.iter(epoch=0))
    assert len(expected) == 41
    seen: Counter[int] = Counter()
    for rank in range(world):
        launched(monkeypatch, rank, world)
        assert current_share() == (world, rank)
        # DataLoader workers share the rank's share as shard(pipeline, workers, w) does.
        for worker in range(workers):
            share = shard(pipeline, workers, worker)
            elements = list(share.iter(epoch=0))
            assert len(elements) == len(share)
            seen.update(elements)
    assert seen == expected


@pytest.mark.parametrize(("world", "workers"), [(2, 2), (3, 1), (1, 3)])
def test_ranks_and_real_dataloader_workers_partition_the_data(
    monkeypatch: pytest.MonkeyPatch, world: int, workers: int
) -> None:
    pipeline = shard(hr.range(50).map(tagged))
    total = world * workers
    seen: Counter[int] = Counter()
    for rank in range(world):
        launched(monkeypatch, rank, world)  # forked workers inherit the environment
        got = through_loader(pipeline.to_torch(), workers)
        seen.update(x for x, _ in got)
        assert {worker for _, worker in got} == set(range(workers))  # real workers
        for x, worker in got:
            assert x % total == rank * workers + worker
    assert seen == Counter(range(50))


def test_workers_find_their_share_without_the_torch_integration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pipeline = shard(hr.range(30).map(tagged))
    seen: Counter[int] = Counter()
    for rank in range(2):
        launched(monkeypatch, rank, 2)
        got = through_loader(Plain(pipeline), 3)
        assert {w for _, w in got} == {0, 1, 2}
        assert all(x % 6 == rank * 3 + w for x, w in got)
        seen.update(x for x, _ in got)
    assert seen == Counter(range(30))
    # The main process is worker 0 of 1: the rank's share in full.
    assert [x for x, _ in pipeline] == list(range(1, 30, 2))


def test_sharing_a_process_share_again_splits_it_further(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pipeline = shard(hr.range(60))
    parts = []
    for rank in range(2):
        launched(monkeypatch, rank, 2)
        for a in range(2):
            for b in range(3):
                part = list(shard(shard(pipeline, 2, a), 3, b))
                # Each rank's share in 6, as a file source splits a shard again: part
                # a + 2 * b of rank r's 6 is share r * 6 + a + 2 * b of 12.
                assert part == list(range(rank * 6 + a + 2 * b, 60, 12))
                parts.append(part)
    assert sorted(x for part in parts for x in part) == list(range(60))


def test_equal_shares_give_every_rank_the_same_number_of_batches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 2 ranks of 2 workers, 4 shares of 0..24 in batches of 3: share 0 has 7 elements,
    # 3 batches ([0, 4, 8], [12, 16, 20], [24]); shares 1 to 3 have 6 elements, 2 batches.
    data = hr.range(25).map(lambda x: np.array([x, x]))
    for equal, count in (("drop", 2), ("pad", 3)):
        pipeline = shard(data.batch(3), equal=equal)
        batches = {}
        for rank in range(2):
            launched(monkeypatch, rank, 2)
            loader = DataLoader(pipeline.to_torch(), batch_size=None, num_workers=2)
            batches[rank] = [batch[:, 0].tolist() for batch in loader]
        assert len(batches[0]) == len(batches[1]) == 2 * count
        rows = Counter(x for rank in batches.values() for batch in rank for x in batch)
        if equal == "drop":
            assert rows == Counter(range(24))  # share 0 left out its last batch, [24]
        else:  # shares 1 to 3 repeated their first batch
            assert rows == Counter(range(25)) + Counter([1, 5, 9, 2, 6, 10, 3, 7, 11])


def test_the_share_is_picked_at_every_run(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    pipeline = shard(hr.range(8).tap(calls.append).cache())
    assert len(pipeline) == 8  # one process
    assert list(pipeline) == list(range(8))
    launched(monkeypatch, 1, 2)
    assert len(pipeline) == 4
    assert list(pipeline) == [1, 3, 5, 7]
    launched(monkeypatch, 0, 2)
    assert list(pipeline) == [0, 2, 4, 6]
    # Each share's memory cache filled once: the runs after it read no element again.
    calls.clear()
    assert list(pipeline) == [0, 2, 4, 6]
    launched(monkeypatch, 1, 2)
    assert list(pipeline) == [1, 3, 5, 7]
    assert calls == []


def test_a_run_of_the_process_share_resumes_from_its_state(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    launched(monkeypatch, 1, 3)
    shuffled = hr.range(30).shuffle(8).with_seed(5)  # derived seeds: the same in both
    pipeline = shard(shuffled)
    with pipeline.iter(epoch=2) as run:
        first = [next(run), next(run), next(run)]
        state = run.state()
    expected = list(shard(shuffled, 3, 1).iter(epoch=2))
    assert first + list(pipeline.iter(state=state)) == expected
    with (
        shard(hr.range(9).shuffle(3)).iter() as run,
        pytest.raises(ValueError, match="a shuffle without a seed"),
    ):
        run.state()


def test_files_are_shared_by_file_among_ranks_when_there_are_enough(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for f in range(5):
        (tmp_path / f"{f}.txt").write_text("".join(f"{f}-{n}\n" for n in range(4)))
    lines = shard(hr.text_lines(str(tmp_path / "*.txt")))
    for world, by_file in ((3, True), (7, False)):
        readers: dict[str, set[int]] = {}
        seen: Counter[str] = Counter()
        for rank in range(world):
            launched(monkeypatch, rank, world)
            for line in lines:
                readers.setdefault(line.split("-")[0], set()).add(rank)
                seen[line] += 1
        assert seen == Counter(f"{f}-{n}" for f in range(5) for n in range(4))
        assert all(len(ranks) == 1 for ranks in readers.values()) is by_file


BAD_ENVIRONMENTS = [
    ({"RANK": "one", "WORLD_SIZE": "2"}, "RANK must be an integer, got 'one'"),
    ({"RANK": "0", "WORLD_SIZE": "2.0"}, r"WORLD_SIZE must be an integer, got '2\.0'"),
    ({"RANK": "0", "WORLD_SIZE": ""}, "WORLD_SIZE must be an integer, got ''"),
    ({"RANK": "2", "WORLD_SIZE": "2"}, r"RANK \(2\) must be below WORLD_SIZE \(2\)"),
    ({"RANK": "-1", "WORLD_SIZE": "2"}, "RANK must be at least 0, got '-1'"),
    ({"RANK": "0", "WORLD_SIZE": "0"}, "WORLD_SIZE must be at least 1, got '0'"),
    ({"WORLD_SIZE": "2"}, "WORLD_SIZE is set but RANK is not"),
    ({"RANK": "1", "LOCAL_RANK": "1"}, "RANK is set but WORLD_SIZE is not"),
    ({"LOCAL_RANK": "1"}, "LOCAL_RANK is set .'1'. but RANK and WORLD_SIZE are not"),
]


@pytest.mark.parametrize(("environment", "message"), BAD_ENVIRONMENTS)
def test_a_bad_launcher_environment_is_named_at_the_run(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], message: str
) -> None:
    pipeline = shard(hr.range(4))  # built before the environment is read
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=f"the environment variable {message}"):
        pipeline.iter()
    with pytest.raises(ValueError, match=f"the environment variable {message}"):
        current_share()


def test_numbers_and_modes_are_checked() -> None:
    with pytest.raises(ValueError, match="pass num_shards and index together, or neither"):
        shard(hr.range(4), 2)
    process_share = shard(hr.range(4))
    with pytest.raises(ValueError, match="is this process's share already"):
        shard(process_share)
    with pytest.raises(ValueError, match="give equal= to the shard"):
        shard(process_share, 2, 0, equal="drop")
    # What can be told before the run is refused when the pipeline is built.
    with pytest.raises(ValueError, match="a shuffle without a seed"):
        shard(hr.range(5).shuffle(3).enumerate())
    with pytest.raises(ValueError, match="needs the length of every share"):
        shard(hr.range(5).filter(bool), equal="drop")


@pytest.fixture
def process_group() -> Iterator[None]:
    """torch.distributed set up as rank 2 of 4, by torch's in-process test backend."""
    dist.init_process_group("fake", store=FakeStore(), rank=2, world_size=4)
    try:
        yield
    finally:
        dist.destroy_process_group()


def test_torch_distributed_comes_before_the_environment(
    monkeypatch: pytest.MonkeyPatch, process_group: None
) -> None:
    launched(monkeypatch, 0, 1)
    pipeline = shard(hr.range(20))
    assert current_share() == (4, 2)
    assert list(pipeline) == [2, 6, 10, 14, 18]
    # Forked DataLoader workers inherit the process group.
    got = through_loader(Plain(shard(hr.range(20).map(tagged))), 2)
    # Rank 2 of 4, worker w of 2: share 4 + w of 8.
    assert sorted(got) == [(x, x % 8 - 4) for x in range(20) if x % 8 in (4, 5)]


def test_spawned_workers_take_the_rank_of_the_process_that_sent_them(
    process_group: None,
) -> None:
    pipeline = shard(hr.range(40).map(tagged))
    payload = cloudpickle.dumps(pipeline)  # what a DataLoader sends a spawned worker
    dist.destroy_process_group()  # the receiving process has no group of its own
    try:
        received = cloudpickle.loads(payload)
        got = through_loader(Plain(received), 2)
        # Rank 2 of 4, worker w of 2: share 4 + w of 8.
        assert sorted(got) == [(x, x % 8 - 4) for x in range(40) if x % 8 in (4, 5)]
        # Outside a DataLoader worker, the sender's rank is not taken for this one's.
        assert [x for x, _ in received] == list(range(40))
        assert list(pickle.loads(pickle.dumps(shard(hr.range(6))))) == list(range(6))
    finally:
        dist.init_process_group("fake", store=FakeStore(), rank=2, world_size=4)


NO_TORCH = """
import sys
import headrace as hr
from headrace.sharding import current_share

print(current_share(), list(hr.sharding.shard(hr.range(10))), "torch" in sys.modules)
"""


def test_headrace_reads_the_environment_without_importing_torch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    launched(monkeypatch, 2, 3)
    completed = subprocess.run(
        [sys.executable, "-c", NO_TORCH], capture_output=True, text=True, timeout=60, check=False
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split() == ["(3,", "2)", "[2,", "5,", "8]", "False"]
