"""Type checkers see element types through pipelines (the package ships ``py.typed``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mypy import api

import headrace as hr

SNIPPET = """
from typing import assert_type
import numpy as np
import headrace as hr

def is_text(x: int | str) -> "TypeGuard[str]":
    return isinstance(x, str)

numbers = hr.range(10)
assert_type(numbers, hr.Pipeline[int])
assert_type(numbers.map(str), hr.Pipeline[str])
mixed: list[int | str] = [1, "a"]
assert_type(hr.from_iterable(mixed).filter(is_text), hr.Pipeline[str])
assert_type(numbers.enumerate(), hr.Pipeline[tuple[int, int]])
assert_type(numbers.scan(lambda total, x: total + x, 0), hr.Pipeline[int])
with numbers.iter() as run:
    assert_type(run, hr.Run[int])
    for x in run:
        assert_type(x, int)
"""


@pytest.mark.timeout(180)
def test_element_types_flow_through_stages_and_runs(tmp_path: Path) -> None:
    source = tmp_path / "uses_headrace.py"
    source.write_text("from typing import TypeGuard\n" + SNIPPET)
    out, err, status = api.run(
        ["--strict", "--no-incremental", "--cache-dir", str(tmp_path / "cache"), str(source)]
    )
    assert status == 0, out + err


def test_a_pipeline_is_truthy_even_when_its_length_is_unknown() -> None:
    unknown = hr.range(3).filter(lambda x: x > 5)
    with pytest.raises(TypeError):
        len(unknown)
    assert unknown  # bool() must not fall back to __len__
