"""What every file source shares: brace patterns, sharding by file, read positions,
and the error policy for files that cannot be read (shown on text_lines and read_jsonl).
"""

from __future__ import annotations

import gzip
import json
import logging
import os
from pathlib import Path

import braceexpand
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import headrace as hr
from headrace.sources.files import expand_braces, find_files, is_url


def _lines_file(path: Path, count: int, bad_every: int = 0) -> Path:
    rows = []
    for i in range(count):
        row = f"{path.name} {i}".encode()
        if bad_every and i % bad_every == bad_every - 1:
            row += b" \xff"
        rows.append(row + b"\n")
    data = b"".join(rows)
    if path.suffix == ".gz":
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


# -- brace patterns -------------------------------------------------------------------

_PIECES = st.sampled_from(["a", "b", "0", "7", "{", "}", ",", "..", "-", "09", "x/"])


def _balanced(pattern: str) -> bool:
    depth = 0
    for char in pattern:
        depth += (char == "{") - (char == "}")
        if depth < 0:
            return False
    return depth == 0


@settings(max_examples=500, deadline=None)
@given(st.lists(_PIECES, max_size=14).map("".join).filter(_balanced))
def test_braces_expand_as_webdatasets_braceexpand_does(pattern):
    # Unbalanced braces differ on purpose: kept literally here, guessed at there.
    try:
        expected = list(braceexpand.braceexpand(pattern, escape=False))
    except braceexpand.UnbalancedBracesError:
        return  # unbalanced braces are kept literally here, an error there
    assert expand_braces(pattern) == expected


def test_a_numbered_shard_list_keeps_its_zeros():
    assert expand_braces("data-{000..002}.tar") == ["data-000.tar", "data-001.tar", "data-002.tar"]
    assert expand_braces("s3://b/{train,val}-{1..2}.csv")[-1] == "s3://b/val-2.csv"


def test_a_missing_name_from_a_brace_pattern_is_named(tmp_path):
    for n in range(2):
        _lines_file(tmp_path / f"part-{n}.txt", 1)

    with pytest.raises(FileNotFoundError, match=r"part-2\.txt.*from .*part-\{0\.\.2\}\.txt"):
        find_files([str(tmp_path / "part-{0..2}.txt")])
    assert len(list(hr.text_lines(str(tmp_path / "part-{0..1}.txt")))) == 2


def test_urls_are_told_from_local_paths():
    assert is_url("s3://bucket/key.csv")
    assert is_url("http://127.0.0.1:8000/a.jsonl")
    assert is_url("memory://x/y")
    assert not is_url("file:///tmp/a.txt")
    assert not is_url("relative/a.txt")
    assert not is_url("/abs/a://b")


def test_file_urls_read_local_files(tmp_path):
    path = _lines_file(tmp_path / "a.txt", 3)
    assert list(hr.text_lines(f"file://{path}")) == list(hr.text_lines(str(path)))


def test_memory_urls_read_through_fsspec():
    import fsspec

    memory = fsspec.filesystem("memory")
    try:
        memory.pipe("/headrace-test/a.jsonl", b'{"a": 1}\n')
        memory.pipe("/headrace-test/b.jsonl.gz", gzip.compress(b'{"b": 2}\n'))
        got = list(hr.read_jsonl("memory://headrace-test/*.jsonl*"))
    finally:
        memory.rm("/headrace-test", recursive=True)
    assert got == [{"a": 1}, {"b": 2}]


# -- sharding by file -------------------------------------------------------------------


@pytest.mark.parametrize("num_shards", [1, 2, 3, 7])
def test_shards_are_disjoint_and_cover_every_file(tmp_path, num_shards):
    for n in range(7):
        _lines_file(tmp_path / f"f{n}.txt", n + 1)
    pattern = str(tmp_path / "*.txt")
    everything = list(hr.text_lines(pattern))

    shards = [
        list(hr.text_lines(pattern, num_shards=num_shards, shard_index=i))
        for i in range(num_shards)
    ]

    assert sorted(line for shard in shards for line in shard) == sorted(everything)
    assert sum(map(len, shards)) == len(everything)
    files = [{line.split()[0] for line in shard} for shard in shards]
    for i, mine in enumerate(files):
        assert all(not mine & other for other in files[i + 1 :])


def test_a_shard_of_a_shard_splits_that_shard(tmp_path):
    for n in range(12):
        _lines_file(tmp_path / f"f{n:02}.txt", 1)
    outer = hr.text_lines(str(tmp_path / "*.txt"), num_shards=3, shard_index=1)
    (stage,) = outer.stages
    inner = [stage.sharded(2, i).paths() for i in range(2)]

    assert sorted(inner[0] + inner[1]) == sorted(stage.paths())
    assert not set(inner[0]) & set(inner[1])
    assert "num_shards=6, shard_index=4" in repr(stage.sharded(2, 1))


def test_more_shards_than_files_is_a_clear_error(tmp_path):
    _lines_file(tmp_path / "only.txt", 3)
    with pytest.raises(ValueError, match=r"1 file\(s\) to share among 2 shards"):
        list(hr.read_jsonl(str(tmp_path / "only.txt"), num_shards=2))


