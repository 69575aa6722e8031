"""Every parallel test checks that nothing it started outlives it (see tests/conftest.py)."""

from __future__ import annotations

import re

import pytest


@pytest.fixture(autouse=True)
def no_runs_left_behind(nothing_left_running: None) -> None:
    """Requests the shared check for every test in this folder."""


def _on_ray(value: object) -> bool:
    return value == "ray" or (isinstance(value, dict) and value.get("backend") == "ray")


@pytest.fixture(autouse=True)
def ray_for_ray(request: pytest.FixtureRequest) -> None:
    """A test run on the ray backend (a ``backend`` parameter ``"ray"``, a mode dict
    with ``"backend": "ray"``, or a parameter id with the word ``ray``) gets the
    module's local Ray cluster (``local_ray``): the contract tests run on all three
    backends."""
    spec = getattr(request.node, "callspec", None)
    if spec is None:
        return
    if any(_on_ray(value) for value in spec.params.values()) or re.search(
        r"(^|[-\s])ray([-\s]|$)", spec.id
    ):
        request.getfixturevalue("local_ray")
