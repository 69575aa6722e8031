"""``read_sql``: rows and numpy batches from real databases.

SQLite databases are real files written by ``sqlite3``. PostgreSQL is a real server,
started once for this module from the binaries the ``pgserver`` package ships and
talked to with psycopg.
"""

from __future__ import annotations

import datetime
import functools
import importlib.util
import json
import os
import pickle
import pwd
import re
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

import headrace as hr
from headrace.readers import read_sql

COUNT = 40
QUERY = "SELECT id, name, price, qty, data FROM items ORDER BY id"


def item(i: int) -> dict[str, Any]:
    return {
        "id": i,
        "name": None if i % 7 == 3 else f"item {i}",
        "price": None if i % 5 == 4 else i * 1.5,
        "qty": None if i % 9 == 8 else i % 4,
        "data": bytes([i % 256]) * (i % 3),
    }


ITEMS = [item(i) for i in range(1, COUNT + 1)]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "items.db"
    with sqlite3.connect(path) as connection:
        connection.execute(
            "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, price REAL, qty INTEGER, "
            "data BLOB, flag INTEGER, created TEXT)"
        )
        connection.executemany(
            "INSERT INTO items VALUES (:id, :name, :price, :qty, :data, :flag, :created)",
            [
                {**row, "flag": row["id"] % 2, "created": f"2024-01-{row['id'] % 28 + 1:02} 10:00"}
                for row in ITEMS
            ],
        )
    connection.close()
    return path


@pytest.fixture
def connection(db: Path) -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(db)
    yield connection
    connection.close()


def plain(batch: dict[str, Any]) -> dict[str, list[Any]]:
    return {name: column.tolist() for name, column in batch.items()}


def stats_row(run: Any) -> dict[str, Any]:
    (row,) = [r for r in run.stats() if "rejected" in r]
    return row


# -- rows ------------------------------------------------------------------------------


def test_rows_are_dicts_of_the_values_the_driver_returns(connection):
    rows = list(read_sql(connection, QUERY))
    assert rows == ITEMS
    assert list(rows[0]) == ["id", "name", "price", "qty", "data"]
    # A connection that was passed in is left open, and usable.
    assert connection.execute("SELECT count(*) FROM items").fetchone() == (COUNT,)


def test_params_fill_positional_and_named_placeholders(connection):
    query = "SELECT id FROM items WHERE id BETWEEN ? AND ? ORDER BY id"
    assert list(read_sql(connection, query, (3, 5))) == [{"id": 3}, {"id": 4}, {"id": 5}]
    named = "SELECT id FROM items WHERE id > :low ORDER BY id DESC"
    assert list(read_sql(connection, named, {"low": 38})) == [{"id": 40}, {"id": 39}]


def test_rows_of_a_mapping_row_factory_stay_whole(db):
    def connect() -> sqlite3.Connection:
        connection = sqlite3.connect(db)
        connection.row_factory = sqlite3.Row
        return connection

    assert list(read_sql(connect, QUERY)) == ITEMS


def test_a_connection_function_opens_a_connection_per_run_and_closes_it(db):
    opened: list[sqlite3.Connection] = []

    def connect() -> sqlite3.Connection:
        opened.append(sqlite3.connect(db))
        return opened[-1]

    pipeline = read_sql(connect, QUERY)
    assert list(pipeline) == ITEMS
    assert list(pipeline.take(2)) == ITEMS[:2]
    assert len(opened) == 2
    for connection in opened:
        with pytest.raises(sqlite3.ProgrammingError, match="closed database"):
            connection.execute("SELECT 1")


def test_closing_a_run_early_closes_its_cursor_and_its_own_connection(db, connection):
    cursors: list[sqlite3.Cursor] = []

    def cursor(conn: sqlite3.Connection) -> sqlite3.Cursor:
        cursors.append(conn.cursor())
        return cursors[-1]

    with read_sql(connection, QUERY, cursor=cursor, fetch_size=4).iter() as run:
        assert next(run) == ITEMS[0]
        assert cursors[0].fetchone() is not None  # open while the run is
    with pytest.raises(sqlite3.ProgrammingError, match="closed cursor"):
        cursors[0].fetchone()
    assert connection.execute("SELECT 1").fetchone() == (1,)

    opened: list[sqlite3.Connection] = []

    def connect() -> sqlite3.Connection:
        opened.append(sqlite3.connect(db))
        return opened[-1]

    with read_sql(connect, QUERY).iter() as run:
        assert next(run) == ITEMS[0]
    with pytest.raises(sqlite3.ProgrammingError, match="closed database"):
        opened[0].execute("SELECT 1")


