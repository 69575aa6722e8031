"""The shared ``on_error`` policy on ``read_jsonl`` and ``parse``: raise, skip, quarantine.

Every record is accounted for: what a reader read is either yielded or counted as
rejected, and the counts add up. Files are real files (plain and compressed) written
by the tests; a damaged gzip file is a real one cut short.
"""

from __future__ import annotations

import bz2
import gzip
import json
import logging
import lzma
from pathlib import Path
from typing import Any

import pytest

import headrace as hr

ROWS = [{"id": i, "name": f"row {i}", "tags": ["a", "b"][: i % 3]} for i in range(50)]


def write_jsonl(path: Path, rows: list[Any], opener: Any = open) -> Path:
    with opener(path, "wt", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row) + "\n")
    return path


def stats_row(run: hr.Run[Any]) -> dict[str, Any]:
    (row,) = [r for r in run.stats() if "rejected" in r]
    return row


@pytest.mark.parametrize(
    ("suffix", "opener"),
    [
        (".jsonl", open),
        (".jsonl.gz", gzip.open),
        (".jsonl.bz2", bz2.open),
        (".jsonl.xz", lzma.open),
    ],
)
def test_read_jsonl_streams_every_row_of_plain_and_compressed_files(tmp_path, suffix, opener):
    path = write_jsonl(tmp_path / f"rows{suffix}", ROWS, opener)
    assert list(hr.read_jsonl(str(path))) == ROWS


def test_several_files_are_read_in_sorted_order_and_blank_lines_are_no_records(tmp_path):
    write_jsonl(tmp_path / "b.jsonl", ROWS[25:])
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r) for r in ROWS[:25]) + "\n\n  \n")
    (tmp_path / "empty.jsonl").write_text("")
    with hr.read_jsonl(str(tmp_path / "*.jsonl")).iter(stats=True) as run:
        assert list(run) == ROWS
    assert stats_row(run)["read"] == 50
    assert stats_row(run)["rejected"] == 0


def damaged(tmp_path: Path) -> Path:
    path = tmp_path / "mixed.jsonl"
    lines = [json.dumps(ROWS[0]), "{not json", json.dumps(ROWS[1]), ""]
    path.write_bytes("\n".join(lines).encode() + b'"caf\xe9"\n' + json.dumps(ROWS[2]).encode())
    return path


def test_a_bad_line_raises_naming_file_line_and_reason(tmp_path):
    path = damaged(tmp_path)
    with pytest.raises(hr.ParseError, match=rf"{path}:2: not valid JSON"):
        list(hr.read_jsonl(str(path)))


def test_a_value_nested_too_deep_is_a_bad_line_not_a_recursion_error(tmp_path):
    # 100,000 levels: json's decoder stops at Python's recursion limit.
    path = tmp_path / "deep.jsonl"
    path.write_text('{"a": 1}\n' + "[" * 100_000 + "]" * 100_000 + '\n{"b": 2}\n')
    with pytest.raises(hr.ParseError, match=r"deep\.jsonl:2: a JSON value nested deeper"):
        list(hr.read_jsonl(str(path)))
    pipeline = hr.read_jsonl(str(path), on_error="skip")
    with pipeline.iter(stats=True) as run:
        assert list(run) == [{"a": 1}, {"b": 2}]
    assert next(r for r in run.stats() if "rejected" in r)["rejected"] == 1


def test_an_undecodable_line_raises_naming_file_and_line(tmp_path):
    path = tmp_path / "latin.jsonl"
    path.write_bytes(json.dumps(ROWS[0]).encode() + b'\n"caf\xe9"\n')
    with pytest.raises(hr.ParseError, match=rf"{path}:2: not valid UTF-8"):
        list(hr.read_jsonl(str(path)))


def test_skip_drops_bad_lines_counts_them_and_logs_a_summary(tmp_path, caplog):
    path = damaged(tmp_path)
    with (
        caplog.at_level(logging.WARNING, logger="headrace"),
        hr.read_jsonl(str(path), on_error="skip").iter(stats=True) as run,
    ):
        records = list(run)
    assert records == ROWS[:3]
    row = stats_row(run)
    assert (row["read"], row["rejected"]) == (5, 2)
    assert row["read"] == len(records) + row["rejected"]
    assert row["examples"][0].startswith(f"{path}:2: not valid JSON")
    assert "not valid UTF-8" in row["examples"][1]
    assert "rejected 2 of 5 records" in caplog.text


def test_a_quarantine_file_receives_each_rejected_line_with_where_and_why(tmp_path):
    path = damaged(tmp_path)
    quarantine = tmp_path / "rejects.jsonl"
    assert list(hr.read_jsonl(str(path), on_error=quarantine)) == ROWS[:3]
    entries = [json.loads(line) for line in quarantine.read_text().splitlines()]
    assert [e["where"] for e in entries] == [f"{path}:2", f"{path}:4"]
    assert entries[0]["record"] == "{not json\n"
    assert entries[1]["record"] == '"caf\\xe9"\n'
    assert all(e["reason"] and "read_jsonl" in e["stage"] for e in entries)


