"""``hr.sample_from``: pipelines mixed at random with weights, as tf.data's
``sample_from_datasets``; every element read once, the weights kept, exact resume."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import headrace as hr
from headrace.stages import sample_from as sample_from_iterables


def sources(count: int = 3, size: int | None = None) -> list[hr.Pipeline[Any]]:
    """Pipeline ``i`` yields ``(i, 0), (i, 1), ...``: endless, or ``size`` elements."""
    made = []
    for i in range(count):
        numbers = hr.range(size) if size is not None else hr.range(10**9)
        made.append(numbers.map(lambda n, i=i: (i, n)))
    return made


@pytest.mark.parametrize("weights", [[0.5, 0.3, 0.2], [1, 1, 1], [9, 0.5, 0.5], None])
def test_the_share_of_each_pipeline_follows_its_weight(weights):
    draws = 20_000
    mixed = hr.sample_from(sources(), weights, seed=11)
    counts = [0, 0, 0]
    for source, _ in mixed.take(draws):
        counts[source] += 1
    shares = [1 / 3] * 3 if weights is None else [w / sum(weights) for w in weights]
    for count, share in zip(counts, shares, strict=True):
        # Within 4.5 standard deviations of the binomial count: a seeded draw that
        # would fail this once in 150,000 seeds.
        spread = math.sqrt(draws * share * (1 - share))
        assert abs(count - draws * share) < 4.5 * spread, (counts, shares)


def test_every_element_is_read_once_in_each_pipelines_order():
    mixed = hr.sample_from(sources(3, 50), [0.6, 0.3, 0.1], seed=3)
    seen = list(mixed)
    assert len(seen) == len(mixed) == 150
    for source in range(3):
        assert [n for s, n in seen if s == source] == list(range(50))
    # The light pipeline is mostly left for the end, when the others have ended.
    assert sum(s == 2 for s, _ in seen[:50]) < 15


def test_stop_on_empty_ends_with_the_first_pipeline_to_end():
    mixed = hr.sample_from(sources(2, 20), [0.5, 0.5], seed=5, stop_on_empty=True)
    seen = list(mixed)
    firsts = [sum(1 for s, _ in seen if s == source) for source in range(2)]
    assert max(firsts) == 20
    assert min(firsts) < 20
    assert len(seen) == sum(firsts)


def test_a_pipeline_of_weight_zero_is_never_read():
    read: list[int] = []
    never = hr.range(5).map(lambda n: read.append(n) or n)
    mixed = hr.sample_from([hr.range(10), never], [1, 0], seed=1)
    assert list(mixed) == list(range(10))
    assert read == []


def test_seeded_epochs_differ_and_each_epoch_repeats():
    mixed = hr.sample_from(sources(2, 30), seed=8)
    first, again, second = (list(mixed.iter(epoch=e)) for e in (0, 0, 1))
    assert first == again != second
    assert sorted(first) == sorted(second)
    unseeded = hr.sample_from(sources(2, 30))
    assert len({tuple(unseeded) for _ in range(3)}) > 1  # a new draw every run


def check_resume(mixed: hr.Pipeline[Any], epoch: int, k: int) -> None:
    full = list(mixed.iter(epoch=epoch))
    with mixed.iter(epoch=epoch) as run:
        taken = [next(run) for _ in range(k)]
        state = json.loads(json.dumps(run.state()))
    assert taken + list(mixed.iter(state=state)) == full


@given(
    st.lists(st.integers(0, 40), min_size=1, max_size=4),
    st.lists(st.sampled_from([0, 0.25, 1, 5]), min_size=4, max_size=4).filter(any),
    st.booleans(),
    st.integers(0, 3),
    st.data(),
)
@settings(max_examples=150, deadline=None)
def test_a_resumed_run_gives_the_rest_of_the_epoch(sizes, weights, stop, epoch, data):
    weights = weights[: len(sizes)]
    if not any(weights):
        weights[0] = 1
    parts = [
        hr.range(size).map(lambda n, i=i: (i, n)).shuffle(3, seed=i) for i, size in enumerate(sizes)
    ]
    mixed = hr.sample_from(parts, weights, seed=21, stop_on_empty=stop)
    length = len(list(mixed.iter(epoch=epoch)))
    check_resume(mixed, epoch, data.draw(st.integers(0, length)))


def test_resume_goes_on_inside_files_of_each_pipeline(tmp_path: Path):
    for name, count in (("a", 300), ("b", 200)):
        rows = "".join(json.dumps({"src": name, "n": n}) + "\n" for n in range(count))
        (tmp_path / f"{name}.jsonl").write_text(rows)
    mixed = hr.sample_from(
        [hr.read_jsonl(str(tmp_path / "a.jsonl")), hr.read_jsonl(str(tmp_path / "b.jsonl"))],
        [2, 1],
        seed=4,
    )
    for k in (0, 1, 137, 499, 500):
        check_resume(mixed, 2, k)
    with mixed.iter(epoch=2) as run:
        for _ in range(137):
            next(run)
        state = run.state()
    # Each pipeline resumes from its own saved place in its file.
    (stage,) = state["stages"]
    assert sum(stage["counts"]) == stage["draws"] == 137
    assert all(count > 0 for count in stage["counts"])
    assert all(inputs is not None for inputs in stage["inputs"])


def test_an_unseeded_mix_refuses_its_state():
    with hr.sample_from(sources(2, 5)).iter() as run:
        next(run)
        with pytest.raises(ValueError, match=r"sample_from without a seed.*give it a seed"):
            run.state()
    with hr.sample_from(sources(2, 5)).with_seed(3).iter() as run:
        next(run)
        assert run.state()["stages"]


@pytest.mark.parametrize(
    ("weights", "error", "message"),
    [
        ([1], ValueError, r"one weight per pipeline \(2\), got 1"),
        ([1, -1], ValueError, r"finite and at least 0, got -1"),
        ([0, 0], ValueError, r"must not all be 0"),
        ([1, math.nan], ValueError, r"finite"),
        ([1, "2"], TypeError, r"must be numbers, got '2'"),
        ("ab", TypeError, r"a list of numbers"),
    ],
)
def test_bad_weights_are_refused_naming_them(weights, error, message):
    with pytest.raises(error, match=message):
        hr.sample_from(sources(2, 3), weights)


def test_no_pipelines_and_a_bad_seed_are_refused():
    with pytest.raises(ValueError, match="at least one pipeline"):
        hr.sample_from([])
    with pytest.raises(ValueError, match="seed"):
        hr.sample_from(sources(2, 3), seed=-1)


def test_a_failing_pipeline_names_its_place():
    def bad(n: int) -> int:
        if n == 3:
            raise KeyError("three")
        return n

    mixed = hr.sample_from([hr.range(10).map(bad), hr.range(5)], seed=1)
    with pytest.raises(KeyError) as raised:
        list(mixed)
    assert any("input 0" in note and "map(" in note for note in raised.value.__notes__)


def test_lengths_and_the_functional_form():
    assert len(hr.sample_from(sources(2, 4), seed=1)) == 8
    assert hr.sample_from(sources(2, 4), [1, 0], seed=1).known_length() is None
    assert hr.sample_from(sources(2, 4), stop_on_empty=True).known_length() is None
    endless = hr.sample_from([hr.range(3).repeat(), hr.range(2)])
    assert endless.known_length() == math.inf
    assert sorted(sample_from_iterables(["ab", [1]], seed=2), key=str) == [1, "a", "b"]


@pytest.mark.parametrize("size", [3, 4, 5])
@pytest.mark.parametrize("seed", range(4))
def test_a_mix_that_stopped_on_an_empty_pipeline_stays_stopped_on_resume(seed, size):
    # A batch asks past the last element: the mix has stopped when the state is taken
    # after the last (short) batch, and the resumed run must not go on.
    mixed = hr.sample_from(sources(2, 7), [0.5, 0.5], seed=seed, stop_on_empty=True).batch(size)

    def plain(batch: tuple[Any, ...]) -> list[list[int]]:
        return [column.tolist() for column in batch]

    whole = [plain(b) for b in mixed.iter(epoch=1)]
    for k in range(len(whole) + 1):
        with mixed.iter(epoch=1) as run:
            taken = [plain(next(run)) for _ in range(k)]
            state = json.loads(json.dumps(run.state()))
        assert taken + [plain(b) for b in mixed.iter(state=state)] == whole, k
