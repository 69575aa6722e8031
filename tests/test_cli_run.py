"""``headrace run`` and ``headrace bench`` as a user runs them: a subprocess, a file of
pipelines over real files, and the output and exit codes they give."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

PIPELINES = """
import time

import headrace as hr

HERE = {here!r}


def parse(line):
    number, word = line.split(",")
    return int(number), word


def slow(record):
    time.sleep(0.003)  # the planted bottleneck
    return record


lines = hr.text_lines(HERE + "/part-*.csv").map(parse).filter(lambda r: r[0] % 7).batch(16)
slow_lines = hr.text_lines(HERE + "/part-*.csv").map(parse).map(slow).batch(16)


def make(workers=0):
    return hr.text_lines(HERE + "/part-*.csv").map(parse).map(slow, workers=workers).batch(16)


def broken():
    return hr.text_lines(HERE + "/part-*.csv").map(lambda line: int(line))


not_a_pipeline = 42


def needs_args(path):
    return hr.text_lines(path)
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    for part in range(3):
        rows = "".join(f"{part * 100 + i},word{i}\n" for i in range(100))
        (tmp_path / f"part-{part}.csv").write_text(rows)
    (tmp_path / "pipelines.py").write_text(PIPELINES.format(here=str(tmp_path)))
    return tmp_path


