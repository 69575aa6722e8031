"""How ``headrace inspect`` reads each format: one dataset report per format found.

CSV, JSON Lines, Parquet, tar shards and image folders each have an inspector here
(:data:`INSPECTORS` for the formats of files, :func:`inspect_images` for image folders),
and :func:`_plain` keeps the sample records short and JSON-safe.
"""

from __future__ import annotations

import csv
import itertools
import math
import os
import warnings
from collections import Counter
from collections.abc import Callable
from typing import IO, Any, Final, cast

import numpy as np

from headrace.pipeline import Pipeline
from headrace.sources.files import is_url, open_binary

__all__ = ["COMPRESSIONS", "INSPECTORS", "PROBLEMS", "SNIFF", "inspect_images"]

#: Problems listed per dataset; the counts cover every one.
PROBLEMS: Final = 10
#: Characters of a text value kept in a sample.
_VALUE: Final = 40
#: Rows of a CSV file classified at a time.
_CSV_BATCH: Final = 4096
#: Items of a list, and keys of a dict, kept in a sample.
_ITEMS: Final = 8
#: The suffixes of compressed files, read through and left off to tell the format.
COMPRESSIONS: Final = (".gz", ".bz2", ".xz", ".lzma")
# The spellings read_csv reads as booleans, but for 1 and 0, which are shown as ints.
_BOOLS: Final = frozenset({"True", "TRUE", "true", "False", "FALSE", "false"})
#: Bytes of a ``.json`` file's first line read to tell JSON Lines from one JSON document.
SNIFF: Final = 1 << 20


def _size(path: str) -> int | None:
    if is_url(path):
        return None
    try:
        return os.path.getsize(path)
    except OSError:
        return None


def _dataset(kind: str, paths: list[str]) -> dict[str, Any]:
    sizes = [_size(p) for p in paths]
    return {
        "kind": kind,
        "files": len(paths),
        "bytes": None if None in sizes else sum(s or 0 for s in sizes),
        "records": 0,
        "rejected": 0,
        "stopped_early": False,
        "problems": [],
        "samples": [],
        "per_file": [
            {"path": p, "bytes": s, "records": None, "rejected": 0}
            for p, s in zip(paths, sizes, strict=True)
        ],
    }


def _note(report: dict[str, Any], problems: list[str]) -> None:
    listed: list[str] = report["problems"]
    listed.extend(problems[: PROBLEMS - len(listed)])


def _read(
    report: dict[str, Any],
    pipeline_of: Callable[[str], Pipeline[Any]],
    take: Callable[[Any], None],
    *,
    samples: int,
    limit: int | None,
    batches: bool = False,
) -> None:
    """Read the report's files one by one, each by its own run, into the report.

    With ``batches``, the elements are dicts of columns (``batch_size=`` readers): the
    counts and samples are of their rows.
    """
    shown: list[Any] = report["samples"]
    records = 0
    for entry in report["per_file"]:
        if limit is not None and records >= limit:
            report["stopped_early"] = True
            break
        path, count = entry["path"], 0
        try:
            with pipeline_of(path).iter(stats=True) as run:
                for element in run:
                    room = None if limit is None else limit - records
                    if room is not None and room <= 0:
                        report["stopped_early"] = True
                        break
                    if batches:
                        rows = len(next(iter(element.values())))
                        if room is not None and rows > room:
                            element = {k: v[:room] for k, v in element.items()}
                            rows = room
                            report["stopped_early"] = True
                        wanted = min(samples - len(shown), rows)
                        firsts = [{k: v[i] for k, v in element.items()} for i in range(wanted)]
                    else:
                        rows, firsts = 1, [element][: samples - len(shown)]
                    take(element)
                    shown.extend(map(_plain, firsts))
                    count += rows
                    records += rows
                tally = next((row for row in run.stats() if "rejected" in row), {})
        except Exception as error:
            # What the reader's policy does not cover (a file gone since it was
            # listed, say) is this file's problem, not the end of the report.
            reason = str(error) or type(error).__name__  # a bare MemoryError says nothing
            tally = {"rejected": 1, "examples": [f"{path}: cannot read the file: {reason}"]}
        entry["records"] = count
        entry["rejected"] = tally.get("rejected", 0)
        report["rejected"] += entry["rejected"]
        _note(report, tally.get("examples", []))
    report["records"] = records


