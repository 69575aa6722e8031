"""``read_parquet``: rows and numpy batches of files written by pandas and pyarrow.

The files are real Parquet files written by the tests; the damaged ones are real
files cut short or with a row group's pages overwritten.
"""

from __future__ import annotations

import datetime
import gzip
import pickle
import shutil
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import headrace as hr
from headrace.readers import read_parquet
from headrace.sources.files import ReadPosition

ROWS = 25  # per file: row groups of 10, 10 and 5


def table(start: int, count: int = ROWS) -> pa.Table:
    ids = list(range(start, start + count))
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "score": pa.array([i / 4 for i in ids], pa.float64()),
            "name": pa.array([f"row {i}" for i in ids]),
            "tags": pa.array([["t"] * (i % 3) for i in ids], pa.list_(pa.string())),
        }
    )


def expected(start: int, count: int = ROWS) -> list[dict[str, Any]]:
    return [
        {"id": i, "score": i / 4, "name": f"row {i}", "tags": ["t"] * (i % 3)}
        for i in range(start, start + count)
    ]


@pytest.fixture
def two_files(tmp_path: Path) -> Path:
    pq.write_table(table(0), tmp_path / "a.parquet", row_group_size=10)
    pq.write_table(table(100), tmp_path / "b.parquet", row_group_size=10)
    return tmp_path


def plain(batch: dict[str, Any]) -> dict[str, list[Any]]:
    """A batch as lists, for comparing batches by value."""
    return {name: column.tolist() for name, column in batch.items()}


def test_rows_of_pyarrow_files_with_several_row_groups_come_in_file_order(two_files):
    assert pq.ParquetFile(two_files / "a.parquet").metadata.num_row_groups == 3
    assert list(read_parquet(str(two_files / "*.parquet"))) == expected(0) + expected(100)


def test_rows_of_a_pandas_file_keep_text_timestamps_lists_and_nulls(tmp_path):
    frame = pd.DataFrame(
        {
            "name": ["a", None, "c"],
            "count": pd.array([1, None, 3], dtype="Int64"),
            "when": pd.to_datetime(["2024-01-01 10:00", None, "2024-03-01 00:00"]),
            "zone": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"]).tz_localize("UTC"),
            "items": [[1, 2], [], None],
            "price": [Decimal("1.50"), Decimal("2.25"), None],
            "kind": pd.Categorical(["x", "y", "x"]),
        }
    )
    frame.to_parquet(tmp_path / "frame.parquet", index=False)
    rows = list(read_parquet(str(tmp_path / "frame.parquet")))
    utc = datetime.UTC
    assert rows == [
        {
            "name": "a",
            "count": 1,
            "when": datetime.datetime(2024, 1, 1, 10),
            "zone": datetime.datetime(2024, 1, 1, tzinfo=utc),
            "items": [1, 2],
            "price": Decimal("1.50"),
            "kind": "x",
        },
        {
            "name": None,
            "count": None,
            "when": None,
            "zone": datetime.datetime(2024, 1, 2, tzinfo=utc),
            "items": [],
            "price": Decimal("2.25"),
            "kind": "y",
        },
        {
            "name": "c",
            "count": 3,
            "when": datetime.datetime(2024, 3, 1),
            "zone": datetime.datetime(2024, 1, 3, tzinfo=utc),
            "items": None,
            "price": None,
            "kind": "x",
        },
    ]


def test_a_pandas_index_is_stored_as_a_column_and_comes_with_the_rows(tmp_path):
    frame = pd.DataFrame({"x": [10, 20, 30]}, index=[7, 3, 5])
    frame.to_parquet(tmp_path / "indexed.parquet")
    rows = list(read_parquet(str(tmp_path / "indexed.parquet")))
    assert rows == [
        {"x": 10, "__index_level_0__": 7},
        {"x": 20, "__index_level_0__": 3},
        {"x": 30, "__index_level_0__": 5},
    ]
    only_x = read_parquet(str(tmp_path / "indexed.parquet"), columns=["x"])
    assert list(only_x) == [{"x": 10}, {"x": 20}, {"x": 30}]


