"""global_shuffle: a seeded permutation of a random-access source, anew every epoch.

Every epoch is a permutation of the source, for lengths around the edges of both ways
of drawing it (an exact table up to ``EXACT_UP_TO``, a Feistel network with cycle
walking above, which is also forced on small lengths); orders follow from the seed and
the epoch path and from nothing else; the positions elements land at are spread
evenly over many seeds; lists, tuples, strings, ranges with a step and numpy arrays
are read as they iterate; the refusals name what is wrong; and a run opened at a
position yields the tail of the epoch, also with a step and through ``Run.state``.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import headrace as hr
from headrace._seeds import derive_seed, python_rng
from headrace.engine.stage import StageContext
from headrace.errors import StageLabel
from headrace.sharding import shard
from headrace.stages.permute import (
    CHUNK,
    EXACT_UP_TO,
    FIRST_CHUNK,
    GlobalShuffle,
    IndexPermutation,
    global_shuffle,
)

SMALL_LENGTHS = [0, 1, 2, 3, 5, 64, 1000, 1001]


def epoch_of(pipeline: hr.Pipeline[Any], epoch: int = 0) -> list[Any]:
    return list(pipeline.iter(epoch=epoch))


def context(stage: GlobalShuffle, epoch: tuple[int, ...] = (0,)) -> StageContext:
    """The context a run opens the source in, for an epoch path."""
    return StageContext(0, StageLabel(f"stage 0 {stage.name!r}", object()), epoch, name=stage.name)


def source_of(pipeline: hr.Pipeline[Any]) -> GlobalShuffle:
    stage = pipeline.stages[0]
    assert isinstance(stage, GlobalShuffle)
    return stage


# -- a permutation, whatever the length --------------------------------------------


@pytest.mark.parametrize("n", SMALL_LENGTHS)
def test_every_epoch_is_a_permutation(n: int) -> None:
    shuffled = global_shuffle(hr.range(n), seed=5)
    for epoch in range(3):
        assert sorted(epoch_of(shuffled, epoch)) == list(range(n))


@pytest.mark.parametrize(
    "n", [*SMALL_LENGTHS, 4, 7, 8, 9, 17, 1023, 1024, 1025, 2048, 2049, 4097, 70_001]
)
def test_the_feistel_network_is_a_bijection_at_every_length(n: int) -> None:
    # Forced below EXACT_UP_TO too, where its domain has only a few bits and cycle
    # walking has the most to do (n = 5: three of eight values lie outside).
    for seed in range(3):
        perm = IndexPermutation(n, python_rng(seed, (0,)), exact_up_to=0)
        indices = perm.at(np.arange(n, dtype=np.uint64))
        assert indices.dtype == np.uint64
        assert np.array_equal(np.sort(indices), np.arange(n, dtype=np.uint64))
        # One index at a time (plain Python) agrees with the vectorised computation.
        probe = sorted({0, n // 2, n - 1} if n else set())
        assert [perm[p] for p in probe] == [int(indices[p]) for p in probe]


@pytest.mark.parametrize("n", [100_000, 2**17, 2**17 + 1])
def test_a_long_source_is_permuted(n: int) -> None:
    shuffled = global_shuffle(hr.range(n), seed=11)
    out = np.fromiter(shuffled.iter(epoch=0), dtype=np.int64, count=n)
    assert np.array_equal(np.sort(out), np.arange(n))
    assert not np.array_equal(out, np.arange(n))
    # Not merely a few blocks swapped: elements travel across the whole range.
    assert np.abs(out - np.arange(n)).mean() > n / 4


def test_the_small_table_and_the_network_share_the_index_api() -> None:
    for n in (EXACT_UP_TO, EXACT_UP_TO + 1):
        perm = IndexPermutation(n, python_rng(2, (0,)))
        assert perm.size == n
        assert perm[n - 1] == int(perm.at(np.array([n - 1]))[0])
        with pytest.raises(IndexError, match="past the"):
            perm[n]
        with pytest.raises(ValueError, match="position must be at least 0"):
            perm[-1]


# -- orders follow from (seed, epoch path) ------------------------------------------


def test_the_order_follows_from_the_seed_and_the_epoch() -> None:
    shuffled = global_shuffle(hr.range(5000), seed=3)
    first, again = epoch_of(shuffled, 0), epoch_of(shuffled, 0)
    assert first == again
    assert epoch_of(shuffled, 1) != first
    # The same description built again, or unpickled, gives the same orders.
    assert epoch_of(global_shuffle(hr.range(5000), seed=3), 0) == first
    assert epoch_of(pickle.loads(pickle.dumps(shuffled)), 0) == first
    assert epoch_of(global_shuffle(hr.range(5000), seed=4), 0) != first


def test_plain_iteration_takes_the_next_epoch_each_time() -> None:
    shuffled = global_shuffle(hr.from_iterable(list(range(300))), seed=0)
    runs = [list(shuffled) for _ in range(3)]
    assert runs == [epoch_of(shuffled, e) for e in range(3)]
    assert len({tuple(run) for run in runs}) == 3


def test_every_repetition_draws_its_own_order() -> None:
    n = 2000
    repeated = global_shuffle(hr.range(n), seed=9).repeat(3)
    out = epoch_of(repeated, 0)
    parts = [out[i * n : (i + 1) * n] for i in range(3)]
    assert all(sorted(part) == list(range(n)) for part in parts)
    assert len({tuple(part) for part in parts}) == 3
    assert epoch_of(repeated, 0) == out


def test_without_a_seed_every_run_draws_a_new_order() -> None:
    shuffled = global_shuffle(hr.range(3000))
    first, second = epoch_of(shuffled, 0), epoch_of(shuffled, 0)
    assert sorted(first) == sorted(second) == list(range(3000))
    assert first != second  # equal with probability 1 / 3000!


def test_the_pipeline_seed_stands_in_for_a_missing_one() -> None:
    seeded = global_shuffle(hr.range(3000)).with_seed(8)
    assert epoch_of(seeded, 0) == epoch_of(seeded, 0) != epoch_of(seeded, 1)
    # A seed given by with_seed before global_shuffle is kept.
    kept = global_shuffle(hr.range(3000).with_seed(8))
    assert kept.seed == 8
    assert epoch_of(kept, 0) == epoch_of(seeded, 0)
    # The stage's own seed wins over the pipeline's.
    own = global_shuffle(hr.range(3000), seed=1)
    assert epoch_of(own.with_seed(8), 0) == epoch_of(own, 0)


# -- statistical sanity (fixed seeds: the figures never change) ----------------------


def chi_square(counts: np.ndarray[Any, Any]) -> float:
    expected = counts.sum() / counts.size
    return float(((counts - expected) ** 2 / expected).sum())


@pytest.mark.parametrize("n", [10, 1000, 5003])
def test_where_element_zero_lands_is_spread_over_the_epoch(n: int) -> None:
    # Over 2000 seeds, the position of element 0 falls in each tenth of the epoch about
    # equally often: chi-square with 9 degrees of freedom, which exceeds 40 with
    # probability 1e-5 for a uniform shuffle. The identity would give 18000.
    buckets = np.zeros(10, dtype=np.int64)
    for seed in range(2000):
        indices = IndexPermutation(n, python_rng(seed, (0,))).at(np.arange(n))
        position = int(np.flatnonzero(indices == 0)[0])
        buckets[position * 10 // n] += 1
    assert chi_square(buckets) < 40, buckets


@pytest.mark.parametrize("n", [5003, 70_001])
@pytest.mark.parametrize("half", [False, True], ids=["next", "across-halves"])
def test_positions_apart_are_not_tied_together(n: int, half: bool) -> None:
    # Over 5000 seeds, the gap (modulo n) between the elements at positions 0 and 1,
    # or at 0 and the first position that differs from it only in the upper half of
    # the network's bits, falls in each tenth of 1..n-1 about equally often, as for a
    # uniform shuffle. A network of two rounds fails the second.
    other = 1 << ((n - 1).bit_length() // 2) if half else 1
    buckets = np.zeros(10, dtype=np.int64)
    for seed in range(5000):
        perm = IndexPermutation(n, python_rng(seed, (0,)))
        gap = (perm[other] - perm[0]) % n
        buckets[(gap - 1) * 10 // (n - 1)] += 1
    assert chi_square(buckets) < 40, buckets


# -- what it reads --------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        list("abcdefghij") * 150,
        tuple(range(0, 3000, 7)),
        "the quick brown fox",
        range(100, 0, -3),
        range(10, 5000, 4),
    ],
    ids=["list", "tuple", "str", "range-down", "range-step"],
)
def test_sequences_are_read_as_they_iterate(data: Any) -> None:
    out = epoch_of(global_shuffle(hr.from_iterable(data), seed=2))
    assert sorted(out) == sorted(data)
    assert out != list(data)


def test_a_range_with_a_step_is_permuted() -> None:
    out = epoch_of(global_shuffle(hr.range(7, 9000, 5), seed=2))
    assert sorted(out) == list(range(7, 9000, 5))
    assert out != list(range(7, 9000, 5))


def test_numpy_arrays_give_what_iterating_them_gives() -> None:
    flat = np.arange(2500, dtype=np.int32) * 3
    out = epoch_of(global_shuffle(hr.from_iterable(flat), seed=4))
    assert {type(x) for x in out} == {np.int32}
    assert np.array_equal(np.sort(np.array(out)), flat)

    rows = np.arange(3000 * 3).reshape(3000, 3)
    out_rows = epoch_of(global_shuffle(hr.from_iterable(rows), seed=4))
    assert all(isinstance(row, np.ndarray) and row.shape == (3,) for row in out_rows)
    stacked = np.stack(out_rows)
    assert np.array_equal(stacked[np.argsort(stacked[:, 0])], rows)
    assert not np.array_equal(stacked, rows)


def test_stages_after_it_see_the_shuffled_elements() -> None:
    pipeline = global_shuffle(hr.range(2000), seed=6)
    batches = epoch_of(pipeline.map(lambda x: x * 2).batch(500), 0)
    assert np.array_equal(np.concatenate(batches), np.array(epoch_of(pipeline, 0)) * 2)


def test_a_huge_range_needs_no_memory_for_its_order() -> None:
    shuffled = global_shuffle(hr.range(2**64), seed=3)
    with shuffled.iter(epoch=0) as run:
        head = [next(run) for _ in range(5)]
    assert len(set(head)) == 5
    assert all(0 <= x < 2**64 for x in head)
    stage = source_of(shuffled)
    tail = list(stage.open_at(context(stage), 2**64 - 3))
    assert len(tail) == 3
    assert all(0 <= x < 2**64 for x in tail)
    assert repr(shuffled) == "Pipeline(global_shuffle(range(0, 18446744073709551616), seed=3))"


# -- length, order and description ----------------------------------------------------


def test_the_length_is_known() -> None:
    assert len(global_shuffle(hr.range(3, 50, 4))) == len(range(3, 50, 4))
    assert len(global_shuffle(hr.from_iterable(np.zeros((7, 2))))) == 7
    assert len(global_shuffle(hr.from_iterable([1, 2, 3])).map(str)) == 3
    assert global_shuffle(hr.range(2**70 // 2**7)).known_length() == 2**63


def test_the_order_is_unfixed_only_without_any_seed() -> None:
    unseeded = source_of(global_shuffle(hr.range(10)))
    assert unseeded.unfixed_order() == "a global shuffle without a seed"
    assert unseeded.unfixed_order(seeded=True) is None
    assert source_of(global_shuffle(hr.range(10), seed=0)).unfixed_order() is None
    with pytest.raises(ValueError, match="a global shuffle without a seed"):
        global_shuffle(hr.range(10)).iter().state()
    with pytest.raises(ValueError, match="a global shuffle without a seed"):
        shard(global_shuffle(hr.range(10)).map(str), 2, 0)


def test_the_name_shows_the_source_and_the_seed() -> None:
    assert repr(global_shuffle(hr.range(4), seed=2).map(str)) == (
        "Pipeline(global_shuffle(range(0, 4), seed=2) -> map(str))"
    )
    assert source_of(global_shuffle(hr.from_iterable([1, 2]))).name == (
        "global_shuffle(from_iterable(<list of 2>))"
    )


def test_shares_of_a_seeded_global_shuffle_partition_its_epoch() -> None:
    pipeline = global_shuffle(hr.range(1500), seed=1).map(lambda x: -x)
    shares = [epoch_of(shard(pipeline, 3, i), 2) for i in range(3)]
    whole = epoch_of(pipeline, 2)
    assert [x for i in range(3) for x in whole[i::3]] == [x for s in shares for x in s]


# -- refusals ---------------------------------------------------------------------------


def test_a_one_shot_iterator_is_refused() -> None:
    with pytest.raises(ValueError, match="one-shot iterator"):
        global_shuffle(hr.from_iterable(iter([1, 2, 3])))
    with pytest.raises(ValueError, match="one-shot iterator"):
        global_shuffle(hr.from_iterable(x for x in range(3)))


@pytest.mark.parametrize(
    "pipeline",
    [
        hr.from_iterable({1: "a", 2: "b"}),
        hr.from_iterable({1, 2, 3}),
        hr.from_iterable(np.array(5)),
        hr.from_generator(lambda: iter(range(3))),
        hr.zip(hr.range(3), hr.range(3)),
    ],
    ids=["dict", "set", "0-d array", "generator", "zip"],
)
def test_sources_that_cannot_be_read_by_index_are_refused(pipeline: hr.Pipeline[Any]) -> None:
    with pytest.raises(ValueError, match=r"cannot read .* by index") as caught:
        global_shuffle(pipeline)
    assert "shuffle(buffer_size)" in str(caught.value)


def test_stages_after_the_source_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"right after it, but .* has stage 1 'map\(str\)' there"):
        global_shuffle(hr.range(10).map(str).batch(2))
    with pytest.raises(ValueError, match="already a global shuffle"):
        global_shuffle(global_shuffle(hr.range(10)))


@pytest.mark.parametrize("seed", ["1", 1.5, True, None])
def test_a_seed_must_be_a_non_negative_int(seed: Any) -> None:
    if seed is None:  # the valid default, for contrast
        assert len(global_shuffle(hr.range(3), seed=seed)) == 3
        return
    with pytest.raises(TypeError, match="seed must be an int"):
        global_shuffle(hr.range(3), seed=seed)


def test_other_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="seed must be at least 0"):
        global_shuffle(hr.range(3), seed=-1)
    with pytest.raises(TypeError, match="needs a pipeline, got list"):
        global_shuffle([1, 2, 3])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at most 2\\*\\*64 elements"):
        global_shuffle(hr.range(2**64 + 1))
    stage = source_of(global_shuffle(hr.range(3), seed=0))
    with pytest.raises(ValueError, match="start must be at least 0"):
        stage.open_at(context(stage), -1)
    with pytest.raises(ValueError, match="step must be at least 1"):
        stage.open_at(context(stage), 0, 0)


# -- opening at a position ----------------------------------------------------------------


@pytest.mark.parametrize("n", [700, 50_000])
def test_opening_at_a_position_yields_the_tail_of_the_epoch(n: int) -> None:
    shuffled = global_shuffle(hr.range(n), seed=12)
    stage = source_of(shuffled)
    for epoch in (0, 3):
        full = epoch_of(shuffled, epoch)
        starts = {0, 1, FIRST_CHUNK - 1, FIRST_CHUNK, FIRST_CHUNK + 1, n // 3, n - 1, n, n + 5}
        for start in sorted(starts | ({CHUNK + 7} if n > CHUNK else set())):
            assert list(stage.open_at(context(stage, (epoch,)), start)) == full[start:]
        for start, step in [(0, 2), (1, 3), (5, 1000), (n - 2, 7)]:
            assert list(stage.open_at(context(stage, (epoch,)), start, step)) == full[start::step]


def test_open_at_follows_the_epoch_path_and_the_pipeline_seed() -> None:
    shuffled = global_shuffle(hr.range(3000)).with_seed(5)
    stage = source_of(shuffled)
    full = epoch_of(shuffled, 1)
    derived = StageContext(0, "stage 0", (1,), name=stage.name, seed=_source_seed(shuffled))
    assert list(stage.open_at(derived, 1234)) == full[1234:]
    inner = epoch_of(global_shuffle(hr.range(3000), seed=7).repeat(2), 4)
    own = source_of(global_shuffle(hr.range(3000), seed=7))
    assert list(own.open_at(context(own, (4, 1)), 10)) == inner[3010:]


def _source_seed(pipeline: hr.Pipeline[Any]) -> int:
    """The seed a run derives for the source of a pipeline with a seed."""
    assert pipeline.seed is not None
    return derive_seed(pipeline.seed, "0")


def test_a_saved_run_state_resumes_where_it_stopped() -> None:
    shuffled = global_shuffle(hr.from_iterable(list(range(4000))), seed=2).map(lambda x: x + 1)
    run = shuffled.iter(epoch=3)
    head = [next(run) for _ in range(1500)]
    saved = run.state()
    run.close()
    assert head + list(shuffled.iter(state=saved)) == epoch_of(shuffled, 3)


# -- file lists ----------------------------------------------------------------------


def test_a_file_list_is_permuted_every_epoch(tmp_path: Path) -> None:
    for i in range(40):
        (tmp_path / f"part-{i:02d}.txt").write_text(str(i))
    pipeline = hr.files(str(tmp_path / "*.txt")).global_shuffle(seed=5).map(read_number)
    first, second = epoch_of(pipeline, 0), epoch_of(pipeline, 1)
    assert sorted(first) == sorted(second) == list(range(40))
    assert first != second
    assert first != list(range(40))
    assert epoch_of(pipeline, 0) == first  # the seed fixes each epoch's order
    # The permutation is the one a range of as many elements gets from the seed.
    assert first == epoch_of(global_shuffle(hr.range(40), seed=5), 0)
    assert pipeline.known_length() is None  # the files are found when a run starts
    (tmp_path / "part-40.txt").write_text("40")
    assert sorted(epoch_of(pipeline, 0)) == list(range(41))


def test_a_shuffled_file_list_resumes_and_shards(tmp_path: Path) -> None:
    for i in range(25):
        (tmp_path / f"{i:02d}.txt").write_text(str(i))
    pipeline = hr.files(str(tmp_path / "*.txt")).global_shuffle(seed=2).map(read_number)
    whole = epoch_of(pipeline, 3)
    run = pipeline.iter(epoch=3)
    taken = [next(run) for _ in range(9)]
    state = run.state()
    run.close()
    assert state["stages"] is not None  # resumed at its position, nothing replayed
    assert taken + list(pipeline.iter(state=state)) == whole
    shares = [epoch_of(shard(pipeline, 4, i), 3) for i in range(4)]
    assert sorted(x for s in shares for x in s) == list(range(25))


def test_a_file_list_shuffled_by_files_itself_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="shuffled already; leave out shuffle=True"):
        hr.files(str(tmp_path / "*.txt"), shuffle=True, seed=1).global_shuffle()


def read_number(path: str) -> int:
    return int(Path(path).read_text())