def _inspect_csv(paths: list[str], *, samples: int, limit: int | None) -> dict[str, Any]:
    from headrace.readers import read_csv

    columns: dict[Any, Counter[str]] = {}

    def take(batch: dict[Any, np.ndarray]) -> None:
        for key, values in batch.items():
            counts = columns.get(key)
            if counts is None:
                counts = columns[key] = Counter()
            counts.update(_cell_types(values))

    def pipeline_of(path: str) -> Pipeline[Any]:
        # Batches: a column's types are tried on the whole array at once.
        delimiter = _delimiter(path)
        return read_csv(
            path, delimiter=delimiter, dtype=str, batch_size=_CSV_BATCH, on_error="skip"
        )

    report = _dataset("csv", paths)
    _read(report, pipeline_of, take, samples=samples, limit=limit, batches=True)
    for entry in report["per_file"]:
        if entry["records"] == 0 and entry["rejected"] == 0:  # a header alone, or empty
            for name in _csv_header(entry["path"]):
                columns.setdefault(name, Counter())
    report["columns"] = [
        {
            "name": str(name),
            "type": _column_type(counts),
            "values": {k: counts[k] for k in ("int", "float", "bool", "text") if counts[k]},
            "empty": counts["empty"],
        }
        for name, counts in columns.items()
    ]
    return report


def _delimiter(path: str) -> str:
    name = path.lower()
    for suffix in COMPRESSIONS:
        name = name.removesuffix(suffix)
    return "\t" if name.endswith(".tsv") else ","


def _csv_header(path: str) -> list[str]:
    """The column names of a CSV file's first row, as read_csv names them."""
    from headrace.sources.csv.common import unique_names

    try:
        with open_binary(path) as stream:
            line = stream.readline(SNIFF).decode("utf-8-sig", "replace")
    except (OSError, EOFError):
        return []
    rows = list(csv.reader([line], delimiter=_delimiter(path)))
    return unique_names(rows[0]) if rows and rows[0] else []


def _cell_type(value: str) -> str:
    """What a CSV value would convert to: ``int``, ``float``, ``bool``, ``text``, ``empty``.

    >>> [_cell_type(v) for v in ["12", "-1.5e3", "nan", "true", "N/A", " "]]
    ['int', 'float', 'float', 'bool', 'text', 'empty']
    """
    text = value.strip()
    if not text:
        return "empty"
    if text in _BOOLS:
        return "bool"
    try:
        int(text)
    except ValueError:
        pass
    else:
        return "int"
    try:
        float(text)
    except ValueError:
        return "text"
    return "float"


def _cell_types(values: np.ndarray) -> Counter[str]:
    """The :func:`_cell_type` counts of a column of text, by whole-array conversion where
    every value converts alike (the common case), else value by value.

    >>> import numpy as np
    >>> _cell_types(np.array(["1", "2"], dtype=object)), _cell_types(np.array(["1", ""]))
    (Counter({'int': 2}), Counter({'int': 1, 'empty': 1}))
    """
    for kind, dtype in (("int", np.int64), ("float", np.float64)):
        try:
            values.astype(dtype)
        except (ValueError, TypeError, OverflowError):
            continue
        return Counter({kind: len(values)})
    kinds: Counter[str] = Counter()
    for value, count in Counter(values.tolist()).items():  # text repeats: classify it once
        kinds[_cell_type(value)] += count
    return kinds


