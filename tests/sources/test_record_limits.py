"""Every reader holds one record at most ``max_record_bytes``, whatever a file holds.

The bombs are small files that expand to one record of gigabytes. They are read in a
child process whose address space is limited to 1 GiB, so a reader that built the
record would die of ``MemoryError`` instead of rejecting it.
"""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import sys
import tarfile
import zlib
from pathlib import Path

import pytest

import headrace as hr

pytestmark = pytest.mark.timeout(300)

#: More than the child's whole address space.
BOMB_BYTES = 3 << 29  # 1.5 GiB
_PIECE = b"a" * (1 << 20)
#: The fields of a sample with both its members.
WHOLE = ["__key__", "__url__", "bin", "cls"]


class _Repeat(io.RawIOBase):
    """``size`` bytes of one repeated piece, read in pieces (never held whole)."""

    def __init__(self, size: int) -> None:
        self._left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        count = min(len(buffer), self._left, len(_PIECE))
        buffer[:count] = _PIECE[:count]
        self._left -= count
        return count


def _write_gzip_bomb(path: Path, head: bytes, tail: bytes) -> None:
    """``head``, one line of BOMB_BYTES, ``tail``: gzip compresses it a thousandfold."""
    squeeze = zlib.compressobj(1, zlib.DEFLATED, 31)
    with path.open("wb") as out:
        out.write(squeeze.compress(head))
        for _ in range(BOMB_BYTES // len(_PIECE)):
            out.write(squeeze.compress(_PIECE))
        out.write(squeeze.compress(b"\n" + tail))
        out.write(squeeze.flush())


@pytest.fixture(scope="module")
def bombs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bombs")
    text = folder / "lines.txt.gz"
    _write_gzip_bomb(text, b"first\n", b"after\n")
    rows = folder / "rows.jsonl.gz"
    _write_gzip_bomb(rows, b'{"n": 1}\n', b'{"n": 2}\n')
    table = folder / "rows.csv.gz"
    _write_gzip_bomb(table, b"a,b\n1,x\n2,", b"3,z\n")
    shard = folder / "shard.tar.gz"
    with tarfile.open(shard, "w:gz", compresslevel=1) as archive:
        for key, size in [("a", 3), ("b", BOMB_BYTES), ("c", 3)]:
            member = tarfile.TarInfo(f"{key}.bin")
            member.size = size
            archive.addfile(member, io.BufferedReader(_Repeat(size)))
            label = tarfile.TarInfo(f"{key}.cls")
            label.size = 1
            archive.addfile(label, io.BytesIO(b"7"))
    return {"text": text, "jsonl": rows, "tar": shard, "csv": table}


# The child limits its address space to 1 GiB, then reads under both policies.
_CHILD = """
import functools, json, resource, sys
import headrace as hr
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
reader = getattr(hr, sys.argv[1])
if sys.argv[3:]:
    reader = functools.partial(reader, engine=sys.argv[3])
path = sys.argv[2]
out = {}


def plain(record):
    if isinstance(record, dict) and "__key__" in record:
        return sorted(record)
    if isinstance(record, dict):
        return {key: getattr(value, "item", lambda v=value: v)() for key, value in record.items()}
    return record


try:
    list(reader(path))
    out["raise"] = None
except hr.ParseError as error:
    out["raise"] = str(error)
run = iter(reader(path, on_error="skip"))
records = list(run)
out["skip"] = [plain(r) for r in records]
stats = run.stats()[0]
out["stats"] = [stats["read"], stats["items_out"], stats["rejected"]]
print(json.dumps(out))
"""


def _read_limited(reader: str, path: Path, *extra: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, reader, str(path), *extra],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, object] = json.loads(done.stdout)
    return result


@pytest.mark.parametrize(
    ("reader", "kind", "where", "kept"),
    [
        (
            "read_csv:python",
            "csv",
            " row 2: the row is 1,610,612,738 bytes",
            [{"a": 1, "b": "x"}, {"a": 3, "b": "z"}],
        ),
        (
            "read_csv:pyarrow",
            "csv",
            " row 2: the row is 1,610,612,738 bytes",
            [{"a": 1, "b": "x"}, {"a": 3, "b": "z"}],
        ),
        ("text_lines", "text", ":2: the line is 1,610,612,736 bytes", ["first", "after"]),
        ("read_jsonl", "jsonl", ":2: the line is 1,610,612,736 bytes", [{"n": 1}, {"n": 2}]),
        (
            "read_tar_shards",
            "tar",
            " member 'b.bin': the member is 1,610,612,736 bytes",
            [WHOLE, ["__key__", "__url__", "cls"], WHOLE],
        ),
    ],
)
def test_a_record_of_gigabytes_is_rejected_in_a_1_gib_address_space(
    bombs: dict[str, Path], reader: str, kind: str, where: str, kept: list[object]
) -> None:
    path = bombs[kind]
    assert path.stat().st_size < 20 << 20  # it is the expansion that is huge
    name, *engine = reader.split(":")
    result = _read_limited(name, path, *engine)
    message = str(result["raise"])
    assert message.startswith(f"{path}{where}, more than max_record_bytes="), message
    assert "pass a larger max_record_bytes=" in message
    assert result["skip"] == kept  # the run went on to the next record
    read, yielded, rejected = result["stats"]  # type: ignore[misc]
    assert (yielded, rejected) == (len(kept), 1)
    assert read == yielded + rejected