@pytest.mark.parametrize(
    ("num_shards", "shard_index", "error"),
    [(0, 0, ValueError), (2, 2, ValueError), (2, -1, ValueError), (2.0, 0, TypeError)],
)
def test_shard_arguments_are_checked_at_construction(num_shards, shard_index, error):
    with pytest.raises(error, match=r"num_shards|shard_index"):
        hr.text_lines("x.txt", num_shards=num_shards, shard_index=shard_index)


# -- read positions ------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".txt", ".gz"])
def test_text_lines_resume_from_any_position(tmp_path, suffix, resumed):
    for n in range(3):
        _lines_file(tmp_path / f"f{n}{suffix}", 4, bad_every=3)
    pipeline = hr.text_lines(str(tmp_path / f"*{suffix}"), on_error="skip")
    everything = list(pipeline)
    assert len(everything) == 9  # 3 of the 12 lines do not decode

    for cut in range(len(everything) + 1):
        before, after, saved = resumed(pipeline, cut)
        assert before + after == everything, (cut, saved)


def test_a_position_in_a_file_that_is_no_longer_there_is_refused(tmp_path, resumed, context):
    for n in range(3):
        _lines_file(tmp_path / f"f{n}.txt", 2)
    pipeline = hr.text_lines(str(tmp_path / "*.txt"))
    _, _, saved = resumed(pipeline, 3)
    assert saved["path"].endswith("f1.txt")
    (tmp_path / "f0.txt").unlink()  # file 1 of the list is now f2.txt

    from headrace.sources.files import ReadPosition

    (stage,) = pipeline.stages
    with pytest.raises(ValueError, match=r"saved position is in .*f1\.txt.*files changed"):
        stage.reader(context(stage), ReadPosition.from_dict(saved))


# -- files that cannot be read ---------------------------------------------------------


def test_a_truncated_gzip_file_is_an_error_or_a_counted_reject(tmp_path, tally_row):
    path = _lines_file(tmp_path / "cut.gz", 5_000)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    with pytest.raises(hr.ParseError, match=r"cut\.gz:\d+: the file is damaged or cut short"):
        list(hr.text_lines(str(path)))

    with hr.text_lines(str(path), on_error="skip").iter(stats=True) as run:
        lines = list(run)
    row = tally_row(run)
    assert 0 < len(lines) < 5_000
    assert lines == [f"cut.gz {i}" for i in range(len(lines))]  # a true prefix
    assert (row["read"], row["rejected"]) == (len(lines) + 1, 1)


def test_an_unreadable_file_is_an_error_or_a_counted_reject(tmp_path, tally_row):
    good = _lines_file(tmp_path / "a.txt", 2)
    (tmp_path / "b.txt").mkdir()  # matches the glob's name, cannot be read as a file
    paths = [str(good), str(tmp_path / "b.txt")]

    with pytest.raises(hr.ParseError, match=r"b\.txt: cannot open the file"):
        list(hr.text_lines(paths, on_error="raise"))
    with hr.text_lines(paths, on_error="skip").iter(stats=True) as run:
        assert list(run) == ["a.txt 0", "a.txt 1"]
    assert (tally_row(run)["read"], tally_row(run)["rejected"]) == (3, 1)


def test_a_missing_file_is_always_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"absent\.txt"):
        list(hr.text_lines(str(tmp_path / "absent.txt"), on_error="skip"))


def test_an_empty_file_has_no_lines(tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "empty.gz").write_bytes(gzip.compress(b""))
    assert list(hr.text_lines(str(tmp_path / "empty.*"))) == []


def test_rejected_lines_go_to_the_quarantine_file_with_where_and_why(tmp_path, caplog):
    path = _lines_file(tmp_path / "mixed.txt", 6, bad_every=2)
    quarantine = tmp_path / "rejects.jsonl"

    with caplog.at_level(logging.WARNING, logger="headrace"):
        lines = list(hr.text_lines(str(path), on_error=quarantine))

    assert lines == ["mixed.txt 0", "mixed.txt 2", "mixed.txt 4"]
    entries = [json.loads(line) for line in quarantine.read_text().splitlines()]
    assert [e["where"] for e in entries] == [f"{path}:{n}" for n in (2, 4, 6)]
    assert entries[0]["record"] == "mixed.txt 1 \\xff"
    assert all("cannot decode byte" in e["reason"] for e in entries)
    assert "text_lines" in entries[0]["stage"]
    assert any(os.fspath(quarantine) in r.getMessage() for r in caplog.records)


def test_replace_keeps_undecodable_lines_and_rejects_nothing(tmp_path, tally_row):
    path = _lines_file(tmp_path / "mixed.txt", 4, bad_every=2)
    with hr.text_lines(str(path), errors="replace").iter(stats=True) as run:
        lines = list(run)
    assert lines[1] == "mixed.txt 1 \ufffd"
    assert (tally_row(run)["read"], tally_row(run)["rejected"]) == (4, 0)


def test_read_jsonl_resumes_from_any_position_past_blank_and_bad_lines(tmp_path, resumed):
    for n in range(3):
        body = "".join(f'{{"file": {n}, "row": {i}}}\n\n' for i in range(4)) + "{oops\n"
        (tmp_path / f"{n}.jsonl.gz").write_bytes(gzip.compress(body.encode()))
    pipeline = hr.read_jsonl(str(tmp_path / "*.jsonl.gz"), on_error="skip")
    everything = list(pipeline)
    assert len(everything) == 12

    for cut in range(len(everything) + 1):
        before, after, saved = resumed(pipeline, cut)
        assert before + after == everything, (cut, saved)