def _column_type(counts: Counter[str]) -> str:
    seen = {kind for kind in ("int", "float", "bool", "text") if counts[kind]}
    if not seen:
        return "empty"
    if seen == {"int"} or seen == {"bool"}:
        return seen.pop()
    return "float" if seen == {"int", "float"} or seen == {"float"} else "text"


def _inspect_jsonl(paths: list[str], *, samples: int, limit: int | None) -> dict[str, Any]:
    from headrace.readers import read_jsonl

    keys: dict[str, Counter[str]] = {}
    others: Counter[str] = Counter()

    def take(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                counts = keys.get(key)
                if counts is None:
                    counts = keys[key] = Counter()
                counts[type(item).__name__ if item is not None else "null"] += 1
        else:
            others[type(value).__name__ if value is not None else "null"] += 1

    report = _dataset("jsonl", paths)
    _read(report, lambda p: read_jsonl(p, on_error="skip"), take, samples=samples, limit=limit)
    report["keys"] = [
        {"name": key, "count": sum(counts.values()), "types": dict(counts.most_common())}
        for key, counts in keys.items()
    ]
    report["not_objects"] = dict(others.most_common())
    return report


def _inspect_tar(paths: list[str], *, samples: int, limit: int | None) -> dict[str, Any]:
    from headrace.readers import read_tar_shards

    fields: dict[str, list[int]] = {}  # name -> [samples with it, bytes]
    layouts: Counter[tuple[str, ...]] = Counter()

    def take(sample: dict[str, Any]) -> None:
        names = tuple(sorted(k for k in sample if not k.startswith("__")))
        layouts[names] += 1
        for name in names:
            counts = fields.setdefault(name, [0, 0])
            counts[0] += 1
            counts[1] += len(sample[name])

    def pipeline_of(path: str) -> Pipeline[Any]:
        # The shard's path is in the report already; a sample shows its key and fields.
        return read_tar_shards(path, on_error="skip").map(_without_url)

    report = _dataset("tar", paths)
    _read(report, pipeline_of, take, samples=samples, limit=limit)
    report["fields"] = [
        {"name": name, "count": count, "bytes": size}
        for name, (count, size) in sorted(fields.items(), key=lambda item: (-item[1][0], item[0]))
    ]
    report["layouts"] = [
        {"fields": list(names), "count": count} for names, count in layouts.most_common(5)
    ]
    return report


def _without_url(sample: dict[str, Any]) -> dict[str, Any]:
    sample.pop("__url__", None)
    return sample


def _inspect_parquet(paths: list[str], *, samples: int, limit: int | None) -> dict[str, Any]:
    """Counts and schema from the file footers; only the samples are read from the data."""
    try:
        import pyarrow as pa  # type: ignore[import-untyped]  # optional: the "arrow" extra
        import pyarrow.parquet as pq  # type: ignore[import-untyped]
    except ImportError:
        raise ImportError(
            "inspecting Parquet needs pyarrow: pip install 'headrace[arrow]'"
        ) from None
    from headrace.readers import read_parquet

    report = _dataset("parquet", paths)
    columns: dict[str, dict[str, Any]] = {}
    first = ""
    readable: list[str] = []
    problems: list[str] = []
    groups = 0
    for entry in report["per_file"]:
        path = entry["path"]
        try:
            with open_binary(path) as stream:
                if not stream.seekable():
                    raise OSError("compressed as a whole (.gz, .bz2, .xz), so it cannot be read")
                parquet = pq.ParquetFile(stream)
                metadata, schema = parquet.metadata, parquet.schema_arrow
        except OSError as error:
            problems.append(f"{path}: cannot open the file: {error.strerror or error}")
        except pa.ArrowException as error:
            problems.append(f"{path}: not a readable Parquet file ({' '.join(str(error).split())})")
        else:
            readable.append(path)
            entry["records"] = metadata.num_rows
            report["records"] += metadata.num_rows
            groups += metadata.num_row_groups
            nulls = _null_counts(metadata)
            for column in schema:
                kind = str(column.type)
                known = columns.get(column.name)
                if known is None:
                    if first:
                        problems.append(f"{path}: has column {column.name!r}, {first} has not")
                    columns[column.name] = {
                        "name": column.name,
                        "type": kind,
                        "nullable": bool(column.nullable),
                        "nulls": nulls.get(column.name),
                    }
                elif known["type"] != kind:
                    problems.append(
                        f"{path}: column {column.name!r} is {kind}, but {known['type']} in {first}"
                    )
                elif known["nulls"] is not None:
                    count = nulls.get(column.name)
                    known["nulls"] = None if count is None else known["nulls"] + count
            first = first or path
            continue
        entry["rejected"] = 1
        report["rejected"] += 1
    report["row_groups"] = groups
    report["columns"] = list(columns.values())
    _note(report, problems)
    if readable and samples:
        wanted = samples if limit is None else min(samples, limit)
        with read_parquet(readable, on_error="skip").iter(stats=True) as run:
            report["samples"] = [_plain(row) for row in itertools.islice(run, wanted)]
            tally = next((row for row in run.stats() if "rejected" in row), {})
        report["rejected"] += tally.get("rejected", 0)
        _note(report, tally.get("examples", []))
    return report


def _null_counts(metadata: Any) -> dict[str, int]:
    """Nulls per top-level column from the row groups' statistics, where every group has them."""
    counts: dict[str, int] = {}
    missing: set[str] = set()
    for group in range(metadata.num_row_groups):
        row_group = metadata.row_group(group)
        for index in range(row_group.num_columns):
            chunk = row_group.column(index)
            name = chunk.path_in_schema
            stats = chunk.statistics
            if "." in name or stats is None or not stats.has_null_count:
                missing.add(name.split(".")[0])
                continue
            counts[name] = counts.get(name, 0) + stats.null_count
    return {name: count for name, count in counts.items() if name not in missing}


def inspect_images(root: str, *, samples: int, limit: int | None, check: int) -> dict[str, Any]:
    """The dataset report of the image folder at ``root``: the classes with their image
    counts, and the formats, modes and sizes of up to ``check`` images, decoded from all
    over the folder."""
    from headrace.readers import image_folder

    folder = image_folder(root)
    classes = folder.classes
    counts = [0] * len(classes)
    items: list[tuple[str, int]] = []
    stopped = False
    with folder.iter() as run:
        for path, label in run:
            if limit is not None and len(items) >= limit:
                stopped = True
                break
            items.append((path, label))
            counts[label] += 1
    sizes = [_size(path) for path, _ in items]
    report: dict[str, Any] = {
        "kind": "images",
        "files": len(items),
        "bytes": None if None in sizes else sum(s or 0 for s in sizes),
        "records": len(items),
        "rejected": 0,
        "stopped_early": stopped,
        "problems": [],
        "samples": [],
        "classes": [
            {"name": name, "count": count} for name, count in zip(classes, counts, strict=True)
        ],
    }
    problems = [
        f"{_join(root, name)}: class folder with no images"
        for name, count in zip(classes, counts, strict=True)
        if not count and not stopped
    ]
    chosen = _spread(items, check)
    formats: Counter[str] = Counter()
    modes: Counter[str] = Counter()
    shapes: Counter[str] = Counter()
    widths: list[int] = []
    heights: list[int] = []
    for path, _ in chosen:
        info = _check_image(path)
        if isinstance(info, str):
            problems.append(info)
            report["rejected"] += 1
            continue
        image_format, mode, (width, height) = info
        formats[image_format] += 1
        modes[mode] += 1
        shapes[f"{width}x{height}"] += 1
        widths.append(width)
        heights.append(height)
    report["images"] = {
        "checked": len(chosen),
        "decoded": len(chosen) - report["rejected"],
        "formats": dict(formats.most_common()),
        "modes": dict(modes.most_common()),
        "sizes": dict(shapes.most_common(5)),
        "width": [min(widths), max(widths)] if widths else None,
        "height": [min(heights), max(heights)] if heights else None,
    }
    report["other_files"] = _other_files(root, classes)
    report["samples"] = [
        {"path": _relative(path, root), "class": classes[label]}
        for path, label in _spread(items, samples)
    ]
    _note(report, problems)
    return report


def _spread(items: list[Any], count: int) -> list[Any]:
    """Up to ``count`` of ``items``, evenly spaced from the first: every class gets its share.

    >>> _spread(list(range(10)), 3), _spread([1, 2], 5)
    ([0, 3, 6], [1, 2])
    """
    if count >= len(items):
        return list(items)
    return [items[i * len(items) // count] for i in range(count)]


def _check_image(path: str) -> tuple[str, str, tuple[int, int]] | str:
    """``(format, mode, (width, height))`` of an image that decodes, else why it does not."""
    from PIL import Image

    from headrace.errors import DecodeError
    from headrace.vision.decode import decode

    try:
        with warnings.catch_warnings():
            # A warning about the data is the same problem as its error: decode raises.
            warnings.simplefilter("ignore")
            decode(path)
            with open_binary(path) as stream, Image.open(cast("IO[bytes]", stream)) as image:
                return str(image.format), image.mode, image.size
    except DecodeError as error:
        return str(error)
    except OSError as error:
        return f"{path}: cannot open the file: {error.strerror or error}"


def _other_files(root: str, classes: tuple[str, ...]) -> dict[str, int]:
    """Files in the class folders that are not named as images, by extension."""
    from headrace.sources.images import IMAGE_EXTENSIONS

    if is_url(root):
        return {}
    found: Counter[str] = Counter()
    for name in classes:
        for _, subfolders, names in os.walk(os.path.join(root, name)):
            subfolders[:] = [s for s in subfolders if not s.startswith(".")]
            for file_name in names:
                if not file_name.startswith(".") and not file_name.lower().endswith(
                    IMAGE_EXTENSIONS
                ):
                    found[os.path.splitext(file_name)[1].lower() or "(none)"] += 1
    return dict(found.most_common())


def _join(root: str, name: str) -> str:
    return f"{root.rstrip('/')}/{name}" if is_url(root) else os.path.join(root, name)


def _relative(path: str, root: str) -> str:
    return path[len(root) :].lstrip("/") if is_url(root) else os.path.relpath(path, root)


#: The inspector of each format of files: its paths, ``samples=`` and ``limit=`` in,
#: the dataset report out.
INSPECTORS: Final[dict[str, Callable[..., dict[str, Any]]]] = {
    "csv": _inspect_csv,
    "jsonl": _inspect_jsonl,
    "parquet": _inspect_parquet,
    "tar": _inspect_tar,
}


# -- samples as plain data -----------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A short, JSON-safe copy of a record: long text cut, bytes shown by size.

    >>> _plain({"text": "x" * 50, "data": b"\\xff" * 300, "cls": b"3", "n": float("nan")})
    {'text': 'xxx...', 'data': '<300 bytes>', 'cls': '3', 'n': 'nan'}
    """
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return value if len(value) <= _VALUE else value[: _VALUE - 1] + "..."
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        if len(data) <= _VALUE:
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                pass
            else:
                if text.isprintable():
                    return text
        return f"<{len(data):,} bytes>"
    if isinstance(value, dict):
        out = {str(k): _plain(v) for k, v in list(value.items())[:_ITEMS]}
        if len(value) > _ITEMS:
            out["..."] = f"{len(value) - _ITEMS} more keys"
        return out
    if isinstance(value, list | tuple):
        items = [_plain(v) for v in value[:_ITEMS]]
        return [*items, f"... {len(value) - _ITEMS} more"] if len(value) > _ITEMS else items
    item = getattr(value, "item", None)  # a numpy scalar
    if callable(item) and getattr(value, "ndim", None) == 0:
        return _plain(item())
    return _plain(str(value))
