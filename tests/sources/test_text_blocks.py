"""``text_lines`` reads, decodes and splits a block of lines at a time.

The block size is a detail of speed: the lines, the rejects, the replaced lines, the
saved position (line count and byte offset) and every resumed run must be what a
reader that went line by line gives. These tests shrink the block to a few bytes, so
that small files cross many block edges, lines longer than a block included, and
compare with a line-by-line reading written here.
"""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import headrace as hr
from headrace.sources import filesystem

PROPERTY = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

_LINE = st.lists(st.sampled_from(["a", "b", "é", "😀", " ", "\r", "\t", "xyz"]), max_size=12).map(
    "".join
)


def by_line(data: bytes, keep_ends: bool, errors: str) -> list[tuple[str | None, int]]:
    """Each line of ``data`` as the reader must give it (``None``: rejected), with the
    byte offset after it."""
    out: list[tuple[str | None, int]] = []
    offset = 0
    parts = data.split(b"\n")
    raws = [part + b"\n" for part in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
    for raw in raws:
        offset += len(raw)
        body = raw
        if not keep_ends and body.endswith(b"\n"):
            body = body[:-2] if body.endswith(b"\r\n") else body[:-1]
        try:
            line: str | None = body.decode("utf-8")
        except UnicodeDecodeError:
            line = body.decode("utf-8", "replace") if errors == "replace" else None
        out.append((line, offset))
    return out


@pytest.fixture
def tiny_blocks(monkeypatch: pytest.MonkeyPatch) -> Any:
    def use(size: int) -> None:
        monkeypatch.setattr(filesystem, "BLOCK_BYTES", size)

    return use


@PROPERTY
@given(
    lines=st.lists(_LINE, max_size=25),
    bad=st.sets(st.integers(0, 24), max_size=3),
    ends=st.booleans(),
    keep_ends=st.booleans(),
    errors=st.sampled_from(["skip", "replace"]),
    block=st.integers(1, 40),
    gz=st.booleans(),
)
def test_lines_and_positions_are_those_of_a_line_by_line_reading(
    tmp_path: Path,
    tiny_blocks: Any,
    lines: list[str],
    bad: set[int],
    ends: bool,
    keep_ends: bool,
    errors: str,
    block: int,
    gz: bool,
) -> None:
    tiny_blocks(block)
    raws = [line.encode() + (b"\xff\xfe" if i in bad else b"") for i, line in enumerate(lines)]
    data = b"\n".join(raws) + (b"\n" if ends and raws else b"")
    path = tmp_path / ("lines.txt.gz" if gz else "lines.txt")
    path.write_bytes(gzip.compress(data) if gz else data)
    expected = by_line(data, keep_ends, errors)
    wanted = [line for line, _ in expected if line is not None]

    options: dict[str, Any] = {"keep_ends": keep_ends}
    if errors == "replace":
        options["errors"] = "replace"
    else:
        options["on_error"] = "skip"
    pipeline = hr.text_lines(str(path), **options)
    logging.disable(logging.WARNING)
    try:
        assert list(pipeline) == wanted
        for position in range(len(wanted) + 1):
            with pipeline.iter() as run:
                taken = [next(run) for _ in range(position)]
                state = json.loads(json.dumps(run.state()))
            assert taken == wanted[:position]
            assert list(pipeline.iter(state=state)) == wanted[position:]
            if 0 < position < len(wanted):
                read = state["stages"][0]["read"]
                # Right after the line handed out last: the records it read (rejects
                # included) and the bytes they took.
                kept = [k for k, (line, _) in enumerate(expected) if line is not None]
                last = kept[position - 1]
                assert (read["records"], read["offset"]) == (last + 1, expected[last][1])
    finally:
        logging.disable(logging.NOTSET)


def test_a_line_longer_than_many_blocks_comes_whole(tmp_path: Path, tiny_blocks: Any) -> None:
    tiny_blocks(16)
    long = "x" * 10_000
    path = tmp_path / "long.txt"
    path.write_text(f"a\n{long}\nb\n{long}")
    assert list(hr.text_lines(str(path))) == ["a", long, "b", long]


def test_rejects_are_counted_once_with_their_line_numbers(
    tmp_path: Path, tiny_blocks: Any, tally_row: Any
) -> None:
    tiny_blocks(10)
    path = tmp_path / "mixed.txt"
    path.write_bytes(b"one\ntwo \xff\nthree\nfour\xfe\nfive\n")
    with hr.text_lines(str(path), on_error="skip").iter(stats=True) as run:
        assert list(run) == ["one", "three", "five"]
    row = tally_row(run)
    assert (row["read"], row["rejected"]) == (5, 2)
    assert [e.split(":")[-2] for e in row["examples"]] == ["2", "4"]
    with pytest.raises(hr.ParseError, match=r"mixed\.txt:2: cannot decode byte 4"):
        list(hr.text_lines(str(path)))
