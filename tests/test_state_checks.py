"""Resume states are checked against themselves and against the data they point into.

A state changed after ``Run.state()`` gave it fails its ``"check"``. A state that
passes it (an edit meant on purpose, resealed with ``state_check``, or a state whose
data changed since) is checked field by field where it resumes: file fingerprints,
offsets at line ends and inside the file, file indices, record counts, a shuffle's
buffer.
"""

from __future__ import annotations

import copy
import gzip
import io
import json
import os
import shutil
import tarfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import headrace as hr
from headrace.run import state_check

pytestmark = pytest.mark.timeout(120)


def sealed(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` with its check worked out again: an edit meant on purpose."""
    return {**state, "check": state_check(state)}


def state_after(pipeline: hr.Pipeline[Any], count: int) -> dict[str, Any]:
    with pipeline.iter(epoch=0) as run:
        for _ in range(count):
            next(run)
        state: dict[str, Any] = json.loads(json.dumps(run.state()))
    return state


def text_file(folder: Path, name: str = "a.txt", lines: int = 20) -> Path:
    path = folder / name
    path.write_text("".join(f"line {i}\n" for i in range(lines)))
    return path


# -- files changed under a state ------------------------------------------------------


def test_a_file_rewritten_under_its_name_is_refused(tmp_path: Path) -> None:
    path = text_file(tmp_path)
    pipeline = hr.text_lines(str(path))
    state = state_after(pipeline, 3)
    path.write_text("".join(f"LINE {i}\n" for i in range(20)))  # same size, new bytes
    with pytest.raises(ValueError, match=r"a\.txt', which has changed since it was saved"):
        list(pipeline.iter(state=state))
    path.write_text("line 0\n")  # shorter
    with pytest.raises(ValueError, match="which has changed since it was saved"):
        list(pipeline.iter(state=state))


def test_a_copy_of_the_same_file_resumes(tmp_path: Path) -> None:
    path = text_file(tmp_path)
    pipeline = hr.text_lines(str(path))
    state = state_after(pipeline, 3)
    moved = tmp_path / "moved.txt"
    shutil.copy(path, moved)  # a new file, a new modification time, the same bytes
    os.replace(moved, path)
    os.utime(path, (1, 1))
    assert list(pipeline.iter(state=state)) == [f"line {i}" for i in range(3, 20)]


def test_a_file_index_past_the_files_is_refused(tmp_path: Path) -> None:
    for name in ("a.txt", "b.txt"):
        text_file(tmp_path, name)
    pipeline = hr.text_lines(str(tmp_path / "*.txt"))
    state = state_after(pipeline, 3)
    state["stages"][0]["read"]["file"] = 99
    with pytest.raises(ValueError, match=r"in file 99 \(records 3\), but this run reads 2"):
        list(pipeline.iter(state=sealed(state)))


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize(
    ("offset", "problem"),
    [(7, "not at the start of a line"), (10_000, "past the end of the file"), (0, "is 0")],
)
def test_an_offset_that_is_no_line_end_is_refused(
    tmp_path: Path, suffix: str, offset: int, problem: str
) -> None:
    path = tmp_path / f"a.jsonl{suffix}"
    data = "".join(json.dumps({"n": i}) + "\n" for i in range(30)).encode()
    path.write_bytes(gzip.compress(data) if suffix else data)
    pipeline = hr.read_jsonl(str(path))
    state = state_after(pipeline, 3)
    read = state["stages"][0]["read"]
    assert data[read["offset"] - 1 : read["offset"]] == b"\n"
    read["offset"] = offset
    with pytest.raises(ValueError, match=problem):
        list(pipeline.iter(state=sealed(state)))


def test_a_count_past_the_end_of_a_file_is_refused(tmp_path: Path) -> None:
    shard = tmp_path / "s.tar"
    with tarfile.open(shard, "w") as archive:
        for key in "abcd":
            member = tarfile.TarInfo(f"{key}.cls")
            member.size = 1
            archive.addfile(member, io.BytesIO(b"1"))
    rows = tmp_path / "rows.csv"
    rows.write_text("x,y\n" + "".join(f"{i},{i * 2}\n" for i in range(50)))
    table = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"x": list(range(50))}), table, row_group_size=20)
    cases = [
        (hr.read_tar_shards(str(shard)), "after member 40, but the shard has 4"),
        (hr.read_csv(str(rows), engine="python"), "after row 40000, but the file has 50"),
        (hr.read_csv(str(rows), engine="pyarrow"), "after row 40000, but the file has 50"),
        (hr.read_parquet(str(table)), "after row 40000, but the file has 50"),
    ]
    for pipeline, message in cases:
        state = state_after(pipeline, 1)
        state["stages"][0]["read"]["records"] = 40 if "member" in message else 40_000
        with pytest.raises(ValueError, match=message):
            list(pipeline.iter(state=sealed(state)))


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("pulled", 10**12, "its input ends after 30"),
        ("slot", 99, "slot 99 is not a slot of 8"),
        ("phase", "spill", "neither 'fill' nor 'drain'"),
        ("indices", "AAAAAAAAAAA=", "holds 2 elements, in a buffer of 8"),
    ],
)
def test_a_shuffle_buffer_that_cannot_be_is_refused(field: str, value: Any, problem: str) -> None:
    pipeline = hr.range(30).filter(lambda x: True).shuffle(8, seed=3)
    state = state_after(pipeline, 4)
    entry = next(e for e in state["stages"] if e and "phase" in e)
    entry[field] = value
    with pytest.raises(ValueError, match=problem):
        list(pipeline.iter(state=sealed(state)))


# -- any change to a state ------------------------------------------------------------


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict):
        return [leaf for key in value for leaf in _leaves(value[key], (*path, key))]
    if isinstance(value, list):
        return [leaf for i, item in enumerate(value) for leaf in _leaves(item, (*path, i))]
    return [path]


def _pipelines(folder: Path) -> list[hr.Pipeline[Any]]:
    for name in ("a.txt", "b.txt"):
        text_file(folder, name, lines=40)
    with gzip.open(folder / "rows.jsonl.gz", "wt") as out:
        out.writelines(json.dumps({"n": i}) + "\n" for i in range(60))
    return [
        hr.text_lines(str(folder / "*.txt")).shuffle(8, seed=1).batch(3),
        hr.read_jsonl(str(folder / "rows.jsonl.gz")).filter(lambda r: r["n"] % 3).map(str),
        hr.range(50).shuffle(5, seed=2).batch(4, drop_remainder=True),
    ]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    which=st.integers(0, 2),
    position=st.integers(1, 12),
    pick=st.integers(0, 10_000),
    change=st.sampled_from(["int", "negative", "str", "none", "float", "delete", "list"]),
    number=st.integers(-(2**40), 2**40),
)
def test_any_change_to_a_real_state_is_refused(
    tmp_path: Path, which: int, position: int, pick: int, change: str, number: int
) -> None:
    folder = tmp_path / f"data-{which}"
    if not folder.exists():
        folder.mkdir()
    pipeline = _pipelines(folder)[which]
    state = state_after(pipeline, position)
    leaves = [leaf for leaf in _leaves(state) if leaf != ("check",)]
    path = leaves[pick % len(leaves)]
    edited = copy.deepcopy(state)
    holder = edited
    for key in path[:-1]:
        holder = holder[key]
    old = holder[path[-1]]
    new: Any = {
        "int": number,
        "negative": -abs(number) - 1,
        "str": f"{old}x",
        "none": None,
        "float": float(number) + 0.5,
        "list": [old],
    }.get(change, old)
    if change == "delete":
        if isinstance(holder, dict):
            del holder[path[-1]]
        else:
            holder.pop(path[-1])
    elif new == old and type(new) is type(old):
        return  # no change made
    else:
        holder[path[-1]] = new
    with pytest.raises(ValueError, match=r"format|check"):
        list(pipeline.iter(state=edited))
    # Untouched, the same state resumes where the run was.
    resumed, whole = list(pipeline.iter(state=state)), list(pipeline.iter(epoch=0))
    assert _plain(resumed) == _plain(whole[position:])


def _plain(elements: list[Any]) -> list[Any]:
    return [e.tolist() if hasattr(e, "tolist") else e for e in elements]
