"""Exact resume: ``pipeline.iter(state=run.state())`` goes on right after the last
element the saved run handed out.

Random pipelines over every built-in source (in memory, generators, text, JSON Lines,
CSV, Parquet, tar shards, image folders, SQL, file lists, global shuffles, zip and
concat) and every built-in stage, seeded stage by stage or by ``with_seed``, and
shares of them, are interrupted at a random element of a random epoch; the elements
taken before the interruption and those of the resumed run together are the
uninterrupted epoch. Every source and every stage is also checked on its own. Then
the same tails for any worker count, the boundaries (nothing taken, everything
taken, past the end), the refusals (an order that changes between runs, a state of
another pipeline, tampered fields), clean shutdown of a resumed run, and a PyTorch
training process killed mid-epoch that resumes from its checkpoint and ends with the
weights of an uninterrupted run.
"""

from __future__ import annotations

import csv
import functools
import inspect
import io
import itertools
import json
import signal
import sqlite3
import subprocess
import sys
import tarfile
import textwrap
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import headrace as hr
from headrace.run import state_check

# -- element functions: deterministic, and defined for every element shape used -----


def weight(x: Any) -> int:
    """A number that follows from every value in ``x``."""
    if isinstance(x, str):
        return sum(map(ord, x)) % 1009
    if isinstance(x, bytes):
        return sum(x) % 1009
    if isinstance(x, np.ndarray):
        if np.issubdtype(x.dtype, np.number):
            return int(x.sum())
        return sum(weight(v) for v in x.flat)
    if isinstance(x, tuple | list):
        return sum(weight(v) for v in x)
    if isinstance(x, dict):
        return sum(weight(v) for v in x.values())
    return int(x)


def bump(x: Any) -> Any:
    """``x`` with every number one higher, its structure unchanged."""
    if isinstance(x, str | bytes):
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


def around_unseeded(x: Any) -> hr.Pipeline[Any]:
    """As ``around``, with a shuffle that takes its seed from ``with_seed``."""
    return hr.from_iterable([x, bump(x), weight(x)]).shuffle(3)


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


def picky(x: Any) -> Any:
    """``bump(x)``, or a ``ParseError`` for a quarter of the elements: for on_error."""
    if weight(x) % 4 == 0:
        raise hr.ParseError(f"no good: {weight(x)}")
    return bump(x)


def choosy(x: Any, rng: np.random.Generator) -> int:
    """A draw added to ``x``'s weight, or a ``ParseError`` when the draw is 0."""
    draw = int(rng.integers(0, 4))
    if draw == 0:
        raise hr.ParseError("drew 0")
    return weight(x) + draw


def pair(x: Any) -> tuple[int, int]:
    return weight(x), weight(x) % 7


def product(a: int, b: int) -> int:
    return a * b + b


def digits(x: Any) -> str:
    return str(weight(x))


#: Matches the weights that start with 0 to 4 (searched: that hold one); parse drops
#: the others under on_error="skip".
DIGITS = r"(?P<lead>[0-4])(?P<rest>\d*)"


def short(x: Any) -> bool:
    return weight(x) % 7 != 6


def early(x: Any) -> bool:
    return weight(x) % 7 < 4


def differences(iterable: Iterable[Any]) -> Iterator[int]:
    """A user generator stage: each element's weight less the previous one's."""
    previous = 0
    for x in iterable:
        yield weight(x) - previous
        previous = weight(x)


def every_other(iterable: Iterable[Any], *, start: int = 0) -> Iterator[Any]:
    for i, x in enumerate(iterable):
        if i % 2 == start:
            yield x


def scaled(factor: int) -> Any:
    """A two-``yield`` coroutine step."""
    while True:
        x = yield
        yield weight(x) * factor


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
SQL = "SELECT id, v, s FROM t WHERE id >= ? ORDER BY id"


def write_tar(path: Path, samples: list[dict[str, Any]]) -> None:
    """A shard written member by member with ``tarfile``, as ``tar --sort=name`` does."""
    with tarfile.open(path, "w") as shard:
        for sample in samples:
            for field in sorted(field for field in sample if field != "__key__"):
                member = tarfile.TarInfo(f"{sample['__key__']}.{field}")
                member.size = len(sample[field])
                shard.addfile(member, io.BytesIO(sample[field]))


