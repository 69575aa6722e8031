"""Exact resume: ``pipeline.iter(state=run.state())`` goes on right after the last
element the saved run handed out.

Random pipelines over every kind of source and most stages are interrupted at a random
element of a random epoch; the elements taken before the interruption and those of the
resumed run together are the uninterrupted epoch. Then the boundaries (nothing taken,
everything taken, past the end), the refusals (an order that changes between runs, a
state of another pipeline, tampered fields), clean shutdown of a resumed run, and a
PyTorch training process killed mid-epoch that resumes from its checkpoint and ends
with the weights of an uninterrupted run.
"""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import headrace as hr

# -- element functions: deterministic, and defined for every element shape used -----


def weight(x: Any) -> int:
    """A number that follows from every value in ``x``."""
    if isinstance(x, str):
        return sum(map(ord, x)) % 1009
    if isinstance(x, np.ndarray):
        if np.issubdtype(x.dtype, np.number):
            return int(x.sum())
        return sum(weight(str(v)) for v in x.flat)
    if isinstance(x, tuple | list):
        return sum(weight(v) for v in x)
    if isinstance(x, dict):
        return sum(weight(v) for v in x.values())
    return int(x)


def bump(x: Any) -> Any:
    """``x`` with every number one higher, its structure unchanged."""
    if isinstance(x, str):
        return x
    if isinstance(x, np.ndarray):
        return x + 1 if np.issubdtype(x.dtype, np.number) else x
    if isinstance(x, tuple):
        return tuple(bump(v) for v in x)
    if isinstance(x, dict):
        return {key: bump(v) for key, v in x.items()}
    return x + 1


def keep(x: Any) -> bool:
    return weight(x) % 3 != 1


def spread(x: Any) -> list[Any]:
    """None, one or two copies of ``x``."""
    return [x] * (weight(x) % 3)


def around(x: Any) -> hr.Pipeline[Any]:
    """``x`` and ``bump(x)`` in a seeded order: a nested pipeline for interleave."""
    return hr.from_iterable([x, bump(x)]).shuffle(2, seed=weight(x) % 5)


def ramp(x: Any) -> np.ndarray:
    """An array whose length varies with ``x``: input for padded_batch."""
    return np.arange(weight(x) % 4, dtype=np.int64)


def jitter(x: Any, rng: np.random.Generator) -> int:
    return weight(x) + int(rng.integers(0, 100))


def accumulate(total: int, x: Any) -> int:
    return (total + weight(x)) % 1009


def count_up(n: int) -> Any:
    for i in range(n):
        yield (i * 7) % 11