def test_rows_are_fetched_a_few_at_a_time_not_all_at_once(db):
    computed = []

    def connect() -> sqlite3.Connection:
        connection = sqlite3.connect(db)
        connection.create_function("seen", 1, lambda x: computed.append(x) or x)
        return connection

    many = (
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n LIMIT 100000) "
        "SELECT seen(x) AS x FROM n"
    )
    assert list(read_sql(connect, many, fetch_size=10).take(25)) == [{"x": x} for x in range(1, 26)]
    # Three fetches of 10 rows (SQLite may step one row ahead), of 100 000.
    assert 30 <= len(computed) <= 31
    computed.clear()
    assert sum(1 for _ in read_sql(connect, many, fetch_size=5000)) == 100_000
    assert len(computed) == 100_000


# -- batches ---------------------------------------------------------------------------


def test_batches_take_dtypes_from_the_first_row_and_mask_nulls(connection):
    batches = list(read_sql(connection, QUERY, batch_size=16))
    assert [len(b["id"]) for b in batches] == [16, 16, 8]
    first = batches[0]
    assert first["id"].dtype == np.int64
    assert first["price"].dtype == np.float64
    assert first["qty"].dtype == np.int64
    assert first["name"].dtype == object
    assert first["data"].dtype == object
    assert isinstance(first["price"], np.ma.MaskedArray)  # row 4 has no price
    assert first["price"].mask.tolist() == [row["price"] is None for row in ITEMS[:16]]
    assert isinstance(first["qty"], np.ma.MaskedArray)
    assert type(first["id"]) is np.ndarray
    joined = {name: [v for b in batches for v in plain(b)[name]] for name in first}
    assert joined == {name: [row[name] for row in ITEMS] for name in first}


def test_dtypes_set_columns_such_as_timestamps_stored_as_text(connection):
    query = "SELECT id, price, flag, created FROM items ORDER BY id"
    dtypes = {"price": np.float32, "flag": bool, "created": "datetime64[s]", "id": object}
    (batch, *_) = read_sql(connection, query, batch_size=4, dtypes=dtypes)
    assert batch["id"].tolist() == [1, 2, 3, 4]
    assert batch["id"].dtype == object
    assert batch["price"].dtype == np.float32
    assert batch["flag"].tolist() == [True, False, True, False]
    assert batch["created"].dtype == np.dtype("datetime64[s]")
    assert str(batch["created"][0]) == "2024-01-02T10:00:00"


def mixed_db(path: Path) -> Path:
    """A column SQLite filled with integers, one text value and one fraction."""
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, n)")
        values = [(i, i * 10) for i in range(1, 11)]
        values[3] = (4, "forty")
        values[6] = (7, 70.5)
        connection.executemany("INSERT INTO t VALUES (?, ?)", values)
    connection.close()
    return path


def test_a_value_that_does_not_fit_its_column_raises_naming_the_row(tmp_path):
    connect = functools.partial(sqlite3.connect, mixed_db(tmp_path / "mixed.db"))
    query = "SELECT id, n FROM t ORDER BY id"
    with pytest.raises(
        hr.ParseError,
        match=r"'SELECT id, n FROM t ORDER BY id', row 4: column 'n' holds 'forty' \(str\), "
        r"which does not convert to int64 \(taken from the first row\); set its dtype",
    ):
        list(read_sql(connect, query, batch_size=3))
    later = "SELECT id, n FROM t WHERE id > 4 ORDER BY id"
    with pytest.raises(
        hr.ParseError,
        match=r"row 3: column 'n' holds 70\.5 \(float\), which does not convert to int32; set",
    ):
        list(read_sql(connect, later, batch_size=3, dtypes={"n": "int32"}))
    # Rows themselves are never converted: they hold what the driver returns.
    assert [r["n"] for r in read_sql(connect, query)][3:7] == ["forty", 50, 60, 70.5]


