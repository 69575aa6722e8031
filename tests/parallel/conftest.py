"""Every parallel test checks that nothing it started outlives it (see tests/conftest.py).

The contract tests run on all three backends. Those on the ray backend run together
after the folder's other tests, on one local Ray cluster (``start_local_ray`` in
tests/conftest.py), which is shut down after the last of them, with the check that
none of its processes is left: starting a cluster takes seconds, and its own
processes take a good share of this machine's CPU while it is up.
test_ray_backend.py and test_ray_cluster.py keep clusters of their own.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

_HERE = __file__.rsplit("/", 1)[0]
_OWN_CLUSTERS = ("test_ray_backend.py", "test_ray_cluster.py")

#: The shared cluster while it is up: how to stop it, and the Ray processes before it.
_shared: dict[str, Any] = {}


@pytest.fixture(autouse=True)
def no_runs_left_behind(nothing_left_running: None) -> None:
    """Requests the shared check for every test in this folder."""


def _on_ray(value: object) -> bool:
    return value == "ray" or (isinstance(value, dict) and value.get("backend") == "ray")


def _wants_ray(item: pytest.Item | None) -> bool:
    """Whether a test of this folder runs on the shared cluster: a ``backend``
    parameter ``"ray"``, a mode dict with ``"backend": "ray"``, or a parameter id with
    the word ``ray`` (but not the tests of the modules with clusters of their own)."""
    if item is None or not str(item.path).startswith(_HERE):
        return False
    if item.path.name in _OWN_CLUSTERS:
        return False
    spec = getattr(item, "callspec", None)
    if spec is None:
        return False
    return any(_on_ray(value) for value in spec.params.values()) or bool(
        re.search(r"(^|[-\s])ray([-\s]|$)", spec.id)
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The ray tests of this folder after its last other test, in their order."""
    ray = [item for item in items if _wants_ray(item)]
    if not ray:
        return
    rest = [item for item in items if not _wants_ray(item)]
    here = [n for n, item in enumerate(rest) if str(item.path).startswith(_HERE)]
    at = here[-1] + 1 if here else len(rest)
    items[:] = rest[:at] + ray + rest[at:]


@pytest.fixture(autouse=True)
def ray_for_ray(request: pytest.FixtureRequest) -> None:
    """A test run on the ray backend gets the shared local Ray cluster."""
    if _wants_ray(request.node) and not _shared:
        start, stop = request.getfixturevalue("local_ray_control")
        _shared["stop"], _shared["before"] = stop, start()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    """After the last test on the shared cluster (and its checks), shut it down."""
    yield
    if _shared and not _wants_ray(nextitem):
        stop: Callable[[set[int]], None] = _shared.pop("stop")
        stop(_shared.pop("before"))
