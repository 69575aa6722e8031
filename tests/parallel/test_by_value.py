"""What travels to process workers by value: their tracebacks, and their classes.

Functions and classes that workers cannot import travel by value (cloudpickle
rebuilds their code there), and cloudpickle 3.1.3 and later rename the file of such
code to ``<dynamic-code>``. These tests run a real script as ``__main__`` in a fresh
interpreter, as a user runs a training script, and read the traceback notes its
errors arrive with: for every kind of function that travels by value, under the
cloudpickle the test environment locks and under the oldest one the project admits.
A class that travels back and forth is reused as it is where it is already whole.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import cloudpickle
import pytest

pytestmark = pytest.mark.timeout(180)

#: A module the script registers with ``cloudpickle.register_pickle_by_value``.
HELPERS = """\
def check_positive(x):
    if x == 2:
        raise ArithmeticError(f"helper refused {x}")  # raises: registered_module
    return x
"""

#: The user's script. Each case ends in an error on element 2 in a worker; the line
#: that raises is marked with the case's name.
SCRIPT = """\
import json
import linecache
import sys

import cloudpickle

import headrace as hr
import tb_helpers

cloudpickle.register_pickle_by_value(tb_helpers)


def parse(x):
    if x == 2:
        raise ValueError(f"cannot parse {x}")  # raises: script_function
    return x


def make_limit(limit):
    def within(x):
        if x >= limit:
            raise OverflowError(f"{x} is over {limit}")  # raises: closure
        return x

    return within


class Scaler:
    def __init__(self, factor):
        self.factor = factor

    def apply(self, x):
        if x == 2:
            raise LookupError(f"no scale for {x}")  # raises: method
        return x * self.factor


class Record:
    def __init__(self, x):
        self.x = x

    def check(self):
        if self.x == 2:
            raise TypeError(f"record {self.x} refused")  # raises: element_method
        return self.x


def jitter(x, rng):
    if x == 2:
        raise RuntimeError(f"cannot jitter {x}")  # raises: random_map
    return x + rng.random()


def nested_function():
    def halve(x):
        if x == 2:
            raise ZeroDivisionError(f"cannot halve {x}")  # raises: nested_function
        return x / 2

    return halve


#: Code that exists only in this process's linecache, as a notebook cell's does.
CELL = (
    "def cell_parse(x):\\n"
    "    if x == 2:\\n"
    "        raise KeyError(x)  # raises: in_memory\\n"
    "    return x\\n"
)
linecache.cache["<cell-7>"] = (len(CELL), None, CELL.splitlines(True), "<cell-7>")
cell_scope = {}
exec(compile(CELL, "<cell-7>", "exec"), cell_scope)

