"""Sources: from_iterable, from_generator, range, files and text_lines."""

from __future__ import annotations

import builtins
import bz2
import gzip
import logging
import lzma
import os
import tracemalloc
from pathlib import Path

import pytest

import headrace as hr

# -- from_iterable ------------------------------------------------------------------


@pytest.mark.parametrize("container", [[3, 1, 2], (3, 1, 2), builtins.range(3), "abc", {"k": 1}])
def test_from_iterable_of_a_container_gives_the_same_elements_every_run(container):
    pipeline = hr.from_iterable(container)

    assert list(pipeline) == list(container)
    assert list(pipeline) == list(container)
    assert len(pipeline) == len(container)


def test_from_iterable_of_a_generator_feeds_one_run_then_refuses_loudly():
    pipeline = hr.from_iterable(x * x for x in builtins.range(4))

    assert list(pipeline) == [0, 1, 4, 9]
    with pytest.raises(RuntimeError, match="one-shot iterator") as info:
        list(pipeline)
    assert "from_generator" in str(info.value)


def test_from_iterable_of_a_generator_refuses_to_repeat_rather_than_run_short():
    pipeline = hr.from_iterable(x for x in builtins.range(3)).repeat(2)

    with pytest.raises(RuntimeError, match="one-shot"):
        list(pipeline)


def test_from_iterable_of_a_generator_is_spent_even_by_a_partial_run():
    pipeline = hr.from_iterable(x for x in builtins.range(5))

    assert list(pipeline.take(2)) == [0, 1]
    with pytest.raises(RuntimeError, match="one-shot"):
        list(pipeline)


def test_from_iterable_of_a_plain_iterator_is_one_shot_too():
    pipeline = hr.from_iterable(iter([1, 2]))

    assert list(pipeline) == [1, 2]
    with pytest.raises(RuntimeError, match="one-shot"):
        list(pipeline)


def test_from_iterable_of_a_generator_has_no_known_length():
    pipeline = hr.from_iterable(x for x in builtins.range(3))

    with pytest.raises(TypeError, match="not known"):
        len(pipeline)
    assert pipeline.known_length() is None


def test_from_iterable_refuses_a_non_iterable_at_construction():
    with pytest.raises(TypeError, match="iterable"):
        hr.from_iterable(42)


class CountsIter:
    """A re-iterable container that records every call to its __iter__."""

    def __init__(self, items):
        self.items = list(items)
        self.iter_calls = 0

    def __iter__(self):
        self.iter_calls += 1
        return iter(self.items)


class OneShot:
    """A hand-written iterator (not a generator): iter() returns itself."""

    def __init__(self, n):
        self.n = n
        self.iter_calls = 0

    def __iter__(self):
        self.iter_calls += 1
        return self

    def __next__(self):
        if self.n == 0:
            raise StopIteration
        self.n -= 1
        return self.n


def test_from_iterable_does_not_call_iter_while_building_the_pipeline():
    container = CountsIter([1, 2])
    pipeline = hr.from_iterable(container).map(abs)

    assert container.iter_calls == 0
    assert list(pipeline) == [1, 2]
    assert list(pipeline) == [1, 2]
    assert container.iter_calls == 2


def test_from_iterable_detects_a_hand_written_iterator_as_one_shot_without_iter():
    source = OneShot(3)
    pipeline = hr.from_iterable(source)

    assert source.iter_calls == 0
    assert pipeline.known_length() is None
    assert list(pipeline) == [2, 1, 0]
    with pytest.raises(RuntimeError, match="one-shot"):
        list(pipeline)


def test_from_iterable_accepts_the_old_getitem_sequence_protocol():
    class Squares:
        def __getitem__(self, index):
            if index >= 3:
                raise IndexError(index)
            return index * index

    pipeline = hr.from_iterable(Squares())

    assert list(pipeline) == [0, 1, 4]
    assert list(pipeline) == [0, 1, 4]


@pytest.mark.parametrize("value", [42, None, object()])
def test_from_iterable_refuses_non_iterables_naming_the_argument(value):
    class NotIterable:
        __iter__ = None

        def __getitem__(self, index):
            return index

    for bad in (value, NotIterable()):
        with pytest.raises(TypeError, match=r"^iterable must be iterable"):
            hr.from_iterable(bad)


# -- from_generator -----------------------------------------------------------------


def test_from_generator_calls_the_function_anew_for_every_run():
    calls = []

    def numbers(stop, *, scale):
        calls.append((stop, scale))
        for i in builtins.range(stop):
            yield i * scale

    pipeline = hr.from_generator(numbers, 3, scale=10)

    assert calls == []  # building the pipeline runs nothing
    assert list(pipeline) == [0, 10, 20]
    assert list(pipeline) == [0, 10, 20]
    assert calls == [(3, 10), (3, 10)]