def same(a: Any, b: Any) -> bool:
    """Equal elements: arrays by dtype, shape and values, containers recursively."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray)
            and isinstance(b, np.ndarray)
            and a.dtype == b.dtype
            and np.array_equal(a, b)
        )
    if isinstance(a, tuple | list):
        return (
            type(a) is type(b)
            and len(a) == len(b)
            and all(same(x, y) for x, y in zip(a, b, strict=True))
        )
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(same(a[key], b[key]) for key in a)
    return type(a) is type(b) and bool(a == b)


# -- data files, written once for the module --------------------------------------

FILE_SIZES = (0, 1, 5, 12)


@pytest.fixture(scope="module")
def data_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Text, JSON Lines and CSV files of each of ``FILE_SIZES`` records."""
    folder = tmp_path_factory.mktemp("resume")
    made: dict[str, list[str]] = {"text": [], "jsonl": [], "csv": []}
    for size in FILE_SIZES:
        text = folder / f"lines-{size}.txt"
        text.write_text("".join(f"line {i * 3 % 7}\n" for i in range(size)))
        jsonl = folder / f"records-{size}.jsonl"
        jsonl.write_text("".join(json.dumps({"v": i, "name": f"n{i}"}) + "\n" for i in range(size)))
        table = folder / f"table-{size}.csv"
        with table.open("w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(["a", "b"])
            writer.writerows([i, (i * 5) % 9] for i in range(size))
        made["text"].append(str(text))
        made["jsonl"].append(str(jsonl))
        made["csv"].append(str(table))
    return made


# -- the grammar ----------------------------------------------------------------------

# What the elements of a pipeline are, so that only stages that accept them follow:
# "fixed": every element has the same structure and array shapes (batch can stack them);
# "ragged": shapes vary. ``batched`` is what unbatch gives back, None when the elements
# are not batches.
Shape = tuple[str, str | None]


def source(draw: st.DrawFn, files: dict[str, list[str]]) -> hr.Pipeline[Any]:
    kind = draw(st.sampled_from(["range", "list", "generator", "text", "jsonl", "csv"]))
    if kind == "range":
        return hr.range(draw(st.integers(0, 12)))
    if kind == "list":
        return hr.from_iterable(draw(st.lists(st.integers(-50, 50), max_size=12)))
    if kind == "generator":
        return hr.from_generator(count_up, draw(st.integers(0, 12)))
    path = draw(st.sampled_from(files[kind]))
    if kind == "text":
        return hr.text_lines(path)
    if kind == "jsonl":
        return hr.read_jsonl(path)
    return hr.read_csv(path, dtype="int64")


def side_pipeline(draw: st.DrawFn, files: dict[str, list[str]]) -> hr.Pipeline[Any]:
    """A small pipeline of fixed-shape elements, to zip or concatenate with."""
    pipeline = source(draw, files)
    for _ in range(draw(st.integers(0, 2))):
        step = draw(st.sampled_from(["map", "filter", "shuffle"]))
        if step == "map":
            pipeline = pipeline.map(bump)
        elif step == "filter":
            pipeline = pipeline.filter(keep)
        else:
            pipeline = pipeline.shuffle(draw(st.integers(1, 5)), seed=draw(st.integers(0, 9)))
    return pipeline


def stage(
    draw: st.DrawFn, files: dict[str, list[str]], pipeline: hr.Pipeline[Any], shape: Shape
) -> tuple[hr.Pipeline[Any], Shape]:
    """``pipeline`` with one more stage that accepts its elements, and the new shape."""
    form, batched = shape
    names = [
        "map",
        "map_threads",
        "random_map",
        "random_map_threads",
        "filter",
        "flat_map",
        "shuffle",
        "take",
        "skip",
        "enumerate",
        "window",
        "scan",
        "repeat",
        "interleave",
        "prefetch",
        "cache",
        "zip",
        "concat",
        "padded_batch",
    ]
    if form == "fixed":
        names.append("batch")
    unbatch = batched is not None and draw(st.booleans())
    name = "unbatch" if unbatch else draw(st.sampled_from(names))
    seed = draw(st.integers(0, 2**16))
    if name == "map":
        return pipeline.map(bump), shape
    if name == "map_threads":
        return pipeline.map(bump, workers=2), shape
    if name == "random_map":
        return pipeline.random_map(jitter, seed=seed), ("fixed", None)
    if name == "random_map_threads":
        return pipeline.random_map(jitter, seed=seed, workers=2), ("fixed", None)
    if name == "filter":
        return pipeline.filter(keep), shape
    if name == "flat_map":
        return pipeline.flat_map(spread), shape
    if name == "shuffle":
        return pipeline.shuffle(draw(st.integers(1, 8)), seed=seed), shape
    if name == "take":
        return pipeline.take(draw(st.integers(1, 15))), shape
    if name == "skip":
        return pipeline.skip(draw(st.integers(0, 5))), shape
    if name == "enumerate":
        return pipeline.enumerate(draw(st.integers(0, 3))), (form, None)
    if name == "window":
        drop = draw(st.booleans())
        windowed = pipeline.window(
            draw(st.integers(1, 3)), shift=draw(st.integers(1, 3)), drop_remainder=drop
        )
        return windowed, ("fixed" if form == "fixed" and drop else "ragged", None)
    if name == "scan":
        return pipeline.scan(accumulate, 0), ("fixed", None)
    if name == "repeat":
        return pipeline.repeat(2), shape
    if name == "interleave":
        fn: Callable[[Any], Any] = draw(st.sampled_from([spread, around]))
        return pipeline.interleave(fn, cycle_length=draw(st.integers(1, 3))), shape
    if name == "prefetch":
        return pipeline.prefetch(draw(st.integers(1, 3))), shape
    if name == "cache":
        return pipeline.cache(), shape
    if name == "zip":
        other = side_pipeline(draw, files)
        if draw(st.booleans()):
            return pipeline.zip(other), (form, None)
        return hr.zip(other, pipeline), (form, None)
    if name == "concat":
        return pipeline.map(weight).concat(side_pipeline(draw, files).map(weight)), (
            "fixed",
            None,
        )
    if name == "padded_batch":
        size = draw(st.integers(1, 4))
        drop = draw(st.booleans())
        return pipeline.map(ramp).padded_batch(size, drop_remainder=drop), ("ragged", "ragged")
    if name == "batch":
        drop = draw(st.booleans())
        batches = pipeline.batch(draw(st.integers(1, 4)), drop_remainder=drop)
        return batches, ("fixed" if drop else "ragged", form)
    assert name == "unbatch"
    assert batched is not None
    return pipeline.unbatch(), (batched, None)


def pipelines(
    draw: st.DrawFn, files: dict[str, list[str]], most: int = 6
) -> tuple[hr.Pipeline[Any], Shape]:
    pipeline = source(draw, files)
    shape: Shape = ("fixed", None)
    for _ in range(draw(st.integers(0, most))):
        pipeline, shape = stage(draw, files, pipeline, shape)
    return pipeline, shape


def roundtrip(state: dict[str, Any]) -> Any:
    text = json.dumps(state)
    assert len(text) < 300, text
    return json.loads(text)


def check_resume(pipeline: hr.Pipeline[Any], epoch: int, k: int) -> None:
    """Interrupt ``pipeline``'s ``epoch`` after ``k`` elements (``len + 1``: after the
    end was seen) and check that the resumed run gives the rest."""
    full = list(pipeline.iter(epoch=epoch))
    run = pipeline.iter(epoch=epoch)
    taken = [next(run) for _ in range(min(k, len(full)))]
    if k > len(full):
        with pytest.raises(StopIteration):
            next(run)
    state = roundtrip(run.state())
    run.close()
    assert set(state) == {"format", "pipeline", "epoch", "position"}
    if k > len(full):
        assert (state["epoch"], state["position"]) == (epoch + 1, 0)
        expected, got = list(pipeline.iter(epoch=epoch + 1)), list(pipeline.iter(state=state))
    else:
        assert (state["epoch"], state["position"]) == (epoch, k)
        expected, got = full, taken + list(pipeline.iter(state=state))
    assert len(got) == len(expected), repr(pipeline)
    assert all(same(a, b) for a, b in zip(got, expected, strict=True)), repr(pipeline)


# -- 1. random pipelines, random interruptions ---------------------------------------


@settings(max_examples=800, deadline=None)
@given(data=st.data())
def test_resumed_run_gives_the_rest_of_the_epoch(
    data: st.DataObject, data_files: dict[str, list[str]]
) -> None:
    pipeline, _ = data.draw(st.composite(lambda draw: pipelines(draw, data_files))())
    epoch = data.draw(st.integers(0, 4), label="epoch")
    length = len(list(pipeline.iter(epoch=epoch)))
    k = data.draw(st.integers(0, length + 1), label="k")
    check_resume(pipeline, epoch, k)


@settings(max_examples=4, deadline=None)
@given(data=st.data())
def test_resumed_run_with_worker_processes(
    data: st.DataObject, data_files: dict[str, list[str]]
) -> None:
    # Starting worker processes costs a good part of a second per run: a few examples.
    pipeline, shape = data.draw(st.composite(lambda draw: pipelines(draw, data_files, 2))())
    if data.draw(st.booleans(), label="random_map"):
        pipeline = pipeline.random_map(jitter, seed=7, workers=2, backend="process")
    else:
        pipeline = pipeline.map(bump, workers=2, backend="process")
    pipeline, _ = data.draw(
        st.composite(lambda draw: stage(draw, data_files, pipeline, shape))(), label="after"
    )
    epoch = data.draw(st.integers(0, 4), label="epoch")
    length = len(list(pipeline.iter(epoch=epoch)))
    check_resume(pipeline, epoch, data.draw(st.integers(0, length + 1), label="k"))


# -- 2. boundaries --------------------------------------------------------------------


def shuffled() -> hr.Pipeline[int]:
    return hr.range(20).map(lambda x: x * 3).shuffle(8, seed=5).filter(lambda x: x % 2 == 0)


@pytest.mark.parametrize("epoch", [0, 3])
@pytest.mark.parametrize("k", [0, 4, 10])
def test_resume_at_any_position_of_any_epoch(epoch: int, k: int) -> None:
    pipeline = shuffled()
    full = list(pipeline.iter(epoch=epoch))
    assert len(full) == 10
    assert full != list(pipeline.iter(epoch=epoch + 1))  # epochs differ: a real shuffle
    run = pipeline.iter(epoch=epoch)
    taken = [next(run) for _ in range(k)]
    state = run.state()
    assert state["epoch"] == epoch
    assert state["position"] == k
    resumed = pipeline.iter(state=state)
    assert resumed.epoch == epoch
    rest = list(resumed)
    assert taken + rest == full
    assert rest == ([] if k == len(full) else full[k:])


def test_state_after_the_end_is_the_next_epoch() -> None:
    pipeline = shuffled()
    run = pipeline.iter(epoch=3)
    taken = list(run)
    assert taken == list(pipeline.iter(epoch=3))
    state = run.state()
    assert (state["epoch"], state["position"]) == (4, 0)
    assert list(pipeline.iter(state=state)) == list(pipeline.iter(epoch=4))


def test_plain_iter_after_a_resumed_run_takes_the_following_epochs() -> None:
    pipeline = shuffled()
    run = pipeline.iter(epoch=3)
    next(run)
    state = run.state()
    run.close()
    fresh = shuffled()  # a new process would rebuild the pipeline from scratch
    with fresh.iter(state=state) as resumed:
        assert resumed.epoch == 3
        list(resumed)
    following = fresh.iter()
    assert following.epoch == 4
    assert list(following) == list(pipeline.iter(epoch=4))
    assert fresh.iter().epoch == 5


def test_resuming_twice_and_a_state_taken_after_close() -> None:
    pipeline = shuffled()
    full = list(pipeline.iter(epoch=2))
    first = pipeline.iter(epoch=2)
    taken = [next(first) for _ in range(3)]
    first.close()
    second = pipeline.iter(state=first.state())  # close() keeps the position
    taken += [next(second) for _ in range(4)]
    state = second.state()
    assert state["position"] == 7
    second.close()
    assert taken + list(pipeline.iter(state=state)) == full


def test_a_resumed_run_fills_a_cache_with_the_whole_epoch() -> None:
    pipeline = hr.range(12).shuffle(12, seed=3).cache()
    run = pipeline.iter(epoch=2)
    taken = [next(run) for _ in range(5)]
    run.close()  # not a complete run: the cache stays empty
    rest = list(pipeline.iter(state=run.state()))
    expected = list(hr.range(12).shuffle(12, seed=3).iter(epoch=2))
    assert taken + rest == expected
    assert list(pipeline.iter(epoch=7)) == expected  # filled by the resumed run


# -- 3. the state is small, plain JSON ------------------------------------------------


def test_state_is_small_plain_json() -> None:
    pipeline = hr.range(10**6).map(lambda x: x + 1, workers=2).shuffle(1000, seed=1).batch(32)
    with pipeline.iter(epoch=12) as run:
        for _ in range(40):
            next(run)
        state = run.state()
    assert json.loads(json.dumps(state)) == state
    assert len(json.dumps(state)) < 300
    assert state["format"] == "headrace.run-state/1"
    assert isinstance(state["pipeline"], str)
    assert (state["epoch"], state["position"]) == (12, 40)


# -- 4. refusals ----------------------------------------------------------------------


def test_no_state_for_an_unseeded_shuffle() -> None:
    pipeline = hr.range(10).map(bump).shuffle(4)
    with pipeline.iter() as run:
        next(run)
        with pytest.raises(ValueError, match=r"stage 2 'shuffle\(4\)'.*without a seed"):
            run.state()


@pytest.mark.parametrize("function", ["map", "random_map"])
def test_no_state_for_a_parallel_map_in_completion_order(
    function: str, nothing_left_running: None
) -> None:
    if function == "map":
        pipeline = hr.range(10).map(bump, workers=2, ordered=False)
    else:
        pipeline = hr.range(10).random_map(jitter, seed=1, workers=2, ordered=False)
    with pipeline.iter() as run:
        next(run)
        with pytest.raises(ValueError, match=rf"stage 1 '{function}\(.*ordered=False"):
            run.state()


def test_no_state_for_unseeded_shuffles_of_files(tmp_path: Path) -> None:
    for name in ["cat/a.png", "cat/b.png", "dog/c.png"]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).touch()
    unfixed: list[hr.Pipeline[Any]] = [
        hr.files(str(tmp_path / "*" / "*.png"), shuffle=True),
        hr.image_folder(tmp_path, shuffle=True),
    ]
    for pipeline in unfixed:
        with pipeline.iter() as run:
            next(run)
            with pytest.raises(ValueError, match=r"stage 0 .*shuffle=True without a seed"):
                run.state()
    seeded = hr.image_folder(tmp_path, shuffle=True, seed=4)
    with seeded.iter(epoch=1) as run:
        first = next(run)
        state = run.state()
    assert [first, *seeded.iter(state=state)] == list(seeded.iter(epoch=1))