def cut_gzip(tmp_path: Path) -> Path:
    whole = write_jsonl(tmp_path / "whole.jsonl.gz", ROWS, gzip.open).read_bytes()
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(whole[: len(whole) * 2 // 3])
    return path


def test_a_truncated_gzip_file_raises_naming_the_file(tmp_path):
    path = cut_gzip(tmp_path)
    with pytest.raises(hr.ParseError, match=rf"{path}:\d+: the file is damaged or cut short"):
        list(hr.read_jsonl(str(path)))


def test_a_truncated_gzip_file_under_skip_keeps_what_came_before_and_goes_on(tmp_path):
    path = cut_gzip(tmp_path)
    write_jsonl(tmp_path / "next.jsonl", ROWS[:2])
    with hr.read_jsonl([str(path), str(tmp_path / "next.jsonl")], on_error="skip").iter(
        stats=True
    ) as run:
        records = list(run)
    row = stats_row(run)
    assert row["rejected"] >= 1
    assert records[-2:] == ROWS[:2]
    kept = records[:-2]
    assert kept == ROWS[: len(kept)]  # a prefix of the file, nothing made up
    assert row["read"] == len(records) + row["rejected"]


def test_a_file_that_vanishes_during_the_epoch_is_an_error_or_a_counted_reject(tmp_path):
    for policy in ("raise", "skip"):
        first = write_jsonl(tmp_path / "a.jsonl", ROWS[:3])
        second = write_jsonl(tmp_path / "b.jsonl", ROWS[3:5])
        run = hr.read_jsonl([str(first), str(second)], on_error=policy).iter(stats=True)
        with run:
            assert next(run) == ROWS[0]
            second.unlink()  # listed when the run started, gone when its turn comes
            if policy == "raise":
                with pytest.raises(hr.ParseError, match=r"b\.jsonl: cannot open the file"):
                    list(run)
                continue
            assert list(run) == ROWS[1:3]
        assert stats_row(run)["rejected"] == 1


def test_a_gz_file_that_is_no_gzip_is_a_damaged_file(tmp_path):
    path = write_jsonl(tmp_path / "plain-really.jsonl.gz", ROWS[:2])
    with pytest.raises(hr.ParseError, match="damaged or cut short"):
        list(hr.read_jsonl(str(path)))


def test_a_missing_file_is_always_an_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        list(hr.read_jsonl(str(tmp_path / "absent.jsonl"), on_error="skip"))


@pytest.mark.parametrize("bad", ["ignore", "Skip", "", 3, None, b"skip.jsonl"])
def test_an_unknown_policy_is_refused_when_the_pipeline_is_built(bad):
    with pytest.raises((ValueError, TypeError), match="on_error"):
        hr.read_jsonl("rows.jsonl", on_error=bad)
    with pytest.raises((ValueError, TypeError), match="on_error"):
        hr.from_iterable(["x"]).parse(r"(?P<x>x)", on_error=bad)


# -- parse -----------------------------------------------------------------------------

LOG = r"(?P<time>\d\d:\d\d) (?P<level>[A-Z]+) (?P<text>.*)"
LINES = ["10:01 WARN disk full", "garbage", "10:02 INFO ok", 7, "10:03 ERROR boom"]


def test_parse_makes_dicts_of_the_named_groups():
    records = list(hr.from_iterable(["10:01 WARN disk full"]).parse(LOG))
    assert records == [{"time": "10:01", "level": "WARN", "text": "disk full"}]


def test_parse_raises_naming_the_stage_and_element():
    with pytest.raises(hr.ParseError, match=r"stage 1 .*parse.* input element 1: does not match"):
        list(hr.from_iterable(LINES).parse(LOG))


def test_parse_under_skip_accounts_for_every_element(tmp_path):
    quarantine = tmp_path / "bad.jsonl"
    with hr.from_iterable(LINES).parse(LOG, on_error=quarantine).iter(stats=True) as run:
        levels = [r["level"] for r in run]
    assert levels == ["WARN", "INFO", "ERROR"]
    row = stats_row(run)
    assert (row["read"], row["rejected"]) == (5, 2)
    entries = [json.loads(line) for line in quarantine.read_text().splitlines()]
    assert [e["record"] for e in entries] == ["garbage", 7]
    assert "expected a str, got int" in entries[1]["reason"]


def test_parse_counts_what_it_read_while_the_run_goes_on():
    with hr.from_iterable(LINES * 3).parse(LOG, on_error="skip").iter(stats=True) as run:
        assert next(run)["level"] == "WARN"
        assert next(run)["level"] == "INFO"  # after "garbage"
        assert (stats_row(run)["read"], stats_row(run)["rejected"]) == (3, 1)
        assert len(list(run)) == 7
    assert (stats_row(run)["read"], stats_row(run)["rejected"]) == (15, 6)


def test_parse_raise_names_the_element_that_is_no_str():
    with pytest.raises(hr.ParseError, match=r"input element 3: expected a str, got int"):
        list(hr.from_iterable([LINES[0], LINES[2], LINES[4], 7]).parse(LOG))


def test_parse_by_search_finds_a_match_anywhere():
    found = hr.from_iterable(["[x] 10:01 WARN a"]).parse(LOG, search=True)
    assert [r["time"] for r in found] == ["10:01"]


def test_a_pattern_that_is_no_regular_expression_is_a_value_error_naming_it():
    with pytest.raises(
        ValueError, match=r"pattern '\(\?P<x>\[a' is not a valid regular expression"
    ):
        hr.range(3).map(str).parse("(?P<x>[a")


def test_a_pattern_without_named_groups_is_refused():
    with pytest.raises(ValueError, match="no named groups"):
        hr.from_iterable(["a"]).parse(r"(\w+)")


def test_the_standalone_parse_function_works_on_any_iterable():
    assert [r["level"] for r in hr.stages.parse(iter(LINES[:1]), LOG)] == ["WARN"]


def test_stats_add_up_over_repetitions():
    pipeline = hr.from_iterable(LINES).parse(LOG, on_error="skip").repeat(2)
    with pipeline.iter(stats=True) as run:
        assert len(list(run)) == 6
    row = stats_row(run)
    assert (row["read"], row["rejected"]) == (10, 4)
