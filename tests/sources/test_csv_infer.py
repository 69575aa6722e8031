"""``read_csv`` infers column types from a file's first rows when ``dtype=`` does not
give them: both engines infer the same, pandas-written files come back with pandas'
types, and a later value that does not fit is a bad row, never a change of type."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import headrace as hr
from headrace.sources.csv.infer import INFER_ROWS

ENGINES = ["pyarrow", "python"]


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def dtypes(batch: dict[Any, np.ndarray]) -> dict[Any, str]:
    return {key: column.dtype.name for key, column in batch.items()}


def first_batch(path: Path, engine: str, **options: Any) -> dict[Any, np.ndarray]:
    return next(iter(hr.read_csv(str(path), engine=engine, batch_size=1000, **options)))


def test_a_numeric_file_reads_as_numbers_without_a_dtype(tmp_path, engine):
    # The x,y file of the Keras regression example: integers and floats.
    path = tmp_path / "xy.csv"
    path.write_text("x,y\n" + "".join(f"{i},{i * 0.5}\n" for i in range(600)))
    batches = list(hr.read_csv(str(path), batch_size=250, engine=engine))
    assert [dtypes(b) for b in batches] == [{"x": "int64", "y": "float64"}] * 3
    assert [len(b["x"]) for b in batches] == [250, 250, 100]
    assert batches[2]["y"][-1] == 299.5


def test_pandas_files_come_back_with_the_types_pandas_infers(tmp_path, engine):
    frame = pd.DataFrame(
        {
            "count": [3, -1, 0, 12],
            "price": [1.5, np.nan, 2.0, 1e-3],
            "sparse": [1.0, np.nan, np.nan, 4.0],  # integers with gaps: floats
            "name": ["a", "b, c", 'say "hi"', ""],
            "flag": [True, False, True, True],
            "zip": ["007", "010", "123", "999"],  # leading zeros read as integers
        }
    )
    frame.to_csv(tmp_path / "f.csv", index=False)
    batch = first_batch(tmp_path / "f.csv", engine)
    expected = pd.read_csv(tmp_path / "f.csv")
    assert dtypes(batch) == {
        "count": "int64",
        "price": "float64",
        "sparse": "float64",
        "name": "object",
        "flag": "bool",
        "zip": "int64",
    }
    assert {k: v for k, v in dtypes(batch).items() if k != "name"} == {
        k: str(t) for k, t in expected.dtypes.items() if k != "name"
    }
    for key, column in batch.items():
        if column.dtype == object:  # pandas reads the empty text as NaN
            assert column.tolist() == expected[key].fillna("").tolist()
        else:
            np.testing.assert_array_equal(column, expected[key].to_numpy())


@pytest.mark.parametrize(
    ("values", "dtype"),
    [
        (["1", "-2", "+3", "007"], "int64"),
        (["1", "", "3"], "float64"),  # an integer column with gaps
        (["1.5", "2", "-3e4", ".5", "nan", "inf", "-inf"], "float64"),
        (["true", "False", "TRUE"], "bool"),
        (["1", "0", "1"], "int64"),  # 1 and 0 are integers
        (["true", "", "false"], "object"),  # a boolean cannot be missing
        (["", ""], "object"),  # nothing to infer from
        (["1", "x"], "object"),
        ([" 1", "2"], "object"),  # spaces make it text
        (["9223372036854775807", "1"], "int64"),
        (["9223372036854775808", "1"], "object"),  # past int64: an identifier
        (["1_000"], "object"),
    ],
)
def test_each_column_type_is_inferred_alike_by_both_engines(tmp_path, values, dtype):
    path = tmp_path / "c.csv"
    path.write_text("v,w\n" + "".join(f"{v},w\n" for v in values))
    for engine in ENGINES:
        batch = first_batch(path, engine)
        assert dtypes(batch) == {"v": dtype, "w": "object"}, engine
        assert len(batch["v"]) == len(values)


def test_a_later_value_that_does_not_fit_is_a_bad_row_naming_where_and_why(tmp_path, engine):
    path = tmp_path / "late.csv"
    rows = [f"{i},{i}.5,{'true' if i % 2 else 'false'}" for i in range(INFER_ROWS + 10)]
    rows[INFER_ROWS + 3] = "1.5,2.5,true"  # row INFER_ROWS + 4: a float in an int column
    rows[INFER_ROWS + 6] = "7,,maybe"  # row INFER_ROWS + 7: an empty float, a bad bool
    path.write_text("i,f,b\n" + "\n".join(rows) + "\n")
    with pytest.raises(hr.ParseError) as raised:
        list(hr.read_csv(str(path), engine=engine, batch_size=1000))
    assert str(raised.value) == (
        f"{path} row {INFER_ROWS + 4}: column 'i': cannot convert '1.5' to int64 (the type "
        "inferred from the first rows of late.csv; dtype={'i': 'float64'} reads them all)"
    )
    pipeline = hr.read_csv(str(path), engine=engine, batch_size=1000, on_error="skip")
    with pipeline.iter(stats=True) as run:
        batches = list(run)
    (row,) = [r for r in run.stats() if "rejected" in r]
    assert (row["read"], row["rejected"]) == (INFER_ROWS + 10, 2)
    assert row["examples"][1].endswith(
        "column 'b': cannot convert 'maybe' to bool (the type inferred from the first rows of "
        "late.csv; dtype={'b': 'str'} reads them all)"
    )
    assert {tuple(dtypes(b).values()) for b in batches} == {("int64", "float64", "bool")}
    assert sum(len(b["i"]) for b in batches) == INFER_ROWS + 8
    # The override the message names reads every row.
    wide = hr.read_csv(
        str(path), engine=engine, batch_size=100_000, dtype={"i": "float64", "b": str}
    )
    assert [len(b["i"]) for b in wide] == [INFER_ROWS + 10]


def test_the_first_file_gives_the_types_of_every_file(tmp_path, engine):
    # Types are the dataset's, inferred from its first file: a value of a later file
    # that does not fit is a bad row there, never a batch of another type.
    (tmp_path / "a.csv").write_text("k,v\n1,2\n3,4\n")
    (tmp_path / "b.csv").write_text("k,v,extra\n5,2.5,x\nx,4,y\n6,7,z\n")
    pattern = str(tmp_path / "*.csv")
    with pytest.raises(
        hr.ParseError,
        match=r"b\.csv row 1: column 'v': cannot convert '2\.5' to int64 \(the type inferred "
        r"from the first rows of a\.csv;",
    ):
        list(hr.read_csv(pattern, engine=engine, batch_size=10, columns=["k", "v"]))

    def read(**options: Any) -> tuple[list[dict[str, str]], int]:
        pipeline = hr.read_csv(pattern, engine=engine, batch_size=10, on_error="skip", **options)
        with pipeline.iter(stats=True) as run:
            kinds = [dtypes(b) for b in run]
        return kinds, sum(r["rejected"] for r in run.stats() if "rejected" in r)

    assert read(columns=["k", "v"]) == ([{"k": "int64", "v": "int64"}] * 2, 2)
    # dtype= for one column; the others are still the first file's.
    assert read(columns=["k", "v"], dtype={"v": "f4"}) == ([{"k": "int64", "v": "float32"}] * 2, 1)
    # A shard that reads only b.csv infers from a.csv all the same.
    assert read(columns=["k", "v"], num_shards=2, shard_index=1) == (
        [{"k": "int64", "v": "int64"}],
        2,
    )
    # A column the first file lacks takes its type from the file's own rows.
    assert read(columns=["extra"], num_shards=2, shard_index=1) == ([{"extra": "object"}], 0)


def test_a_headerless_file_infers_from_its_first_row_too(tmp_path, engine):
    (tmp_path / "n.csv").write_text("1.5,a\n2,b\n")
    rows = list(hr.read_csv(str(tmp_path / "n.csv"), engine=engine, header=False))
    assert rows == [{0: 1.5, 1: "a"}, {0: 2.0, 1: "b"}]
    assert type(rows[0][0]) is np.float64


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
def test_a_resumed_read_infers_the_same_types(tmp_path, engine, suffix):
    text = "a,b\n" + "".join(f"{i},{i / 4}\n" for i in range(3000))
    path = tmp_path / f"r{suffix}"
    path.write_bytes(gzip.compress(text.encode()) if suffix == ".csv.gz" else text.encode())
    pipeline = hr.read_csv(str(path), engine=engine, batch_size=500)
    with pipeline.iter() as run:
        head = [next(run) for _ in range(3)]
        state = run.state()
    with pipeline.iter(state=state) as run:
        rest = list(run)
    whole = list(pipeline)
    assert len(head) + len(rest) == len(whole) == 6
    for got, want in zip(head + rest, whole, strict=True):
        assert dtypes(got) == dtypes(want) == {"a": "int64", "b": "float64"}
        np.testing.assert_array_equal(got["a"], want["a"])


@given(
    st.lists(
        st.lists(
            st.one_of(
                st.integers(-(2**63), 2**63 - 1).map(str),
                st.floats(allow_nan=True).map(repr),
                st.sampled_from(["", "true", "False", "x", "1e3", "-0", " 2", "NaN"]),
            ),
            min_size=3,
            max_size=3,
        ),
        min_size=1,
        max_size=40,
    ),
)
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_both_engines_infer_and_read_any_file_alike(tmp_path, rows):
    path = tmp_path / "any.csv"
    path.write_text("a,b,c\n" + "".join(",".join(row) + "\n" for row in rows))
    results = []
    for engine in ENGINES:
        pipeline = hr.read_csv(str(path), engine=engine, batch_size=100, on_error="skip")
        with pipeline.iter(stats=True) as run:
            batches = list(run)
        assert sum(r["rejected"] for r in run.stats() if "rejected" in r) == 0
        results.append(
            [
                {
                    k: (v.dtype.name, v.tobytes() if v.dtype != object else v.tolist())
                    for k, v in b.items()
                }
                for b in batches
            ]
        )
    assert results[0] == results[1]