def headrace(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "headrace", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_run_iterates_a_pipeline_from_a_file_and_reports(project: Path) -> None:
    done = headrace(project, "run", "pipelines.py:lines")
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    # 300 rows, 43 of them multiples of 7 dropped: 257 records in 17 batches.
    assert out[0].startswith("epoch 0: 17 elements in ")
    table = "\n".join(out[1:-1])
    assert "text_lines(" in table
    assert "filter(<lambda>)" in table
    filter_row = next(line for line in out if "filter(<lambda>)" in line).split()
    assert filter_row[-5:-2] == ["300", "257", "43"]  # in, out, dropped
    assert out[-1].startswith("bottleneck: ")
    assert "17 batches" in done.stderr  # the progress line's last state


def test_run_names_the_planted_bottleneck(project: Path) -> None:
    done = headrace(project, "run", "pipelines.py:slow_lines", "--no-progress")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith("bottleneck: stage 2 'map(slow)'")
    assert done.stderr == ""  # no progress asked for


def test_run_stops_after_items_and_runs_epochs_and_speaks_json(project: Path) -> None:
    done = headrace(project, "run", "pipelines.py:lines", "--items", "5", "--epochs", "2", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [epoch["elements"] for epoch in report["epochs"]] == [5, 5]
    stages = report["epochs"][0]["stages"]
    assert [row["stage"] for row in stages] == [0, 1, 2, 3]
    assert stages[3]["items_out"] == 5
    assert {"limit", "hint"} <= set(report["epochs"][1]["bottleneck"])


def test_run_takes_a_module_path(project: Path) -> None:
    done = headrace(project, "run", "pipelines:lines", "--no-progress")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("epoch 0: 17 elements")


def test_bench_tries_worker_counts_and_names_the_best(project: Path) -> None:
    done = headrace(
        project, "bench", "pipelines.py:make", "--workers", "0", "4", "auto", "--repeats", "1"
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("workers=0: ")
    assert "elements/s" in lines[0]
    assert lines[1].startswith("workers=4: ")
    assert lines[2].startswith("workers='auto': ")
    assert any(
        f"map(slow{options})" in line
        for line in lines
        for options in (", workers=4", "", ", workers='auto'")
    )
    best = lines[-1]
    assert best.startswith("best: workers=")
    assert "x the slowest" in best


def test_bench_json_has_a_rate_per_worker_count(project: Path) -> None:
    done = headrace(
        project,
        "bench",
        "pipelines.py:make",
        "--workers",
        "1",
        "2",
        "--json",
        "--repeats",
        "1",
        "--items",
        "6",
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [r["workers"] for r in report["results"]] == [1, 2]
    assert all(r["elements"] == 6 and r["per_second"] > 0 for r in report["results"])
    assert report["best"] in (1, 2)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("run", "pipelines.py:nothing"), "pipelines.py has no 'nothing'"),
        (("run", "missing.py:lines"), "no such file: missing.py"),
        (("run", "no_such_module:lines"), "no module named 'no_such_module'"),
        (("run", "pipelines.py"), "is not MODULE_OR_FILE:NAME"),
        (("run", "pipelines.py:not_a_pipeline"), "is an int, not a pipeline"),
        (("bench", "pipelines.py:lines", "--workers", "2"), "is a pipeline, not a function"),
        (("bench", "pipelines.py:broken", "--workers", "2"), "does not take workers="),
        (("run", "pipelines.py:lines", "--items", "0"), "must be at least 1"),
        (("run", "pipelines.py:needs_args"), "needs arguments"),
    ],
)
def test_a_wrong_target_or_option_is_a_usage_error(
    project: Path, args: tuple[str, ...], message: str
) -> None:
    done = headrace(project, *args)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_a_failing_pipeline_is_one_line_and_exit_1(project: Path) -> None:
    done = headrace(project, "run", "pipelines.py:broken", "--no-progress")
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("headrace run: error: invalid literal for int()")
    # The line names the stage and the element.
    assert lines[0].endswith(
        "(raised in stage 1 'map(broken.<lambda>)' on its input element 0 (0-based))"
    )
    # --debug before or after the command adds the traceback and keeps the exit code.
    for args in (
        ("--debug", "run", "pipelines.py:broken", "--no-progress"),
        ("run", "pipelines.py:broken", "--no-progress", "--debug"),
        ("run", "--debug", "pipelines.py:broken", "--no-progress"),
    ):
        debug = headrace(project, *args)
        assert debug.returncode == 1, (args, debug.stderr)
        assert "Traceback (most recent call last)" in debug.stderr, args
        assert "ValueError: invalid literal for int()" in debug.stderr, args
        assert debug.stderr.strip().splitlines()[-1] == lines[0], args


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_keeps_the_exit_code_of_a_usage_error(project: Path, where: str) -> None:
    args = ["run", "pipelines.py:not_a_pipeline"]
    args = ["--debug", *args] if where == "before" else [*args, "--debug"]
    done = headrace(project, *args)
    assert done.returncode == 2, done.stderr
    assert "Traceback (most recent call last)" in done.stderr
    assert done.stderr.strip().splitlines()[-1].endswith("is an int, not a pipeline or a function")


def test_every_command_takes_debug_after_it(project: Path) -> None:
    for command in ("demo", "run", "bench", "inspect"):
        done = headrace(project, command, "--help")
        assert done.returncode == 0
        assert "--debug" in done.stdout, command
    # Without --debug given anywhere, a failure stays one line.
    done = headrace(project, "inspect", str(project / "nothing-here-*.csv"))
    assert "Traceback" not in done.stderr


def test_help_lists_every_command() -> None:
    done = headrace(Path.cwd(), "--help")
    assert done.returncode == 0
    for command in ("demo", "run", "bench", "inspect"):
        assert f"    {command} " in done.stdout
    sub = headrace(Path.cwd(), "bench", "--help")
    assert "--workers N [N ...]" in sub.stdout
    assert "MODULE_OR_FILE:NAME" in sub.stdout


def test_a_module_whose_own_import_fails_is_a_failure_not_a_usage_error(project: Path) -> None:
    (project / "loaders.py").write_text("import no_such_dependency_here\n")
    done = headrace(project, "run", "loaders:p")
    assert done.returncode == 1
    assert "No module named 'no_such_dependency_here'" in done.stderr


def test_output_piped_to_a_reader_that_stops_is_not_an_error(project: Path) -> None:
    with subprocess.Popen(
        [
            sys.executable,
            "-m",
            "headrace",
            "run",
            "pipelines.py:lines",
            "--epochs",
            "40",
            "--no-progress",
        ],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stdout is not None
        assert child.stderr is not None
        first = child.stdout.readline()
        child.stdout.close()  # as `| head -1` does
        error = child.stderr.read()
        code = child.wait(timeout=120)
    assert first.startswith("epoch 0: ")
    assert code == 0, error
    assert "Broken pipe" not in error