def test_from_generator_accepts_a_function_returning_any_iterable():
    pipeline = hr.from_generator(lambda n: [n] * n, 2)

    assert list(pipeline) == [2, 2]


def test_from_generator_has_no_known_length():
    pipeline = hr.from_generator(lambda: iter([1, 2, 3]))

    with pytest.raises(TypeError):
        len(pipeline)


def test_from_generator_refuses_a_non_callable_naming_fn():
    with pytest.raises(TypeError, match=r"\bfn\b"):
        hr.from_generator([1, 2, 3])


# -- range --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [(5,), (0,), (-3,), (2, 7), (7, 2), (0, 10, 3), (10, 0, -3), (-5, 5, 4), (3, 3, 1)],
)
def test_range_matches_the_builtin_in_every_argument_form(args):
    pipeline = hr.range(*args)
    expected = list(builtins.range(*args))

    assert list(pipeline) == expected
    assert list(pipeline) == expected
    assert len(pipeline) == len(expected)


def test_range_accepts_keyword_step_and_index_like_ints():
    import numpy as np

    assert list(hr.range(0, 6, step=2)) == [0, 2, 4]
    assert list(hr.range(np.int64(3))) == [0, 1, 2]


@pytest.mark.parametrize(
    "args", [(10**20,), (-(10**20), 10**20), (10**20, 0, -3), (0, 10**30, 7), (5, 10**20, -1)]
)
def test_range_beyond_sys_maxsize_has_an_exact_length(args):
    reference = builtins.range(*args)  # len() overflows, but indexing does not
    expected = (reference[-1] - reference.start) // reference.step + 1 if reference else 0

    assert hr.range(*args).known_length() == expected
    assert list(hr.range(*args).take(3)) == list(reference[:3])


def test_range_of_huge_length_takes_and_lists_lazily():
    assert list(hr.range(10**20).take(3)) == [0, 1, 2]
    assert len(hr.range(10**20).take(3)) == 3
    assert hr.range(10**20).known_length() == 10**20
    assert hr.range(0, 10**20, 3).known_length() == (10**20 + 2) // 3
    assert hr.range(10**20, 0, -7).known_length() == (10**20 + 6) // 7


def test_range_refuses_a_zero_step():
    with pytest.raises(ValueError, match=r"\bstep\b"):
        hr.range(0, 10, 0)


@pytest.mark.parametrize(
    ("args", "argument"),
    [
        (("a", 3), "start"),
        ((0, 2.5), "stop"),
        ((0, 3, 1.0), "step"),
        ((True, 3), "start"),
        ((0, 3, False), "step"),
        ((None, 3), "start"),
    ],
)
def test_range_refuses_non_ints_naming_the_argument(args, argument):
    with pytest.raises(TypeError, match=rf"\b{argument}\b"):
        hr.range(*args)


def test_range_with_one_bad_argument_names_it():
    # ``range(x)`` reads ``x`` as the stop, as builtins.range does.
    with pytest.raises(TypeError, match=r"\b(start|stop)\b"):
        hr.range(2.0)


# -- files --------------------------------------------------------------------------


def _touch(path: Path, text: str = "x\n") -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


@pytest.fixture
def tree(tmp_path):
    """A small folder tree; returns the root."""
    for name in ["b.txt", "a.txt", "c.csv", "sub/d.txt", "sub/deeper/e.txt", "sub/f.csv"]:
        _touch(tmp_path / name)
    return tmp_path


def test_files_lists_matches_sorted(tree):
    paths = list(hr.files(str(tree / "*.txt")))

    assert paths == [str(tree / "a.txt"), str(tree / "b.txt")]
    assert all(isinstance(p, str) for p in paths)


def test_files_double_star_crosses_folders(tree):
    paths = list(hr.files(str(tree / "**" / "*.txt")))

    assert paths == sorted(
        str(tree / name) for name in ["a.txt", "b.txt", "sub/d.txt", "sub/deeper/e.txt"]
    )


def test_files_takes_a_list_of_patterns_and_plain_paths(tree):
    pipeline = hr.files([str(tree / "*.csv"), tree / "sub" / "f.csv", str(tree / "a.txt")])

    assert list(pipeline) == [str(tree / "a.txt"), str(tree / "c.csv"), str(tree / "sub/f.csv")]


def test_files_removes_duplicates(tree):
    pattern = str(tree / "*.txt")
    pipeline = hr.files([pattern, pattern, str(tree / "a.txt")])

    assert list(pipeline) == [str(tree / "a.txt"), str(tree / "b.txt")]


