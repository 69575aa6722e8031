"""Messages point at what went wrong, where, and how to fix it."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

import headrace as hr


def test_len_names_the_stage_that_makes_the_length_unknown(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("x\n1\n")
    with pytest.raises(TypeError, match=r"stage 0 \"read_csv\(.*\)\" is a source that does not"):
        len(hr.read_csv(str(tmp_path / "a.csv")).batch(2))
    with pytest.raises(TypeError, match=r"stage 1 'filter\(bool\)' yields a number of elements"):
        len(hr.range(5).filter(bool).map(str))
    with pytest.raises(TypeError, match=r"sum\(1 for _ in pipeline\)"):
        len(hr.files(str(tmp_path / "*.csv")))


def test_parse_names_the_file_and_line_and_shows_the_pattern_as_written(tmp_path: Path) -> None:
    path = tmp_path / "log.txt"
    path.write_text("a 1\n\nb 2\nc x\n")
    pattern = r"(?P<k>\S+) (?P<v>\d+)"
    lines = hr.text_lines(str(path)).filter(bool)
    with pytest.raises(hr.ParseError) as raised:
        list(lines.parse(pattern))
    message = str(raised.value)
    assert f"\"parse(r'{pattern}')\" input element 2 ({path}:4): does not match: 'c x'" in message
    # A stage that reads ahead leaves the reader past the element: the index alone.
    with pytest.raises(hr.ParseError, match=r"input element 2: does not match"):
        list(lines.prefetch(2).parse(pattern))
    with pytest.raises(ValueError, match=r"pattern r'\(\?P<k>\\S\+' is not a valid regular"):
        hr.range(1).map(str).parse(r"(?P<k>\S+")


def test_skip_summaries_show_patterns_once_escaped(caplog: pytest.LogCaptureFixture) -> None:
    pattern = r"(?P<n>\d+)"
    with caplog.at_level(logging.WARNING, logger="headrace"):
        list(hr.from_iterable(["1", "x"]).parse(pattern, on_error="skip"))
    assert f"stage 1 \"parse(r'{pattern}', on_error='skip')\" rejected 1 of 2" in caplog.text


def test_a_filter_whose_result_has_no_truth_value_is_noted() -> None:
    for pipeline in [
        hr.range(3).map(lambda x: np.array([x, x])).filter(lambda a: a),
        hr.range(3).batch(1).filter(lambda b: np.ones(2)),
    ]:
        with pytest.raises(ValueError, match="truth value") as raised:
            list(pipeline)
        (note,) = raised.value.__notes__
        assert note.startswith("headrace: raised in stage 2 'filter(")
        assert note.endswith("<lambda>)' on its input element 0 (0-based)")


def test_a_skip_summary_does_not_say_to_pass_skip(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_bytes(b"ok\n\xff\n")
    with pytest.raises(hr.DecodeError, match="pass on_error='skip'"):
        list(hr.text_lines(str(path)))
    run = iter(hr.text_lines(str(path), on_error="skip"))
    assert list(run) == ["ok"]
    (example,) = run.stats()[0]["examples"]
    assert "on_error" not in example