@pytest.mark.parametrize("limit", [1, 3, 4, 5, 70_000, 200_000])
def test_text_lines_rejects_exactly_the_lines_over_the_limit(tmp_path: Path, limit: int) -> None:
    sizes = [0, 3, 4, 5, 65_535, 65_536, 65_537, 150_000, 2, 300_000, 4]
    lines = ["x" * size for size in sizes]
    path = tmp_path / "sizes.txt.gz"
    with gzip.open(path, "wt") as out:
        out.write("\n".join(lines))  # the last line has no newline
    run = iter(hr.text_lines(str(path), max_record_bytes=limit, on_error="skip"))
    assert list(run) == [line for line in lines if len(line) <= limit]
    stats = run.stats()[0]
    assert stats["rejected"] == sum(size > limit for size in sizes)
    assert stats["read"] == len(sizes)


def test_a_run_resumed_after_a_long_line_goes_on_from_the_next(tmp_path: Path) -> None:
    path = tmp_path / "lines.txt"
    path.write_text("a\n" + "y" * 200_000 + "\nb\nc\n")
    pipeline = hr.text_lines(str(path), max_record_bytes=1000, on_error="skip")
    run = iter(pipeline)
    assert next(run) == "a"
    assert next(run) == "b"
    state = run.state()
    assert list(pipeline.iter(state=state)) == ["c"]


def test_read_jsonl_and_tar_take_the_limit(tmp_path: Path) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"s": "' + "z" * 100 + '"}\n{"s": 1}\n')
    with pytest.raises(hr.ParseError, match=r"rows.jsonl:1: the line is 109 bytes, more than"):
        list(hr.read_jsonl(str(rows), max_record_bytes=50))
    assert list(hr.read_jsonl(str(rows), max_record_bytes=109)) == [{"s": "z" * 100}, {"s": 1}]
    with pytest.raises(ValueError, match="max_record_bytes must be at least 1, got 0"):
        hr.read_tar_shards(str(tmp_path / "*.tar"), max_record_bytes=0)
    with pytest.raises(TypeError, match="max_record_bytes must be an int"):
        hr.text_lines(str(rows), max_record_bytes=1e6)  # type: ignore[arg-type]


@pytest.mark.parametrize("engine", ["python", "pyarrow"])
@pytest.mark.parametrize("name", ["rows.csv", "rows.csv.gz", "quoted.csv"])
def test_both_csv_engines_reject_the_same_long_rows(tmp_path: Path, engine: str, name: str) -> None:
    quote = '"' if name.startswith("quoted") else ""
    text = f"a,b\n1,{quote}x{quote}\n2,{'y' * 300_000}\n3,z\n4,{'w' * 900}\n"
    path = tmp_path / name
    path.write_bytes(gzip.compress(text.encode()) if name.endswith(".gz") else text.encode())
    for limit, kept in [(1000, [1, 3, 4]), (800, [1, 3]), (300_004, [1, 2, 3, 4])]:
        run = iter(hr.read_csv(str(path), engine=engine, max_record_bytes=limit, on_error="skip"))
        assert [int(row["a"]) for row in run] == kept, (limit, engine)
        assert run.stats()[0]["rejected"] == 4 - len(kept)
    # A field far over the csv module's own default limit reads the same by both.
    assert len(list(hr.read_csv(str(path), engine=engine))[1]["b"]) == 300_000


def test_read_parquet_passes_over_row_groups_over_the_limit(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "rows.parquet"
    table = pa.table(
        {"n": list(range(100)), "s": ["x" * 100 if i < 60 else "" for i in range(100)]}
    )
    pq.write_table(table, path, row_group_size=30)
    sizes = [pq.ParquetFile(path).metadata.row_group(i).total_byte_size for i in range(4)]
    limit = min(sizes[:2]) - 1  # the groups with long strings are over it
    pipeline = hr.read_parquet(str(path), max_record_bytes=limit, on_error="skip")
    run = iter(pipeline)
    assert [row["n"] for row in run] == list(range(60, 100))
    assert run.stats()[0]["rejected"] == 2
    with pytest.raises(
        hr.ParseError, match=r"rows\.parquet, rows 1 to 30: row group 0 \(30 rows\)"
    ):
        list(hr.read_parquet(str(path), max_record_bytes=limit))
    # Only the columns read count.
    narrow = hr.read_parquet(str(path), columns=["n"], max_record_bytes=limit)
    assert [row["n"] for row in narrow] == list(range(100))


def test_a_memory_error_in_a_reader_names_where_it_was(tmp_path: Path) -> None:
    # A JSON line of nested lists within a raised line limit that exhausts a small
    # address space as Python objects: the error is the process's, with a note.
    path = tmp_path / "rows.jsonl"
    path.write_text('{"n": 1}\n[' + "[1,2,3,4,5,6,7,8,9]," * 8_000_000 + "[]]\n")
    child = """
import resource, sys
import headrace as hr
pipeline = hr.read_jsonl(sys.argv[1], max_record_bytes=1 << 30)
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
try:
    list(pipeline)
except MemoryError as error:
    print("|".join(getattr(error, "__notes__", [])))
"""
    done = subprocess.run(
        [sys.executable, "-c", child, str(path)], capture_output=True, text=True, timeout=120
    )
    assert f"was reading {path}, around record 2 of it" in done.stdout, done.stderr[-2000:]