@pytest.mark.parametrize("combine", ["zip", "concat"])
def test_no_state_for_zip_or_concat_of_an_unseeded_shuffle(combine: str) -> None:
    unfixed = hr.range(5).shuffle(3)
    pipeline = hr.zip(hr.range(5), unfixed) if combine == "zip" else hr.concat(hr.range(2), unfixed)
    with pipeline.iter() as run:
        next(run)
        with pytest.raises(ValueError, match=rf"stage 0 '{combine}.*without a seed"):
            run.state()


def test_state_of_another_pipeline_is_refused() -> None:
    with hr.range(10).shuffle(4, seed=1).iter() as run:
        next(run)
        state = run.state()
    for other in [hr.range(11).shuffle(4, seed=1), hr.range(10).shuffle(4, seed=2)]:
        with pytest.raises(ValueError, match="another pipeline"):
            other.iter(state=state)


def good_state() -> tuple[hr.Pipeline[int], dict[str, Any]]:
    pipeline = hr.range(10).shuffle(4, seed=1)
    with pipeline.iter(epoch=2) as run:
        next(run)
        return pipeline, run.state()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("position", -1, "position"),
        ("position", True, "position"),
        ("position", 1.0, "position"),
        ("position", "1", "position"),
        ("position", None, "position"),
        ("epoch", -3, "epoch"),
        ("epoch", False, "epoch"),
        ("epoch", 2.5, "epoch"),
        ("format", "headrace.run-state/0", "format"),
        ("format", None, "format"),
    ],
)
def test_tampered_fields_are_refused(field: str, value: Any, message: str) -> None:
    pipeline, state = good_state()
    if value is None:
        del state[field]
    else:
        state[field] = value
    with pytest.raises(ValueError, match=message):
        pipeline.iter(state=state)


