"""The text ``headrace inspect`` prints: the report of
:func:`~headrace.inspecting.inspect_path` as aligned lines for a person to read.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final

#: Characters of a sample line kept; a longer line is cut.
_LINE: Final = 110


def format_report(report: dict[str, Any]) -> str:
    """The report of :func:`inspect_path` as aligned text for a person to read.

    >>> print(format_report({"path": "rows.jsonl", "problems": [], "ignored": 0, "datasets": [
    ...     {"kind": "jsonl", "files": 1, "bytes": 2048, "records": 1200, "rejected": 0,
    ...      "stopped_early": False, "problems": [], "samples": [{"x": 1}],
    ...      "keys": [{"name": "x", "count": 1200, "types": {"int": 1200}}],
    ...      "not_objects": {}}]}))
    rows.jsonl
      format    JSON Lines: 1 file, 2.0 KiB
      records   1,200
      keys      name  records  types
                x       1,200  int 1,200
      samples   {"x": 1}
    """
    lines = [report["path"]]
    for part in report["datasets"]:
        lines.extend(_format_dataset(part))
    left_out = list(report["problems"])
    if report["ignored"]:
        left_out.insert(0, f"{report['ignored']:,} file(s) in other formats")
    lines.extend(_field("left out", left_out))
    return "\n".join(lines)


_NAMES: Final = {
    "csv": "CSV",
    "jsonl": "JSON Lines",
    "parquet": "Parquet",
    "tar": "tar shards",
    "images": "image folder",
}


def _format_dataset(part: dict[str, Any]) -> Iterator[str]:
    kind, files = part["kind"], part["files"]
    what = f"{files:,} {'image' if kind == 'images' else 'file'}{'' if files == 1 else 's'}"
    if part["bytes"] is not None:
        what += f", {_bytes(part['bytes'])}"
    if kind == "parquet":
        what += f", {part['row_groups']:,} row group(s)"
    yield f"  format    {_NAMES[kind]}: {what}"
    records = f"{part['records']:,}" + (" (from the file footers)" if kind == "parquet" else "")
    if part["stopped_early"]:
        unread = sum(e["records"] is None for e in part.get("per_file", []))
        records += f" (stopped at --limit {part['records']:,}"
        records += f"; {unread} file(s) not read)" if unread else ")"
    yield f"  records   {records}"
    if part["rejected"]:
        yield f"  rejected  {part['rejected']:,}"
    yield from _BODIES[kind](part)
    yield from _field("samples", [_sample_line(s) for s in part["samples"]])
    yield from _field("problems", part["problems"])


def _csv_text(part: dict[str, Any]) -> Iterator[str]:
    rows = [("name", "type", "values", "empty")]
    for c in part["columns"]:
        rows.append((c["name"], c["type"], _counts(c["values"]) or "-", f"{c['empty']:,}"))
    yield from _field("columns", _table(rows, right={3}))


def _jsonl_text(part: dict[str, Any]) -> Iterator[str]:
    rows = [("name", "records", "types")]
    rows += [(k["name"], f"{k['count']:,}", _counts(k["types"])) for k in part["keys"]]
    yield from _field("keys", _table(rows, right={1}) if part["keys"] else [])
    if part["not_objects"]:
        yield f"  others    {_counts(part['not_objects'])} (records that are not JSON objects)"


def _parquet_text(part: dict[str, Any]) -> Iterator[str]:
    rows = [("name", "type", "nulls")]
    for c in part["columns"]:
        rows.append((c["name"], c["type"], "?" if c["nulls"] is None else f"{c['nulls']:,}"))
    yield from _field("columns", _table(rows, right={2}))


def _tar_text(part: dict[str, Any]) -> Iterator[str]:
    fields = [f"{f['name']} {f['count']:,} ({_bytes(f['bytes'])})" for f in part["fields"]]
    yield from _field("fields", [", ".join(fields)])
    if len(part["layouts"]) > 1:  # not every sample has the same fields
        shown = [f"{'+'.join(x['fields']) or '(none)'}: {x['count']:,}" for x in part["layouts"]]
        yield from _field("layouts", shown)


def _images_text(part: dict[str, Any]) -> Iterator[str]:
    rows = [(c["name"], f"{c['count']:,}") for c in part["classes"]]
    yield from _field("classes", _table(rows, right={1}))
    images = part["images"]
    if images["checked"]:
        failed = images["checked"] - images["decoded"]
        yield f"  decoded   {images['decoded']:,} of {images['checked']:,} checked" + (
            f", {failed:,} failed" if failed else ""
        )
    if images["decoded"]:
        yield f"  formats   {_counts(images['formats'])}"
        yield f"  modes     {_counts(images['modes'])}"
        (w0, w1), (h0, h1) = images["width"], images["height"]
        yield f"  sizes     {_counts(images['sizes'])} (width {w0}-{w1}, height {h0}-{h1})"
    if part["other_files"]:
        yield f"  other     files not named as images, left out: {_counts(part['other_files'])}"


_BODIES: Final[dict[str, Callable[[dict[str, Any]], Iterator[str]]]] = {
    "csv": _csv_text,
    "jsonl": _jsonl_text,
    "parquet": _parquet_text,
    "tar": _tar_text,
    "images": _images_text,
}


def _field(label: str, lines: list[str]) -> Iterator[str]:
    for index, line in enumerate(lines):
        yield f"  {label if index == 0 else '':<10}{line}".rstrip()


def _table(rows: Sequence[Sequence[str]], *, right: set[int]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {count:,}" for name, count in counts.items())


def _sample_line(sample: Any) -> str:
    line = json.dumps(sample, ensure_ascii=False)
    return line if len(line) <= _LINE else line[: _LINE - 3] + "..."


def _bytes(size: int) -> str:
    """``size`` bytes for a person.

    >>> _bytes(512), _bytes(2048), _bytes(3 * 1024**3)
    ('512 B', '2.0 KiB', '3.0 GiB')
    """
    amount = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < 1024 or unit == "GiB":
            return f"{size} B" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    raise AssertionError("unreachable")  # pragma: no cover
