"""Every parallel test checks that nothing it started outlives it (see tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def no_runs_left_behind(nothing_left_running: None) -> None:
    """Requests the shared check for every test in this folder."""


@pytest.fixture(autouse=True)
def ray_for_ray(request: pytest.FixtureRequest) -> None:
    """A test run with ``backend="ray"`` gets the module's local Ray cluster
    (``local_ray``): the contract tests run on all three backends."""
    spec = getattr(request.node, "callspec", None)
    if spec is not None and spec.params.get("backend") == "ray":
        request.getfixturevalue("local_ray")