def test_states_that_are_not_states_are_refused() -> None:
    pipeline, state = good_state()
    for bad in [[], "state", list(state.items())]:
        with pytest.raises(ValueError, match="format"):
            pipeline.iter(state=bad)  # type: ignore[arg-type]


def test_position_beyond_the_end_is_refused(nothing_left_running: None) -> None:
    pipeline, state = good_state()
    state["position"] = 11
    with pytest.raises(ValueError, match=r"element 11 of epoch 2.*yields only 10"):
        pipeline.iter(state=state)
    threaded = hr.range(10).map(bump, workers=2).prefetch(2)
    with threaded.iter(epoch=2) as run:
        state = run.state()
    state["position"] = 11
    with pytest.raises(ValueError, match=r"element 11 of epoch 2.*yields only 10"):
        threaded.iter(state=state)


def test_epoch_and_state_together_are_refused() -> None:
    pipeline, state = good_state()
    with pytest.raises(ValueError, match="epoch= or state="):
        pipeline.iter(epoch=2, state=state)


# -- 5. nothing left running ----------------------------------------------------------


def test_a_resumed_run_closed_early_leaves_no_thread(nothing_left_running: None) -> None:
    pipeline = hr.range(100).map(bump, workers=2).shuffle(10, seed=0).prefetch(3)
    run = pipeline.iter(epoch=1)
    taken = [next(run) for _ in range(20)]
    state = run.state()
    run.close()
    resumed = pipeline.iter(state=state)
    taken += [next(resumed) for _ in range(5)]
    resumed.close()
    assert taken == list(pipeline.iter(epoch=1))[:25]