def test_rejected_rows_are_counted_and_the_batches_stay_full(tmp_path):
    connect = functools.partial(sqlite3.connect, mixed_db(tmp_path / "mixed.db"))
    quarantine = tmp_path / "rejects.jsonl"
    pipeline = read_sql(
        connect, "SELECT id, n FROM t ORDER BY id", batch_size=3, on_error=quarantine
    )
    with pipeline.iter(stats=True) as run:
        batches = [plain(b) for b in run]
    assert batches == [
        {"id": [1, 2, 3], "n": [10, 20, 30]},
        {"id": [5, 6, 8], "n": [50, 60, 80]},
        {"id": [9, 10], "n": [90, 100]},
    ]
    row = stats_row(run)
    assert (row["read"], row["rejected"]) == (10, 2)
    entries = [json.loads(line) for line in quarantine.read_text().splitlines()]
    assert [e["record"] for e in entries] == [{"id": 4, "n": "forty"}, {"id": 7, "n": 70.5}]
    assert entries[0]["where"].endswith("row 4")


def test_float_columns_take_integers_and_nulls(tmp_path):
    connect = functools.partial(sqlite3.connect, mixed_db(tmp_path / "mixed.db"))
    query = "SELECT n FROM t WHERE id != 4 UNION ALL SELECT NULL"
    (batch,) = read_sql(connect, query, batch_size=20, dtypes={"n": float})
    assert batch["n"].tolist() == [10, 20, 30, 50, 60, 70.5, 80, 90, 100, None]
    assert np.isnan(batch["n"].data[-1])


@pytest.mark.parametrize(
    ("value", "dtype", "stored"),
    [
        ("1", "bool", True),
        ("5", "bool", None),
        ("200", "uint8", 200),
        ("300", "uint8", None),
        ("-1", "uint8", None),
        ("9223372036854775807", "int32", None),
        ("2.5", "int64", None),
        ("'1.5'", "float64", None),
        ("'2024-02-03 04:05'", "datetime64[s]", np.datetime64("2024-02-03T04:05")),
        ("'2024-02-30'", "datetime64[D]", None),
        ("12", "datetime64[s]", None),
        ("x'00ff'", "object", b"\x00\xff"),
    ],
)
def test_a_value_is_stored_only_if_its_dtype_holds_it_exactly(value, dtype, stored):
    connect = functools.partial(sqlite3.connect, ":memory:")
    pipeline = read_sql(connect, f"SELECT {value} AS v", batch_size=1, dtypes={"v": dtype})
    if stored is None:
        message = rf"row 1: column 'v' holds .* to {re.escape(dtype)}; set"
        with pytest.raises(hr.ParseError, match=message):
            list(pipeline)
    else:
        (batch,) = pipeline
        assert batch["v"].dtype == np.dtype(dtype)
        assert batch["v"][0] == stored


@pytest.mark.parametrize("cut", range(COUNT + 1))
def test_resuming_rows_at_every_cut_equals_an_uninterrupted_read(db, cut, resumed):
    before, after, saved = resumed(read_sql(functools.partial(sqlite3.connect, db), QUERY), cut)
    assert before + after == ITEMS
    assert saved["records"] == cut


@pytest.mark.parametrize("cut", range(4))
def test_resuming_batches_with_rejected_rows_equals_an_uninterrupted_read(tmp_path, cut, resumed):
    connect = functools.partial(sqlite3.connect, mixed_db(tmp_path / "mixed.db"))
    pipeline = read_sql(connect, "SELECT * FROM t ORDER BY id", batch_size=3, on_error="skip")
    whole = [plain(b) for b in pipeline]
    before, after, saved = resumed(pipeline, cut)
    assert [plain(b) for b in before + after] == whole
    assert saved["records"] == [0, 3, 8, 10][cut]  # rows consumed, rejected ones too


# -- errors ----------------------------------------------------------------------------


def test_bad_sql_raises_the_drivers_error_naming_the_query(db):
    opened: list[sqlite3.Connection] = []

    def connect() -> sqlite3.Connection:
        opened.append(sqlite3.connect(db))
        return opened[-1]

    with pytest.raises(sqlite3.OperationalError, match="no such column: colour") as caught:
        list(read_sql(connect, "SELECT colour FROM items"))
    assert caught.value.__notes__ == [
        "headrace: raised in stage 0 \"read_sql('SELECT colour FROM items')\" running its query"
    ]
    with pytest.raises(sqlite3.ProgrammingError, match="closed database"):
        opened[0].execute("SELECT 1")


