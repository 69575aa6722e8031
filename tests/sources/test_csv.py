"""``read_csv``: rows and columnar batches of CSV files, with both engines.

The files are real CSV files written by pandas (quoting, embedded delimiters and line
ends, an index column) and by the tests; a damaged gzip file is a real one cut short.
Every test that reads runs with both engines, which must agree. The pyarrow engine
reads in segments of ``SEGMENT_SIZE`` bytes, on a pool of threads; the
``small_segments`` fixture shrinks them so that small files cross many segments,
switch to pyarrow's streaming reader part way, and fall back to the Python engine for
one segment or part of a file. The engine reads a local ``.csv`` file by byte ranges
and a compressed one as a stream: the tests that parametrize the suffix cover both.
"""

from __future__ import annotations

import csv
import gzip
import json
import pickle
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import headrace as hr
import headrace.sources.csv.arrow as arrow_module
import headrace.sources.csv.python as python_module
from headrace.readers import read_csv

ENGINES = ["pyarrow", "python"]


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def small_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    """Segments and pyarrow blocks of a few hundred bytes: a small file crosses many."""
    monkeypatch.setattr(arrow_module, "SEGMENT_SIZE", 512)
    monkeypatch.setattr(arrow_module, "BLOCK_SIZE", 256)
    monkeypatch.setattr(python_module, "CHUNK_ROWS", 7)


def frame(count: int = 60) -> pd.DataFrame:
    """Numbers, and text with the delimiter, quotes, line ends and non-ASCII in it."""
    texts = ["plain", "a, b", 'say "hi"', "two\nlines", "crlf\r\nend", "café ☕", "", " pad "]
    return pd.DataFrame(
        {
            "id": np.arange(count, dtype=np.int64),
            "score": (np.arange(count) / 8 - 2).astype(np.float32),
            "text": [texts[i % len(texts)] + (str(i) if i % 3 else "") for i in range(count)],
            "flag": [i % 2 == 0 for i in range(count)],
        }
    )


TYPES = {"id": "int64", "score": "float32", "flag": "bool"}


def rows_of(df: pd.DataFrame) -> list[dict[str, Any]]:
    return df.to_dict("records")


def read(path: Path | str, engine: str, **options: Any) -> list[Any]:
    return list(read_csv(str(path), engine=engine, **options))


def plain(batch: dict[Any, np.ndarray]) -> dict[Any, list[Any]]:
    return {key: column.tolist() for key, column in batch.items()}


def stats_row(run: hr.Run[Any]) -> dict[str, Any]:
    (row,) = [r for r in run.stats() if "rejected" in r]
    return row


# -- reading what pandas writes --------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".csv.bz2", ".csv.xz"])
def test_rows_of_a_pandas_file_come_back_typed(tmp_path, engine, suffix):
    df = frame()
    path = tmp_path / f"data{suffix}"
    df.to_csv(path, index=False)
    records = read(path, engine, dtype=TYPES)
    assert records == rows_of(df)
    assert type(records[0]["score"]) is np.float32
    assert type(records[0]["id"]) is np.int64
    assert type(records[0]["text"]) is str


def test_types_are_inferred_without_a_dtype_and_str_keeps_the_text(tmp_path, engine):
    df = frame(5)
    df.to_csv(tmp_path / "d.csv", index=False)
    records = read(tmp_path / "d.csv", engine)
    assert records[1] == {"id": 1, "score": -1.875, "text": "a, b1", "flag": False}
    assert [type(v) for v in records[1].values()] == [np.int64, np.float64, str, np.bool_]
    assert read(tmp_path / "d.csv", engine, dtype=str)[1] == {
        "id": "1",
        "score": "-1.875",
        "text": "a, b1",
        "flag": "False",
    }
    # A dtype for some columns leaves the others to inference.
    assert read(tmp_path / "d.csv", engine, dtype={"id": "float32", "flag": str})[1] == {
        "id": np.float32(1),
        "score": -1.875,
        "text": "a, b1",
        "flag": "False",
    }


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
def test_both_engines_read_many_segments_alike(tmp_path, small_segments, suffix):
    df = frame(300)
    numbers = df[["id", "score"]]
    numbers.to_csv(tmp_path / f"a-numbers{suffix}", index=False)  # no quotes: parallel
    df.to_csv(tmp_path / f"b-quoted{suffix}", index=False)
    # Quotes only after several segments: pyarrow switches to its streaming reader.
    late = pd.concat([numbers.assign(text="x"), df.iloc[:40][["id", "score", "text"]]])
    late.to_csv(tmp_path / f"c-late{suffix}", index=False)
    dtype = {"id": "int64", "score": "float32"}
    pattern = tmp_path / f"*{suffix}"
    by_engine = [read(pattern, e, dtype=dtype, columns=["id", "score"]) for e in ENGINES]
    assert by_engine[0] == by_engine[1]
    expected = rows_of(numbers) * 2 + rows_of(late[["id", "score"]])
    assert by_engine[0] == expected
    assert (
        read(tmp_path / f"c-late{suffix}", "pyarrow")[-40:]
        == read(tmp_path / f"c-late{suffix}", "python")[-40:]
    )