def test_a_resumed_run_of_processes_closed_early_leaves_nothing(
    nothing_left_running: None,
) -> None:
    pipeline = hr.range(40).map(bump, workers=2, backend="process").shuffle(8, seed=2)
    with pipeline.iter(epoch=0) as run:
        taken = [next(run) for _ in range(10)]
        state = run.state()
    with pipeline.iter(state=state) as resumed:
        taken += [next(resumed) for _ in range(3)]
    assert taken == list(pipeline.iter(epoch=0))[:13]


# -- 6. a training process killed mid-epoch -------------------------------------------

TRAINING = textwrap.dedent(
    """
    import hashlib, json, os, signal, sys

    import numpy as np
    import torch

    import headrace as hr

    folder, kill_after = sys.argv[1], int(sys.argv[2])  # kill_after: batches of epoch 1
    EPOCHS = 2
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    pipeline = (
        hr.range(200)
        .map(lambda i: (np.array([i / 200, (i % 7) / 7], np.float32), np.float32(i % 3)))
        .shuffle(64, seed=0)
        .batch(8)
    )
    checkpoint = os.path.join(folder, "checkpoint.json")
    weights = os.path.join(folder, "checkpoint.pt")
    if os.path.exists(checkpoint):
        with open(checkpoint) as file:
            saved = json.load(file)
        model_state, optimizer_state = torch.load(weights)
        model.load_state_dict(model_state)
        optimizer.load_state_dict(optimizer_state)
        run = pipeline.iter(state=saved["run_state"])
    else:
        run = pipeline.iter()
    while run.epoch < EPOCHS:
        for x, y in run:
            if run.epoch == 1 and kill_after == 0:
                os.kill(os.getpid(), signal.SIGKILL)  # with a batch taken, not trained on
            inputs, targets = torch.from_numpy(x), torch.from_numpy(y)
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(model(inputs).squeeze(1), targets)
            loss.backward()
            optimizer.step()
            digest = hashlib.sha256(x.tobytes() + y.tobytes()).hexdigest()
            with open(os.path.join(folder, "batches.log"), "a") as log:
                log.write(f"{run.epoch} {digest}\\n")
            torch.save((model.state_dict(), optimizer.state_dict()), weights + ".new")
            with open(checkpoint + ".new", "w") as file:
                json.dump({"run_state": run.state()}, file)
            os.replace(weights + ".new", weights)
            os.replace(checkpoint + ".new", checkpoint)
            if run.epoch == 1:
                kill_after -= 1
        run = pipeline.iter()
    torch.save(model.state_dict(), os.path.join(folder, "final.pt"))
    """
)


