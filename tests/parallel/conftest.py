"""Every parallel test checks that nothing it started outlives it (see tests/conftest.py).

The contract tests run on all three backends; those on the ray backend share a local
Ray cluster per module (``local_ray``), and run after the module's other tests, so
that the cluster's own processes (which take a good share of this machine's CPU
while up) are not running beside the thread and process tests.
"""

from __future__ import annotations

import re

import pytest

_HERE = __file__.rsplit("/", 1)[0]


@pytest.fixture(autouse=True)
def no_runs_left_behind(nothing_left_running: None) -> None:
    """Requests the shared check for every test in this folder."""


def _on_ray(value: object) -> bool:
    return value == "ray" or (isinstance(value, dict) and value.get("backend") == "ray")


def _wants_ray(item: pytest.Item) -> bool:
    """Whether a test runs on the ray backend: a ``backend`` parameter ``"ray"``, a mode
    dict with ``"backend": "ray"``, or a parameter id with the word ``ray``."""
    spec = getattr(item, "callspec", None)
    if spec is None:
        return False
    return any(_on_ray(value) for value in spec.params.values()) or bool(
        re.search(r"(^|[-\s])ray([-\s]|$)", spec.id)
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """In each module of this folder, the ray-backend tests last (in their order)."""
    module = {id(item): item.nodeid.split("::", 1)[0] for item in items}
    first: dict[str, int] = {}
    for number, item in enumerate(items):
        first.setdefault(module[id(item)], number)

    def key(item: pytest.Item) -> tuple[int, bool]:
        here = str(item.path).startswith(_HERE)
        return first[module[id(item)]], here and _wants_ray(item)

    items.sort(key=key)


@pytest.fixture(autouse=True)
def ray_for_ray(request: pytest.FixtureRequest) -> None:
    """A test run on the ray backend gets the module's local Ray cluster."""
    if _wants_ray(request.node):
        request.getfixturevalue("local_ray")