def test_files_skips_folders_matched_by_a_glob(tree):
    paths = list(hr.files(str(tree / "*")))

    assert str(tree / "sub") not in paths
    assert len(paths) == 3


@pytest.mark.parametrize("pattern", ["*.parquet", "missing.txt"])
def test_files_raises_naming_a_pattern_that_matches_nothing(tree, pattern):
    missing = str(tree / pattern)
    pipeline = hr.files([str(tree / "*.txt"), missing])

    with pytest.raises(FileNotFoundError) as info:
        list(pipeline)
    assert missing in str(info.value)


def test_files_refuses_bad_pattern_arguments_at_construction():
    with pytest.raises(TypeError, match="pattern"):
        hr.files(3)
    with pytest.raises(TypeError, match="pattern"):
        hr.files(["ok", 3])
    with pytest.raises(ValueError, match="pattern"):
        hr.files([])
    with pytest.raises(ValueError, match="seed"):
        hr.files("*", shuffle=True, seed=-1)


@pytest.fixture
def many_files(tmp_path):
    return [_touch(tmp_path / f"part-{i:02d}.txt") for i in builtins.range(20)]


def test_files_shuffle_is_a_permutation(tmp_path, many_files):
    shuffled = list(hr.files(str(tmp_path / "*.txt"), shuffle=True, seed=3))

    assert sorted(shuffled) == many_files
    assert shuffled != many_files


def test_files_shuffle_with_seed_is_reproducible_per_epoch_and_differs_across_epochs(
    tmp_path, many_files
):
    pattern = str(tmp_path / "*.txt")
    pipeline = hr.files(pattern, shuffle=True, seed=11)

    epoch0, epoch1 = list(pipeline), list(pipeline)
    assert epoch0 != epoch1
    assert list(pipeline.iter(epoch=0)) == epoch0
    assert list(pipeline.iter(epoch=1)) == epoch1
    # A separately built pipeline with the same seed agrees epoch by epoch.
    again = hr.files(pattern, shuffle=True, seed=11)
    assert list(again.iter(epoch=1)) == epoch1
    # Another seed gives another order.
    assert list(hr.files(pattern, shuffle=True, seed=12).iter(epoch=0)) != epoch0


def test_files_length_is_unknown_and_asking_does_no_io(tree, monkeypatch):
    import glob

    calls = []
    real_glob = glob.glob
    monkeypatch.setattr(glob, "glob", lambda *a, **k: calls.append(a) or real_glob(*a, **k))
    pipeline = hr.files(str(tree / "*.txt"))

    assert pipeline.known_length() is None
    with pytest.raises(TypeError, match="not known"):
        len(pipeline)
    assert calls == []

    assert list(pipeline) == [str(tree / "a.txt"), str(tree / "b.txt")]
    assert len(calls) == 1  # list() asks for a length hint; only the run globs


def test_files_seed_without_shuffle_is_refused_naming_seed():
    with pytest.raises(ValueError, match=r"\bseed\b.*shuffle=True"):
        hr.files("*.txt", seed=3)
    with pytest.raises(ValueError, match=r"\bseed\b"):
        hr.files("*.txt", shuffle=False, seed=0)
    hr.files("*.txt", shuffle=True, seed=0)  # fine with shuffle
    hr.files("*.txt", shuffle=False)  # and without a seed


@pytest.mark.parametrize("value", ["no", 1, None])
def test_files_shuffle_must_be_a_bool(value):
    with pytest.raises(TypeError, match="shuffle must be a bool"):
        hr.files("*.txt", shuffle=value)


def test_files_shuffle_accepts_numpy_bools(tmp_path, many_files):
    import numpy as np

    pattern = str(tmp_path / "*.txt")
    assert list(hr.files(pattern, shuffle=np.bool_(False))) == many_files
    assert sorted(hr.files(pattern, shuffle=np.bool_(True), seed=1)) == many_files


def test_files_sees_files_added_between_epochs(tmp_path):
    first = _touch(tmp_path / "1.txt")
    pipeline = hr.files(str(tmp_path / "*.txt"))
    assert list(pipeline) == [first]

    second = _touch(tmp_path / "2.txt")

    assert list(pipeline) == [first, second]


# -- text_lines ---------------------------------------------------------------------

LINES = ["first line", "zweite Zeile äöü", "", "last ✓"]