def train(script: Path, folder: Path, kill_after: int) -> subprocess.CompletedProcess[str]:
    folder.mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, str(script), str(folder), str(kill_after)],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )


def test_training_killed_mid_epoch_resumes_with_the_same_batches(tmp_path: Path) -> None:
    # Imported here: worker processes import this module to find its functions.
    import torch

    script = tmp_path / "train.py"
    script.write_text(TRAINING)
    whole = train(script, tmp_path / "whole", kill_after=-1)
    assert whole.returncode == 0, whole.stderr
    interrupted = tmp_path / "interrupted"
    killed = train(script, interrupted, kill_after=11)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not (interrupted / "final.pt").exists()
    killed_log = (interrupted / "batches.log").read_text().splitlines()
    assert [line[0] for line in killed_log] == ["0"] * 25 + ["1"] * 11
    resumed = train(script, interrupted, kill_after=-1)
    assert resumed.returncode == 0, resumed.stderr
    log = (interrupted / "batches.log").read_text().splitlines()
    assert log[: len(killed_log)] == killed_log
    assert log == (tmp_path / "whole" / "batches.log").read_text().splitlines()
    assert len(log) == 50
    assert len(set(log)) == 50
    expected = torch.load(tmp_path / "whole" / "final.pt")
    got = torch.load(interrupted / "final.pt")
    assert list(got) == list(expected)
    assert all(torch.equal(got[name], expected[name]) for name in expected)


def test_flat_map_runs_a_returned_pipeline_in_the_outer_runs_epoch() -> None:
    inner = hr.range(6).shuffle(6, seed=0)
    outer = hr.range(3).flat_map(lambda _: inner)
    assert list(outer.iter(epoch=0)) == list(outer.iter(epoch=0))
    assert list(outer.iter(epoch=0)) != list(outer.iter(epoch=1))
    run = outer.iter(epoch=0)
    taken = [next(run) for _ in range(4)]
    assert taken + list(outer.iter(state=run.state())) == list(outer.iter(epoch=0))