def test_columns_choose_and_order_what_is_read(two_files):
    rows = list(read_parquet(str(two_files / "a.parquet"), columns=["name", "id"]))
    assert rows[:2] == [{"name": "row 0", "id": 0}, {"name": "row 1", "id": 1}]
    assert all(list(row) == ["name", "id"] for row in rows)


def test_batches_are_numpy_columns_and_never_mix_two_files(two_files):
    batches = list(read_parquet(str(two_files / "*.parquet"), batch_size=10))
    assert [len(b["id"]) for b in batches] == [10, 10, 5, 10, 10, 5]
    first = batches[0]
    assert first["id"].dtype == np.int64
    assert first["score"].dtype == np.float64
    assert first["name"].dtype == object
    assert not isinstance(first["id"], np.ma.MaskedArray)
    assert first["name"][3] == "row 3"
    assert first["tags"][4] == ["t"]
    assert batches[3]["id"].tolist() == list(range(100, 110))
    joined = [v for b in batches for v in b["id"].tolist()]
    assert joined == list(range(ROWS)) + list(range(100, 100 + ROWS))


def test_batches_cross_row_groups_inside_a_file(two_files):
    sizes = [len(b["id"]) for b in read_parquet(str(two_files / "a.parquet"), batch_size=7)]
    assert sizes == [7, 7, 7, 4]


def test_a_column_with_nulls_is_masked_and_keeps_its_dtype(tmp_path):
    pq.write_table(
        pa.table(
            {
                "n": pa.array([1, None, 3, 4], pa.int32()),
                "ok": pa.array([True, None, False, True]),
                "when": pa.array([datetime.datetime(2024, 1, 1), None, None, None]),
                "x": pa.array([0.5, None, 1.5, 2.5]),
            }
        ),
        tmp_path / "nulls.parquet",
    )
    first, second = read_parquet(str(tmp_path / "nulls.parquet"), batch_size=2)
    assert isinstance(first["n"], np.ma.MaskedArray)
    assert first["n"].dtype == np.int32
    assert first["n"].mask.tolist() == [False, True]
    assert first["n"].tolist() == [1, None]
    assert first["ok"].dtype == np.bool_
    assert first["ok"].tolist() == [True, None]
    assert first["when"].dtype == np.dtype("datetime64[us]")
    assert first["when"].mask.tolist() == [False, True]
    assert np.isnan(first["x"].data[1])
    # A batch without nulls in a column gives a plain array of the same dtype.
    assert type(second["n"]) is np.ndarray
    assert second["n"].dtype == np.int32
    assert second["when"].mask.tolist() == [True, True]