numbers = hr.range(4)
cases = {
    "script_function": numbers.map(parse, workers=2, backend="process"),
    "lambda": numbers.map(lambda x: 1 // (x - 2), workers=2, backend="process"),  # raises: lambda
    "closure": numbers.map(make_limit(2), workers=2, backend="process"),
    "nested_function": numbers.map(nested_function(), workers=2, backend="process"),
    "method": numbers.map(Scaler(3).apply, workers=2, backend="process"),
    "element_method": numbers.map(Record).map(lambda r: r.check(), workers=2, backend="process"),
    "registered_module": numbers.map(tb_helpers.check_positive, workers=2, backend="process"),
    "random_map": numbers.random_map(jitter, seed=0, workers=2, backend="process"),
    "nested_pipeline": hr.zip(numbers.map(parse, workers=2, backend="process"), numbers),
    "in_memory": numbers.map(cell_scope["cell_parse"], workers=2, backend="process"),
}
notes = {}
for name, pipeline in cases.items():
    try:
        list(pipeline)
    except Exception as error:
        notes[name] = [n for n in getattr(error, "__notes__", ()) if "traceback in worker" in n]
    else:
        notes[name] = None
json.dump({"cloudpickle": cloudpickle.__version__, "notes": notes}, sys.stdout)
"""

#: The oldest cloudpickle that pyproject.toml admits (``cloudpickle>=...``).
OLDEST = "2.2.0"


def _lines_marked(text: str) -> dict[str, tuple[int, str]]:
    """Each case's raising line: its number (1-based) and its text, stripped."""
    marked = {}
    for number, line in enumerate(text.splitlines(), start=1):
        found = re.search(r"# raises: (\w+)", line)
        if found:
            marked[found.group(1)] = (number, line.strip())
    return marked


def _cell_line() -> tuple[int, str]:
    """Where the in-memory cell raises: its own line 3."""
    return 3, "raise KeyError(x)  # raises: in_memory"


def _release(text: str) -> tuple[int, ...]:
    numbers = [int(part) for part in text.split(".")]
    return tuple(numbers + [0] * (3 - len(numbers)))


def test_the_oldest_admitted_cloudpickle_is_the_one_tested_here() -> None:
    with open(Path(__file__).parents[2] / "pyproject.toml", "rb") as file:
        dependencies = tomllib.load(file)["project"]["dependencies"]
    (bound,) = (
        re.fullmatch(r"cloudpickle>=([\d.]+)(,.*)?", entry)
        for entry in dependencies
        if entry.startswith("cloudpickle")
    )
    assert bound is not None, dependencies
    assert _release(bound.group(1)) == _release(OLDEST)


@pytest.fixture(scope="module")
def oldest_cloudpickle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the oldest admitted cloudpickle, installed from the index."""
    target = tmp_path_factory.mktemp("cloudpickle-oldest")
    # Not held to the lock that .ci/run hands pip through the environment.
    env = {name: value for name, value in os.environ.items() if name != "PIP_CONSTRAINT"}
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run(
        [*pip, "--no-deps", "--target", str(target), f"cloudpickle=={OLDEST}"],
        check=True,
        env=env,
        timeout=150,
    )
    return target


@pytest.mark.parametrize("version", ["locked", "oldest"])
def test_worker_tracebacks_name_the_users_file_line_and_source(
    version: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    (tmp_path / "tb_helpers.py").write_text(HELPERS)
    env = dict(os.environ)
    expected_version = cloudpickle.__version__
    if version == "oldest":
        folder = request.getfixturevalue("oldest_cloudpickle")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(folder), env.get("PYTHONPATH")]))
        expected_version = OLDEST

    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
    )

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["cloudpickle"] == expected_version
    script_lines = _lines_marked(SCRIPT)
    helper_lines = _lines_marked(HELPERS)
    places = {name: (str(script), *where) for name, where in script_lines.items()}
    places["nested_pipeline"] = places["script_function"]
    places["registered_module"] = (
        str(tmp_path / "tb_helpers.py"),
        *helper_lines["registered_module"],
    )
    places["in_memory"] = ("<cell-7>", *_cell_line())
    assert set(result["notes"]) == set(places)
    for name, (filename, number, source) in places.items():
        notes = result["notes"][name]
        assert notes is not None, f"{name}: the run did not fail"
        assert len(notes) == 1, (name, notes)
        frame = f'File "{filename}", line {number}, in '
        assert frame in notes[0], (name, notes[0])
        # The source line follows the frame's own line.
        after = notes[0].split(frame, 1)[1].splitlines()
        assert after[1].strip() == source, (name, notes[0])
        assert "<dynamic-code>" not in notes[0]


def test_functions_sent_by_value_keep_their_files_and_still_run() -> None:
    from headrace import _pickling

    def outer(offset: int):  # type: ignore[no-untyped-def]
        return lambda x: x + offset

    fn = outer(5)
    rebuilt = cloudpickle.loads(_pickling.dumps(fn))
    assert rebuilt(1) == 6
    assert rebuilt.__code__.co_filename == __file__
    assert rebuilt.__code__.co_firstlineno == fn.__code__.co_firstlineno
    # And the same payload loads with plain pickle, as a worker loads it.
    import pickle

    assert pickle.loads(_pickling.dumps(fn))(2) == 7


@pytest.mark.parametrize("mtime", [None, 1.0e9], ids=["no-mtime", "with-mtime"])
def test_in_memory_source_travels_only_when_no_file_holds_it(
    tmp_path: Path, mtime: float | None
) -> None:
    import linecache
    import pickle

    from headrace import _pickling

    source = textwrap.dedent(
        """\
        def f(x):
            return x + 1
        """
    )
    # Newer IPython registers a cell without an mtime, older IPython with one.
    name = "<cell-test-only>"
    linecache.cache[name] = (len(source), mtime, source.splitlines(True), name)
    scope: dict[str, object] = {}
    exec(compile(source, name, "exec"), scope)
    try:
        payload = _pickling.dumps(scope["f"])
        assert b"return x + 1" in payload
        # A function of a real file travels without its file's text.
        on_disk = tmp_path / "on_disk.py"
        on_disk.write_text("def g(x):\n    return x * 31337\n")
        disk_scope: dict[str, object] = {}
        exec(compile(on_disk.read_text(), str(on_disk), "exec"), disk_scope)
        linecache.getlines(str(on_disk))  # cached from the file, with its mtime
        assert b"x * 31337" not in _pickling.dumps(disk_scope["g"])
        del linecache.cache[name]
        rebuilt = pickle.loads(payload)
        assert rebuilt(1) == 2
        assert linecache.getline(name, 2).strip() == "return x + 1"
    finally:
        linecache.cache.pop(name, None)


def test_a_class_that_comes_back_is_reused_as_it_is() -> None:
    import pickle

    from headrace import _pickling

    scale = {"factor": 2}

    class Sample:  # defined in a function: sent by value
        def __init__(self, x: int) -> None:
            self.x = x

        def scaled(self) -> int:
            return self.x * scale["factor"]

    method = Sample.__dict__["scaled"]
    back = pickle.loads(_pickling.dumps(Sample(3)))
    # cloudpickle found the class it already had; its attributes were not set again
    # (they would be copies, their closures and globals snapshots of the payload's).
    assert type(back) is Sample
    assert Sample.__dict__["scaled"] is method
    scale["factor"] = 10
    assert back.scaled() == 30
    # Plain cloudpickle replaces the method with a copy (what this module mends).
    pickle.loads(cloudpickle.dumps(Sample(3)))
    assert Sample.__dict__["scaled"] is not method


def test_a_class_rebuilt_elsewhere_is_complete_after_the_first_payload(tmp_path: Path) -> None:
    from headrace import _pickling

    class Box:
        def __init__(self, x: int) -> None:
            self.x = x

        def get(self) -> int:
            return self.x

    first, second = tmp_path / "first.pkl", tmp_path / "second.pkl"
    first.write_bytes(_pickling.dumps(Box(1)))
    second.write_bytes(_pickling.dumps(Box(2)))
    # A fresh interpreter rebuilds Box from the first payload; the second reuses it.
    code = (
        "import pickle, sys\n"
        "a = pickle.loads(open(sys.argv[1], 'rb').read())\n"
        "get = type(a).__dict__['get']\n"
        "b = pickle.loads(open(sys.argv[2], 'rb').read())\n"
        "print(type(a) is type(b), type(b).__dict__['get'] is get, a.get(), b.get())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(first), str(second)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True", "1", "2"]
