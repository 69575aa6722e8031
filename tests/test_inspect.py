"""``headrace inspect``: reports on real files written by the libraries that write them.

CSV and Parquet files come from pandas (Parquet through pyarrow), tar shards from
webdataset's ``TarWriter``, images from Pillow, JSON Lines are written line by line;
the damage is real too (a row with a field too many, a line that is not JSON, a file
named ``.gz`` that is not gzip, a truncated JPEG, a text file named ``.jpg``, a shard
cut short). The command runs as a subprocess where its output and exit status are
the point; the functions behind it are called directly for the rest.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import webdataset as wds
from PIL import Image

from headrace.cli import main
from headrace.inspecting import format_report, inspect_path, kind_of

pytestmark = pytest.mark.timeout(60)


def headrace(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "headrace", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def write_csvs(folder: Path) -> None:
    """Two CSV files by pandas, one with a row too long; a folder and a fake gzip
    named like CSV files; a README."""
    folder.mkdir()
    pd.DataFrame(
        {
            "id": range(5),
            "price": [1.5, 2.0, None, 4.0, 5.25],
            "ok": [True, False, True, True, False],
            "name": ["a", "b", "c", "d", "e"],
        }
    ).to_csv(folder / "a.csv", index=False)
    with open(folder / "a.csv", "a") as file:
        file.write("9,1.0,True,too,many\n")  # data row 6
    pd.DataFrame(
        {"id": [5, 6, 7], "price": [1.0, 2.0, 3.0], "ok": [True] * 3, "name": ["x" * 90, "y", "z"]}
    ).to_csv(folder / "b.csv", index=False)
    (folder / "broken.csv").mkdir()
    (folder / "fake.csv.gz").write_text("id,price\n1,2\n")
    (folder / "README.md").write_text("the data")


def write_jsonl(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines))


def jpeg(size: tuple[int, int], mode: str = "RGB") -> bytes:
    stream = io.BytesIO()
    Image.new(mode, size, color=100).save(stream, format="JPEG")
    return stream.getvalue()


def write_images(root: Path) -> None:
    """cat: 2 JPEGs and a truncated one; dog: 3 JPEGs (one grey), a PNG, a text file
    named .jpg and a notes file; bird: empty."""
    for name in ("cat", "dog", "bird"):
        (root / name).mkdir(parents=True)
    for index in range(2):
        (root / "cat" / f"{index}.jpg").write_bytes(jpeg((32, 24)))
    whole = jpeg((64, 48))
    (root / "cat" / "cut.jpg").write_bytes(whole[: len(whole) // 2])
    for index in range(3):
        (root / "dog" / f"{index}.jpg").write_bytes(jpeg((40, 30), "L" if index == 0 else "RGB"))
    Image.new("RGB", (20, 10)).save(root / "dog" / "3.png")
    (root / "dog" / "text.jpg").write_text("not an image")
    (root / "dog" / "notes.txt").write_text("taken in 2024")


def write_shards(folder: Path, shards: int, per_shard: int) -> None:
    folder.mkdir()
    for shard in range(shards):
        with wds.TarWriter(str(folder / f"shard-{shard:03d}.tar")) as writer:
            for index in range(per_shard):
                sample: dict[str, Any] = {"__key__": f"s{shard}_{index:03d}", "jpg": jpeg((8, 8))}
                if (shard, index) != (1, 0):  # one sample lacks its class
                    sample["cls"] = str(index % 3)
                writer.write(sample)


# -- the command ---------------------------------------------------------------------------


def test_csv_folder_report_names_columns_types_and_bad_rows(tmp_path: Path) -> None:
    write_csvs(tmp_path / "data")
    done = headrace("inspect", str(tmp_path / "data"))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "CSV: 3 files" in out
    assert re.search(r"records\s+8\n", out)
    assert re.search(r"rejected\s+2\n", out)
    # pandas wrote the missing price as an empty cell: float values, one empty.
    assert re.search(r"id\s+int\s+int 8\s+0\n", out)
    assert re.search(r"price\s+float\s+float 7\s+1\n", out)
    assert re.search(r"ok\s+bool\s+bool 8\s+0\n", out)
    assert re.search(r"name\s+text\s+text 8\s+0\n", out)
    assert f"{tmp_path / 'data' / 'a.csv'} row 6: expected 4 fields, found 5" in out
    assert f"{tmp_path / 'data' / 'fake.csv.gz'}: the file is damaged" in out
    assert f"{tmp_path / 'data' / 'broken.csv'}: a folder, not a csv file" in out
    assert "1 file(s) in other formats" in out  # the README
    assert '{"id": "0", "price": "1.5", "ok": "True", "name": "a"}' in out
    assert len(re.findall(r'\{"id": ', out)) == 3  # three samples by default
    assert done.stderr == ""


def test_jsonl_report_as_json(tmp_path: Path) -> None:
    write_jsonl(
        tmp_path / "a.jsonl",
        ['{"text": "hi", "score": 1}', '{"text": "' + "w" * 200 + '", "score": 0.5}', "{oops"],
    )
    write_jsonl(tmp_path / "b.jsonl", ['{"text": null, "tags": ["x"]}', "", "[1, 2]"])
    done = headrace("inspect", str(tmp_path / "*.jsonl"), "--json", "--samples", "2")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    (part,) = report["datasets"]
    assert (part["kind"], part["files"], part["records"], part["rejected"]) == ("jsonl", 2, 4, 1)
    assert part["problems"] == [
        f"{tmp_path / 'a.jsonl'}:3: not valid JSON: Expecting property name enclosed in "
        "double quotes at column 2"
    ]
    keys = {key["name"]: (key["count"], key["types"]) for key in part["keys"]}
    assert keys == {
        "text": (3, {"str": 2, "null": 1}),
        "score": (2, {"int": 1, "float": 1}),
        "tags": (1, {"list": 1}),
    }
    assert part["not_objects"] == {"list": 1}
    assert [f["records"] for f in part["per_file"]] == [2, 2]
    # Two samples, the long text cut short.
    assert len(part["samples"]) == 2
    assert part["samples"][1]["text"].endswith("...")
    assert len(part["samples"][1]["text"]) < 50


def test_tar_shards_by_brace_pattern(tmp_path: Path) -> None:
    write_shards(tmp_path / "shards", shards=3, per_shard=4)
    cut = tmp_path / "shards" / "shard-002.tar"
    with tarfile.open(cut) as shard:  # members: s2_000.cls, s2_000.jpg, s2_001.cls, ...
        end = shard.getmembers()[3].offset_data + 100
    cut.write_bytes(cut.read_bytes()[:end])  # inside the second sample's jpg
    done = headrace("inspect", str(tmp_path / "shards" / "shard-{000..002}.tar"))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "tar shards: 3 files" in out
    assert re.search(r"records\s+9\n", out)
    assert re.search(r"rejected\s+1\n", out)
    assert re.search(r"fields\s+jpg 9 \([\d.]+ KiB\), cls 8 \(8 B\)", out)
    assert re.search(r"layouts\s+cls\+jpg: 8\n\s+jpg: 1\n", out)
    assert f"{cut}: the shard is damaged or cut short after member 's2_001.cls'" in out
    assert "sample 's2_001' dropped" in out
    assert '{"__key__": "s0_000", "cls": "0", "jpg": "<' in out


def test_image_folder_classes_sizes_and_bad_images(tmp_path: Path) -> None:
    root = tmp_path / "images"
    write_images(root)
    done = headrace("inspect", str(root))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "image folder: 8 images" in out
    assert re.search(r"classes\s+bird\s+0\n\s+cat\s+3\n\s+dog\s+5\n", out)
    assert re.search(r"decoded\s+6 of 8 checked, 2 failed", out)
    assert re.search(r"formats\s+JPEG 5, PNG 1", out)
    assert re.search(r"modes\s+RGB 5, L 1", out)
    assert "32x24 2" in out
    assert "width 20-40, height 10-30" in out
    assert f"cannot decode image {root / 'cat' / 'cut.jpg'}: " in out
    assert f"cannot decode image {root / 'dog' / 'text.jpg'}: not in a format" in out
    assert f"{root / 'bird'}: class folder with no images" in out
    assert "files not named as images, left out: .txt 1" in out


def test_missing_path_fails_in_one_line(tmp_path: Path) -> None:
    done = headrace("inspect", str(tmp_path / "nowhere" / "*.csv"))
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"headrace inspect: error: no files match {str(tmp_path / 'nowhere' / '*.csv')!r}"
    ]


def test_bad_option_is_a_usage_error(tmp_path: Path) -> None:
    done = headrace("inspect", str(tmp_path), "--format", "xml")
    assert done.returncode == 2
    assert "invalid choice: 'xml'" in done.stderr
    assert "Traceback" not in done.stderr


def test_nothing_readable_prints_the_report_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "rows.jsonl.gz").write_text('{"not": "gzip"}\n')
    assert main(["inspect", str(tmp_path / "rows.jsonl.gz")]) == 1
    out, err = capsys.readouterr()
    assert "rows.jsonl.gz:1: the file is damaged or cut short after line 0" in out
    assert err.startswith("headrace inspect: error: not one record of")
    assert len(err.splitlines()) == 1


def test_help_states_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["inspect", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--limit N" in out
    assert "0  the data was read; the problems found, if any, are listed" in out
    assert "1  nothing could be inspected" in out


# -- the functions -------------------------------------------------------------------------


def test_parquet_counts_and_schema_come_from_the_footers(tmp_path: Path) -> None:
    folder = tmp_path / "table"
    folder.mkdir()
    frame = pd.DataFrame({"x": [1, 2, None, 4], "label": ["a", None, "c", "d"]})
    frame.to_parquet(folder / "part-0.parquet", index=False, row_group_size=2)
    pd.DataFrame({"x": [5.0], "label": ["e"]}).to_parquet(folder / "part-1.parquet", index=False)
    (folder / "part-2.parquet").write_text("not parquet")
    report = inspect_path(folder, samples=2)
    (part,) = report["datasets"]
    assert (part["kind"], part["files"], part["records"], part["row_groups"]) == (
        "parquet",
        3,
        5,
        3,
    )
    assert part["rejected"] == 1
    text_type = str(pq.read_schema(folder / "part-0.parquet").field("label").type)
    assert part["columns"] == [
        {"name": "x", "type": "double", "nullable": True, "nulls": 1},
        {"name": "label", "type": text_type, "nullable": True, "nulls": 1},
    ]
    assert part["problems"][0].startswith(
        f"{folder / 'part-2.parquet'}: not a readable Parquet file ("
    )
    assert part["samples"] == [{"x": 1.0, "label": "a"}, {"x": 2.0, "label": None}]
    text = format_report(report)
    assert "Parquet: 3 files" in text
    assert re.search(r"records\s+5 \(from the file footers\)", text)
    assert re.search(r"x\s+double\s+1\n", text)


def test_parquet_files_that_disagree_on_a_column_are_a_problem(tmp_path: Path) -> None:
    pq.write_table(pa.table({"x": [1]}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"x": ["one"], "y": [2]}), tmp_path / "b.parquet")
    (part,) = inspect_path(tmp_path)["datasets"]
    assert part["problems"] == [
        f"{tmp_path / 'b.parquet'}: column 'x' is string, but int64 in {tmp_path / 'a.parquet'}",
        f"{tmp_path / 'b.parquet'}: has column 'y', {tmp_path / 'a.parquet'} has not",
    ]


@pytest.mark.usefixtures("nothing_left_running")
def test_limit_stops_early_and_says_so(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        pd.DataFrame({"n": range(5000)}).to_csv(tmp_path / f"{name}.csv", index=False)
    (part,) = inspect_path(tmp_path, limit=7000)["datasets"]
    assert part["records"] == 7000
    assert part["stopped_early"] is True
    assert [f["records"] for f in part["per_file"]] == [5000, 2000, None]
    assert part["columns"] == [{"name": "n", "type": "int", "values": {"int": 7000}, "empty": 0}]
    assert "(stopped at --limit 7,000; 1 file(s) not read)" in format_report(
        inspect_path(tmp_path, limit=7000)
    )
    # A limit the data does not reach stops nothing.
    (whole,) = inspect_path(tmp_path, limit=15_000)["datasets"]
    assert (whole["records"], whole["stopped_early"]) == (15_000, False)


def test_limit_on_jsonl_and_images(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "rows.jsonl", [json.dumps({"i": i}) for i in range(10)])
    (part,) = inspect_path(tmp_path / "rows.jsonl", limit=4)["datasets"]
    assert (part["records"], part["stopped_early"], part["keys"][0]["count"]) == (4, True, 4)
    write_images(tmp_path / "images")
    (images,) = inspect_path(tmp_path / "images", limit=3, check=0)["datasets"]
    assert (images["records"], images["stopped_early"]) == (3, True)
    assert images["images"]["checked"] == 0


@pytest.mark.usefixtures("nothing_left_running")
def test_a_folder_of_several_formats_gives_one_report_each(tmp_path: Path) -> None:
    pd.DataFrame({"a": [1, 2]}).to_csv(tmp_path / "t.tsv", sep="\t", index=False)
    pd.DataFrame({"a": ["x"], "b": [""]}).iloc[:0].to_csv(tmp_path / "header.csv", index=False)
    pq.write_table(pa.table({"a": [1, 2, 3]}), tmp_path / "t.parquet")
    (tmp_path / "lines.json").write_text('{"a": 1}\n{"a": 2}\n')
    (tmp_path / "document.json").write_text('{\n  "a": 1\n}\n')
    report = inspect_path(tmp_path)
    kinds = [(part["kind"], part["files"], part["records"]) for part in report["datasets"]]
    assert kinds == [("csv", 2, 2), ("jsonl", 1, 2), ("parquet", 1, 3)]
    csv_part = report["datasets"][0]
    # The TSV is split on tabs; the header-only file still names its columns.
    assert [c["name"] for c in csv_part["columns"]] == ["a", "b"]
    assert csv_part["columns"][1]["type"] == "empty"
    assert report["problems"] == [
        f"{tmp_path / 'document.json'}: its first line is not a whole JSON value, so it is "
        "one JSON document rather than JSON Lines (--format jsonl reads it anyway)"
    ]


def test_format_forces_how_files_are_read(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "rows.txt", ['{"a": 1}'])
    with pytest.raises(FileNotFoundError, match="its name says no format inspect reads"):
        inspect_path(tmp_path / "rows.txt")
    (part,) = inspect_path(tmp_path / "rows.txt", kind="jsonl")["datasets"]
    assert (part["kind"], part["records"]) == ("jsonl", 1)
    # In a folder, the files named as the format; or all of them, if none is.
    (part,) = inspect_path(tmp_path, kind="jsonl")["datasets"]
    assert (part["files"], part["records"]) == (1, 1)
    write_jsonl(tmp_path / "more.jsonl", ['{"a": 2}', '{"a": 3}'])
    report = inspect_path(tmp_path, kind="jsonl")
    assert [f["path"] for f in report["datasets"][0]["per_file"]] == [str(tmp_path / "more.jsonl")]
    assert report["ignored"] == 1


def test_bad_arguments_name_themselves(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        inspect_path(tmp_path, kind="xml")
    with pytest.raises(ValueError, match="limit must be None or an int of at least 1"):
        inspect_path(tmp_path, limit=0)
    with pytest.raises(ValueError, match="samples must be an int of at least 0"):
        inspect_path(tmp_path, samples=-1)
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        inspect_path(tmp_path / "missing.csv")
    with pytest.raises(FileNotFoundError, match="found no CSV, JSON Lines, Parquet or tar"):
        inspect_path(tmp_path)


def test_kind_of_reads_compressed_names() -> None:
    names = ["a.CSV", "b.tsv.xz", "c.ndjson.bz2", "d.pq", "e.tar.gz", "f.tgz", "g.gz", "h"]
    assert [kind_of(name) for name in names] == [
        "csv",
        "csv",
        "jsonl",
        "parquet",
        "tar",
        "tar",
        None,
        None,
    ]


def test_the_json_report_is_plain_data(tmp_path: Path) -> None:
    write_shards(tmp_path / "shards", shards=1, per_shard=2)
    report = inspect_path(tmp_path / "shards" / "*.tar")
    assert json.loads(json.dumps(report)) == report
    (part,) = report["datasets"]
    assert part["fields"][0] == {"name": "cls", "count": 2, "bytes": 2}
    assert part["samples"][0]["__key__"] == "s0_000"
    assert os.fspath(tmp_path) not in json.dumps(part["samples"])  # no shard paths