def test_fixed_size_lists_of_numbers_become_two_dimensional_arrays(tmp_path):
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(np.arange(12, dtype=np.float32)), 3)
    pq.write_table(pa.table({"v": vectors}), tmp_path / "vectors.parquet", row_group_size=3)
    first, second = read_parquet(str(tmp_path / "vectors.parquet"), batch_size=2)
    assert first["v"].dtype == np.float32
    assert first["v"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert second["v"].tolist() == [[6, 7, 8], [9, 10, 11]]
    assert next(iter(read_parquet(str(tmp_path / "vectors.parquet"))))["v"] == [0, 1, 2]


def test_an_empty_table_gives_no_rows_and_no_rejects(tmp_path):
    pq.write_table(table(0, 0), tmp_path / "empty.parquet")
    with read_parquet(str(tmp_path / "empty.parquet"), batch_size=4).iter(stats=True) as run:
        assert list(run) == []
    (row,) = [r for r in run.stats() if "rejected" in r]
    assert (row["read"], row["rejected"]) == (0, 0)


@pytest.mark.parametrize("cut", range(2 * ROWS + 1))
def test_resuming_rows_at_every_cut_equals_an_uninterrupted_read(two_files, resumed, cut):
    pipeline = read_parquet(str(two_files / "*.parquet"))
    before, after, saved = resumed(pipeline, cut)
    assert before + after == expected(0) + expected(100)
    if cut:
        assert saved["records"] == (cut - 1) % ROWS + 1


@pytest.mark.parametrize("cut", range(9))
def test_resuming_batches_at_every_cut_equals_an_uninterrupted_read(two_files, resumed, cut):
    pipeline = read_parquet(str(two_files / "*.parquet"), batch_size=6, columns=["id", "tags"])
    whole = [plain(b) for b in pipeline]
    assert len(whole) == 10  # 6, 6, 6, 6, 1 per file
    before, after, saved = resumed(pipeline, cut)
    assert [plain(b) for b in before + after] == whole
    if cut in (2, 5):  # inside a row group (12 rows), at the end of the file (25)
        assert saved["records"] == {2: 12, 5: 25}[cut]


def overwrite_row_group(path: Path, group: int) -> None:
    """Overwrite the pages of one row group with bytes no reader can decode."""
    metadata = pq.ParquetFile(path).metadata.row_group(group)
    data = bytearray(path.read_bytes())
    for index in range(metadata.num_columns):
        chunk = metadata.column(index)
        start = (
            chunk.dictionary_page_offset if chunk.has_dictionary_page else chunk.data_page_offset
        )
        data[start : start + chunk.total_compressed_size] = b"\xff" * chunk.total_compressed_size
    path.write_bytes(bytes(data))


def test_resuming_passes_over_earlier_row_groups_without_reading_them(two_files, context):
    path = two_files / "a.parquet"
    overwrite_row_group(path, 0)
    with pytest.raises(hr.ParseError, match=r"a\.parquet, row 1: cannot read the file"):
        list(read_parquet(str(path)))
    (stage,) = read_parquet(str(path)).stages
    ctx = context(stage)
    for start in (10, 13):  # at a row group's first row, and inside it
        reader, _ = stage.reader(ctx, ReadPosition(0, start, str(path)))
        assert list(reader) == expected(start, ROWS - start)


def test_a_damaged_row_group_keeps_the_rows_before_it_under_skip(two_files):
    overwrite_row_group(two_files / "a.parquet", 1)
    with read_parquet(str(two_files / "*.parquet"), on_error="skip").iter(stats=True) as run:
        rows = list(run)
    assert rows == expected(0, 10) + expected(100)
    (row,) = [r for r in run.stats() if "rejected" in r]
    assert (row["read"], row["rejected"]) == (len(rows) + 1, 1)
    assert row["examples"][0].startswith(f"{two_files / 'a.parquet'}, row 11: cannot read")


def test_a_damaged_row_group_in_batches_keeps_whole_rows_before_it(two_files):
    overwrite_row_group(two_files / "a.parquet", 1)
    pipeline = read_parquet(str(two_files / "a.parquet"), batch_size=4, on_error="skip")
    assert [len(b["id"]) for b in pipeline] == [4, 4, 2]
    with pytest.raises(hr.ParseError, match=r"row 11: cannot read the file past row 10"):
        list(read_parquet(str(two_files / "a.parquet"), batch_size=4))


def bad_files(folder: Path) -> dict[str, Path]:
    """A truncated Parquet file, a text file named .parquet and an empty one."""
    pq.write_table(table(0), folder / "whole.parquet", row_group_size=10)
    whole = (folder / "whole.parquet").read_bytes()
    files = {
        "truncated": folder / "truncated.parquet",
        "text": folder / "text.parquet",
        "empty": folder / "empty.parquet",
    }
    files["truncated"].write_bytes(whole[: len(whole) - 40])  # the footer is cut off
    files["text"].write_text("id,name\n1,a\n")
    files["empty"].write_bytes(b"")
    return files


@pytest.mark.parametrize("kind", ["truncated", "text", "empty"])
def test_a_file_that_is_not_readable_parquet_raises_naming_it(tmp_path, kind):
    path = bad_files(tmp_path)[kind]
    with pytest.raises(hr.ParseError, match=rf"^{path}: not a readable Parquet file \(.+\)$"):
        list(read_parquet(str(path)))


def test_unreadable_files_are_counted_once_each_under_skip(tmp_path):
    files = bad_files(tmp_path)
    quarantine = tmp_path / "rejects.jsonl"
    with read_parquet(str(tmp_path / "*.parquet"), on_error=quarantine).iter(stats=True) as run:
        rows = list(run)
    assert rows == expected(0)
    (row,) = [r for r in run.stats() if "rejected" in r]
    assert (row["read"], row["rejected"]) == (ROWS + 3, 3)
    rejected = quarantine.read_text()
    assert all(str(path) in rejected for path in files.values())


def test_a_file_replaced_by_a_folder_during_the_epoch_is_rejected(two_files):
    first, second = two_files / "a.parquet", two_files / "b.parquet"
    for policy in ("raise", "skip"):
        pq.write_table(table(100), second)
        run = read_parquet([str(first), str(second)], on_error=policy).iter(stats=True)
        with run:
            assert next(run) == expected(0, 1)[0]
            second.unlink()  # listed when the run started, a folder when its turn comes
            second.mkdir()
            if policy == "raise":
                with pytest.raises(hr.ParseError, match=r"b\.parquet: cannot open the file"):
                    list(run)
            else:
                assert list(run) == expected(1, ROWS - 1)
        second.rmdir()
    (row,) = [r for r in run.stats() if "rejected" in r]
    assert (row["read"], row["rejected"]) == (ROWS + 1, 1)


def test_a_missing_file_is_always_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"absent\.parquet"):
        list(read_parquet(str(tmp_path / "absent.parquet"), on_error="skip"))


