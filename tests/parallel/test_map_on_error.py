"""``on_error=`` of ``map`` and ``random_map``: bad elements raise, are skipped or quarantined.

Every way a map runs is covered: inline (``workers=0``), on threads, on worker
processes and on Ray actors (a local cluster for the module), in input order and
with ``ordered=False``. Bad data is what ``fn`` raises
as :class:`headrace.ParseError` (and its subclasses, such as
:class:`headrace.DecodeError`) or ``OSError``; any other exception is a bug and stops
the run under every policy. The conftest's autouse fixtures check after each test that
no thread, worker process or shared-memory segment is left.

The module's functions are sent to worker processes by value: in importlib mode this
module has a name the workers cannot import.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import pytest

import headrace as hr
from headrace.parallel import element_rng

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.timeout(60)

#: Elements 0 to N - 1 go through every map; ``checked`` rejects those in BAD.
N = 12
BAD = (2, 5, 9)
GOOD = [x for x in range(N) if x not in BAD]

#: The ways a map runs: (workers, backend, ordered).
MODES = [
    pytest.param({"workers": 0}, id="inline"),
    pytest.param({"workers": 2}, id="threads"),
    pytest.param({"workers": 2, "ordered": False}, id="threads-unordered"),
    pytest.param({"workers": 2, "backend": "process"}, id="processes"),
    pytest.param({"workers": 2, "backend": "process", "ordered": False}, id="processes-unordered"),
    pytest.param({"workers": 2, "backend": "ray"}, id="ray"),
    pytest.param({"workers": 2, "backend": "ray", "ordered": False}, id="ray-unordered"),
]
#: One ordered way on each backend, for the checks that order does not change.
ORDERED_MODES = [MODES[0], MODES[1], MODES[3], MODES[5]]

#: Every way, each with a quarantine given as a Path; threads once more with a str.
QUARANTINE_MODES = [
    *(pytest.param(*mode.values, False, id=mode.id) for mode in MODES),
    pytest.param({"workers": 2}, True, id="threads-str"),
]

#: What ``checked`` says about each bad element, as the examples and quarantine show it.
REASONS = {
    2: "ParseError: record 2 is malformed",
    5: "DecodeError: cannot decode image 5.jpg",
    9: "FileNotFoundError: [Errno 2] No such file or directory: '9.jpg'",
}


# -- user functions ----------------------------------------------------------------------


def checked(x: int) -> int:
    """``10 * x``, or a data error of a different kind for each element of BAD."""
    if x == 2:
        raise hr.ParseError("record 2 is malformed")
    if x == 5:
        raise hr.DecodeError("cannot decode image 5.jpg")
    if x == 9:
        raise FileNotFoundError(2, "No such file or directory", "9.jpg")
    return 10 * x


def lenient(x: int, rng: np.random.Generator) -> tuple[int, float]:
    return x, float(rng.random())


def strict(x: int, rng: np.random.Generator) -> tuple[int, float]:
    """``lenient``, but the elements of BAD are bad data."""
    if x in BAD:
        raise hr.ParseError(f"record {x} is malformed")
    return lenient(x, rng)


def divide(x: int) -> int:
    return 60 // (x - 3)


def concatenate(x: int) -> int:
    return x + ("" if x == 3 else 0)  # type: ignore[operator]


def too_long(item: Any) -> int:
    if len(item) > 100:
        raise hr.DecodeError(f"{len(item)} bytes is too long")
    return len(item)


def double(x: int) -> int:
    return 2 * x


# -- helpers -----------------------------------------------------------------------------


def arranged(values: list[Any], mode: dict[str, Any]) -> list[Any]:
    """``values`` as a run in ``mode`` is sure to give them: sorted when unordered."""
    return values if mode.get("ordered", True) else sorted(values)


def stage_notes(error: BaseException) -> list[str]:
    """The notes headrace attached naming a stage."""
    return [n for n in getattr(error, "__notes__", []) if n.startswith("headrace: raised in")]


def policy_row(run: hr.Run[Any]) -> dict[str, Any]:
    """The one stats row that counts rejects."""
    (row,) = [r for r in run.stats() if "rejected" in r]
    return row


def index_of(example: str) -> int:
    found = re.search(r"\binput element (\d+): ", example)
    assert found, example
    return int(found.group(1))


def summaries(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "headrace" and r.levelno == logging.WARNING and "rejected" in r.getMessage()
    ]


def headrace_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("headrace-")}


# -- "raise" -----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_raise_stops_with_the_original_error_noted_with_stage_and_element(
    mode: dict[str, Any],
) -> None:
    seen: list[int] = []

    with pytest.raises((hr.ParseError, OSError)) as info:
        seen.extend(hr.range(N).map(checked, **mode))

    error = info.value
    notes = stage_notes(error)
    assert len(notes) == 1, error.__notes__
    found = re.search(
        r"stage 1 [\"'].*\bchecked\b.*[\"'] on its input element (\d+) \(0-based\)", notes[0]
    )
    assert found, notes
    index = int(found.group(1))
    # In order the first bad element stops the run; unordered, whichever fails first.
    assert index == 2 if mode.get("ordered", True) else index in BAD
    # The function's own error, not a wrapper.
    kind, _, message = REASONS[index].partition(": ")
    assert type(error).__name__ == kind
    assert str(error) == message
    assert 10 * index not in seen
    if mode.get("ordered", True):
        assert seen == [0, 10]


@pytest.mark.parametrize("workers", [0, 2])
def test_raise_is_the_default(workers: int) -> None:
    default = hr.range(N).map(checked, workers=workers)
    explicit = hr.range(N).map(checked, workers=workers, on_error="raise")
    assert repr(default) == repr(explicit)
    for pipeline in (default, explicit):
        with pytest.raises(hr.ParseError, match="record 2 is malformed") as info:
            list(pipeline)
        assert re.search(r"on its input element 2 \(0-based\)", stage_notes(info.value)[0])


@pytest.mark.parametrize("mode", ORDERED_MODES)
def test_raise_keeps_an_os_error_as_it_is(mode: dict[str, Any]) -> None:
    with pytest.raises(FileNotFoundError) as info:
        list(hr.from_iterable([0, 9, 1]).map(checked, **mode))

    assert type(info.value) is FileNotFoundError
    assert info.value.filename == "9.jpg"
    assert re.search(r"on its input element 1 \(0-based\)", " ".join(stage_notes(info.value)))


# -- "skip" ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_skip_drops_bad_elements_counts_them_and_logs_one_summary(
    mode: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    pipeline = hr.range(N).map(checked, on_error="skip", **mode)

    with caplog.at_level(logging.WARNING, logger="headrace"), pipeline.iter(stats=True) as run:
        out = list(run)

    assert arranged(out, mode) == [10 * x for x in GOOD]
    row = policy_row(run)
    assert row["stage"] == 1
    assert row["name"] == pipeline.stages[1].name
    assert (row["read"], row["rejected"]) == (N, len(BAD))
    assert row["read"] == len(out) + row["rejected"]
    assert len(row["examples"]) == len(BAD)
    for example in row["examples"]:
        index = index_of(example)
        assert example.endswith(f"input element {index}: {REASONS[index]}"), example
    assert sorted(index_of(e) for e in row["examples"]) == list(BAD)
    (summary,) = summaries(caplog)
    assert "stage 1 " in summary
    assert f"rejected {len(BAD)} of {N} records" in summary


def test_skip_logs_its_summary_without_stats_too(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="headrace"):
        out = list(hr.range(N).map(checked, workers=2, on_error="skip"))
    assert out == [10 * x for x in GOOD]
    (summary,) = summaries(caplog)
    assert f"rejected {len(BAD)} of {N} records" in summary
    assert "input element 2: ParseError: record 2 is malformed" in summary


def test_a_run_without_bad_elements_logs_nothing_and_counts_every_element(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pipeline = hr.from_iterable(GOOD).map(checked, workers=2, on_error="skip")
    with caplog.at_level(logging.WARNING, logger="headrace"), pipeline.iter(stats=True) as run:
        assert list(run) == [10 * x for x in GOOD]
    assert (policy_row(run)["read"], policy_row(run)["rejected"]) == (len(GOOD), 0)
    assert policy_row(run)["examples"] == []
    assert summaries(caplog) == []


def test_each_run_counts_and_logs_its_own_rejects(caplog: pytest.LogCaptureFixture) -> None:
    pipeline = hr.range(N).map(checked, workers=2, on_error="skip")
    with caplog.at_level(logging.WARNING, logger="headrace"):
        for _ in range(2):
            with pipeline.iter(stats=True) as run:
                assert list(run) == [10 * x for x in GOOD]
            assert (policy_row(run)["read"], policy_row(run)["rejected"]) == (N, len(BAD))
    assert len(summaries(caplog)) == 2


# -- quarantine --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "as_text"),
    QUARANTINE_MODES,
)
def test_a_quarantine_file_gets_one_json_line_per_rejected_element(
    mode: dict[str, Any], as_text: bool, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    quarantine = tmp_path / "rejects.jsonl"
    on_error: str | Path = str(quarantine) if as_text else quarantine
    pipeline = hr.range(N).map(checked, on_error=on_error, **mode)

    with caplog.at_level(logging.WARNING, logger="headrace"), pipeline.iter(stats=True) as run:
        out = list(run)

    assert arranged(out, mode) == [10 * x for x in GOOD]
    assert (policy_row(run)["read"], policy_row(run)["rejected"]) == (N, len(BAD))
    entries = [json.loads(line) for line in quarantine.read_text(encoding="utf-8").splitlines()]
    assert len(entries) == len(BAD)
    entries.sort(key=lambda entry: index_of(entry["where"] + ": "))
    stage = entries[0]["stage"]
    assert stage.startswith("stage 1 "), stage
    assert "checked" in stage, stage
    for bad, entry in zip(BAD, entries, strict=True):
        assert set(entry) == {"stage", "where", "reason", "record"}
        assert entry["stage"] == stage
        assert entry["where"].endswith(f"input element {bad}"), entry
        assert entry["reason"] == REASONS[bad]
        assert entry["record"] == repr(bad)
    (summary,) = summaries(caplog)
    assert f"to {quarantine}" in summary


@pytest.mark.parametrize("mode", ORDERED_MODES)
def test_a_big_element_is_quarantined_cut_to_500_characters(
    mode: dict[str, Any], tmp_path: Path
) -> None:
    quarantine = tmp_path / "rejects.jsonl"
    big = bytes(range(256)) * 40  # 10 kB, four characters a byte in its repr
    long_text = "x" * 2_000
    elements: list[Any] = [b"ok", big, "short", long_text, "A" * 101]

    out = list(hr.from_iterable(elements).map(too_long, on_error=quarantine, **mode))

    assert arranged(out, mode) == [2, 5]
    entries = [json.loads(line) for line in quarantine.read_text(encoding="utf-8").splitlines()]
    records = {index_of(e["where"] + ": "): e["record"] for e in entries}
    assert set(records) == {1, 3, 4}
    assert len(records[1]) == 500
    assert records[1] == repr(big)[:497] + "..."
    # Text elements are recorded as they are (not quoted), and cut the same way.
    assert records[3] == "x" * 497 + "..."
    assert records[4] == "A" * 101
    reasons = {index_of(e["where"] + ": "): e["reason"] for e in entries}
    assert reasons[1] == "DecodeError: 10240 bytes is too long"


# -- what counts as bad data -------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_skip_drops_an_element_whatever_fn_raised_naming_the_type(
    mode: dict[str, Any],
) -> None:
    # tf.data's ignore_errors: any Exception of fn drops its element, counted with
    # the exception's type.
    pipeline = hr.range(N).map(divide, on_error="skip", **mode)
    with pipeline.iter(stats=True) as run:
        out = sorted(run)
    assert out == sorted(60 // (x - 3) for x in range(N) if x != 3)
    row = next(r for r in run.stats() if "rejected" in r)
    assert row["rejected"] == 1
    assert row["examples"][0].startswith("input element 3: ZeroDivisionError: ")


@pytest.mark.parametrize("mode", MODES)
def test_catch_narrows_skip_and_a_bug_then_stops_the_run(mode: dict[str, Any]) -> None:
    narrow = (hr.ParseError, OSError)
    with pytest.raises(ZeroDivisionError) as info:
        list(hr.range(N).map(divide, on_error="skip", catch=narrow, **mode))
    assert type(info.value) is ZeroDivisionError
    notes = stage_notes(info.value)
    assert len(notes) == 1, info.value.__notes__
    assert re.search(
        r"\bdivide\b.*catch=\(ParseError, OSError\).* on its input element 3 \(0-based\)", notes[0]
    ), notes
    # The same narrowing keeps the data errors it names.
    pipeline = hr.range(N).map(checked, on_error="skip", catch=narrow, **mode)
    assert sorted(pipeline) == sorted(10 * x for x in range(N) if x not in BAD)


@pytest.mark.parametrize("mode", ORDERED_MODES)
def test_a_bug_outside_catch_stops_the_run_under_quarantine_too(
    mode: dict[str, Any], tmp_path: Path
) -> None:
    quarantine = tmp_path / "rejects.jsonl"
    with pytest.raises(TypeError) as info:
        list(hr.range(N).map(concatenate, on_error=quarantine, catch=hr.ParseError, **mode))

    assert type(info.value) is TypeError
    assert re.search(r"\bconcatenate\b.* on its input element 3 ", stage_notes(info.value)[0])
    assert not quarantine.exists()  # nothing was caught


def test_memory_errors_and_interrupts_are_never_skipped() -> None:
    def out_of_memory(x: int) -> int:
        if x == 2:
            raise MemoryError
        return x

    with pytest.raises(MemoryError):
        list(hr.range(5).map(out_of_memory, on_error="skip"))
    with pytest.raises(MemoryError):
        list(hr.range(5).map(out_of_memory, workers=2, on_error="skip", catch=MemoryError))


@pytest.mark.parametrize(
    ("catch", "error", "message"),
    [
        (KeyboardInterrupt, TypeError, "subclasses of Exception"),
        ((ValueError, "x"), TypeError, "an exception type or a tuple of them"),
        ((), ValueError, "at least one exception type"),
    ],
)
def test_a_bad_catch_is_refused(catch: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        hr.range(3).map(double, on_error="skip", catch=catch)


def test_catch_without_on_error_is_refused() -> None:
    with pytest.raises(ValueError, match="catch= says which exceptions on_error applies to"):
        hr.range(3).map(double, catch=ValueError)


def two_then_fail() -> Iterator[int]:
    yield 0
    yield 1
    raise OSError("the source's disk is gone")


def test_an_upstream_error_is_not_taken_for_bad_data_of_this_stage() -> None:
    pipeline = hr.from_generator(two_then_fail).map(double, workers=2, on_error="skip")
    seen: list[int] = []
    with pytest.raises(OSError, match="disk is gone") as info:
        seen.extend(pipeline)
    assert seen in ([], [0], [0, 2])  # elements already done may or may not come first
    notes = stage_notes(info.value)
    assert len(notes) == 1, info.value.__notes__
    assert "stage 0 'from_generator(two_then_fail)'" in notes[0]


# -- random_map --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_random_map_skip_keeps_each_good_element_s_own_draw(mode: dict[str, Any]) -> None:
    pipeline = hr.range(N).random_map(strict, seed=7, on_error="skip", **mode)

    with pipeline.iter(epoch=3, stats=True) as run:
        out = list(run)

    inline = list(hr.range(N).random_map(strict, seed=7, on_error="skip").iter(epoch=3))
    assert arranged(out, mode) == arranged(inline, mode)
    # Positions are the stage's input indexes: a rejected element shifts no other draw.
    assert [x for x, _ in inline] == GOOD
    assert inline == [(x, float(element_rng(7, (3,), x).random())) for x in GOOD]
    everything = list(hr.range(N).random_map(lenient, seed=7).iter(epoch=3))
    assert inline == [pair for pair in everything if pair[0] not in BAD]
    assert (policy_row(run)["read"], policy_row(run)["rejected"]) == (N, len(BAD))


def test_random_map_quarantines_and_raises_like_map(tmp_path: Path) -> None:
    quarantine = tmp_path / "rejects.jsonl"
    out = list(hr.range(N).random_map(strict, seed=1, workers=2, on_error=quarantine))
    assert [x for x, _ in out] == GOOD
    entries = [json.loads(line) for line in quarantine.read_text(encoding="utf-8").splitlines()]
    assert [entry["record"] for entry in entries] == [repr(x) for x in BAD]
    assert all("random_map(strict" in entry["stage"] for entry in entries)

    with pytest.raises(hr.ParseError) as info:
        list(hr.range(N).random_map(strict, seed=1, workers=2))
    assert re.search(r"random_map\(strict.* on its input element 2 ", stage_notes(info.value)[0])


# -- length, arguments, names ------------------------------------------------------------


def skipping(on_error: Any) -> list[hr.Pipeline[Any]]:
    source = hr.range(N)
    return [
        source.map(double, on_error=on_error),
        source.map(double, workers=2, on_error=on_error),
        source.map(double, workers=2, backend="process", ordered=False, on_error=on_error),
        source.random_map(lenient, seed=0, on_error=on_error),
        source.random_map(lenient, seed=0, workers=2, on_error=on_error),
    ]


@pytest.mark.parametrize("on_error", ["skip", "rejects.jsonl"])
def test_a_map_that_may_drop_elements_has_no_known_length(on_error: str) -> None:
    for pipeline in skipping(on_error):
        assert pipeline.known_length() is None, pipeline
        with pytest.raises(TypeError, match="not known before running"):
            len(pipeline)


def test_under_raise_the_length_passes_through() -> None:
    for pipeline in skipping("raise"):
        assert pipeline.known_length() == N, pipeline
        assert len(pipeline) == N
    assert len(hr.range(N).map(double, workers=2).batch(5)) == 3


@pytest.mark.parametrize("on_error", ["ignore", "Skip", "", 3, None])
def test_an_invalid_on_error_is_refused_when_the_pipeline_is_built(on_error: Any) -> None:
    source = hr.range(N)
    builders: list[Callable[[], Any]] = [
        lambda: source.map(double, on_error=on_error),
        lambda: source.map(double, workers=2, on_error=on_error),
        lambda: source.map(double, workers=2, backend="process", on_error=on_error),
        lambda: source.random_map(lenient, seed=0, on_error=on_error),
        lambda: source.random_map(lenient, seed=0, workers=2, on_error=on_error),
    ]
    for build in builders:
        with pytest.raises(ValueError, match="on_error must be 'raise', 'skip' or a quarantine"):
            build()


def test_the_stage_name_shows_on_error_unless_it_is_raise(tmp_path: Path) -> None:
    source = hr.range(3)
    quarantine = tmp_path / "rejects.jsonl"
    expected = [
        (source.map(double, on_error="skip"), "map(double, on_error='skip')"),
        (source.map(double, workers=2, on_error="skip"), "map(double, workers=2, on_error='skip')"),
        (
            source.map(double, workers=2, backend="process", ordered=False, on_error=quarantine),
            "map(double, workers=2, backend='process', ordered=False, "
            f"on_error={str(quarantine)!r})",
        ),
        (source.map(double, workers=2, on_error="raise"), "map(double, workers=2)"),
        (source.map(double, on_error="raise"), "map(double)"),
        (
            source.random_map(lenient, seed=4, on_error="skip"),
            "random_map(lenient, seed=4, on_error='skip')",
        ),
        (
            source.random_map(lenient, seed=4, workers=3, on_error="skip"),
            "random_map(lenient, seed=4, workers=3, on_error='skip')",
        ),
        (source.random_map(lenient, seed=4, workers=3), "random_map(lenient, seed=4, workers=3)"),
    ]
    for pipeline, name in expected:
        assert repr(pipeline) == f"Pipeline(range(0, 3) -> {name})"


# -- stopping early ----------------------------------------------------------------------


def every_fourth_is_bad(x: int) -> int:
    if x % 4 == 1:
        raise hr.ParseError(f"record {x} is malformed")
    return 10 * x


@pytest.mark.parametrize(
    "mode",
    [
        pytest.param({"workers": 2}, id="threads"),
        pytest.param({"workers": 3, "ordered": False}, id="threads-unordered"),
        pytest.param({"workers": 2, "backend": "process"}, id="processes"),
    ],
)
def test_a_consumer_that_stops_early_leaves_nothing_running(
    mode: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
    threads_left: Callable[..., list[str]],
    children_left: Callable[..., list[str]],
) -> None:
    before = headrace_threads()
    pipeline = hr.range(10**9).map(every_fourth_is_bad, on_error="skip", **mode)
    out: list[int] = []

    with caplog.at_level(logging.WARNING, logger="headrace"), pipeline.iter(stats=True) as run:
        for x in run:
            out.append(x)
            if len(out) == 2:
                break

    assert len(out) == 2
    assert all(x % 40 != 10 for x in out)
    if mode.get("ordered", True):
        assert out == [0, 20]
    assert threads_left() == []
    assert headrace_threads() <= before
    # Worker processes are kept for the pipeline's next run, until it is closed.
    pipeline.close()
    assert children_left() == []
    row = policy_row(run)
    assert row["read"] < 10**9  # the workers stopped pulling
    assert row["read"] == len(out) + row["rejected"]
    # The summary is logged as the run closes, at most once.
    assert len(summaries(caplog)) == (1 if row["rejected"] else 0)


def test_a_quarantine_file_that_cannot_be_opened_stops_the_run_naming_the_stage(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = tmp_path / "no-such-folder" / "rejects.jsonl"
    pipeline = hr.range(N).map(checked, on_error=missing)
    with pytest.raises(FileNotFoundError) as raised:
        list(pipeline)
    assert any("cannot open its quarantine file" in note for note in raised.value.__notes__)
    # Nothing was quarantined, so the summary claims no rejected record.
    assert "rejected" not in caplog.text
