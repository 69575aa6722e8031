"""``cache()``: keep the first complete run, in memory or in a file, and replay it."""

from __future__ import annotations

import collections

import numpy as np
import pytest

import headrace as hr


class Upstream:
    """A re-runnable source that counts how often it is started and read."""

    def __init__(self, items):
        self.items = list(items)
        self.runs = 0
        self.reads = 0

    def __call__(self):
        self.runs += 1
        for item in self.items:
            self.reads += 1
            yield item

    def pipeline(self) -> hr.Pipeline:
        return hr.from_generator(self)


def leftovers(folder):
    """Files a cache may have left behind besides the cache itself."""
    return sorted(p.name for p in folder.iterdir() if "partial" in p.name)


# -- in memory ----------------------------------------------------------------------


def test_memory_cache_reads_upstream_only_on_the_first_complete_run():
    upstream = Upstream(range(5))
    cached = upstream.pipeline().map(lambda x: x * 2).cache()

    assert list(cached) == [0, 2, 4, 6, 8]
    assert (upstream.runs, upstream.reads) == (1, 5)

    assert list(cached) == [0, 2, 4, 6, 8]
    assert list(cached) == [0, 2, 4, 6, 8]
    assert (upstream.runs, upstream.reads) == (1, 5)


def test_memory_cache_knows_its_length_after_filling():
    upstream = Upstream(range(10))
    cached = upstream.pipeline().filter(lambda x: x % 3 == 0).cache()
    with pytest.raises(TypeError):
        len(cached)

    list(cached)

    assert len(cached) == 4


@pytest.mark.parametrize("stop", ["take", "break", "error"])
def test_memory_cache_keeps_nothing_from_a_partial_run(stop):
    upstream = Upstream(range(5))
    cached = upstream.pipeline().cache()

    if stop == "take":
        assert list(cached.take(3)) == [0, 1, 2]
    elif stop == "break":
        with cached.iter() as run:
            for x in run:
                if x == 2:
                    break
    else:

        def fail_at_three(x):
            if x == 3:
                raise KeyError(x)
            return x

        with pytest.raises(KeyError):
            list(cached.map(fail_at_three))

    assert upstream.runs == 1
    assert list(cached) == [0, 1, 2, 3, 4]  # read again in full: nothing was kept
    assert upstream.runs == 2
    assert list(cached) == [0, 1, 2, 3, 4]
    assert upstream.runs == 2


def test_memory_cache_freezes_upstream_randomness_and_downstream_shuffle_still_varies():
    cached = hr.range(50).shuffle(50).cache()
    first = list(cached)

    assert list(cached) == first
    reshuffled = cached.shuffle(50, seed=1)
    assert sorted(reshuffled) == sorted(first)
    assert list(reshuffled) != list(reshuffled)


def test_memory_cache_is_per_pipeline_object():
    upstream = Upstream(range(3))
    source = upstream.pipeline()

    list(source.cache())
    list(source.cache())  # a new cache stage, so a new first run

    assert upstream.runs == 2


# -- in a file ----------------------------------------------------------------------


def test_file_cache_is_written_only_when_a_run_completes(tmp_path):
    path = tmp_path / "cache.bin"
    upstream = Upstream(range(4))
    cached = upstream.pipeline().cache(path)

    out = []
    with cached.iter() as run:
        for x in run:
            out.append(x)
            assert not path.exists()  # still writing: no complete cache yet

    assert out == [0, 1, 2, 3]
    assert path.is_file()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("stop", ["take", "break", "error"])
def test_file_cache_partial_run_leaves_no_file(tmp_path, stop):
    path = tmp_path / "cache.bin"
    upstream = Upstream(range(5))
    cached = upstream.pipeline().cache(path)

    if stop == "take":
        assert list(cached.take(2)) == [0, 1]
    elif stop == "break":
        with cached.iter() as run:
            for _ in run:
                break
    else:
        with pytest.raises(ZeroDivisionError):
            list(cached.map(lambda x: 1 / (x - 3)))

    assert not path.exists()
    assert list(tmp_path.iterdir()) == []  # no *.partial either

    assert list(cached) == [0, 1, 2, 3, 4]
    assert path.is_file()
    assert leftovers(tmp_path) == []