def test_a_folder_named_like_a_parquet_file_cannot_be_opened(tmp_path):
    folder = tmp_path / "folder.parquet"
    folder.mkdir()
    with pytest.raises(hr.ParseError, match=rf"^{folder}: cannot open the file"):
        list(read_parquet(str(folder)))
    pq.write_table(table(0, 2), tmp_path / "real.parquet")
    with read_parquet([str(folder), str(tmp_path / "real.parquet")], on_error="skip").iter(
        stats=True
    ) as run:
        assert list(run) == expected(0, 2)
    (row,) = [r for r in run.stats() if "rejected" in r]
    assert (row["read"], row["rejected"]) == (3, 1)
    # A glob matches files only: the folder is no match.
    assert list(read_parquet(str(tmp_path / "*.parquet"))) == expected(0, 2)


def test_a_column_the_file_lacks_is_named_with_the_file(two_files):
    pq.write_table(table(0, 3).drop_columns(["tags"]), two_files / "c.parquet")
    pipeline = read_parquet(str(two_files / "c.parquet"), columns=["id", "tags"])
    with pytest.raises(hr.ParseError, match=r"c\.parquet: the file has no column 'tags' \(it has"):
        list(pipeline)
    pattern = str(two_files / "*.parquet")
    with read_parquet(pattern, columns=["tags"], on_error="skip").iter(stats=True) as run:
        rows = list(run)
    assert len(rows) == 2 * ROWS
    (row,) = [r for r in run.stats() if "rejected" in r]
    assert (row["read"], row["rejected"]) == (2 * ROWS + 1, 1)
    assert "no column 'tags'" in row["examples"][0]


def test_a_parquet_file_compressed_as_a_whole_is_rejected_with_the_reason(two_files):
    packed = two_files / "packed.parquet.gz"
    packed.write_bytes(gzip.compress((two_files / "a.parquet").read_bytes()))
    with pytest.raises(hr.ParseError, match=r"packed\.parquet\.gz: Parquet needs random access"):
        list(read_parquet(str(packed)))


