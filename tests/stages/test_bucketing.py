"""``bucket_by_length``: padded batches of elements of similar length, as tf.data's
``bucket_by_sequence_length``; every element in exactly one batch, exact resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import headrace as hr
from headrace.stages import bucket_by_length

BOUNDARIES, SIZES = [3, 6], [4, 3, 2]


def sequences(count: int, seed: int = 0) -> list[list[int]]:
    """Sequences 1..9 long; element ``i`` holds ``i`` then its length's worth of it."""
    rng = np.random.default_rng(seed)
    return [[i] * int(rng.integers(1, 10)) for i in range(count)]


def bucket_of(length: int) -> int:
    return sum(length >= b for b in BOUNDARIES)


def test_every_element_is_in_one_batch_of_its_bucket_padded_to_the_longest():
    data = sequences(200)
    batches = list(hr.from_iterable(data).bucket_by_length(len, BOUNDARIES, SIZES))
    seen: list[int] = []
    for batch in batches:
        ids = batch[:, 0].tolist()
        lengths = [len(data[i]) for i in ids]
        buckets = {bucket_of(n) for n in lengths}
        assert len(buckets) == 1  # one bucket per batch
        assert len(ids) <= SIZES[buckets.pop()]
        assert batch.shape[1] == max(lengths)  # padded to its longest, no further
        for row, i in zip(batch.tolist(), ids, strict=True):
            assert row == data[i] + [0] * (batch.shape[1] - len(data[i]))
        seen.extend(ids)
    assert sorted(seen) == list(range(200))
    for bucket in range(3):  # within a bucket, the input's order
        order = [i for i in seen if bucket_of(len(data[i])) == bucket]
        assert order == sorted(order)
    # Full batches but for at most one partial batch per bucket, at the end.
    short = [n for n, b in enumerate(batches) if len(b) < SIZES[bucket_of(len(data[int(b[0, 0])]))]]
    assert short == list(range(len(batches) - len(short), len(batches)))
    assert len(short) <= 3


def test_drop_remainder_drops_the_buckets_that_are_not_full():
    data = sequences(50, seed=3)
    kept = list(
        hr.from_iterable(data).bucket_by_length(len, BOUNDARIES, SIZES, drop_remainder=True)
    )
    assert all(len(b) == SIZES[bucket_of(len(data[int(b[0, 0])]))] for b in kept)
    whole = list(hr.from_iterable(data).bucket_by_length(len, BOUNDARIES, SIZES))
    assert sum(map(len, whole)) == 50 > sum(map(len, kept))


def test_structures_are_padded_field_by_field():
    examples = [{"tokens": np.arange(n) + 1, "label": n % 2} for n in (2, 5, 3, 1)]
    batches = list(
        bucket_by_length(examples, lambda e: len(e["tokens"]), [3], [2, 2], padding_value=-1)
    )
    # Lengths 2, 5, 3, 1: the bucket of 3 and more fills first.
    assert [b["label"].tolist() for b in batches] == [[1, 1], [0, 1]]
    assert batches[0]["tokens"].tolist() == [[1, 2, 3, 4, 5], [1, 2, 3, -1, -1]]
    assert batches[1]["tokens"].tolist() == [[1, 2], [1, -1]]


def check_resume(pipeline: hr.Pipeline[Any], epoch: int) -> None:
    full = [b.tolist() for b in pipeline.iter(epoch=epoch)]
    for k in range(len(full) + 1):
        with pipeline.iter(epoch=epoch) as run:
            taken = [next(run).tolist() for _ in range(k)]
            state = json.loads(json.dumps(run.state()))
        assert k == 0 or state["stages"] is not None  # where it stands, not a replay
        assert taken + [b.tolist() for b in pipeline.iter(state=state)] == full, k


def test_resume_reads_again_from_the_oldest_bucketed_element(tmp_path: Path):
    # One length in 100 falls in the last bucket: its elements wait long in it (past
    # the notes a run keeps, which it thins), and the file reader below must be taken
    # up from before them.
    path = tmp_path / "seqs.jsonl"
    data = [[i] * (9 if i % 100 == 7 else 1 + i % 4) for i in range(400)]
    path.write_text("".join(json.dumps(s) + "\n" for s in data))
    pipeline = hr.read_jsonl(str(path)).shuffle(16, seed=1).bucket_by_length(len, [3, 6], [4, 3, 4])
    check_resume(pipeline, epoch=2)
    check_resume(hr.from_iterable(data).bucket_by_length(len, [2], [5, 2]), epoch=0)


def test_a_bad_length_names_the_element():
    pipeline = hr.from_iterable([[1], [1, 2], None]).bucket_by_length(len, [2], [5, 5])
    with pytest.raises(TypeError) as raised:
        list(pipeline)
    assert any(
        "bucket_by_length" in note and "element 2" in note for note in raised.value.__notes__
    )
    with pytest.raises(TypeError, match=r"length_fn must return an int, got 1\.5"):
        list(hr.from_iterable([[1]]).bucket_by_length(lambda s: 1.5, [2], [5, 5]))
    with pytest.raises(ValueError, match="at least 0, got -1"):
        list(hr.from_iterable([[1]]).bucket_by_length(lambda s: -1, [2], [5, 5]))


@pytest.mark.parametrize(
    ("boundaries", "sizes", "error", "message"),
    [
        ([3, 3], [1, 1, 1], ValueError, r"boundaries must increase, got \[3, 3\]"),
        ([3], [1], ValueError, r"one size per bucket, len\(boundaries\) \+ 1 = 2, got 1"),
        ([0], [1, 1], ValueError, "boundaries"),
        ([3], [1, 0], ValueError, "batch_sizes"),
        ("ab", [1], TypeError, "boundaries must be a list of ints"),
    ],
)
def test_bad_buckets_are_refused(boundaries, sizes, error, message):
    with pytest.raises(error, match=message):
        hr.range(3).bucket_by_length(len, boundaries, sizes)


def test_a_state_taken_before_a_resumed_run_goes_on_is_the_same_state():
    pipeline = hr.from_iterable(sequences(60, seed=5)).bucket_by_length(len, BOUNDARIES, SIZES)
    with pipeline.iter() as run:
        for _ in range(5):
            next(run)
        state = json.loads(json.dumps(run.state()))
        rest = [b.tolist() for b in run]
    with pipeline.iter(state=state) as resumed:
        assert json.loads(json.dumps(resumed.state())) == state
        assert [b.tolist() for b in resumed] == rest