def _write_text(path: Path, lines: list[str], *, newline: str = "\n", trailing: bool = True):
    data = newline.join(lines) + (newline if trailing else "")
    raw = data.encode("utf-8")
    suffix = path.suffix
    if suffix == ".gz":
        with gzip.open(path, "wb") as stream:
            stream.write(raw)
    elif suffix == ".bz2":
        with bz2.open(path, "wb") as stream:
            stream.write(raw)
    elif suffix == ".xz":
        with lzma.open(path, "wb") as stream:
            stream.write(raw)
    elif suffix == ".lzma":
        with lzma.open(path, "wb", format=lzma.FORMAT_ALONE) as stream:
            stream.write(raw)
    else:
        path.write_bytes(raw)
    return str(path)


@pytest.mark.parametrize("name", ["plain.txt", "data.gz", "data.bz2", "data.xz", "data.lzma"])
def test_text_lines_reads_plain_and_compressed_files_by_extension(tmp_path, name):
    path = _write_text(tmp_path / name, LINES)
    pipeline = hr.text_lines(path)

    assert list(pipeline) == LINES
    assert list(pipeline) == LINES  # re-runnable


def test_text_lines_compressed_file_is_really_compressed(tmp_path):
    # Guards the test above: the .gz file is not plain text that happens to read back.
    path = _write_text(tmp_path / "data.gz", LINES)

    assert Path(path).read_bytes()[:2] == b"\x1f\x8b"


def test_text_lines_extension_is_case_insensitive(tmp_path):
    path = tmp_path / "upper.GZ"
    with gzip.open(path, "wb") as stream:
        stream.write(b"a\nb\n")

    assert list(hr.text_lines(str(path))) == ["a", "b"]


def test_text_lines_strips_crlf_and_lf_endings(tmp_path):
    path = tmp_path / "mixed.txt"
    path.write_bytes(b"one\r\ntwo\nthree\r\n")

    assert list(hr.text_lines(str(path))) == ["one", "two", "three"]


def test_text_lines_keep_ends_keeps_them_as_written(tmp_path):
    path = tmp_path / "mixed.txt"
    path.write_bytes(b"one\r\ntwo\nthree")

    assert list(hr.text_lines(str(path), keep_ends=True)) == ["one\r\n", "two\n", "three"]


@pytest.mark.parametrize("name", ["plain.txt", "data.gz"])
def test_text_lines_reads_a_last_line_without_newline(tmp_path, name):
    path = _write_text(tmp_path / name, ["a", "b", "c"], trailing=False)

    assert list(hr.text_lines(path)) == ["a", "b", "c"]