def test_a_file_in_an_fsspec_filesystem_reads_like_a_local_one(two_files):
    memory = fsspec.filesystem("memory")
    folder = f"/headrace-test-{uuid.uuid4().hex}"
    try:
        for name in ("a.parquet", "b.parquet"):
            memory.pipe(f"{folder}/{name}", (two_files / name).read_bytes())
        local = list(read_parquet(str(two_files / "*.parquet"), batch_size=8))
        remote = list(read_parquet(f"memory://{folder}/*.parquet", batch_size=8))
        assert [plain(b) for b in remote] == [plain(b) for b in local]
        url = f"memory://{folder}/b.parquet"
        assert list(read_parquet(url, columns=["id"]))[:2] == [{"id": 100}, {"id": 101}]
        with pytest.raises(hr.ParseError, match=r"absent\.parquet: cannot open the file"):
            list(read_parquet(f"memory://{folder}/absent.parquet"))
    finally:
        memory.rm(folder, recursive=True)


def test_shards_read_disjoint_files_that_cover_all(two_files):
    shutil.copy(two_files / "a.parquet", two_files / "c.parquet")
    pattern = str(two_files / "*.parquet")
    shards = [
        list(read_parquet(pattern, columns=["id"], num_shards=2, shard_index=i)) for i in (0, 1)
    ]
    assert [len(s) for s in shards] == [2 * ROWS, ROWS]
    assert shards[1] == [{"id": r["id"]} for r in expected(100)]


def test_the_pipeline_pickles_and_names_its_options(two_files):
    pipeline = read_parquet(str(two_files / "a.parquet"), columns=["id"], batch_size=5)
    assert repr(pipeline.stages[0]) == (
        f"read_parquet({str(two_files / 'a.parquet')!r}, columns=['id'], batch_size=5)"
    )
    copy = pickle.loads(pickle.dumps(pipeline))
    assert [plain(b) for b in copy] == [plain(b) for b in pipeline]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"columns": "id"}, TypeError, "columns must be a list"),
        ({"columns": [1]}, TypeError, "columns must hold str"),
        ({"columns": []}, ValueError, "columns is empty"),
        ({"columns": ["a", "b", "a"]}, ValueError, "columns names 'a' more than once"),
        ({"batch_size": 0}, ValueError, "batch_size must be at least 1"),
        ({"batch_size": 2.0}, TypeError, "batch_size must be an int"),
        ({"on_error": "ignore"}, ValueError, "on_error"),
    ],
)
def test_bad_arguments_are_refused_when_the_pipeline_is_built(kwargs, error, message):
    with pytest.raises(error, match=message):
        read_parquet("rows.parquet", **kwargs)


@pytest.mark.parametrize("batch_size", [None, 4])
def test_strings_that_are_not_utf8_reject_the_rest_of_the_file(tmp_path, batch_size):
    path = tmp_path / "s.parquet"
    names = [f"name-{i:02d}" for i in range(10)]
    pq.write_table(pa.table({"s": names}), path, compression="NONE", use_dictionary=False)
    data = path.read_bytes()
    assert data.count(b"name-06") == 1  # in the data page, stored as written
    path.write_bytes(data.replace(b"name-06", b"nam\xb7-06"))
    with pytest.raises(hr.ParseError, match=r"s\.parquet, row \d+: cannot read the file past"):
        list(hr.read_parquet(str(path), batch_size=batch_size))
    run = iter(hr.read_parquet(str(path), batch_size=batch_size, on_error="skip"))
    kept = list(run)
    stats = run.stats()[0]
    assert stats["rejected"] == 1
    rows = sum(len(b["s"]) for b in kept) if batch_size else len(kept)
    assert stats["read"] == rows + 1