def test_queries_that_cannot_make_rows_are_refused_when_the_run_starts(connection):
    with pytest.raises(TypeError, match="the connection function returned int"):
        list(read_sql(lambda: 3, "SELECT 1"))
    with pytest.raises(ValueError, match="makes no result"):
        list(read_sql(connection, "UPDATE items SET qty = qty WHERE id < 0"))
    with pytest.raises(ValueError, match="more than one column named 'id'"):
        list(read_sql(connection, "SELECT a.id, b.id FROM items a JOIN items b USING (id)"))
    with pytest.raises(ValueError, match=r"dtypes names column 'colour'.*returns id, name"):
        list(
            read_sql(connection, "SELECT id, name FROM items", batch_size=2, dtypes={"colour": int})
        )


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        ((3, "SELECT 1"), {}, TypeError, "connection must be a DB-API connection"),
        ((sqlite3.connect, b"SELECT 1"), {}, TypeError, "query must be a str"),
        ((sqlite3.connect, "  "), {}, ValueError, "query is empty"),
        ((sqlite3.connect, "SELECT ?", "a"), {}, TypeError, "params must be a sequence"),
        ((sqlite3.connect, "SELECT 1"), {"batch_size": 0}, ValueError, "batch_size must be"),
        ((sqlite3.connect, "SELECT 1"), {"fetch_size": 0}, ValueError, "fetch_size must be"),
        ((sqlite3.connect, "SELECT 1"), {"dtypes": {"a": int}}, ValueError, "without batch_size"),
        (
            (sqlite3.connect, "SELECT 1"),
            {"batch_size": 2, "dtypes": {"a": str}},
            ValueError,
            "text",
        ),
        (
            (sqlite3.connect, "SELECT 1"),
            {"batch_size": 2, "dtypes": {"a": "x"}},
            TypeError,
            "dtype",
        ),
        ((sqlite3.connect, "SELECT 1"), {"batch_size": 2, "dtypes": [int]}, TypeError, "mapping"),
        ((sqlite3.connect, "SELECT 1"), {"cursor": 3}, TypeError, "cursor must be callable"),
        ((sqlite3.connect, "SELECT 1"), {"on_error": "ignore"}, ValueError, "on_error"),
    ],
)
def test_bad_arguments_are_refused_when_the_pipeline_is_built(args, kwargs, error, message):
    with pytest.raises(error, match=message):
        read_sql(*args, **kwargs)


def test_the_pipeline_pickles_with_a_connection_function_and_names_its_query(db):
    pipeline = read_sql(functools.partial(sqlite3.connect, db), QUERY, batch_size=8)
    assert repr(pipeline.stages[0]) == f"read_sql({QUERY!r}, batch_size=8)"
    copy = pickle.loads(pickle.dumps(pipeline))
    assert [plain(b) for b in copy] == [plain(b) for b in pipeline]
    long = "SELECT " + ", ".join(f"c{i}" for i in range(40)) + "\n  FROM wide"
    assert len(long) > 60
    assert repr(read_sql(sqlite3.connect, long).stages[0]) == f"read_sql({long[:57] + '...'!r})"