def test_text_lines_of_an_empty_file_is_empty(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_bytes(b"")

    assert list(hr.text_lines(str(path))) == []


def test_text_lines_reads_a_glob_of_files_in_sorted_order(tmp_path):
    _write_text(tmp_path / "part-2.txt", ["c", "d"])
    _write_text(tmp_path / "part-1.gz", ["a", "b"])
    _write_text(tmp_path / "part-3.bz2", ["e"])

    assert list(hr.text_lines(str(tmp_path / "part-*"))) == ["a", "b", "c", "d", "e"]


def test_text_lines_reads_a_list_of_paths_in_sorted_order(tmp_path):
    second = _write_text(tmp_path / "b.txt", ["2"])
    first = _write_text(tmp_path / "a.txt", ["1"])

    assert list(hr.text_lines([second, Path(first)])) == ["1", "2"]


def test_text_lines_missing_file_raises_naming_it(tmp_path):
    missing = str(tmp_path / "nope.txt")

    with pytest.raises(FileNotFoundError, match=r"nope\.txt"):
        list(hr.text_lines(missing))


@pytest.mark.parametrize("name", ["big.txt", "big.gz"])
def test_text_lines_streams_a_large_file(tmp_path, name):
    count = 200_000
    path = _write_text(tmp_path / name, [f"line {i:07d} " + "x" * 40 for i in range(count)])
    uncompressed = count * 54
    pipeline = hr.text_lines(path).take(5)

    tracemalloc.start()
    try:
        with pipeline.iter() as run:
            first = list(run)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert first == [f"line {i:07d} " + "x" * 40 for i in range(5)]
    # Reading the whole file would hold megabytes; streaming holds a buffer or two.
    assert peak < uncompressed // 20, f"peak {peak} bytes for a {uncompressed}-byte file"


def _bad_file(path: Path) -> str:
    # Lines 3 and 5 hold bytes that are not UTF-8.
    path.write_bytes(b"good 1\ngood 2\nbad \xff here\ngood 4\nalso \xc3\x28 bad\ngood 6\n")
    return str(path)


def test_text_lines_strict_decoding_raises_decode_error_naming_file_and_line(tmp_path):
    path = _bad_file(tmp_path / "bad.txt")
    seen = []

    def read_all():
        for line in hr.text_lines(path):
            seen.append(line)

    with pytest.raises(hr.DecodeError) as info:
        read_all()

    assert isinstance(info.value, ValueError)
    assert f"{path}:3" in str(info.value)
    assert seen == ["good 1", "good 2"]  # everything before the bad line arrives


def test_text_lines_strict_decoding_counts_lines_across_compressed_files(tmp_path):
    good = _write_text(tmp_path / "a.gz", ["x"] * 4)
    bad = tmp_path / "b.gz"
    with gzip.open(bad, "wb") as stream:
        stream.write(b"ok\nok\nok\nok\nok\nok\nbroken \xfe\n")

    with pytest.raises(hr.DecodeError) as info:
        list(hr.text_lines([good, str(bad)]))

    assert f"{bad}:7" in str(info.value)


def test_text_lines_replace_puts_replacement_characters_and_warns(tmp_path, caplog):
    path = _bad_file(tmp_path / "bad.txt")

    with caplog.at_level(logging.WARNING, logger="headrace"):
        lines = list(hr.text_lines(path, errors="replace"))

    assert lines == ["good 1", "good 2", "bad \ufffd here", "good 4", "also \ufffd( bad", "good 6"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "2 lines" in message
    assert "line 3" in message
    assert path in message


def test_text_lines_skip_drops_bad_lines_counts_them_and_warns(tmp_path, caplog):
    path = _bad_file(tmp_path / "bad.txt")

    with (
        caplog.at_level(logging.WARNING, logger="headrace"),
        hr.text_lines(path, on_error="skip").iter(stats=True) as run,
    ):
        lines = list(run)

    assert lines == ["good 1", "good 2", "good 4", "good 6"]
    row = next(row for row in run.stats() if "rejected" in row)
    assert (row["read"], row["rejected"]) == (6, 2)
    assert row["examples"][0].startswith(f"{path}:3: cannot decode byte")
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(messages) == 1
    assert "rejected 2 of 6 records" in messages[0]
    assert f"{path}:3" in messages[0]


def test_text_lines_refuses_the_old_skip_spelling_with_the_new_one():
    with pytest.raises(ValueError, match="on_error='skip'"):
        hr.text_lines("whatever.txt", errors="skip")


def test_text_lines_clean_file_logs_nothing(tmp_path, caplog):
    path = _write_text(tmp_path / "clean.txt", LINES)

    with caplog.at_level(logging.WARNING, logger="headrace"):
        list(hr.text_lines(path, errors="replace"))

    assert caplog.records == []


def test_text_lines_other_ascii_compatible_encodings(tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes("café\nnaïve\n".encode("latin-1"))

    assert list(hr.text_lines(str(path), encoding="latin-1")) == ["café", "naïve"]
    with pytest.raises(hr.DecodeError):
        list(hr.text_lines(str(path)))  # not UTF-8


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32"])
def test_text_lines_refuses_encodings_that_are_not_ascii_compatible(tmp_path, encoding):
    with pytest.raises(ValueError, match="encoding"):
        hr.text_lines(str(tmp_path / "never-opened.txt"), encoding=encoding)


@pytest.mark.parametrize("value", ["no", 1, None])
def test_text_lines_keep_ends_must_be_a_bool(value):
    with pytest.raises(TypeError, match="keep_ends must be a bool"):
        hr.text_lines("whatever.txt", keep_ends=value)


def test_text_lines_refuses_an_unknown_encoding():
    with pytest.raises(ValueError, match="no-such-codec"):
        hr.text_lines("whatever.txt", encoding="no-such-codec")


def test_text_lines_refuses_an_unknown_error_policy():
    with pytest.raises(ValueError, match=r"\berrors\b"):
        hr.text_lines("whatever.txt", errors="ignore")


def test_text_lines_refuses_bad_paths_at_construction():
    with pytest.raises(TypeError, match=r"\bpath\b"):
        hr.text_lines(7)
    with pytest.raises(ValueError, match=r"\bpath\b"):
        hr.text_lines([])


def test_text_lines_accepts_os_pathlike(tmp_path):
    path = _write_text(tmp_path / "p.txt", ["a"])

    assert list(hr.text_lines(Path(path))) == ["a"]
    assert list(hr.text_lines(os.fspath(path))) == ["a"]


def test_a_zero_dimensional_array_has_a_description_and_no_length() -> None:
    import numpy as np

    scalar = hr.from_iterable(np.array(5))
    assert repr(scalar) == "Pipeline(from_iterable(<ndarray>))"
    assert scalar.known_length() is None
    with pytest.raises(TypeError, match="iteration over a 0-d array"):
        list(scalar)
