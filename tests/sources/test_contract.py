"""One contract for every file reader, checked on files written by the real producers.

Each reader, on three good files and on a file holding one bad record:

- reads the files in sorted order; its shards are disjoint and cover everything;
- resumes from a position saved (through JSON) after any record;
- under ``on_error="raise"`` stops with ``ParseError`` naming the file;
- under ``"skip"`` yields every good record and counts read = yielded + rejected;
- under a quarantine path writes one entry per rejected record, with where and why;
- rejects a file it cannot open (a folder with the file's name) under the policy;
- raises ``FileNotFoundError`` for a missing file, whatever the policy.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import webdataset

import headrace as hr


@dataclass(frozen=True)
class Reader:
    """How to write good files for a reader, one bad file, and how to read them."""

    name: str
    suffix: str
    write: Callable[[Path, int], None]  # a file holding records start .. start+4
    write_bad: Callable[[Path], None]  # one bad record among good ones
    read: Callable[..., hr.Pipeline[Any]]


def _text(path: Path, start: int) -> None:
    path.write_text("".join(f"line {i}\n" for i in range(start, start + 5)))


def _text_bad(path: Path) -> None:
    path.write_bytes(b"good 0\nbad \xff\ngood 1\n")


def _jsonl(path: Path, start: int) -> None:
    path.write_text("".join(json.dumps({"i": i}) + "\n" for i in range(start, start + 5)))


def _jsonl_bad(path: Path) -> None:
    path.write_text('{"i": 100}\n{"i": \n{"i": 101}\n')


def _csv(path: Path, start: int) -> None:
    pd.DataFrame({"i": range(start, start + 5), "s": ["a,b", 'q"t', "x\ny", "", "z"]}).to_csv(
        path, index=False
    )


def _csv_bad(path: Path) -> None:
    path.write_text("i,s\n0,a\n1,b,extra\n2,c\n")


def _parquet(path: Path, start: int) -> None:
    table = pa.table({"i": np.arange(start, start + 5), "s": [f"r{i}" for i in range(5)]})
    pq.write_table(table, path, row_group_size=2)


def _parquet_bad(path: Path) -> None:
    _parquet(path, 0)
    path.write_bytes(path.read_bytes()[:-12])  # the footer cut off


def _tar(path: Path, start: int) -> None:
    with webdataset.TarWriter(str(path)) as sink:
        for i in range(start, start + 5):
            sink.write({"__key__": f"s{i:03d}", "txt": f"text {i}", "cls": str(i % 2)})


def _tar_bad(path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name in ("a.txt", "b.txt"):
            info = tarfile.TarInfo(name)
            info.size = 2
            archive.addfile(info, io.BytesIO(b"ok"))
        link = tarfile.TarInfo("c.txt")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(link)
    path.write_bytes(buffer.getvalue())


READERS = [
    Reader("text_lines", ".txt", _text, _text_bad, hr.text_lines),
    Reader("read_jsonl", ".jsonl", _jsonl, _jsonl_bad, hr.read_jsonl),
    Reader("read_csv", ".csv", _csv, _csv_bad, hr.read_csv),
    Reader("read_parquet", ".parquet", _parquet, _parquet_bad, hr.read_parquet),
    Reader("read_tar_shards", ".tar", _tar, _tar_bad, hr.read_tar_shards),
]


@pytest.fixture(params=READERS, ids=[r.name for r in READERS])
def reader(request: pytest.FixtureRequest) -> Reader:
    return request.param  # type: ignore[no-any-return]


def _good_files(folder: Path, reader: Reader) -> list[str]:
    paths = []
    for n in range(3):
        path = folder / f"part-{n}{reader.suffix}"
        reader.write(path, 5 * n)
        paths.append(str(path))
    return paths


def _stats(run: Any) -> dict[str, Any]:
    (row,) = [r for r in run.stats() if "rejected" in r]
    return row


def test_files_come_in_sorted_order_and_shards_cover_them(tmp_path, reader):
    paths = _good_files(tmp_path, reader)
    per_file = [list(reader.read(p)) for p in paths]
    everything = list(reader.read(str(tmp_path / f"part-*{reader.suffix}")))

    assert everything == [record for records in per_file for record in records]
    assert len(everything) == 15
    for num_shards in (2, 3):
        shards = [
            list(reader.read(paths[::-1], num_shards=num_shards, shard_index=i))
            for i in range(num_shards)
        ]
        assert sum(map(len, shards)) == len(everything)
        assert all(record in everything for shard in shards for record in shard)


def test_a_saved_position_resumes_after_any_record(tmp_path, reader, resumed):
    _good_files(tmp_path, reader)
    pipeline = reader.read(str(tmp_path / f"part-*{reader.suffix}"))
    everything = list(pipeline)

    for cut in range(len(everything) + 1):
        before, after, saved = resumed(pipeline, cut)
        assert before + after == everything, (cut, saved)


def test_a_bad_record_raises_naming_its_file(tmp_path, reader):
    bad = tmp_path / f"bad{reader.suffix}"
    reader.write_bad(bad)

    with pytest.raises(hr.ParseError, match=str(bad)):
        list(reader.read(str(bad)))


def test_skip_yields_every_good_record_and_counts_the_rest(tmp_path, reader):
    paths = _good_files(tmp_path, reader)
    bad = tmp_path / f"part-1b{reader.suffix}"  # sorts between part-1 and part-2
    reader.write_bad(bad)
    good = list(reader.read(paths))

    with reader.read(str(tmp_path / f"part-*{reader.suffix}"), on_error="skip").iter(
        stats=True
    ) as run:
        records = list(run)
    row = _stats(run)

    assert [r for r in records if r in good] == good  # every good one, in order
    assert row["rejected"] >= 1
    assert row["read"] == len(records) + row["rejected"]
    assert all(str(bad) in example for example in row["examples"])


def test_a_quarantine_file_gets_one_entry_per_reject(tmp_path, reader):
    bad = tmp_path / f"bad{reader.suffix}"
    reader.write_bad(bad)
    quarantine = tmp_path / "rejects.jsonl"

    with reader.read(str(bad), on_error=quarantine).iter(stats=True) as run:
        list(run)

    entries = [json.loads(line) for line in quarantine.read_text().splitlines()]
    assert len(entries) == _stats(run)["rejected"] >= 1
    assert all(str(bad) in entry["where"] and entry["reason"] for entry in entries)
    assert all(reader.name in entry["stage"] for entry in entries)


def test_a_file_that_cannot_be_opened_is_rejected_under_the_policy(tmp_path, reader):
    paths = _good_files(tmp_path, reader)
    folder = tmp_path / f"part-9{reader.suffix}"
    folder.mkdir()  # named like a data file, but a folder

    with pytest.raises(hr.ParseError, match=rf"part-9\{reader.suffix}"):
        list(reader.read([*paths, str(folder)]))
    with reader.read([*paths, str(folder)], on_error="skip").iter(stats=True) as run:
        records = list(run)
    assert records == list(reader.read(paths))
    assert (_stats(run)["read"], _stats(run)["rejected"]) == (len(records) + 1, 1)


@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_a_missing_file_is_an_error_under_every_policy(tmp_path, reader, on_error):
    with pytest.raises(FileNotFoundError, match="absent"):
        list(reader.read(str(tmp_path / f"absent{reader.suffix}"), on_error=on_error))