# -- PostgreSQL ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A PostgreSQL server in a scratch folder for this module; its connection string.

    The server runs from the binaries ``pgserver`` ships, found without importing
    pgserver (whose import warns). PostgreSQL refuses to run as root: under root the
    server runs as ``nobody``, rather than pgserver's own way (adding a system user
    and opening folder permissions), which would change the machine. ``nobody`` may
    not reach the virtual environment (a checkout under a private home folder), so
    it runs a copy of the binaries inside the scratch folder.
    """
    spec = importlib.util.find_spec("pgserver")
    assert spec is not None, "the tests need pgserver: pip install 'headrace[test]'"
    assert spec.submodule_search_locations
    install = Path(spec.submodule_search_locations[0]) / "pginstall"
    root = Path(tempfile.mkdtemp(prefix="headrace-pg-"))
    owner: dict[str, Any] = {}
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        os.chown(root, nobody.pw_uid, nobody.pw_gid)
        owner = {"user": nobody.pw_uid, "group": nobody.pw_gid}
        # The binaries find their libraries by a path relative to themselves.
        site = install.parent.parent
        copy = root / "site"
        shutil.copytree(site / "pgserver.libs", copy / "pgserver.libs", symlinks=True)
        install = Path(shutil.copytree(install, copy / "pgserver" / "pginstall", symlinks=True))
    binaries = install / "bin"

    def run(program: str, *args: str) -> None:
        command = [str(binaries / program), "-D", str(root / "data"), *args]
        subprocess.run(command, check=True, capture_output=True, timeout=60, **owner)

    try:
        run("initdb", "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        # Listen on a socket in the scratch folder only; -F: no fsync, data is scratch.
        run(
            "pg_ctl",
            "-w",
            "-t",
            "30",
            "-l",
            str(root / "log"),
            "-o",
            f"-h '' -k {root} -F",
            "start",
        )
        yield f"host={root} user=postgres dbname=postgres"
    finally:
        if (root / "data" / "postmaster.pid").exists():
            run("pg_ctl", "-w", "-m", "immediate", "stop")
        assert not (root / "data" / "postmaster.pid").exists()
        shutil.rmtree(root)


def named_cursor(connection: psycopg.Connection[Any]) -> Any:
    return connection.cursor(name="headrace_rows")


@pytest.fixture(scope="module")
def table(postgres: str) -> str:
    with psycopg.connect(postgres) as connection:
        connection.execute(
            "CREATE TABLE items (id int PRIMARY KEY, name text, price numeric(8, 2), "
            "made timestamptz, ok boolean)"
        )
        connection.execute(
            "INSERT INTO items SELECT n, 'item ' || n, "
            "CASE WHEN n % 5 = 4 THEN NULL ELSE n * 1.25 END, "
            "timestamptz '2024-01-01 00:00+00' + n * interval '1 hour', n % 2 = 0 "
            "FROM generate_series(1, 30) AS n"
        )
    return postgres


def test_postgresql_rows_keep_their_types_through_a_server_side_cursor(table):
    connect = functools.partial(psycopg.connect, table)
    query = "SELECT id, name, price, made, ok FROM items WHERE id IN (3, 4) ORDER BY id"
    rows = list(read_sql(connect, query, cursor=named_cursor))
    assert [(r["id"], r["name"], r["price"], r["ok"]) for r in rows] == [
        (3, "item 3", Decimal("3.75"), False),
        (4, "item 4", None, True),
    ]
    assert rows[0]["made"] == datetime.datetime(2024, 1, 1, 3, tzinfo=datetime.UTC)


def test_postgresql_streams_from_a_named_cursor_and_closes_it(postgres):
    # Row 5000 divides by zero: a cursor that fetched the whole result would fail.
    query = "SELECT n, 100 / (n - 5000) AS q FROM generate_series(1, 10000) AS n"
    with psycopg.connect(postgres) as connection:
        with pytest.raises(psycopg.errors.DivisionByZero) as caught:
            list(read_sql(connection, query).take(1))
        assert "running its query" in caught.value.__notes__[0]
        connection.rollback()
        pipeline = read_sql(connection, query, fetch_size=100, cursor=named_cursor)
        with pipeline.iter() as run:
            assert [next(run) for _ in range(3)] == [{"n": n, "q": 0} for n in (1, 2, 3)]
            assert connection.execute("SELECT name FROM pg_cursors").fetchall() == [
                ("headrace_rows",)
            ]
        assert connection.execute("SELECT count(*) FROM pg_cursors").fetchone() == (0,)
        with pytest.raises(psycopg.errors.DivisionByZero) as caught:
            list(pipeline)
        assert "fetching rows 4901 to 5000" in caught.value.__notes__[0]


def test_postgresql_batches_and_resume(table, resumed):
    connect = functools.partial(psycopg.connect, table)
    query = "SELECT id, price, made FROM items ORDER BY id"
    dtypes = {"price": np.float64, "made": "datetime64[s]"}
    pipeline = read_sql(
        connect, query, batch_size=8, dtypes=dtypes, cursor=named_cursor, fetch_size=5
    )
    batches = list(pipeline)
    assert [len(b["id"]) for b in batches] == [8, 8, 8, 6]
    first = batches[0]
    assert first["id"].dtype == np.int64
    assert first["price"].tolist() == [1.25, 2.5, 3.75, None, 6.25, 7.5, 8.75, 10.0]
    assert str(first["made"][0]) == "2024-01-01T01:00:00"  # in UTC
    before, after, saved = resumed(pipeline, 2)
    assert saved["records"] == 16
    assert [plain(b) for b in before + after] == [plain(b) for b in batches]
