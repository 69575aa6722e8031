"""Where pipelines begin: each function returns a pipeline of one source stage.

Files and tables (``text_lines``, ``read_jsonl``, ``read_csv``, ``read_parquet``,
``read_tar_shards``, ``image_folder``), a database query (``read_sql``), Python data
(``range``, ``from_iterable``, ``from_generator``) and other pipelines (``zip``,
``concat``). The stages that do the reading live in :mod:`headrace.sources`; these
functions check their arguments there and wrap the stage in a
:class:`~headrace.Pipeline`. All of them are importable from ``headrace`` itself.

>>> import headrace as hr
>>> list(hr.range(2, 8, 3)), len(hr.range(10)), list(hr.from_iterable({"a": 1}))
([2, 5], 10, ['a'])
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar, cast

from headrace.pipeline import Pipeline, as_pipeline
from headrace.policy import OnError
from headrace.sources.basic import FromGenerator, FromIterable, Range
from headrace.sources.csv import DTypeArg, ReadCsv
from headrace.sources.files import LINE_LIMIT, MEMBER_LIMIT, PathsArg, normalise_paths
from headrace.sources.filesystem import Files, TextLines
from headrace.sources.images import IMAGE_EXTENSIONS, ImageFiles
from headrace.sources.jsonl import ReadJsonl
from headrace.sources.parquet import GROUP_LIMIT, ReadParquet
from headrace.sources.raydata import ReadRayDataset
from headrace.sources.sql import ReadSql
from headrace.sources.tar import ReadTarShards
from headrace.stages.combine import Concat, SampleFrom, Zip

__all__ = [
    "ImageFolder",
    "concat",
    "files",
    "from_generator",
    "from_iterable",
    "image_folder",
    "range",
    "read_csv",
    "read_jsonl",
    "read_parquet",
    "read_sql",
    "read_tar_shards",
    "text_lines",
    "zip",
]

T = TypeVar("T")


def from_iterable(iterable: Iterable[T]) -> Pipeline[T]:
    """A pipeline over the elements of ``iterable``.

    A list, tuple, range or other re-iterable container gives the same elements every
    run. A one-shot iterator (a generator object, a file) feeds only the first run;
    a second run raises ``RuntimeError`` rather than silently yielding nothing. Use
    :func:`from_generator` to make a generator re-runnable.

    >>> import headrace as hr
    >>> list(hr.from_iterable([3, 1, 2]).map(abs))
    [3, 1, 2]
    """
    return Pipeline((FromIterable(iterable),))


def from_generator(fn: Callable[..., Iterable[T]], *args: Any, **kwargs: Any) -> Pipeline[T]:
    """A pipeline over ``fn(*args, **kwargs)``, called anew for every run.

    >>> import headrace as hr, itertools
    >>> def fib():
    ...     a, b = 0, 1
    ...     while True:
    ...         yield a
    ...         a, b = b, a + b
    >>> list(hr.from_generator(fib).take(10))
    [0, 1, 1, 2, 3, 5, 8, 13, 21, 34]
    """
    return Pipeline((FromGenerator(fn, args, kwargs),))


def range(start: int, stop: int | None = None, step: int = 1) -> Pipeline[int]:
    """The integers of ``builtins.range(start, stop, step)``; the length is known.

    >>> import headrace as hr
    >>> list(hr.range(3)), list(hr.range(1, 10, 4))
    ([0, 1, 2], [1, 5, 9])
    """
    return Pipeline((Range(start, stop, step),))


def files(pattern: PathsArg, *, shuffle: bool = False, seed: int | None = None) -> Pipeline[str]:
    """Paths of the files matching ``pattern`` (a glob, a path, or a list of them).

    Like tf.data's ``list_files``: ``**`` matches any number of folders; paths come
    sorted, or shuffled anew every epoch with ``shuffle=True`` (reproducibly with a
    ``seed``). Duplicate paths are removed: a path matched more than once (by two
    patterns, or listed twice) is yielded once; paths are compared as spelt, so
    ``a.txt`` and ``./a.txt`` count as two. Patterns are expanded when a run starts,
    so each epoch sees the files present then; for the same reason the length is not
    known beforehand, and ``len()`` raises ``TypeError`` rather than searching the
    filesystem. A pattern that matches nothing raises ``FileNotFoundError``.

    >>> import headrace as hr, pathlib, tempfile
    >>> scratch = tempfile.TemporaryDirectory()
    >>> folder = pathlib.Path(scratch.name)
    >>> _ = (folder / "a.txt").write_text("a")
    >>> [pathlib.Path(p).name for p in hr.files([str(folder / "*.txt"), folder / "a.txt"])]
    ['a.txt']
    >>> scratch.cleanup()

    Args:
        pattern: glob pattern, path, or a list of them.
        shuffle: shuffle the list every epoch (a bool).
        seed: makes the shuffled order reproducible; only with ``shuffle=True``.

    Raises:
        TypeError: ``pattern`` is not a path or a list of paths, or ``shuffle`` is
            not a bool.
        ValueError: ``pattern`` is empty, or ``seed`` is negative or given without
            ``shuffle=True``.
    """
    return Pipeline((Files(pattern, shuffle=shuffle, seed=seed),))


def text_lines(
    path: PathsArg,
    *,
    encoding: str = "utf-8",
    errors: str = "strict",
    keep_ends: bool = False,
    max_record_bytes: int = LINE_LIMIT,
    on_error: OnError = "raise",
    num_shards: int = 1,
    shard_index: int = 0,
) -> Pipeline[str]:
    """Lines of one or more text files, streamed without loading whole files.

    Files named ``*.gz``, ``*.bz2`` and ``*.xz`` are decompressed on the fly. Several
    files (a glob, a brace pattern such as ``logs-{01..31}.txt``, or a list) are read
    one after another in sorted order. fsspec URLs (``s3://``, ``http://``, ...) work
    wherever a path does.

    Args:
        path: file path, glob or brace pattern, URL, or a list of them.
        encoding: an ASCII-compatible encoding (utf-8, latin-1, cp1252, ...).
        errors: ``"strict"`` (default) treats a line that does not decode as a bad
            record, handled by ``on_error``; ``"replace"`` keeps it with U+FFFD in
            place of the bad bytes and logs a warning per file with the count.
        keep_ends: keep the ``\\n`` / ``\\r\\n`` at the end of each line.
        max_record_bytes: the longest line read (in bytes, newline not counted),
            64 MiB by default. A longer line is a bad record, read past without being
            held, so a damaged file or a decompression bomb of one endless line costs
            no more memory than this.
        on_error: what to do with an undecodable line, a line over
            ``max_record_bytes``, a file that cannot be opened, or a compressed file
            that is damaged or cut short: ``"raise"`` (default;
            :class:`headrace.DecodeError` or :class:`headrace.ParseError` naming
            ``file:line``), ``"skip"``, or a quarantine file path (see
            :mod:`headrace.policy`).
        num_shards, shard_index: read only every ``num_shards``-th file of the sorted
            list, starting at ``shard_index`` (one share of the files per rank or
            worker).
    """
    return Pipeline(
        (
            TextLines(
                path,
                encoding=encoding,
                errors=errors,
                keep_ends=keep_ends,
                max_record_bytes=max_record_bytes,
                on_error=on_error,
                num_shards=num_shards,
                shard_index=shard_index,
            ),
        )
    )


def read_jsonl(
    path: PathsArg,
    *,
    max_record_bytes: int = LINE_LIMIT,
    on_error: OnError = "raise",
    num_shards: int = 1,
    shard_index: int = 0,
) -> Pipeline[Any]:
    """The JSON values of JSON Lines files, one per non-blank line, streamed.

    Files named ``*.gz``, ``*.bz2`` and ``*.xz`` are decompressed on the fly; several
    files (a glob, a brace pattern or a list) are read in sorted order; fsspec URLs
    work wherever a path does.

    Args:
        path: file path, glob or brace pattern, URL, or a list of them.
        max_record_bytes: the longest line read (in bytes), 64 MiB by default; a
            longer one is a bad record, read past without being held.
        on_error: what to do with a line that is not valid UTF-8 or JSON, is nested
            deeper than the decoder goes or is over ``max_record_bytes``, a file that
            cannot be opened, or a compressed file that is damaged or cut short:
            ``"raise"`` (default) raises :class:`headrace.ParseError` naming
            ``file:line`` and the reason; ``"skip"`` drops it, counts it and logs a
            summary; a file path also appends each as a JSON line to that file.
        num_shards, shard_index: read only every ``num_shards``-th file of the sorted
            list, starting at ``shard_index``.
    """
    return Pipeline(
        (
            ReadJsonl(
                path,
                max_record_bytes=max_record_bytes,
                on_error=on_error,
                num_shards=num_shards,
                shard_index=shard_index,
            ),
        )
    )


def zip(*pipelines: Iterable[Any], strict: bool = False) -> Pipeline[tuple[Any, ...]]:
    """Tuples of the elements of several pipelines (or iterables), in step.

    >>> import headrace as hr
    >>> list(hr.zip(hr.range(3), "abc"))
    [(0, 'a'), (1, 'b'), (2, 'c')]
    """
    return Pipeline((Zip([as_pipeline(p) for p in pipelines], strict=strict),))


def concat(*pipelines: Iterable[Any]) -> Pipeline[Any]:
    """The elements of each pipeline (or iterable) in turn.

    >>> import headrace as hr
    >>> list(hr.concat(hr.range(2), [9]))
    [0, 1, 9]
    """
    return Pipeline((Concat([as_pipeline(p) for p in pipelines]),))


def sample_from(
    pipelines: Sequence[Iterable[Any]],
    weights: Sequence[float] | None = None,
    *,
    seed: int | None = None,
    stop_on_empty: bool = False,
) -> Pipeline[Any]:
    """Elements of several pipelines mixed at random, each picked with its weight:
    tf.data's ``sample_from_datasets``, Grain's mix.

    Each element comes from pipeline ``i`` with probability ``weights[i]`` (weights
    are normalised; equal when None), among the pipelines not yet at their end: when
    one ends, the others share its weight, and the run ends with the last one, every
    element of each read once (a pipeline of weight 0 is never read). With
    ``stop_on_empty=True`` the run ends as soon as a pipeline it picks has ended, so
    the mix keeps its proportions to the end.

    The picks are drawn from ``seed`` and the epoch: the same order on every run of an
    epoch, a new one each epoch; without a seed (and without ``with_seed`` on the
    pipeline) every run draws anew. ``run.state()`` of a seeded mix resumes exactly:
    the same picks after the saved position, each pipeline from its own state
    (without a seed, as for ``shuffle``, the state is refused).

    Mix two sources 3:1, for ever (``repeat()`` makes each endless):

    >>> import headrace as hr
    >>> mixed = hr.sample_from([hr.range(100).repeat(), hr.range(-100, 0).repeat()],
    ...                        [0.75, 0.25], seed=7)
    >>> sum(x >= 0 for x in mixed.take(4000))  # about 3,000
    2988

    Args:
        pipelines: the pipelines (or re-iterables) to mix, at least one.
        weights: one weight per pipeline, each finite and at least 0, not all 0.
        seed: the seed of the picks.
        stop_on_empty: end the run when a pipeline picked has ended (tf.data's
            ``stop_on_empty_dataset``), instead of going on with the others.

    Raises:
        TypeError, ValueError: the arguments are malformed (named in the message).
    """
    parts = [as_pipeline(p) for p in pipelines]
    return Pipeline((SampleFrom(parts, weights, seed=seed, stop_on_empty=stop_on_empty),))


def read_csv(
    path: PathsArg,
    *,
    columns: Sequence[str | int] | None = None,
    dtype: DTypeArg | Mapping[str | int, DTypeArg] = None,
    header: bool = True,
    names: Sequence[str] | None = None,
    batch_size: int | None = None,
    delimiter: str = ",",
    quotechar: str = '"',
    engine: str = "auto",
    max_record_bytes: int = LINE_LIMIT,
    on_error: OnError = "raise",
    num_shards: int = 1,
    shard_index: int = 0,
) -> Pipeline[dict[Any, Any]]:
    """The rows of CSV files, streamed in constant memory whatever the file size.

    Each row is a dict ``{column: value}``; with ``batch_size=N``, each element is a
    dict ``{column: numpy array of N values}`` instead (columnar batches).

    Column types are inferred from the first rows (4,096 rows, or 1 MiB) of the
    dataset's first file (in sorted order, whichever file a shard or a resumed run
    starts with), as pandas and pyarrow infer them, the same with both engines, and hold
    for every file (a column that file lacks: from the file's own first rows): ``int64``
    where every value is an integer, ``float64`` where every value is a number (or an
    integer, with some values empty: missing values are NaN), ``bool`` for
    ``true``/``false`` words, text otherwise. ``dtype=`` sets them instead, for every
    column or per column (the others are still inferred); ``dtype=str`` keeps all values
    as text. A value further on that does not fit its column's type is a bad row (see
    ``on_error``), never a silent change of type; the message names the ``dtype=`` that
    reads it. Values in rows are numpy scalars of the dtype (``np.float32(1.5)``).

    The x,y regression file of a Keras generator, as ``(X, y)`` batches of 250:

    >>> import headrace as hr, pathlib, tempfile
    >>> scratch = tempfile.TemporaryDirectory()
    >>> path = pathlib.Path(scratch.name) / "xy.csv"
    >>> _ = path.write_text("x,y\\n" + "".join(f"{i},{i / 2}\\n" for i in range(600)))
    >>> pairs = hr.read_csv(str(path), batch_size=250).map(lambda b: (b["x"], b["y"]))
    >>> [(X.dtype.name, X.shape, y[:3]) for X, y in pairs]  # the last batch is short
    [('int64', (250,), array([0. , 0.5, 1. ])),
     ('int64', (250,), array([125. , 125.5, 126. ])),
     ('int64', (100,), array([250. , 250.5, 251. ]))]
    >>> [b["x"].dtype.name for b in hr.read_csv(str(path), dtype="float32", batch_size=600)]
    ['float32']
    >>> scratch.cleanup()

    Files named ``*.gz``, ``*.bz2`` and ``*.xz`` are decompressed on the fly; several
    files (a glob, a brace pattern such as ``part-{000..099}.csv``, or a list) are
    read in sorted order, each with its own header; fsspec URLs (``s3://...``) work
    wherever a path does. Text is UTF-8 (a leading byte-order mark is dropped); rows
    end with ``\\n`` or ``\\r\\n``; a quoted field may hold delimiters, doubled quotes
    and line ends, as pandas and the csv module write them. Blank lines are no rows.

    Memory stays flat whatever the file size: the pyarrow engine holds a few segments
    of 2 MiB and their arrays (one per core, up to 4, parsed ahead on a pool of
    threads, and one more), the Python engine 4,096 rows.

    Batches do not span files: the last batch of each file may be shorter than
    ``batch_size``. Batch arrays are fresh, writable numpy arrays; text columns are
    object arrays of ``str``. A position saved after a batch resumes with the next
    batch, the same rows as an uninterrupted run.

    The read position (``ReadPosition.records``) counts the file's data rows, good or
    rejected, from the first after the header; a reader started from it passes over
    those rows without counting them again (both engines re-parse them: CSV rows cannot
    be found without reading what comes before).

    Args:
        path: file path, glob or brace pattern, URL, or a list of them.
        columns: the columns to read, by name or by index (0 is the first), in the
            order the records should have them; all columns when None.
        dtype: the numpy dtype of the values: one for every column (``"float32"``),
            or a dict ``{column: dtype}`` (other columns are inferred); None (the
            default) infers every column's type from the file's first rows. Bool,
            integer and float dtypes are accepted, and ``str`` for text. An empty
            field is NaN in a float column and a bad value elsewhere. Booleans are
            ``1/0``, ``true/false``, ``True/False``, ``TRUE/FALSE``.
        header: whether the first row names the columns (the default, as pandas).
            Blank names become ``"Unnamed: i"`` and repeats ``"a.1"``, as in pandas.
            Without a header (``header=False``) columns are keyed 0, 1, ... unless
            ``names`` are given. A file without a header read with ``header=True``
            loses its first row to the names; columns or dtype naming a column the
            header lacks then reject the file, saying so.
        names: column names to use instead of the header's (with ``header=True`` the
            header row is passed over and must have as many columns).
        batch_size: yield columnar batches of this many rows instead of rows.
        delimiter: the field separator, one character (``"\\t"`` for TSV).
        quotechar: the quote character, one character; doubled inside a quoted field.
        engine: ``"pyarrow"`` (fast; ``pip install 'headrace[arrow]'``), ``"python"``
            (the csv module; no dependencies), or ``"auto"``: pyarrow when installed.
            Both give the same records and reject the same rows. The csv module's
            field limit (``csv.field_size_limit()``, 131,072 characters unless
            changed) is process-wide: reading raises it to ``max_record_bytes``,
            never lowers it.
        max_record_bytes: the longest line of a row read (in bytes, line ending not
            counted), 64 MiB by default: a longer one is a bad row, read past without
            being held, by either engine.
        on_error: what to do with a bad row (a wrong number of fields, a value that does
            not convert to its dtype, bytes that are not UTF-8 in a column read), a file
            that cannot be opened or whose header does not fit the arguments, or a
            compressed file that is damaged or cut short: ``"raise"`` (default) raises
            :class:`headrace.ParseError` (:class:`headrace.DecodeError` for UTF-8)
            naming the file, the row (``data.csv row 7``, counting data rows from 1)
            and the reason; ``"skip"`` drops it, counts it and logs a summary; a file
            path also appends each, with the row's fields, as a JSON line to that file
            (see :mod:`headrace.policy`). An empty file, or a header alone, is no error: no
            rows. A missing file raises ``FileNotFoundError`` when the run starts.
        num_shards, shard_index: read only every ``num_shards``-th file of the sorted
            list, starting at ``shard_index``.

    Raises:
        TypeError, ValueError: an argument is malformed (named in the message).
        ImportError: ``engine="pyarrow"`` and pyarrow is not installed.
    """
    return Pipeline(
        (
            ReadCsv(
                path,
                columns=columns,
                dtype=dtype,
                header=header,
                names=names,
                batch_size=batch_size,
                delimiter=delimiter,
                quotechar=quotechar,
                engine=engine,
                max_record_bytes=max_record_bytes,
                on_error=on_error,
                num_shards=num_shards,
                shard_index=shard_index,
            ),
        )
    )


def read_parquet(
    path: PathsArg,
    *,
    columns: Sequence[str] | None = None,
    batch_size: int | None = None,
    max_record_bytes: int = GROUP_LIMIT,
    on_error: OnError = "raise",
    num_shards: int = 1,
    shard_index: int = 0,
) -> Pipeline[Any]:
    """The rows of Parquet files, streamed a row group at a time.

    By default each row is a dict of Python values, as pyarrow gives them: ``None``
    for a null, ``str``, ``bytes``, ``datetime`` (time-zone aware if the column is),
    ``date``, ``Decimal``, lists for list columns and dicts for struct columns.

    With ``batch_size=N`` the elements are dicts of numpy arrays holding ``N`` rows
    each: integer, float and bool columns keep their dtype, timestamps and dates become
    ``datetime64`` (in UTC for time-zone aware columns), durations ``timedelta64``, and
    fixed-size lists of numbers (embeddings) a 2-D array; every other column (text,
    bytes, lists, structs, decimals) is an ``object`` array of the Python values. A
    batch whose column holds nulls gives that column as a ``numpy.ma.MaskedArray`` of
    the same dtype, masked at the nulls, so a null never turns an integer into a
    float. Batches never mix rows of two files: a file's last batch may be shorter.

    Several files (a glob, a brace pattern or a list) are read in sorted order; fsspec
    URLs work wherever a path does. Columns are as stored: a pandas index that is not
    a plain range is stored as a column (``__index_level_0__`` if unnamed), so it
    appears too unless ``columns`` leaves it out.

    A saved read position counts rows of the current file: resuming passes over whole
    row groups by the file's metadata without reading them.

    >>> import headrace as hr, pathlib, tempfile
    >>> import pyarrow as pa, pyarrow.parquet as pq
    >>> scratch = tempfile.TemporaryDirectory()
    >>> path = str(pathlib.Path(scratch.name) / "rows.parquet")
    >>> pq.write_table(pa.table({"x": [1, 2, 3], "y": [0.5, None, 2.0]}), path)
    >>> for batch in hr.read_parquet(path, columns=["x"], batch_size=2):
    ...     print(batch)
    {'x': array([1, 2])}
    {'x': array([3])}
    >>> scratch.cleanup()

    Args:
        path: file path, glob or brace pattern, URL, or a list of them.
        columns: read only these columns (a list of top-level column names), in
            this order.
        batch_size: hand out dicts of numpy arrays of this many rows instead of one
            dict per row.
        max_record_bytes: the largest row group read, in the uncompressed bytes of
            the columns read (from the file's footer), 4 GiB by default: a larger one
            is a bad record, passed over unread.
        on_error: what to do with a file that cannot be opened, is not Parquet, is
            cut short or damaged, or lacks a column of ``columns``, and with a row
            group over ``max_record_bytes``: ``"raise"``
            (default) raises :class:`headrace.ParseError` naming the file and the
            reason; ``"skip"`` drops the rest of the file (or the row group), counts
            it as one rejected record and logs a summary; a file path also appends it
            there as a JSON line (see :mod:`headrace.policy`). The ``read`` count is in rows.
        num_shards, shard_index: read only every ``num_shards``-th file of the sorted
            list, starting at ``shard_index``.

    Raises:
        TypeError: ``columns`` is not a list of names, or ``batch_size`` not an int.
        ValueError: ``columns`` is empty or repeats a name, or ``batch_size`` is
            below 1.
        ImportError: pyarrow is not installed (``pip install 'headrace[arrow]'``).
    """
    return Pipeline(
        (
            ReadParquet(
                path,
                columns=columns,
                batch_size=batch_size,
                max_record_bytes=max_record_bytes,
                on_error=on_error,
                num_shards=num_shards,
                shard_index=shard_index,
            ),
        )
    )


def read_ray_dataset(dataset: Any, *, batch_size: int | None = None) -> Pipeline[Any]:
    """The rows of a Ray Data dataset, or its numpy batches, as a headrace source.

    ``dataset`` is a ``ray.data.Dataset`` or one share of its ``streaming_split(n)``
    (for a Ray Train worker's part of the data). Rows come as dicts; with
    ``batch_size``, batches come as dicts of numpy arrays (``iter_batches(batch_size,
    batch_format="numpy")``), the last one maybe short. Every run iterates the
    dataset anew; Ray Data executes it again, streaming.

    A state of a run resumes by replaying its epoch up to the position, so it needs
    the same rows in the same order again: a dataset made with
    ``DataContext.get_current().execution_options.preserve_order = True``. Without
    that, and for a ``streaming_split`` share (whose rows go to whichever share asks
    first), the order is not fixed, and ``run.state()`` raises, naming the stage.

    Args:
        dataset: the dataset or its share.
        batch_size: hand out numpy batches of this many rows instead of rows.

    Raises:
        TypeError: ``dataset`` is neither a Dataset nor a DataIterator.
    """
    return Pipeline((ReadRayDataset(dataset, batch_size=batch_size),))


def read_sql(
    connection: Any,
    query: str,
    params: Sequence[Any] | Mapping[str, Any] | None = None,
    *,
    batch_size: int | None = None,
    dtypes: Mapping[str, Any] | None = None,
    fetch_size: int = 1000,
    cursor: Callable[[Any], Any] | None = None,
    on_error: OnError = "raise",
) -> Pipeline[Any]:
    """The rows of a SQL query, fetched ``fetch_size`` at a time from a DB-API 2 driver.

    Each row is a dict keyed by the column names of the result, holding what the
    driver returns. With ``batch_size=N`` the elements are dicts of numpy arrays of
    ``N`` rows (the last batch may be shorter): a column takes its dtype from
    ``dtypes`` or else from its value in the first row (``bool``, ``int`` → int64,
    ``float`` → float64, anything else, NULL included, → ``object``). NULLs in a
    non-object column are masked: that batch's column is a ``numpy.ma.MaskedArray``
    of the same dtype (with NaN or NaT under the mask in float and datetime
    columns). Time-zone aware datetimes go into ``datetime64`` columns in UTC. A
    value that does not fit its column's dtype exactly (text in an integer column,
    2.5 in an int64 one, a number out of range) rejects its row under ``on_error``;
    the row's number in the result is in the message.

    Every run (every epoch) runs the query again. Pass a function that opens a
    connection rather than a connection where you can: each run then opens its own
    and closes it when the run ends, the pipeline can be sent to worker processes,
    and a run may read in another thread (a ``sqlite3`` connection works only in
    the thread that opened it). A connection you pass is used as it is, never
    closed, committed or rolled back. The cursor is closed when the run ends,
    however it ends.

    When a run starts, an error of the driver's (bad SQL, say) is raised as it is,
    with a note naming the stage and its query; a statement that makes no result
    (an ``UPDATE``), a result with two columns of one name, and ``dtypes`` naming a
    column the result lacks raise ``ValueError``.

    A saved read position counts the rows of the result consumed: resuming runs the
    query again and passes over that many rows. That is only right if the query
    returns its rows in the same order every time, so give it an ``ORDER BY`` on a
    unique key.

    Drivers that fetch the whole result when the query runs (psycopg's default
    cursor does) hold it all in memory; ask them for a server-side cursor with
    ``cursor=``, for PostgreSQL ``cursor=lambda conn: conn.cursor(name="rows")``
    (its rows then come ``fetch_size`` at a time; it needs a transaction, which
    psycopg opens unless the connection is in autocommit mode).

    >>> import sqlite3
    >>> import headrace as hr
    >>> db = sqlite3.connect(":memory:")
    >>> _ = db.execute("CREATE TABLE t (x REAL)")
    >>> _ = db.executemany("INSERT INTO t VALUES (?)", [(0.5,), (None,), (2.0,)])
    >>> for batch in hr.read_sql(db, "SELECT rowid AS id, x FROM t ORDER BY id", batch_size=2):
    ...     print(batch["id"], batch["x"])
    [1 2] [0.5 --]
    [3] [2.]
    >>> db.close()

    Args:
        connection: a DB-API 2 connection, or a function without arguments that
            returns a new one (``functools.partial(sqlite3.connect, path)``).
        query: the SQL text; use placeholders and ``params`` for values.
        params: the placeholders' values, as the driver takes them (a sequence or a
            mapping).
        batch_size: hand out dicts of numpy arrays of this many rows instead of one
            dict per row.
        dtypes: numpy dtypes of batch columns, by column name (bool, integer, float,
            ``datetime64``, ``timedelta64`` or ``object``); only with ``batch_size``.
        fetch_size: rows asked of the driver at a time (``cursor.fetchmany``).
        cursor: makes the cursor from the connection; default ``connection.cursor()``.
        on_error: what to do with a row whose value does not fit its batch column:
            ``"raise"`` (default) raises :class:`headrace.ParseError` naming the row
            and the column; ``"skip"`` drops the row and counts it; a file path also
            appends it there as a JSON line (see :mod:`headrace.policy`). The
            ``read`` count is in rows, in batches too.

    Raises:
        TypeError: ``connection`` is neither a connection nor callable, ``query`` is
            not a str, ``params`` is not a sequence or mapping, or a dtype is not a
            numpy dtype.
        ValueError: ``query`` is empty, a number is below 1, or ``dtypes`` is given
            without ``batch_size`` or names a dtype a batch column cannot have.
    """
    return Pipeline(
        (
            ReadSql(
                connection,
                query,
                params,
                batch_size=batch_size,
                dtypes=dtypes,
                fetch_size=fetch_size,
                cursor=cursor,
                on_error=on_error,
            ),
        )
    )


def read_tar_shards(
    urls: PathsArg,
    *,
    max_record_bytes: int = MEMBER_LIMIT,
    on_error: OnError = "raise",
    num_shards: int = 1,
    shard_index: int = 0,
) -> Pipeline[dict[str, Any]]:
    """The samples of WebDataset-style tar shards, streamed without unpacking.

    Reads shards written by ``webdataset.TarWriter`` / ``ShardWriter`` or by
    ``tar --sort=name``: members named ``KEY.EXT``, those of one sample next to each
    other. Each sample is a dict ``{"__key__": KEY, "__url__": shard, EXT: bytes, ...}``
    with the same keys and raw bytes that ``webdataset.WebDataset(urls)`` gives before
    decoding. As there, the key ends at the first dot of the file name
    (``cat.0001.jpg`` is key ``cat``, field ``0001.jpg``), fields are lower-cased, a
    sample never spans two shards, a key that comes back after another key starts a
    new sample, and ``__name__`` metadata members and folders are passed over.

    >>> import io, pathlib, tarfile, tempfile
    >>> from headrace.readers import read_tar_shards
    >>> scratch = tempfile.TemporaryDirectory()
    >>> with tarfile.open(pathlib.Path(scratch.name) / "shard-0.tar", "w") as shard:
    ...     for name, data in [("cat.jpg", b"\\xff\\xd8"), ("cat.cls", b"3"), ("dog.cls", b"5")]:
    ...         member = tarfile.TarInfo(name)
    ...         member.size = len(data)
    ...         shard.addfile(member, io.BytesIO(data))
    >>> [(s["__key__"], s["cls"]) for s in read_tar_shards(scratch.name + "/shard-{0..0}.tar")]
    [('cat', b'3'), ('dog', b'5')]
    >>> scratch.cleanup()

    Shards are read in streaming mode, so ``.tar.gz`` (or ``.tgz``), ``.tar.bz2`` and
    ``.tar.xz`` shards and fsspec URLs (``s3://``, ``https://``, ...) need no seeking.

    Every sample is one record. A rejected member (see ``on_error``) is one record
    too and takes no part in grouping: the other members of its key still form one
    sample, without it. A damaged shard is one record, and the sample being read when
    the damage showed is dropped with it (it may lack members); the samples before it
    are kept. So ``read == yielded + rejected`` in the run's stats.

    A saved read position counts the shard's members: a restarted run passes over
    that many member headers, reading past their data without keeping it.

    Args:
        urls: shard path, glob or brace pattern (``data-{000..099}.tar``), fsspec URL,
            or a list of them; read in sorted order.
        max_record_bytes: the largest member read (in bytes), 1 GiB by default. A
            larger one is a bad record: its size is in its header, so it is read past
            without being held, and its sample goes on without it.
        on_error: what to do with a member that is a link, a device or a FIFO, whose
            path is absolute or climbs out with ``..``, that has no ``.EXT``, that is
            over ``max_record_bytes``, or that repeats a field of its sample; and with
            a shard that cannot be opened, is
            not a tar archive, or is damaged or cut short (also inside its
            compression): ``"raise"`` (default) raises :class:`headrace.ParseError`
            naming the shard, the member and the reason; ``"skip"`` drops it, counts it
            and logs a summary; a file path also appends each as a JSON line there.
        num_shards, shard_index: read only every ``num_shards``-th shard of the sorted
            list, starting at ``shard_index`` (one share of the shards per rank or
            worker).

    Raises:
        TypeError: ``urls`` is not a path, a pattern, a URL or a list of them.
        ValueError: ``urls`` is empty, ``shard_index`` is not below ``num_shards``,
            or (when a run starts) there are fewer shards than ``num_shards``.
        FileNotFoundError: when a run starts, a pattern matches no file or a listed
            local shard is missing.
    """
    paths = normalise_paths(urls, "urls")
    return Pipeline(
        (
            ReadTarShards(
                paths,
                max_record_bytes=max_record_bytes,
                on_error=on_error,
                num_shards=num_shards,
                shard_index=shard_index,
            ),
        )
    )


class ImageFolder(Pipeline[tuple[str, int]]):
    """The pipeline :func:`image_folder` returns: a pipeline, plus the class names.

    Chained methods return plain pipelines; keep this one to ask for ``classes``.
    """

    __slots__ = ()

    @property
    def classes(self) -> tuple[str, ...]:
        """The class names in label order (sorted folder names unless given)."""
        return cast("ImageFiles", self.stages[0]).classes

    @property
    def class_to_index(self) -> dict[str, int]:
        """Each class name's label."""
        return {name: index for index, name in enumerate(self.classes)}


def image_folder(
    root: str | os.PathLike[str],
    *,
    extensions: Sequence[str] | None = IMAGE_EXTENSIONS,
    classes: Sequence[str] | None = None,
    shuffle: bool = False,
    seed: int | None = None,
    num_shards: int = 1,
    shard_index: int = 0,
) -> ImageFolder:
    """``(path, label)`` for every image in a folder holding one subfolder per class.

    Labels index the sorted class names, ``.classes`` on the returned pipeline (a
    one-hot encoder needs them before training starts). Images in folders nested
    inside a class folder belong to that class. Left out: hidden files and folders
    (names starting with ``.``, such as ``.ipynb_checkpoints``), files beside the
    class folders, and files whose names do not end with one of ``extensions``
    (letter case ignored). A class folder with no images is still a class, so labels
    do not shift when one is emptied. No file is opened: pair this with a decoding
    ``map``, which is where unreadable images show.

    The listing happens when a run starts, and ``.classes`` lists the root the first
    time it is asked for; the class list then stays fixed for every later run of the
    pipeline, and a folder added meanwhile is left out with a warning. Pass the
    training set's ``classes`` to the validation set's ``image_folder`` so both use
    the same labels.

    >>> import pathlib, tempfile
    >>> scratch = tempfile.TemporaryDirectory()
    >>> root = pathlib.Path(scratch.name)
    >>> for name in ["dog/1.jpg", "dog/2.JPG", "cat/x.png", ".cache/y.png"]:
    ...     (root / name).parent.mkdir(exist_ok=True)
    ...     (root / name).touch()
    >>> images = image_folder(root)
    >>> images.classes, images.class_to_index
    (('cat', 'dog'), {'cat': 0, 'dog': 1})
    >>> [(pathlib.Path(path).name, label) for path, label in images]
    [('x.png', 0), ('1.jpg', 1), ('2.JPG', 1)]
    >>> dogs = image_folder(root, classes=["dog"])
    >>> [label for _, label in dogs]
    [0, 0]
    >>> scratch.cleanup()

    Args:
        root: the folder's path or fsspec URL (``s3://bucket/train/``).
        extensions: the file name endings to take, such as ``[".jpg", ".png"]``
            (default: :data:`IMAGE_EXTENSIONS`); ``None`` takes every file.
        classes: the class folders to read, in label order; other folders are left
            out. By default, every subfolder, sorted by name.
        shuffle: shuffle the files anew every epoch (a bool); the files come class by
            class otherwise, which a small shuffle buffer cannot mix.
        seed: makes the shuffled order reproducible (and resumable); only with
            ``shuffle=True``.
        num_shards, shard_index: take every ``num_shards``-th file of the listing,
            from ``shard_index``: disjoint shares with every class in each. With
            ``shuffle``, each shard shuffles its own share.

    Returns:
        An :class:`ImageFolder`: a pipeline of ``(path, label)`` pairs with
        ``classes`` and ``class_to_index``.

    Raises:
        TypeError, ValueError: a bad argument.
        FileNotFoundError: (when listing) ``root`` does not exist or has no class
            folders, a class in ``classes`` has no folder, or no file matches.
        NotADirectoryError: (when listing) ``root`` is a file.
    """
    return ImageFolder(
        (
            ImageFiles(
                root,
                extensions=extensions,
                classes=classes,
                shuffle=shuffle,
                seed=seed,
                num_shards=num_shards,
                shard_index=shard_index,
            ),
        )
    )