def test_file_cache_partial_run_dropped_without_close_leaves_no_file(tmp_path):
    import gc

    path = tmp_path / "cache.bin"
    run = Upstream(range(5)).pipeline().cache(path).iter()
    next(run)
    assert leftovers(tmp_path)  # being written beside the target

    del run
    gc.collect()

    assert list(tmp_path.iterdir()) == []


def test_file_cache_later_runs_replay_without_touching_upstream(tmp_path):
    path = tmp_path / "cache.bin"
    upstream = Upstream(["a", "b", "c"])
    cached = upstream.pipeline().map(str.upper).cache(path)

    assert list(cached) == ["A", "B", "C"]
    assert (upstream.runs, upstream.reads) == (1, 3)

    assert list(cached) == ["A", "B", "C"]
    assert list(cached) == ["A", "B", "C"]
    assert (upstream.runs, upstream.reads) == (1, 3)


def test_file_cache_is_shared_by_a_fresh_pipeline_with_the_same_path(tmp_path):
    path = tmp_path / "nested" / "folder" / "cache.bin"  # folders are created
    list(Upstream(range(6)).pipeline().cache(path))

    other = Upstream(range(100))  # different data: proves the file is what replays
    fresh = other.pipeline().cache(str(path))

    assert list(fresh) == [0, 1, 2, 3, 4, 5]
    assert other.runs == 0


def test_file_cache_of_an_empty_run_is_a_valid_cache(tmp_path):
    path = tmp_path / "empty.bin"
    upstream = Upstream([])
    cached = upstream.pipeline().cache(path)

    assert list(cached) == []
    assert path.is_file()
    assert list(cached) == []
    assert upstream.runs == 1


def test_two_runs_filling_one_file_cache_at_once_do_not_collide(tmp_path):
    path = tmp_path / "cache.bin"
    upstream = Upstream(range(6))
    cached = upstream.pipeline().cache(path)
    # Both runs fill the cache in the same thread; the short one gives up after two
    # elements, and its cleanup must not delete the file the other is writing.
    both = hr.from_iterable([0, 1]).interleave(
        lambda i: cached if i == 0 else cached.take(2), cycle_length=2
    )

    assert sorted(both) == [0, 0, 1, 1, 2, 3, 4, 5]
    assert leftovers(tmp_path) == []
    assert upstream.runs == 2

    assert list(cached) == [0, 1, 2, 3, 4, 5]
    assert upstream.runs == 2  # replayed from the file the complete run wrote


def test_file_cache_takes_downstream_stages_after_replay(tmp_path):
    path = tmp_path / "cache.bin"
    cached = Upstream(range(10)).pipeline().cache(path)
    list(cached)

    assert [b.tolist() for b in cached.filter(lambda x: x % 2).batch(2)] == [[1, 3], [5, 7], [9]]


# -- element round trips ------------------------------------------------------------

Point = collections.namedtuple("Point", "x y")


def _elements():
    return [
        np.arange(6, dtype=np.float32).reshape(2, 3),
        (np.array([1, 2], dtype=np.int16), "label", 3),
        {"image": np.zeros((2, 2), dtype=np.uint8), "id": 7},
        Point(1.5, -2),
        None,
        b"\x00bytes",
        "text ✓",
        [1, [2, 3]],
    ]


def _assert_same(left, right):
    assert type(left) is type(right)
    if isinstance(left, np.ndarray):
        assert left.dtype == right.dtype
        np.testing.assert_array_equal(left, right)
    elif isinstance(left, tuple | list):
        assert len(left) == len(right)
        for a, b in zip(left, right, strict=True):
            _assert_same(a, b)
    elif isinstance(left, dict):
        assert list(left) == list(right)
        for key in left:
            _assert_same(left[key], right[key])
    else:
        assert left == right


@pytest.mark.parametrize("where", ["memory", "file"])
def test_cached_elements_round_trip(tmp_path, where):
    path = None if where == "memory" else tmp_path / "cache.bin"
    upstream = Upstream(_elements())
    cached = upstream.pipeline().cache(path)

    first = list(cached)
    replayed = list(cached)

    assert upstream.runs == 1
    assert len(replayed) == len(_elements())
    for original, again, expected in zip(first, replayed, _elements(), strict=True):
        _assert_same(original, expected)
        _assert_same(again, expected)


def test_file_cache_round_trips_in_a_fresh_pipeline(tmp_path):
    path = tmp_path / "cache.bin"
    list(Upstream(_elements()).pipeline().cache(path))

    replayed = list(hr.from_generator(Upstream([]).__call__).cache(path))

    for again, expected in zip(replayed, _elements(), strict=True):
        _assert_same(again, expected)


