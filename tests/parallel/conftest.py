"""Shared checks for the parallel tests: no thread that headrace started outlives a test.

Test modules are imported in importlib mode, where they cannot import each other, so
the helpers are fixtures: ``live_threads()`` lists live ``headrace-`` threads,
``threads_left(timeout)`` polls until none is left and returns the names still alive,
and ``eventually(predicate, timeout)`` polls a condition. After every test an autouse
fixture asserts that no ``headrace-`` thread is left running.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

PREFIX = "headrace-"


def _live_threads() -> list[str]:
    return sorted(t.name for t in threading.enumerate() if t.name.startswith(PREFIX))


def _threads_left(timeout: float = 1.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        names = _live_threads()
        if not names or time.monotonic() >= deadline:
            return names
        time.sleep(0.005)


def _eventually(predicate: Callable[[], bool], timeout: float = 1.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.005)
    return True


@pytest.fixture
def live_threads() -> Callable[[], list[str]]:
    """Names of the live threads that headrace started."""
    return _live_threads


@pytest.fixture
def threads_left() -> Callable[..., list[str]]:
    """Poll until no ``headrace-`` thread is alive; return the names still alive then."""
    return _threads_left


@pytest.fixture
def eventually() -> Callable[..., bool]:
    """Whether ``predicate()`` becomes true within ``timeout`` seconds."""
    return _eventually


@pytest.fixture(autouse=True)
def no_threads_left_behind() -> Iterator[None]:
    yield
    assert _threads_left() == [], "a test left headrace threads running"