def bits(records: list[dict[str, Any]]) -> list[list[bytes]]:
    """The values' bytes: equal floats can differ (``-0.0`` and ``0.0``)."""
    return [[np.asarray(value).tobytes() for value in r.values()] for r in records]


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_integers_in_float_columns_read_bit_for_bit_as_python_reads_them(
    tmp_path, small_segments, suffix, dtype
):
    # pyarrow parses float columns as integers while a segment has no "." and no "-":
    # large integers must round as float() rounds their text, "-0" keep its sign, and
    # the first segment with a "." turn the file over to floats.
    ints = ["1", "007", "+5", "", "16777217", str(2**53 + 1), str(2**63 - 1), str(2**63)]
    lines = [f"{ints[i % len(ints)]},{i}" for i in range(200)]
    lines += ["-0,1", "-7,-0", "-00,3"] + [f"{i},{i}" for i in range(60)]
    lines += ["2.5,1e3", "1e5,inf", "nan,-inf"] + [f"{i},{i * 3}" for i in range(60)]
    path = tmp_path / f"i{suffix}"
    text = ("a,b\n" + "\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(text) if suffix == ".csv.gz" else text)
    by_engine = [read(path, engine, dtype=dtype) for engine in ENGINES]
    assert len(by_engine[0]) == len(lines)
    assert bits(by_engine[0]) == bits(by_engine[1])
    assert np.signbit(by_engine[0][200]["a"])  # -0
    if dtype == "float64":  # 2**53 + 1 rounds to even, as float("9007199254740993") does
        assert [r["a"] for r in by_engine[0][4:6]] == [16777217.0, 2.0**53]


def test_columns_by_name_or_index_come_in_the_order_asked(tmp_path, engine):
    frame(10).to_csv(tmp_path / "d.csv", index=False)
    records = read(tmp_path / "d.csv", engine, columns=["score", 0], dtype={"id": "int16"})
    assert list(records[3]) == ["score", "id"]
    assert records[3] == {"score": -1.625, "id": 3}
    assert type(records[3]["id"]) is np.int16


def test_the_index_column_pandas_writes_is_unnamed_and_repeats_are_numbered(tmp_path, engine):
    pd.DataFrame({"a": [1, 2]}, index=[7, 8]).to_csv(tmp_path / "i.csv")
    assert read(tmp_path / "i.csv", engine) == [
        {"Unnamed: 0": 7, "a": 1},
        {"Unnamed: 0": 8, "a": 2},
    ]
    (tmp_path / "r.csv").write_text("a,a,b,a\n1,2,3,4\n")
    assert read(tmp_path / "r.csv", engine) == [{"a": 1, "a.1": 2, "b": 3, "a.2": 4}]


def test_without_a_header_columns_are_numbered_or_named(tmp_path, engine):
    frame(4).to_csv(tmp_path / "n.csv", index=False, header=False)
    numbered = read(tmp_path / "n.csv", engine, header=False, columns=[2, 0], dtype={0: "int8"})
    assert numbered[0] == {2: "plain", 0: 0}
    named = read(tmp_path / "n.csv", engine, header=False, names=["i", "s", "t", "f"])
    assert [r["t"] for r in named] == frame(4)["text"].tolist()
    renamed = read(tmp_path / "n.csv", engine, names=["i", "s", "t", "f"])  # row 1 is a header
    assert renamed == named[1:]


def test_a_byte_order_mark_blank_lines_and_crlf_make_no_difference(tmp_path, engine):
    (tmp_path / "b.csv").write_bytes(b"\xef\xbb\xbf\r\nx,y\r\n1,2\r\n\r\n\r\n3,4\r\n\n")
    assert read(tmp_path / "b.csv", engine, dtype="int32") == [{"x": 1, "y": 2}, {"x": 3, "y": 4}]


def test_empty_files_and_header_only_files_have_no_rows(tmp_path, engine):
    (tmp_path / "a.csv").write_text("")
    (tmp_path / "b.csv").write_text("x,y\n")
    (tmp_path / "c.csv").write_text("\n\n")
    with read_csv(str(tmp_path / "*.csv"), engine=engine).iter(stats=True) as run:
        assert list(run) == []
    assert (stats_row(run)["read"], stats_row(run)["rejected"]) == (0, 0)
    assert read(tmp_path / "b.csv", engine, batch_size=4) == []


def test_tab_separated_files_and_other_quote_characters(tmp_path, engine):
    df = frame(12)
    df.to_csv(tmp_path / "t.tsv", sep="\t", index=False)
    assert read(tmp_path / "t.tsv", engine, delimiter="\t", dtype=TYPES) == rows_of(df)
    df.to_csv(tmp_path / "q.csv", quotechar="'", index=False)
    assert read(tmp_path / "q.csv", engine, quotechar="'", dtype=TYPES) == rows_of(df)


def test_floats_ints_and_bools_convert_as_both_engines_agree(tmp_path, engine):
    (tmp_path / "v.csv").write_text(
        'f,i,b\n1.5,-7,true\n,007,0\n"",0,FALSE\n1e39,123,True\nnan,-0,1\n-inf,+5,False\n'
    )
    records = read(tmp_path / "v.csv", engine, dtype={"f": "float32", "i": "int64", "b": bool})
    assert [r["i"] for r in records] == [-7, 7, 0, 123, 0, 5]
    assert [r["b"] for r in records] == [True, False, False, True, True, False]
    floats = np.array([r["f"] for r in records])
    assert floats.dtype == np.float32
    assert np.array_equal(floats, [1.5, np.nan, np.nan, np.inf, np.nan, -np.inf], equal_nan=True)


def test_a_fsspec_url_reads_like_a_local_file(engine):
    df = frame(30)
    name = f"memory://read-csv-{engine}/d.csv.gz"
    with fsspec.open(name, "wb", compression="gzip") as out:
        out.write(df.to_csv(index=False).encode())
    assert read(name, engine, dtype=TYPES) == rows_of(df)


# -- batches ---------------------------------------------------------------------------------


def test_batches_are_columns_of_batch_size_rows_and_the_last_is_short(tmp_path, engine):
    df = frame(50)
    df.to_csv(tmp_path / "d.csv", index=False)
    batches = read(tmp_path / "d.csv", engine, dtype=TYPES, batch_size=7)
    assert [len(b["id"]) for b in batches] == [7] * 7 + [1]
    assert [b["score"].dtype for b in batches[:1]] == [np.float32]
    assert batches[0]["text"].dtype == object
    joined = {k: np.concatenate([b[k] for b in batches]).tolist() for k in df.columns}
    assert joined == df.to_dict("list")
    batches[0]["score"][0] = 99  # writable
    assert all(b["score"].flags.writeable for b in batches)


@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_batches_of_any_number_of_columns(tmp_path, engine, width, small_segments):
    names = [f"c{i}" for i in range(width)]
    rows = ["".join(f",{r * 10 + i}" for i in range(width))[1:] for r in range(90)]
    (tmp_path / "w.csv").write_text(",".join(names) + "\n" + "\n".join(rows) + "\n")
    batches = read(tmp_path / "w.csv", engine, dtype="int64", batch_size=8)
    assert [list(b) for b in batches] == [names] * 12
    for i, name in enumerate(names):
        assert np.concatenate([b[name] for b in batches]).tolist() == [
            r * 10 + i for r in range(90)
        ]


def test_batches_do_not_span_files(tmp_path, engine):
    frame(10).to_csv(tmp_path / "a.csv", index=False)
    frame(5).to_csv(tmp_path / "b.csv", index=False)
    batches = read(tmp_path / "*.csv", engine, batch_size=4, dtype=TYPES)
    assert [len(b["id"]) for b in batches] == [4, 4, 2, 4, 1]


def test_batches_across_segments_hold_the_rows_in_order(tmp_path, engine, small_segments):
    df = frame(200)
    df.to_csv(tmp_path / "d.csv", index=False)
    batches = read(tmp_path / "d.csv", engine, dtype=TYPES, batch_size=9)
    assert [len(b["id"]) for b in batches] == [9] * 22 + [2]
    joined = {k: np.concatenate([b[k] for b in batches]).tolist() for k in df.columns}
    assert joined == df.to_dict("list")


def test_float32_pairs_for_a_keras_style_loop(tmp_path, engine):
    # The x,y regression file of a Keras generator: (X, y) float32 batches of 250.
    (tmp_path / "xy.csv").write_text("x,y\n" + "".join(f"{i},{i}\n" for i in range(1, 1001)))
    pairs = read_csv(str(tmp_path / "xy.csv"), dtype="float32", batch_size=250, engine=engine)
    batches = list(pairs.map(lambda b: (b["x"], b["y"])))
    assert len(batches) == 4
    X, y = batches[1]
    assert X.dtype == y.dtype == np.float32
    assert X.shape == y.shape == (250,)
    assert X[0] == y[0] == 251


# -- bad input -------------------------------------------------------------------------------

BAD = (
    "x,y,name\n"
    "1,2,ok\n"  # row 1
    "3,4\n"  # row 2: a field short
    "5,six,ok\n"  # row 3: not a number
    "7,8,ok,extra\n"  # row 4: a field over
    '9,10,"caf\xe9"\n'  # row 5: Latin-1, not UTF-8
    "11,,ok\n"  # row 6: an empty int
    "13,14,ok\n"  # row 7
)
REASONS = [
    (2, "expected 3 fields, found 2"),
    (3, "column 'y': cannot convert 'six' to int64"),
    (4, "expected 3 fields, found 4"),
    (5, "column 'name' is not valid UTF-8"),
    (6, "column 'y': cannot convert '' to int64"),
]


def bad_file(tmp_path: Path, repeat: int = 1) -> Path:
    path = tmp_path / "bad.csv"
    body = BAD.split("\n", 1)[1]
    path.write_bytes(("x,y,name\n" + body * repeat).encode("latin-1"))
    return path


@pytest.mark.parametrize(("row", "reason"), REASONS)
def test_a_bad_row_raises_naming_file_row_and_reason(tmp_path, engine, row, reason):
    path = tmp_path / "one.csv"
    lines = BAD.encode("latin-1").split(b"\n")
    path.write_bytes(b"\n".join([lines[0], lines[1], lines[row], lines[7], b""]))
    error = hr.DecodeError if "UTF-8" in reason else hr.ParseError
    run = iter(read_csv(str(path), engine=engine, dtype={"x": "int64", "y": "int64"}))
    assert next(run) == {"x": 1, "y": 2, "name": "ok"}  # the rows before are yielded
    with pytest.raises(error, match=f"^{path} row 2: {reason}$".replace("(", r"\(")):
        next(run)


def test_skip_drops_bad_rows_counts_them_and_both_engines_agree(tmp_path, small_segments):
    path = bad_file(tmp_path, repeat=20)
    results = []
    for engine in ENGINES:
        pipeline = read_csv(str(path), engine=engine, dtype={"y": "int64"}, on_error="skip")
        with pipeline.iter(stats=True) as run:
            records = list(run)
        row = stats_row(run)
        assert (row["read"], row["rejected"]) == (140, 100)
        assert row["read"] == len(records) + row["rejected"]
        assert row["examples"][:2] == [f"{path} row {n}: {why}" for n, why in REASONS[:2]]
        results.append(records)
    assert results[0] == results[1]
    assert [r["x"] for r in results[0][:3]] == [1, 13, 1]


def test_quarantine_entries_are_the_same_with_both_engines(tmp_path, small_segments):
    path = bad_file(tmp_path, repeat=3)
    entries = []
    for engine in ENGINES:
        quarantine = tmp_path / f"{engine}.jsonl"
        read(path, engine, dtype={"y": "int64"}, on_error=quarantine)
        entries.append([json.loads(line) for line in quarantine.read_text().splitlines()])
    assert [{k: e[k] for k in ("where", "reason", "record")} for e in entries[0]] == [
        {k: e[k] for k in ("where", "reason", "record")} for e in entries[1]
    ]
    first = entries[0][:5]
    assert [e["where"] for e in first] == [f"{path} row {n}" for n, _ in REASONS]
    assert [e["record"] for e in first[:3]] == [
        ["3", "4"],
        ["5", "six", "ok"],
        ["7", "8", "ok", "extra"],
    ]
    assert first[3]["record"] == ["9", "10", "caf\\xe9"]


def test_a_bad_byte_in_a_column_not_read_is_no_error(tmp_path, engine):
    path = bad_file(tmp_path)
    records = read(path, engine, columns=["x"], on_error="skip")
    assert [r["x"] for r in records] == [1, 5, 9, 11, 13]


def test_bad_values_in_quoted_and_unquoted_segments_fall_back_exactly(tmp_path, small_segments):
    clean = "".join(f"{i},{i / 2}\n" for i in range(200))
    quoted = "".join(f'{i},"{i / 2}"\n' for i in range(200, 400))
    path = tmp_path / "mixed.csv"
    text = "a,b\n" + clean.replace("\n57,", "\n57x,") + quoted.replace("\n333,", "\n333x,")
    path.write_text(text)
    results = []
    for engine in ENGINES:
        with read_csv(str(path), engine=engine, dtype="float64", on_error="skip").iter(
            stats=True
        ) as run:
            results.append(list(run))
        assert stats_row(run)["rejected"] == 2
        assert stats_row(run)["examples"][1].startswith(f"{path} row 334: column 'a'")
    assert results[0] == results[1]
    assert [r["a"] for r in results[0]] == [i for i in range(400) if i not in (57, 333)]


def test_a_row_bigger_than_pyarrows_block_is_read(tmp_path, small_segments):
    path = tmp_path / "long.csv"
    pd.DataFrame({"a": [1, 2, 3], "t": ["x", "y" * 2000, "z"]}).to_csv(path, index=False)
    assert read(path, "pyarrow") == read(path, "python")
    assert len(read(path, "pyarrow")[1]["t"]) == 2000


def test_an_out_of_range_integer_is_a_bad_value(tmp_path, engine):
    (tmp_path / "r.csv").write_text("a\n127\n128\n-129\n-128\n")
    records = read(tmp_path / "r.csv", engine, dtype="int8", on_error="skip")
    assert records == [{"a": 127}, {"a": -128}]


def cut_gzip(tmp_path: Path) -> Path:
    path = tmp_path / "whole.csv.gz"
    frame(3000).to_csv(path, index=False)
    whole = path.read_bytes()
    cut = tmp_path / "cut.csv.gz"
    cut.write_bytes(whole[: len(whole) * 2 // 3])
    return cut


def test_a_truncated_gzip_file_raises_naming_the_file(tmp_path, engine):
    path = cut_gzip(tmp_path)
    with pytest.raises(hr.ParseError, match=rf"{path} row \d+: the file is damaged or cut short"):
        read(path, engine)


def test_a_truncated_gzip_file_under_skip_keeps_a_prefix_and_goes_on(
    tmp_path, engine, small_segments
):
    path = cut_gzip(tmp_path)
    frame(2).to_csv(tmp_path / "next.csv", index=False)
    pipeline = read_csv([str(path), str(tmp_path / "next.csv")], engine=engine, on_error="skip")
    with pipeline.iter(stats=True) as run:
        records = list(run)
    row = stats_row(run)
    assert row["rejected"] == 1
    assert row["read"] == len(records) + 1
    kept = records[:-2]
    assert 0 < len(kept) < 3000
    assert [r["id"] for r in kept] == list(range(len(kept)))
    assert [r["id"] for r in records[-2:]] == [0, 1]


def test_a_missing_file_is_refused_when_the_run_starts(tmp_path, engine):
    with pytest.raises(FileNotFoundError):
        read(tmp_path / "absent.csv", engine, on_error="skip")


def test_a_directory_named_like_a_csv_file_is_a_file_that_cannot_be_opened(tmp_path, engine):
    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(hr.ParseError, match=r"folder\.csv: cannot open the file"):
        read(tmp_path / "folder.csv", engine)
    frame(3).to_csv(tmp_path / "real.csv", index=False)
    paths = [str(tmp_path / "folder.csv"), str(tmp_path / "real.csv")]
    with read_csv(paths, engine=engine, on_error="skip").iter(stats=True) as run:
        assert len(list(run)) == 3
    assert (stats_row(run)["read"], stats_row(run)["rejected"]) == (4, 1)


def test_a_file_that_vanishes_during_the_run_is_a_counted_reject(tmp_path, engine):
    frame(3).to_csv(tmp_path / "a.csv", index=False)
    frame(2).to_csv(tmp_path / "b.csv", index=False)
    with read_csv(str(tmp_path / "*.csv"), engine=engine, on_error="skip").iter(stats=True) as run:
        assert next(run)["id"] == 0
        (tmp_path / "b.csv").unlink()
        assert len(list(run)) == 2
    assert stats_row(run)["rejected"] == 1
    assert "b.csv: cannot open the file" in stats_row(run)["examples"][0]


def test_columns_a_file_lacks_reject_the_file_and_hint_at_a_missing_header(tmp_path, engine):
    (tmp_path / "a.csv").write_text("1,2\n3,4\n")  # no header row
    frame(2).to_csv(tmp_path / "b.csv", index=False)
    with pytest.raises(hr.ParseError, match=r"a\.csv: columns names 'id'.*'1', '2'.*header=False"):
        read(tmp_path / "a.csv", engine, columns=["id"])
    with pytest.raises(hr.ParseError, match=r"a\.csv: dtype names column 'id'"):
        read(tmp_path / "a.csv", engine, dtype={"id": int})
    with pytest.raises(hr.ParseError, match=r"header row has 2 columns but names= gives 3"):
        read(tmp_path / "a.csv", engine, names=["a", "b", "c"])
    with read_csv(str(tmp_path / "*.csv"), engine=engine, columns=["id"], on_error="skip").iter(
        stats=True
    ) as run:
        assert list(run) == [{"id": 0}, {"id": 1}]
    assert (stats_row(run)["read"], stats_row(run)["rejected"]) == (3, 1)


def test_a_damaged_gzip_file_with_quotes_is_rejected_once(tmp_path, engine, small_segments):
    path = tmp_path / "whole.csv.gz"
    frame(2000).to_csv(path, index=False)  # quoted text from the first rows on
    whole = path.read_bytes()
    cut = tmp_path / "cut.csv.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    with read_csv(str(cut), engine=engine, dtype=TYPES, on_error="skip").iter(stats=True) as run:
        records = list(run)
    assert (stats_row(run)["rejected"], stats_row(run)["read"]) == (1, len(records) + 1)
    assert 0 < len(records) < 2000
    assert records == rows_of(frame(2000))[: len(records)]


def test_a_file_cut_short_while_it_is_read_keeps_its_whole_rows(tmp_path, small_segments):
    # The pyarrow engine reads a local file by byte ranges, a few segments ahead of the
    # rows handed out: a range read after the file was cut comes back short.
    path = tmp_path / "d.csv"
    frame(2000)[["id", "score"]].to_csv(path, index=False)
    data = path.read_bytes()
    cut = len(data) // 2 + 3  # inside a row, far ahead of what was read so far
    whole_rows = data[:cut].count(b"\n") - 1  # after the header
    with read_csv(str(path), engine="pyarrow", on_error="skip").iter(stats=True) as run:
        records = [next(run)]
        with open(path, "r+b") as out:
            out.truncate(cut)
        records += list(run)
    assert [r["id"] for r in records] == list(range(whole_rows))
    assert stats_row(run)["rejected"] == 1
    assert (
        f"row {whole_rows + 1}: the file is damaged or cut short" in stats_row(run)["examples"][0]
    )


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
def test_a_headerless_file_with_a_byte_order_mark_and_late_quotes(tmp_path, suffix, small_segments):
    # The first row is read before the engine starts, and read again: the byte ranges
    # must start at it, after the mark and the blank lines, as the streaming reader must.
    rows = [f"{i},{i / 4}" for i in range(150)] + [f'{i},"{i}\nline"' for i in range(20)]
    text = b"\xef\xbb\xbf\n\n" + ("\n".join(rows) + "\n").encode()
    path = tmp_path / f"h{suffix}"
    path.write_bytes(gzip.compress(text) if suffix == ".csv.gz" else text)
    by_engine = [read(path, engine, header=False, dtype={0: "int32"}) for engine in ENGINES]
    assert by_engine[0] == by_engine[1]
    assert [r[0] for r in by_engine[0]] == list(range(150)) + list(range(20))
    assert by_engine[0][-1][1] == "19\nline"


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
def test_a_last_row_longer_than_a_segment_without_a_line_end(tmp_path, suffix, small_segments):
    text = ("t,n\n" + "".join(f"r{i},{i}\n" for i in range(100)) + "y" * 3000 + ",7").encode()
    path = tmp_path / f"l{suffix}"
    path.write_bytes(gzip.compress(text) if suffix == ".csv.gz" else text)
    by_engine = [read(path, engine, dtype={"n": "int64"}) for engine in ENGINES]
    assert by_engine[0] == by_engine[1]
    assert by_engine[0][-1] == {"t": "y" * 3000, "n": 7}
    assert len(by_engine[0]) == 101


@given(
    st.lists(
        st.one_of(
            st.tuples(st.integers(-(2**60), 2**60), st.integers(0, 99)).map(
                lambda t: f"{t[0]},{t[1]}"
            ),
            st.floats(width=32, allow_nan=False).map(lambda f: f"{f!r},{f!r}"),
            st.sampled_from(["", "1,2,3", "7", "-0,0", ",", "x,1", "1e3,5", "+4,007"]),
        ),
        max_size=60,
    ),
    st.integers(8, 300),
    st.sampled_from(["\n", "\r\n"]),
    st.sampled_from([".csv", ".csv.gz"]),
)
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_segments_of_any_size_read_as_the_python_engine_reads(
    tmp_path, lines, segment, newline, suffix
):
    # Good rows, bad ones (a field short or over, a value that is no number) and blank
    # lines, cut into segments of any size: both engines give the same rows and rejects.
    text = ("a,b" + newline + newline.join(lines) + newline).encode()
    path = tmp_path / f"s{suffix}"
    path.write_bytes(gzip.compress(text) if suffix == ".csv.gz" else text)
    sizes = {"SEGMENT_SIZE": segment, "BLOCK_SIZE": max(segment, 64)}
    saved = {name: getattr(arrow_module, name) for name in sizes}
    results = []
    try:
        for name, value in sizes.items():
            setattr(arrow_module, name, value)
        for engine in ENGINES:
            pipeline = read_csv(str(path), engine=engine, dtype="float32", on_error="skip")
            with pipeline.iter(stats=True) as run:
                records = list(run)
            row = stats_row(run)
            results.append((bits(records), row["read"], row["rejected"]))
    finally:
        for name, value in saved.items():
            setattr(arrow_module, name, value)
    assert results[0] == results[1]


def test_a_file_of_one_segment_is_parsed_without_threads(tmp_path):
    frame(50)[["id", "score"]].to_csv(tmp_path / "d.csv", index=False)
    run = iter(read_csv(str(tmp_path / "d.csv"), engine="pyarrow"))
    next(run)
    assert not [t for t in threading.enumerate() if t.name.startswith("headrace read_csv")]
    run.close()


def test_stopping_early_stops_the_parsing_threads(tmp_path, small_segments):
    frame(400)[["id", "score"]].to_csv(tmp_path / "d.csv", index=False)  # many segments

    def parsing() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name.startswith("headrace read_csv")]

    run = iter(read_csv(str(tmp_path / "d.csv"), engine="pyarrow"))
    assert [next(run)["id"] for _ in range(150)][-1] == 149
    assert parsing(), "the segments are parsed on a pool of threads"
    run.close()
    assert parsing() == []
    assert len(list(read_csv(str(tmp_path / "d.csv"), engine="pyarrow"))) == 400
    assert parsing() == []


def test_a_header_that_is_not_utf8_rejects_the_file(tmp_path, engine):
    (tmp_path / "h.csv").write_bytes(b"caf\xe9,b\n1,2\n")
    with pytest.raises(hr.ParseError, match=r"h\.csv: the header row is not valid UTF-8"):
        read(tmp_path / "h.csv", engine)
    assert read(tmp_path / "h.csv", engine, names=["a", "b"]) == [{"a": 1, "b": 2}]


def test_fields_over_the_csv_modules_default_limit_read_the_same_on_both_engines(tmp_path):
    before = csv.field_size_limit()
    try:
        csv.field_size_limit(131_072)  # the module's default
        long = "y" * 200_000
        pd.DataFrame({"a": [1, 2], "t": [long, "z"]}).to_csv(tmp_path / "l.csv", index=False)
        assert [r["t"] for r in read(tmp_path / "l.csv", "pyarrow")] == [long, "z"]
        assert [r["t"] for r in read(tmp_path / "l.csv", "python")] == [long, "z"]
        assert csv.field_size_limit() == 64 << 20  # raised to max_record_bytes
        csv.field_size_limit(1 << 30)
        read(tmp_path / "l.csv", "python")
        assert csv.field_size_limit() == 1 << 30  # never lowered
    finally:
        csv.field_size_limit(before)


# -- resuming --------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
@pytest.mark.parametrize("batch_size", [None, 6])
def test_a_reader_resumes_where_it_stopped(
    tmp_path, engine, suffix, batch_size, resumed, small_segments
):
    df = frame(90)
    df.to_csv(tmp_path / f"a{suffix}", index=False)
    text = df[["id", "score"]].to_csv(index=False).replace("\n4", "\n4,x,y")  # bad rows
    (tmp_path / f"b{suffix}").write_bytes(
        gzip.compress(text.encode()) if suffix == ".csv.gz" else text.encode()
    )
    pipeline = read_csv(
        str(tmp_path / f"*{suffix}"),
        engine=engine,
        columns=["id", "score"],
        dtype={"id": "int64", "score": "float32"},
        batch_size=batch_size,
        on_error="skip",
    )
    whole = list(pipeline)
    shown = plain if batch_size else dict
    for cut in [0, 1, 5, len(whole) // 2, len(whole) - 1, len(whole)]:
        before, after, saved = resumed(pipeline, cut)
        assert [shown(x) for x in before + after] == [shown(x) for x in whole], (cut, saved)


@pytest.mark.parametrize("batch_size", [None, 4])
def test_resuming_counts_each_rejected_row_once(
    tmp_path, engine, batch_size, resumed, small_segments
):
    # Bad values in the parallel part and in the streamed part (where pyarrow hands the
    # rest of the file to the Python engine), and rows with a field too many.
    clean = "".join(f"{i},{i / 2}\n" if i % 37 else f"{i},{i},{i}\n" for i in range(200))
    quoted = "".join(f'{i},"{i / 2}"\n' for i in range(200, 300))
    text = "a,b\n" + clean.replace("\n57,", "\n57x,") + quoted.replace("\n233,", "\n233x,")
    (tmp_path / "m.csv").write_text(text)

    def pipeline(quarantine: Path) -> Any:
        options = {"dtype": "float64", "batch_size": batch_size, "on_error": quarantine}
        return read_csv(str(tmp_path / "m.csv"), engine=engine, **options)

    def rejects(quarantine: Path) -> list[tuple[str, str]]:
        entries = [json.loads(line) for line in quarantine.read_text().splitlines()]
        return [(e["where"], e["reason"]) for e in entries]

    whole = list(pipeline(tmp_path / "whole.jsonl"))
    expected = rejects(tmp_path / "whole.jsonl")
    assert len(expected) == 2 + 6
    shown = plain if batch_size else dict
    for cut in [1, 9, len(whole) // 2, len(whole) - 2]:
        quarantine = tmp_path / f"cut-{cut}.jsonl"
        before, after, _ = resumed(pipeline(quarantine), cut)
        assert [shown(x) for x in before + after] == [shown(x) for x in whole]
        assert rejects(quarantine) == expected, cut


@given(
    st.lists(
        st.tuples(
            st.integers(-(2**40), 2**40),
            # Not "\r": pandas leaves it unquoted, and readers take it as a line end.
            st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\r"), max_size=12),
        ),
        max_size=40,
    )
)
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_any_table_pandas_writes_reads_back_with_either_engine(tmp_path, rows):
    df = pd.DataFrame(rows, columns=["n", "s"]).astype({"n": "int64"})
    path = tmp_path / "h.csv"
    df.to_csv(path, index=False)
    for engine in ENGINES:
        # Text stays text even where every value of the sample looks like a number.
        records = read(path, engine, dtype={"n": "int64", "s": str})
        # pandas writes an empty string and a missing value alike: both read as "".
        assert records == [{"n": n, "s": s} for n, s in rows], engine


def test_resuming_reads_rows_written_by_the_csv_module(tmp_path, engine, resumed, small_segments):
    path = tmp_path / "w.csv"
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["k", "v"])
        writer.writerows([[i, f"line {i}\nand, more"] for i in range(40)])
    pipeline = read_csv(str(path), engine=engine, dtype={"k": "int32"})
    whole = list(pipeline)
    assert whole[7] == {"k": 7, "v": "line 7\nand, more"}
    before, after, saved = resumed(pipeline, 13)
    assert saved["records"] == 13
    assert before + after == whole


# -- arguments, repr, pickling, the engines --------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"columns": "x"}, TypeError, "columns must be a list"),
        ({"columns": []}, ValueError, "columns must be non-empty"),
        ({"columns": ["x", "x"]}, ValueError, "without repeats"),
        ({"columns": [-1]}, ValueError, "at least 0"),
        ({"dtype": "complex64"}, ValueError, "dtype must be a bool, integer or float"),
        ({"dtype": {"x": "datetime64[s]"}}, ValueError, r"dtype\['x'\]"),
        ({"dtype": "floot32"}, TypeError, "dtype='floot32' is no numpy dtype name"),
        ({"dtype": 3.5}, TypeError, "dtype must be a numpy dtype or str, got 3.5"),
        ({"batch_size": 0}, ValueError, "batch_size must be at least 1"),
        ({"engine": "fast"}, ValueError, "engine must be one of"),
        ({"delimiter": ""}, ValueError, "delimiter must be one character"),
        ({"quotechar": "\n"}, ValueError, "quotechar must be one character"),
        ({"delimiter": '"'}, ValueError, "must differ"),
        ({"names": ["a", "a"]}, ValueError, "names must be non-empty and without repeats"),
        ({"header": 1}, TypeError, "header must be a bool"),
        ({"on_error": "ignore"}, ValueError, "on_error"),
    ],
)
def test_bad_arguments_are_refused_when_the_pipeline_is_built(options, error, match):
    with pytest.raises(error, match=match):
        read_csv("data.csv", **options)


def test_repr_shows_the_options_given():
    pipeline = read_csv("data.csv", columns=["x"], dtype="float32", batch_size=250, engine="python")
    assert repr(pipeline.stages[0]) == (
        "read_csv('data.csv', columns=['x'], dtype='float32', batch_size=250, engine='python')"
    )
    assert "dtype={'x': 'int8', 'y': 'str'}" in repr(
        read_csv("d.csv", dtype={"x": "int8", "y": str})
    )


def test_a_pickled_reader_reads_the_same(tmp_path, engine):
    frame(20).to_csv(tmp_path / "d.csv", index=False)
    pipeline = read_csv(str(tmp_path / "d.csv"), engine=engine, dtype=TYPES, batch_size=8)
    copy = pickle.loads(pickle.dumps(pipeline))
    assert [plain(b) for b in copy] == [plain(b) for b in pipeline]


def test_shards_split_the_files(tmp_path, engine):
    for name in "abc":
        pd.DataFrame({"f": [name]}).to_csv(tmp_path / f"{name}.csv", index=False)
    shards = [read(tmp_path / "*.csv", engine, num_shards=2, shard_index=i) for i in (0, 1)]
    assert shards == [[{"f": "a"}, {"f": "c"}], [{"f": "b"}]]


def run_python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return result.stdout.strip()


def test_without_pyarrow_auto_reads_with_the_csv_module_and_pyarrow_is_refused(tmp_path):
    frame(5).to_csv(tmp_path / "d.csv", index=False)
    code = f"""
import sys
sys.modules["pyarrow"] = None  # as if it were not installed
import headrace
from headrace.readers import read_csv
print(len(list(read_csv({str(tmp_path / "d.csv")!r}))))
try:
    read_csv("d.csv", engine="pyarrow")
except ImportError as error:
    print(error)
"""
    count, message = run_python(code).splitlines()
    assert count == "5"
    assert "pip install 'headrace[arrow]'" in message


def test_importing_the_module_does_not_import_pyarrow():
    code = "import sys, headrace.sources.csv; print('pyarrow' in sys.modules)"
    assert run_python(code) == "False"
