"""Every parallel test checks that nothing it started outlives it (see tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def no_runs_left_behind(nothing_left_running: None) -> None:
    """Requests the shared check for every test in this folder."""