def test_cache_refuses_a_bad_path_at_construction():
    with pytest.raises(TypeError, match=r"\bpath\b"):
        hr.range(3).cache(3.5)


# -- replaying must not open the upstream at all ------------------------------------


def test_memory_cache_replays_a_one_shot_source():
    cached = hr.from_iterable(x for x in range(3)).cache()

    assert list(cached) == [0, 1, 2]
    assert list(cached) == [0, 1, 2]


def test_file_cache_replays_after_the_source_files_are_gone(tmp_path):
    source = tmp_path / "raw.txt"
    source.write_text("a\nb\n")
    cached = hr.text_lines(str(source)).cache(tmp_path / "cache.bin")
    assert list(cached) == ["a", "b"]

    source.unlink()

    assert list(cached) == ["a", "b"]


# -- damaged cache files ------------------------------------------------------------


def _filled(tmp_path, items):
    path = tmp_path / "cache.bin"
    list(Upstream(items).pipeline().cache(path))
    return path


def _replay(path):
    """A fresh pipeline over the cache file; its upstream would give other data."""
    return hr.from_iterable(["not", "from", "the", "cache"]).cache(path)


@pytest.mark.parametrize("keep", [0.0, 0.3, 0.5, 0.9, "one-byte-short"])
def test_file_cache_cut_short_raises_naming_the_file_before_yielding_anything(tmp_path, keep):
    path = _filled(tmp_path, [np.arange(100) * i for i in range(10)])
    data = path.read_bytes()
    size = len(data) - 1 if keep == "one-byte-short" else int(len(data) * keep)
    path.write_bytes(data[:size])
    seen = []

    def replay_all():
        for item in _replay(path):
            seen.append(item)

    with pytest.raises(hr.HeadraceError, match="cut short") as info:
        replay_all()

    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)
    assert seen == []  # a short epoch never starts


def test_file_cache_cut_at_an_element_boundary_is_not_a_shorter_epoch(tmp_path):
    # The old format ended at EOF: a file cut between two elements replayed as a
    # shorter epoch with no error at all.
    import pickle

    path = _filled(tmp_path, ["a", "b", "c"])
    boundary = len(pickle.dumps("a", protocol=pickle.HIGHEST_PROTOCOL)) * 2
    path.write_bytes(path.read_bytes()[:boundary])

    with pytest.raises(hr.HeadraceError, match="cut short"):
        list(_replay(path))


def test_file_cache_without_the_end_record_is_refused(tmp_path):
    import pickle

    path = tmp_path / "cache.bin"
    with path.open("wb") as stream:  # what an older headrace, or another program, wrote
        for item in [1, 2, 3]:
            pickle.dump(item, stream)

    with pytest.raises(hr.HeadraceError, match=r"does not end with .*end-of-cache record"):
        list(_replay(path))


@pytest.mark.parametrize(("change", "problem"), [(+1, "cannot be read"), (-1, "more than")])
def test_file_cache_whose_count_disagrees_is_refused(tmp_path, change, problem):
    import struct

    path = _filled(tmp_path, [10, 20, 30])
    data = bytearray(path.read_bytes())
    (count,) = struct.unpack("<Q", data[-8:])
    assert count == 3
    data[-8:] = struct.pack("<Q", count + change)
    path.write_bytes(bytes(data))

    with pytest.raises(hr.HeadraceError, match=problem) as info:
        list(_replay(path))
    assert str(path) in str(info.value)


def test_file_cache_of_an_empty_run_cut_short_is_refused(tmp_path):
    path = _filled(tmp_path, [])
    path.write_bytes(path.read_bytes()[:-1])

    with pytest.raises(hr.HeadraceError, match="cut short"):
        list(_replay(path))
    path.write_bytes(b"")
    with pytest.raises(hr.HeadraceError, match="cut short"):
        list(_replay(path))


def test_a_complete_file_cache_still_replays_after_the_checks(tmp_path):
    items = [np.arange(3) * i for i in range(50)]
    path = _filled(tmp_path, items)

    replayed = list(_replay(path))

    assert len(replayed) == 50
    for again, expected in zip(replayed, items, strict=True):
        np.testing.assert_array_equal(again, expected)
