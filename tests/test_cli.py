"""The ``headrace`` command line, run as a real subprocess."""

from __future__ import annotations

import gzip
import re
import subprocess
import sys
from pathlib import Path

import pytest

from headrace.demo import build_pipeline, parse_line, run_demo, run_image_demo, write_logs


def headrace(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "headrace", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.timeout(150)
def test_demo_runs_and_reports_every_stage(tmp_path: Path) -> None:
    done = headrace("demo", "--lines", "5000", "--shards", "3", "--data-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    match = re.search(r"epoch 0: ([\d,]+) batches of up to 256, ([\d,]+) records", out)
    assert match, out
    records = int(match.group(2).replace(",", ""))
    dropped = int(re.search(r"dropped by filter\(is_record\): ([\d,]+)", out).group(1))
    assert records + dropped == 5000
    for stage in ("files(", "interleave(text_lines", "map(parse_line)", "filter(is_record)",
                  "shuffle(2048, seed=0)", "batch(256)"):  # fmt: skip
        assert stage in out
    assert len(list(tmp_path.glob("access-*.log.gz"))) == 3
    # Then the image pipeline, over files it wrote: 600 images and one damaged file.
    assert "600 images in" in out
    for stage in ("image_folder(", "map(partial(load_image), workers=2, on_error='skip')",
                  "random_map(augment, seed=0)", "batch(32)"):  # fmt: skip
        assert stage in out
    assert re.search(r"damaged images skipped by .*: 1; input element \d+: DecodeError", out)
    assert len(list((tmp_path / "images").rglob("*.*"))) == 601


def test_demo_images_can_be_left_out(tmp_path: Path) -> None:
    done = headrace("demo", "--lines", "500", "--images", "0", "--data-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "image_folder(" not in done.stdout
    assert not (tmp_path / "images").exists()


def test_help_lists_demo() -> None:
    done = headrace("--help")
    assert done.returncode == 0
    assert "demo" in done.stdout


def test_no_command_is_a_usage_error() -> None:
    done = headrace()
    assert done.returncode == 2
    assert "usage: headrace" in done.stdout


def test_bad_option_value_is_a_usage_error() -> None:
    done = headrace("demo", "--lines", "0")
    assert done.returncode == 2
    assert "must be at least 1" in done.stderr


def test_failure_is_one_line_without_traceback(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    done = headrace("demo", "--lines", "10", "--data-dir", str(blocker / "sub"))
    assert done.returncode == 1
    assert done.stderr.startswith("headrace demo: error:")
    assert "Traceback" not in done.stderr
    with_debug = headrace("--debug", "demo", "--lines", "10", "--data-dir", str(blocker / "sub"))
    assert "Traceback" in with_debug.stderr


def test_version() -> None:
    done = headrace("--version")
    assert done.returncode == 0
    assert done.stdout.startswith("headrace ")


def test_demo_pipeline_counts_every_line(tmp_path: Path) -> None:
    paths = write_logs(tmp_path, lines=1000, shards=4, seed=3)
    garbled = 0
    for path in paths:
        with gzip.open(path, "rt") as lines:
            garbled += sum(parse_line(line) is None for line in lines)
    pipeline = build_pipeline(tmp_path, batch_size=64, seed=3)
    records = sum(len(y) for _, y in pipeline)
    assert records == 1000 - garbled
    assert garbled > 0  # the demo data has garbled lines for the filter to drop


def test_run_demo_returns_stats(tmp_path: Path) -> None:
    lines: list[str] = []
    result = run_demo(tmp_path, lines=2000, shards=2, batch_size=100, echo=lines.append)
    assert result.batches == -(-result.records // 100)
    assert [row["name"] for row in result.stats][-1] == "batch(100)"
    assert result.stats[-1]["items_out"] == result.batches
    assert any("records/s" in line for line in lines)


def test_run_image_demo_skips_only_the_damaged_file(tmp_path: Path) -> None:
    lines: list[str] = []
    result = run_image_demo(tmp_path, images=60, batch_size=16, echo=lines.append)
    assert (result.inputs, result.records, result.batches) == (61, 60, 4)
    decode_row = next(row for row in result.stats if "load_image" in row["name"])
    assert (decode_row["read"], decode_row["rejected"]) == (61, 1)
    assert "damaged-000.jpg" in decode_row["examples"][0]
    assert any("images/s" in line for line in lines)
