"""The progress line: what it shows, where, and that its thread ends with the run."""

from __future__ import annotations

import io
import time
from typing import Any

import pytest

import headrace as hr
from headrace.progress import Progress, format_progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _pause(x: int) -> int:
    time.sleep(0.002)
    return x


def test_a_known_length_shows_the_percentage_and_the_unit() -> None:
    shown = io.StringIO()
    with hr.range(40).map(_pause).batch(4).iter(progress=shown) as run:
        assert len(list(run)) == 10
    last = shown.getvalue().splitlines()[-1]
    assert last.startswith("100% 10/10 batches  ")
    assert "left" not in last  # nothing is left at the end


def test_an_unknown_length_shows_the_count_and_unbatch_counts_elements() -> None:
    shown = io.StringIO()
    pipeline = hr.range(30).filter(lambda x: x % 2).batch(5).unbatch()
    with pipeline.iter(progress=shown) as run:
        list(run)
    assert shown.getvalue().splitlines()[-1].startswith("15 elements  ")


def test_a_terminal_gets_one_line_redrawn() -> None:
    shown = Terminal()
    progress = Progress(lambda: 7, total=10, stream=shown, every_s=0.01)
    time.sleep(0.05)
    progress.stop()
    text = shown.getvalue()
    assert text.startswith("\r")
    assert text.endswith("\n")
    assert text.count("\n") == 1  # only the last draw ends the line
    assert " 70% 7/10 items" in text


def test_a_log_gets_a_line_every_so_often_and_a_last_one() -> None:
    shown = io.StringIO()
    count = iter(range(1, 100))
    progress = Progress(lambda: next(count), stream=shown, every_s=0.01)
    time.sleep(0.06)
    progress.stop()
    progress.stop()  # twice is fine
    lines = shown.getvalue().splitlines()
    assert len(lines) >= 2
    numbers = [int(line.split()[0].replace(",", "")) for line in lines]
    assert numbers == sorted(numbers)


def test_a_closed_stream_ends_the_progress_quietly() -> None:
    shown = io.StringIO()
    shown.close()
    progress = Progress(lambda: 1, stream=shown, every_s=0.01)
    time.sleep(0.03)
    progress.stop()


@pytest.mark.parametrize("ending", ["exhausted", "break", "error"])
def test_the_progress_thread_ends_with_the_run(ending: str, threads_left: Any) -> None:
    def fail(x: int) -> int:
        if x == 5:
            raise ValueError("five")
        return x

    shown = io.StringIO()
    if ending == "exhausted":
        list(hr.range(10).iter(progress=shown))
    elif ending == "break":
        with hr.range(10).iter(progress=shown) as run:
            next(run)
    else:
        with (
            pytest.raises(ValueError, match="five"),
            hr.range(10).map(fail).iter(progress=shown) as run,
        ):
            list(run)
    assert threads_left() == []
    assert shown.getvalue().endswith("\n")


def test_format_progress_reads_well() -> None:
    assert format_progress(0, 0.0, None) == "0 items  0.0/s  0:00"
    assert format_progress(5, 3725.0, 10, "batches") == (
        " 50% 5/10 batches  0.0/s  1:02:05 (1:02:05 left)"
    )
