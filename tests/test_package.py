"""Packaging promises: a light core import, one version, a typed package."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import headrace

OPTIONAL = {"torch", "keras", "jax", "tensorflow", "pyarrow", "PIL", "fsspec", "ray", "pandas"}


def test_import_headrace_loads_only_the_standard_library_and_numpy() -> None:
    code = (
        "import sys, headrace\nprint('\\n'.join(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    loaded = set(done.stdout.split())
    assert not loaded & OPTIONAL, loaded & OPTIONAL
    third_party = {
        name for name in loaded if name not in sys.stdlib_module_names and not name.startswith("_")
    }
    assert third_party <= {"headrace", "numpy"}, third_party


def test_the_installed_version_is_the_package_version() -> None:
    assert metadata.version("headrace") == headrace.__version__


def test_the_package_is_marked_typed() -> None:
    assert (Path(headrace.__file__).parent / "py.typed").is_file()


def test_public_names_are_sorted_and_importable() -> None:
    assert headrace.__all__ == sorted(headrace.__all__)
    for name in headrace.__all__:
        assert hasattr(headrace, name), name


def test_every_lazy_export_is_listed_and_every_listed_name_resolves() -> None:
    # The package imports its names on first use: the table of exports and __all__
    # must agree, or a name would exist for type checkers and not at run time.
    exports = set(headrace._EXPORTS)
    assert set(headrace.__all__) == exports | {"__version__", "stages"}
    for name in headrace.__all__:
        assert getattr(headrace, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = headrace.nope  # type: ignore[attr-defined]


FRAMEWORKS = {"torch", "keras", "jax", "tensorflow"}


def loaded_after(code: str) -> set[str]:
    """The top-level modules loaded once ``code`` has run in a fresh interpreter."""
    code += "\nimport sys\nprint('\\n'.join(sorted({m.split('.')[0] for m in sys.modules})))\n"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    return set(done.stdout.split())


def test_running_pipelines_loads_no_framework() -> None:
    loaded = loaded_after(
        "import headrace as hr\n"
        "p = hr.range(20).map(lambda x: (x, x * 2), workers=2).shuffle(8, seed=1).batch(4)\n"
        "assert sum(len(x) for x, _ in p.shard(2, 0)) + sum(len(x) for x, _ in p.shard(2, 1))"
        " == 20\n"
        "assert callable(p.to_torch) and callable(p.to_keras) and callable(p.to_jax)\n"
    )
    assert not loaded & FRAMEWORKS, loaded & FRAMEWORKS


@pytest.mark.parametrize(("module", "framework"), [("torch", "torch"), ("jax", "jax")])
def test_an_integration_loads_its_own_framework_only(module: str, framework: str) -> None:
    loaded = loaded_after(f"import headrace.{module}")
    assert loaded & FRAMEWORKS == {framework}


def test_the_keras_integration_loads_keras_only_when_used() -> None:
    assert not loaded_after("import headrace.keras") & FRAMEWORKS
    used = loaded_after(
        "import os\nos.environ['KERAS_BACKEND'] = 'torch'\n"
        "import headrace as hr\nhr.range(4).map(lambda x: (x, x)).batch(2).to_keras()"
    )
    assert {"keras", "torch"} <= used  # (Keras itself may load TensorFlow where installed)