@pytest.fixture(scope="module")
def data_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Files of each of ``FILE_SIZES`` records for every file source, two image
    folders, file patterns, and a folder for cache files."""
    # Imported here: worker processes import this module to find its functions, and
    # webdataset takes a second to import.
    import pyarrow as pa
    import pyarrow.parquet as pq
    import webdataset
    from PIL import Image

    folder = tmp_path_factory.mktemp("resume")
    made: dict[str, list[str]] = {
        kind: [] for kind in ["text", "jsonl", "csv", "parquet", "tar", "sql", "images"]
    }
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
        parquet = folder / f"rows-{size}.parquet"
        columns = {
            "v": pa.array([(i * 7) % 10 for i in range(size)], pa.int64()),
            "name": pa.array([f"r{i}" for i in range(size)], pa.string()),
            "f": pa.array([i / 4 for i in range(size)], pa.float64()),
        }
        pq.write_table(pa.table(columns), parquet, row_group_size=3)
        samples = [
            {"__key__": f"s{size}-{i:03d}", "cls": str(i % 3).encode(), "txt": b"ab" * (i % 4)}
            for i in range(size)
        ]
        by_webdataset = folder / f"shard-w{size}.tar"
        with webdataset.TarWriter(str(by_webdataset)) as sink:
            for sample in samples:
                sink.write(sample)
        by_tarfile = folder / f"shard-t{size}.tar"
        write_tar(by_tarfile, samples)
        database = folder / f"rows-{size}.db"
        with sqlite3.connect(database) as connection:
            connection.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER, s TEXT)")
            connection.executemany(
                "INSERT INTO t VALUES (?, ?, ?)", [(i, (i * 5) % 11, f"s{i}") for i in range(size)]
            )
        connection.close()
        made["text"].append(str(text))
        made["jsonl"].append(str(jsonl))
        made["csv"].append(str(table))
        made["parquet"].append(str(parquet))
        made["tar"] += [str(by_webdataset), str(by_tarfile)]
        made["sql"].append(str(database))
    colours = [(250, 10, 10), (10, 250, 10), (10, 10, 250), (120, 120, 120)]
    for root, counts in [("one", {"only": 1}), ("pets", {"cat": 3, "dog": 0, "emu": 5})]:
        for name, count in counts.items():
            (folder / root / name).mkdir(parents=True)
            for i in range(count):
                image = Image.new("RGB", (4 + i, 3), colours[i % 4])
                image.save(folder / root / name / f"{i:02d}.{'png' if i % 2 else 'jpg'}")
        made["images"].append(str(folder / root))
    (folder / "pets" / "cat" / ".hidden.png").write_bytes(b"")
    (folder / "pets" / "cat" / "notes.txt").write_text("not an image")
    made["patterns"] = [
        str(folder / "lines-*.txt"),
        str(folder / "*.parquet"),
        str(folder / "records-{0,5,12}.jsonl"),
        str(folder / "**" / "*.png"),
    ]
    (folder / "caches").mkdir()
    made["caches"] = [str(folder / "caches")]
    return made


# -- the grammar ----------------------------------------------------------------------

# What the elements of a pipeline are, so that only stages that accept them follow:
# "fixed": every element has the same structure and array shapes (batch can stack them);
# "ragged": shapes vary. ``batched`` is what unbatch gives back, None when the elements
# are not batches.
Shape = tuple[str, str | None]

SOURCES = [
    "range",
    "list",
    "generator",
    "text",
    "jsonl",
    "csv",
    "csv_batches",
    "parquet",
    "parquet_batches",
    "tar",
    "image_folder",
    "sql",
    "sql_batches",
    "files",
    "global_shuffle",
    "zip",
    "concat",
    "sample_from",
]
#: The function each source kind calls (``global_shuffle`` is a method of the source).
SOURCE_FUNCTIONS = {
    "range": "range",
    "list": "from_iterable",
    "generator": "from_generator",
    "text": "text_lines",
    "jsonl": "read_jsonl",
    "csv": "read_csv",
    "csv_batches": "read_csv",
    "parquet": "read_parquet",
    "parquet_batches": "read_parquet",
    "tar": "read_tar_shards",
    "image_folder": "image_folder",
    "sql": "read_sql",
    "sql_batches": "read_sql",
    "files": "files",
    "global_shuffle": "global_shuffle",
    "zip": "zip",
    "concat": "concat",
    "sample_from": "sample_from",
}
#: Sources of records of one structure each, for the pipelines that zip and concat combine.
PLAIN_SOURCES = [
    kind
    for kind in SOURCES
    if not kind.endswith("_batches") and kind not in ("zip", "concat", "sample_from")
]
STAGES = [
    "map",
    "map_threads",
    "map_skip",
    "random_map",
    "random_map_threads",
    "random_map_skip",
    "starmap",
    "filter",
    "tap",
    "parse",
    "flat_map",
    "shuffle",
    "take",
    "skip",
    "take_while",
    "drop_while",
    "enumerate",
    "window",
    "scan",
    "repeat",
    "interleave",
    "prefetch",
    "cache",
    "cache_file",
    "zip",
    "concat",
    "padded_batch",
    "bucket_by_length",
    "batch",
    "unbatch",
    "pipe",
    "coroutine",
    "shard",
]
CACHE_NUMBERS = itertools.count()
#: Examples for each source and each stage checked on its own.
EXAMPLES = 12


class Grammar:
    """Draws pipelines. With ``pipeline_seed``, the pipeline gets ``with_seed`` (at its
    source or at its end) and any seeded stage may be left without a seed of its own.
    """

    def __init__(
        self, draw: Callable[..., Any], files: dict[str, list[str]], *, avoid: Iterable[str] = ()
    ) -> None:
        self.draw = draw
        self.files = files
        self.pipeline_seed: bool = draw(st.booleans(), label="pipeline_seed")
        self.seed_at_end = self.pipeline_seed and draw(st.booleans(), label="seed_at_end")
        # A pipeline is shared once, never after a file cache (every share would write
        # that file), nor before ``with_seed`` (its unseeded shuffles would be refused).
        self.avoid = set(avoid) | ({"shard"} if self.seed_at_end else set())
        self.pipeline_seed_value: int = draw(st.integers(0, 2**16), label="with_seed")

    def reseeded(self, pipeline: hr.Pipeline[Any]) -> hr.Pipeline[Any]:
        """``pipeline`` with the pipeline seed, where it is given at the source: ``zip``
        and ``concat`` (the functions and the methods) start a pipeline of their own."""
        if self.pipeline_seed and not self.seed_at_end:
            return pipeline.with_seed(self.pipeline_seed_value)
        return pipeline

    def seed(self) -> int | None:
        if self.pipeline_seed and self.draw(st.booleans()):
            return None
        return int(self.draw(st.integers(0, 2**16)))

    def paths(self, kind: str) -> str | list[str]:
        """One file of ``kind``, or a list of some (read in sorted order)."""
        chosen: list[str] = self.draw(
            st.lists(st.sampled_from(self.files[kind]), min_size=1, max_size=3, unique=True)
        )
        return chosen[0] if len(chosen) == 1 else chosen

    def cache_path(self) -> Path:
        self.avoid.add("shard")
        return Path(self.files["caches"][0]) / f"cache-{next(CACHE_NUMBERS)}.bin"


def source(
    g: Grammar, kind: str | None = None, *, plain: bool = False
) -> tuple[hr.Pipeline[Any], Shape]:
    draw = g.draw
    if kind is None:
        kind = draw(st.sampled_from(PLAIN_SOURCES if plain else SOURCES))
    fixed: Shape = ("fixed", None)
    batches: Shape = ("ragged", "fixed")  # dicts of columns; a file's last batch is shorter
    if kind == "range":
        return hr.range(draw(st.integers(0, 12))), fixed
    if kind == "list":
        return hr.from_iterable(draw(st.lists(st.integers(-50, 50), max_size=12))), fixed
    if kind == "generator":
        return hr.from_generator(count_up, draw(st.integers(0, 12))), fixed
    if kind == "text":
        return hr.text_lines(g.paths("text")), fixed
    if kind == "jsonl":
        return hr.read_jsonl(g.paths("jsonl")), fixed
    if kind == "csv":
        return hr.read_csv(g.paths("csv"), dtype="int64"), fixed
    if kind == "csv_batches":
        size = draw(st.integers(1, 4))
        return hr.read_csv(g.paths("csv"), dtype="int64", batch_size=size), batches
    if kind in ("parquet", "parquet_batches"):
        columns = draw(st.sampled_from([None, ["f", "v"], ["name"]]))
        size = draw(st.integers(1, 4)) if kind == "parquet_batches" else None
        parquet = hr.read_parquet(g.paths("parquet"), columns=columns, batch_size=size)
        return parquet, fixed if size is None else batches
    if kind == "tar":
        return hr.read_tar_shards(g.paths("tar")), fixed
    if kind == "image_folder":
        root = draw(st.sampled_from(g.files["images"]))
        if draw(st.booleans()):
            return hr.image_folder(root, shuffle=True, seed=g.seed()), fixed
        return hr.image_folder(root), fixed
    if kind in ("sql", "sql_batches"):
        connect = functools.partial(sqlite3.connect, draw(st.sampled_from(g.files["sql"])))
        size = draw(st.integers(1, 4)) if kind == "sql_batches" else None
        rows = hr.read_sql(
            connect,
            SQL,
            (draw(st.integers(0, 3)),),
            batch_size=size,
            fetch_size=draw(st.integers(1, 4)),
        )
        return rows, fixed if size is None else batches
    if kind == "files":
        pattern = draw(st.sampled_from(g.files["patterns"]))
        if draw(st.booleans()):
            return hr.files(pattern, shuffle=True, seed=g.seed()), fixed
        return hr.files(pattern), fixed
    if kind == "global_shuffle":
        size = draw(st.sampled_from([0, 1, 2, 7, 12, 3000]))
        data = draw(st.sampled_from(["range", "list", "array"]))
        if data == "range":
            readable: hr.Pipeline[Any] = hr.range(size)
        elif data == "list":
            readable = hr.from_iterable([(i * 13) % 17 for i in range(size)])
        else:
            readable = hr.from_iterable(np.arange(size, dtype=np.int32) * 3)
        shuffled = readable.global_shuffle(seed=g.seed())
        # Past 1,024 elements the permutation is a keyed bijection, not a table.
        return (shuffled.take(12) if size > 12 else shuffled), fixed
    if kind == "zip":
        return hr.zip(side_pipeline(g), side_pipeline(g)), fixed
    if kind == "sample_from":
        parts = [side_pipeline(g) for _ in range(draw(st.integers(1, 3)))]
        shape: Shape = ("ragged", None)
        if draw(st.booleans()):
            parts, shape = [part.map(weight) for part in parts], fixed
        weights = draw(
            st.none()
            | st.lists(
                st.sampled_from([0, 0.5, 1, 3]), min_size=len(parts), max_size=len(parts)
            ).filter(any)
        )
        stop = draw(st.booleans())
        mixed = hr.sample_from(parts, weights, seed=g.seed(), stop_on_empty=stop)
        return mixed, shape
    assert kind == "concat", kind
    if draw(st.booleans()):
        return hr.concat(side_pipeline(g).map(weight), side_pipeline(g).map(weight)), fixed
    return hr.concat(side_pipeline(g), side_pipeline(g)), ("ragged", None)


def side_pipeline(g: Grammar) -> hr.Pipeline[Any]:
    """A small pipeline of fixed-shape elements, to zip or concatenate with."""
    pipeline, _ = source(g, plain=True)
    for _ in range(g.draw(st.integers(0, 2))):
        step = g.draw(st.sampled_from(["map", "filter", "shuffle"]))
        if step == "map":
            pipeline = pipeline.map(bump)
        elif step == "filter":
            pipeline = pipeline.filter(keep)
        else:
            pipeline = pipeline.shuffle(g.draw(st.integers(1, 5)), seed=g.seed())
    return pipeline


def stage(
    g: Grammar, pipeline: hr.Pipeline[Any], shape: Shape, name: str | None = None
) -> tuple[hr.Pipeline[Any], Shape]:
    """``pipeline`` with one more stage that accepts its elements (``name``, or one
    drawn), and the new shape."""
    draw = g.draw
    form, batched = shape
    if name is None:
        names = [n for n in STAGES if n not in g.avoid and n not in ("batch", "unbatch")]
        if form == "fixed":
            names.append("batch")
        unbatch = batched is not None and draw(st.booleans())
        name = "unbatch" if unbatch else draw(st.sampled_from(names))
    elif name == "batch" and form != "fixed":
        pipeline, form = pipeline.map(weight), "fixed"
    elif name == "unbatch" and batched is None:
        pipeline, batched = pipeline.map(weight).batch(draw(st.integers(1, 3))), "fixed"
    workers = draw(st.sampled_from([0, 2]), label="workers") if name.endswith("_skip") else 0
    if name == "map":
        return pipeline.map(bump), shape
    if name == "map_threads":
        return pipeline.map(bump, workers=2), shape
    if name == "map_skip":
        return pipeline.map(picky, workers=workers, on_error="skip"), shape
    if name == "random_map":
        return pipeline.random_map(jitter, seed=g.seed()), ("fixed", None)
    if name == "random_map_threads":
        return pipeline.random_map(jitter, seed=g.seed(), workers=2), ("fixed", None)
    if name == "random_map_skip":
        skipping = pipeline.random_map(choosy, seed=g.seed(), workers=workers, on_error="skip")
        return skipping, ("fixed", None)
    if name == "starmap":
        return pipeline.map(pair).starmap(product), ("fixed", None)
    if name == "filter":
        return pipeline.filter(keep), shape
    if name == "tap":
        return pipeline.tap(weight), shape
    if name == "parse":
        search = draw(st.booleans())
        return pipeline.map(digits).parse(DIGITS, on_error="skip", search=search), ("fixed", None)
    if name == "flat_map":
        return pipeline.flat_map(spread), shape
    if name == "shuffle":
        return pipeline.shuffle(draw(st.integers(1, 8)), seed=g.seed()), shape
    if name == "take":
        return pipeline.take(draw(st.integers(1, 15))), shape
    if name == "skip":
        return pipeline.skip(draw(st.integers(0, 5))), shape
    if name == "take_while":
        return pipeline.take_while(short), shape
    if name == "drop_while":
        return pipeline.drop_while(early), shape
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
        choices: list[Callable[[Any], Any]] = [spread, around]
        if g.pipeline_seed:
            choices.append(around_unseeded)
        fn = draw(st.sampled_from(choices))
        shaped: Shape = ("ragged", None) if fn is around_unseeded else shape
        return pipeline.interleave(fn, cycle_length=draw(st.integers(1, 3))), shaped
    if name == "prefetch":
        return pipeline.prefetch(draw(st.integers(1, 3))), shape
    if name == "cache":
        return pipeline.cache(), shape
    if name == "cache_file":
        return pipeline.cache(g.cache_path()), shape
    if name == "zip":
        other = side_pipeline(g)
        if draw(st.booleans()):
            return g.reseeded(pipeline.zip(other)), (form, None)
        return g.reseeded(hr.zip(other, pipeline)), (form, None)
    if name == "concat":
        joined = pipeline.map(weight).concat(side_pipeline(g).map(weight))
        return g.reseeded(joined), ("fixed", None)
    if name == "padded_batch":
        size = draw(st.integers(1, 4))
        drop = draw(st.booleans())
        return pipeline.map(ramp).padded_batch(size, drop_remainder=drop), ("ragged", "ragged")
    if name == "bucket_by_length":
        boundaries = draw(st.lists(st.integers(1, 6), max_size=3, unique=True).map(sorted))
        sizes = draw(
            st.lists(st.integers(1, 3), min_size=len(boundaries) + 1, max_size=len(boundaries) + 1)
        )
        drop = draw(st.booleans())
        bucketed = pipeline.map(ramp).bucket_by_length(len, boundaries, sizes, drop_remainder=drop)
        return bucketed, ("ragged", "ragged")
    if name == "batch":
        drop = draw(st.booleans())
        batches = pipeline.batch(draw(st.integers(1, 4)), drop_remainder=drop)
        return batches, ("fixed" if drop else "ragged", form)
    if name == "unbatch":
        assert batched is not None
        return pipeline.unbatch(), (batched, None)
    if name == "pipe":
        if draw(st.booleans()):
            return pipeline.pipe(differences), ("fixed", None)
        return pipeline.pipe(every_other, start=draw(st.integers(0, 1))), shape
    if name == "coroutine":
        return pipeline.coroutine(scaled, draw(st.integers(1, 3))), ("fixed", None)
    assert name == "shard", name
    g.avoid.add("shard")
    count = draw(st.integers(1, 3))
    index = draw(st.integers(0, count - 1))
    equal = None
    length = pipeline.known_length()
    if isinstance(length, int):  # "pad" repeats a share's elements: it needs one
        equal = draw(st.sampled_from([None, "drop", "pad"] if length >= count else [None, "drop"]))
    return pipeline.shard(count, index, equal=equal), shape


def pipelines(
    g: Grammar, most: int = 6, *, kind: str | None = None, last: str | None = None
) -> tuple[hr.Pipeline[Any], Shape]:
    """A source (``kind``, or one drawn) and up to ``most`` stages (then ``last``)."""
    pipeline, shape = source(g, kind)
    pipeline = g.reseeded(pipeline)
    for _ in range(g.draw(st.integers(0, most))):
        pipeline, shape = stage(g, pipeline, shape)
    if last is not None:
        pipeline, shape = stage(g, pipeline, shape, last)
    if g.seed_at_end:
        pipeline = pipeline.with_seed(g.pipeline_seed_value)
    return pipeline, shape


def roundtrip(state: dict[str, Any]) -> Any:
    text = json.dumps(state)
    assert len(text) < 20_000, text  # a shuffle keeps a number per buffered element
    return json.loads(text)


#: What resumes by replaying its epoch: user generators as stages or sources.
REPLAYING = ("pipe(", "coroutine(", "from_generator(")


def replays(pipeline: hr.Pipeline[Any]) -> bool:
    return any(word in repr(pipeline) for word in REPLAYING)


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
    assert {"format", "pipeline", "epoch", "position", "stages"} <= set(state)
    if 0 < k <= len(full) and not replays(pipeline):
        # Built-in sources and stages say where they stand: no replay to resume.
        assert state["stages"] is not None, repr(pipeline)
    if k > len(full):
        assert (state["epoch"], state["position"]) == (epoch + 1, 0)
        expected, got = list(pipeline.iter(epoch=epoch + 1)), list(pipeline.iter(state=state))
    else:
        assert (state["epoch"], state["position"]) == (epoch, k)
        expected, got = full, taken + list(pipeline.iter(state=state))
    assert len(got) == len(expected), repr(pipeline)
    assert all(same(a, b) for a, b in zip(got, expected, strict=True)), repr(pipeline)


def check_drawn(data: st.DataObject, pipeline: hr.Pipeline[Any]) -> None:
    """``check_resume`` at a drawn epoch and interruption point."""
    epoch = data.draw(st.integers(0, 4), label="epoch")
    length = len(list(pipeline.iter(epoch=epoch)))
    check_resume(pipeline, epoch, data.draw(st.integers(0, length + 1), label="k"))


# -- 1. random pipelines, random interruptions ---------------------------------------


@settings(max_examples=800, deadline=None)
@given(data=st.data())
def test_resumed_run_gives_the_rest_of_the_epoch(
    data: st.DataObject, data_files: dict[str, list[str]]
) -> None:
    pipeline, _ = pipelines(Grammar(data.draw, data_files))
    check_drawn(data, pipeline)


@pytest.mark.parametrize("kind", SOURCES)
@settings(max_examples=EXAMPLES, deadline=None)
@given(data=st.data())
def test_every_source_resumes(
    kind: str, data: st.DataObject, data_files: dict[str, list[str]]
) -> None:
    pipeline, _ = pipelines(Grammar(data.draw, data_files), 2, kind=kind)
    check_drawn(data, pipeline)


@pytest.mark.parametrize("name", STAGES)
@settings(max_examples=EXAMPLES, deadline=None)
@given(data=st.data())
def test_every_stage_resumes(
    name: str, data: st.DataObject, data_files: dict[str, list[str]]
) -> None:
    # Sharing needs a pipeline that can be shared: no file cache, with_seed first.
    avoid = ["shard", "cache_file"] if name == "shard" else []
    g = Grammar(data.draw, data_files, avoid=avoid)
    if name == "shard":
        g.seed_at_end = False
    pipeline, _ = pipelines(g, 2, last=name)
    check_drawn(data, pipeline)


#: Sources the grammar leaves out, and where their resume is tested instead.
OUTSIDE_THE_GRAMMAR = {
    # Needs a Ray cluster, which each run of the grammar cannot start in time.
    "read_ray_dataset": "tests/integrations/test_ray.py",
}


def test_the_grammar_covers_every_source_and_stage() -> None:
    sources = {name for name in hr.__all__ if inspect.isfunction(getattr(hr, name))}
    assert sources | {"global_shuffle"} == set(SOURCE_FUNCTIONS.values()) | set(OUTSIDE_THE_GRAMMAR)
    tests = Path(__file__).parent.parent
    for name, where in OUTSIDE_THE_GRAMMAR.items():
        assert f"hr.{name}(" in (tests / where).read_text(), (name, where)
    assert set(SOURCE_FUNCTIONS) == set(SOURCES)
    not_stages = {
        "close",
        "epochs",
        "iter",
        "known_length",
        "seed",
        "stages",
        "with_seed",
        "with_stages",
    }
    methods = {
        name
        for name in dir(hr.Pipeline)
        if not name.startswith(("_", "to_")) and name not in not_stages
    }
    used = {name.removesuffix("_threads").removesuffix("_skip") for name in STAGES}
    used = {name.removesuffix("_file") for name in used} | {"global_shuffle"}
    assert methods == used


@settings(max_examples=4, deadline=None)
@given(data=st.data())
def test_resumed_run_with_worker_processes(
    data: st.DataObject, data_files: dict[str, list[str]]
) -> None:
    # Starting worker processes costs a good part of a second per run: a few examples.
    g = Grammar(data.draw, data_files)
    pipeline, shape = pipelines(g, 2)
    if data.draw(st.booleans(), label="random_map"):
        pipeline = pipeline.random_map(jitter, seed=7, workers=2, backend="process")
        shape = ("fixed", None)
    else:
        pipeline = pipeline.map(bump, workers=2, backend="process")
    pipeline, _ = stage(g, pipeline, shape)
    check_drawn(data, pipeline)


# -- 2. one seed, any worker count, any share -----------------------------------------


def seeded_work(workers: int, backend: str = "thread", *, buffered: bool) -> hr.Pipeline[Any]:
    """A pipeline whose every random stage takes its seed from ``with_seed``; without
    the buffered shuffle and the filter, every stage can start mid-epoch by itself."""
    pipeline = hr.range(60).global_shuffle().map(bump, workers=workers, backend=backend)
    if buffered:
        pipeline = pipeline.shuffle(8)
    pipeline = pipeline.random_map(jitter, workers=workers, backend=backend)
    if buffered:
        pipeline = pipeline.filter(keep)
    return pipeline.batch(4).enumerate().with_seed(21)


@pytest.mark.parametrize(
    ("epoch", "k", "backend", "buffered"),
    [
        (0, 0, "thread", True),
        (0, 5, "thread", True),
        (3, 8, "thread", True),
        (0, 3, "thread", False),
        (3, 15, "thread", False),
        (1, 4, "process", True),
        (2, 7, "process", False),
    ],
)
def test_seeded_tails_are_the_same_with_any_worker_count(
    epoch: int, k: int, backend: str, buffered: bool, nothing_left_running: None
) -> None:
    whole = list(seeded_work(0, buffered=buffered).iter(epoch=epoch))
    following = list(seeded_work(0, buffered=buffered).iter(epoch=epoch + 1))
    assert len(whole) >= 8
    assert not all(same(a, b) for a, b in zip(whole, following, strict=False))  # reshuffled
    counts = (0, 1, 3) if backend == "thread" else (0, 2)
    for workers in counts:
        pipeline = seeded_work(workers, backend, buffered=buffered)
        run = pipeline.iter(epoch=epoch)
        taken = [next(run) for _ in range(k)]
        state = roundtrip(run.state())
        run.close()
        assert (state["epoch"], state["position"]) == (epoch, k)
        # As after a restart: a new description of the pipeline.
        tail = list(seeded_work(workers, backend, buffered=buffered).iter(state=state))
        assert len(taken) + len(tail) == len(whole), workers
        assert all(same(a, b) for a, b in zip(taken + tail, whole, strict=True)), workers


@pytest.mark.parametrize("count", [2, 3])
def test_every_share_of_a_seeded_pipeline_resumes_exactly(
    count: int, data_files: dict[str, list[str]]
) -> None:
    files = data_files["parquet"][1:]  # 1, 5 and 12 rows: three files to split
    numbers = hr.range(17).global_shuffle().map(bump).shuffle(5).filter(keep).with_seed(5)
    wholes: list[hr.Pipeline[Any]] = [
        numbers,
        hr.read_parquet(files).shuffle(4).random_map(jitter).with_seed(5),  # split by file
        hr.read_tar_shards(data_files["tar"][-2:]).enumerate().random_map(jitter).with_seed(6),
    ]
    for whole in wholes:
        lengths = []
        for index in range(count):
            share = whole.shard(count, index)
            lengths.append(length := len(list(share.iter(epoch=2))))
            for k in sorted({0, 1, length // 2, length, length + 1}):
                check_resume(share, 2, k)
        assert sum(lengths) == len(list(whole.iter(epoch=2))) > 0
    shared = [x for index in range(count) for x in numbers.shard(count, index).iter(epoch=2)]
    assert sorted(shared) == sorted(numbers.iter(epoch=2))


def test_this_processs_share_resumes_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    pipeline = hr.range(40).shuffle(6).random_map(jitter).shard().with_seed(2)
    assert len(list(pipeline.iter(epoch=1))) == 13
    for k in (0, 6, 13, 14):
        check_resume(pipeline, 1, k)


# -- 3. boundaries --------------------------------------------------------------------


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


@pytest.mark.parametrize("where", ["memory", "file"])
def test_a_resumed_run_leaves_the_cache_to_the_next_whole_run(where: str, tmp_path: Path) -> None:
    # The resumed run never sees the first elements, so it cannot cache the epoch.
    shuffled = hr.range(12).shuffle(12, seed=3)
    pipeline = shuffled.cache(tmp_path / "c" if where == "file" else None)
    run = pipeline.iter(epoch=2)
    taken = [next(run) for _ in range(5)]
    run.close()  # not a complete run: the cache stays empty
    rest = list(pipeline.iter(state=run.state()))
    assert taken + rest == list(shuffled.iter(epoch=2))
    seventh = list(shuffled.iter(epoch=7))
    assert list(pipeline.iter(epoch=7)) == seventh  # filled now
    assert list(pipeline.iter(epoch=8)) == seventh  # and replayed
    assert list(tmp_path.iterdir()) == ([tmp_path / "c"] if where == "file" else [])


# -- 4. the state is small, plain JSON ------------------------------------------------


@pytest.mark.parametrize(("buffer", "most"), [(None, 300), (1000, 10_000), (10_000, 60_000)])
def test_state_is_small_plain_json(buffer: int | None, most: int) -> None:
    # Counts only, whatever the position; a shuffle adds its generator's state (about
    # 3.3 kB) and about 5.3 characters per buffered element.
    pipeline = hr.range(10**6).map(lambda x: x + 1, workers=2)
    if buffer is not None:
        pipeline = pipeline.shuffle(buffer, seed=1)
    pipeline = pipeline.batch(32)
    with pipeline.iter(epoch=12) as run:
        for _ in range(400):
            next(run)
        state = run.state()
    assert json.loads(json.dumps(state)) == state
    assert len(json.dumps(state)) < most
    assert state["format"] == "headrace.run-state/3"
    assert isinstance(state["pipeline"], str)
    assert (state["epoch"], state["position"]) == (12, 400)


# -- 5. refusals ----------------------------------------------------------------------


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
    # The format is read first; any other edit shows in the check.
    edited = message if field == "format" else "its 'check' does not match the rest"
    with pytest.raises(ValueError, match=edited):
        pipeline.iter(state=state)
    state["check"] = state_check(state)  # an edit on purpose: the field is checked too
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
    state["check"] = state_check(state)
    with pytest.raises(ValueError, match=r"element 11 of epoch 2.*yields only 10"):
        pipeline.iter(state=state)
    threaded = hr.range(10).map(bump, workers=2).prefetch(2)
    with threaded.iter(epoch=2) as run:
        state = run.state()
    state["position"] = 11
    state["check"] = state_check(state)
    with pytest.raises(ValueError, match=r"element 11 of epoch 2.*yields only 10"):
        threaded.iter(state=state)


def test_epoch_and_state_together_are_refused() -> None:
    pipeline, state = good_state()
    with pytest.raises(ValueError, match="epoch= or state="):
        pipeline.iter(epoch=2, state=state)


# -- 6. nothing left running ----------------------------------------------------------


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


# -- 7. a training process killed mid-epoch -------------------------------------------

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
