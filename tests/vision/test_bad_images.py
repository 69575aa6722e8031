"""Bad images in a decoding pipeline follow the shared ``on_error`` policy.

A folder of real files written by Pillow holds good images beside the usual kinds of
bad one: a truncated JPEG, an empty file, a text file named ``.jpg``, a valid file of a
format Pillow cannot read (a PDF named ``.png``), an image over the decoder's pixel
limit (a small stand-in for a decompression bomb: 200x200 pixels against
``max_pixels=10_000``), and a file deleted after the folder was listed. Decoded on
worker threads or processes, they raise naming their path, are skipped and counted,
or are written to a quarantine file, while every good image comes out as it is.

The module's functions are sent to worker processes by value: in importlib mode this
module has a name the workers cannot import.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import pytest
from PIL import Image

import headrace as hr
import headrace.vision as hv

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("nothing_left_running")]

#: The decoder of every pipeline here; the limit makes a 200x200 image a "bomb".
decode = functools.partial(hv.decode, max_pixels=10_000)
SIZE = (16, 16)

#: Each bad file, by name, and what the reason given for it says.
BAD = {
    "cat/b_truncated.jpg": r"cannot decode image .*: OSError: .*[Tt]runcated",
    "cat/c_empty.jpg": r"cannot decode image .*: it is empty \(0 bytes\)",
    "cat/d_missing.jpg": r"\[Errno 2\] No such file or directory",
    "dog/b_notes.jpg": r"cannot decode image .*: not in a format Pillow can read",
    "dog/c_vector.png": r"cannot decode image .*: not in a format Pillow can read",
    "dog/d_bomb.png": r"cannot decode image .*: 200x200 is 40,000 pixels, over the limit",
}
GOOD = ["cat/a_grey.png", "cat/e_red.jpg", "dog/a_green.jpg", "dog/e_blue.png"]
MISSING = "d_missing.jpg"

BACKENDS = ["thread", "process"]


# -- the folder --------------------------------------------------------------------------


def gradient(width: int, height: int, seed: int) -> Image.Image:
    """An RGB image that differs from every other seed's."""
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB")


def encoded(image: Image.Image, kind: str) -> bytes:
    out = io.BytesIO()
    image.save(out, format=kind)
    return out.getvalue()


def write(root: Path, names: list[str]) -> dict[str, str]:
    """Write the files ``names`` under ``root``; their full paths by name."""
    contents: dict[str, Callable[[], bytes]] = {
        "cat/a_grey.png": lambda: encoded(gradient(24, 20, 1).convert("L"), "PNG"),
        "cat/e_red.jpg": lambda: encoded(gradient(30, 18, 2), "JPEG"),
        "dog/a_green.jpg": lambda: encoded(gradient(40, 36, 3), "JPEG"),
        "dog/e_blue.png": lambda: encoded(gradient(20, 24, 4), "PNG"),
        "cat/b_truncated.jpg": lambda: (data := encoded(gradient(32, 32, 5), "JPEG"))[
            : len(data) // 2
        ],
        "cat/c_empty.jpg": lambda: b"",
        "cat/d_missing.jpg": lambda: encoded(gradient(20, 20, 6), "JPEG"),
        "dog/b_notes.jpg": lambda: b"label,path\ndog,a_green.jpg\n",
        "dog/c_vector.png": lambda: encoded(gradient(20, 20, 7), "PDF"),
        "dog/d_bomb.png": lambda: encoded(Image.new("RGB", (200, 200), (9, 9, 9)), "PNG"),
    }
    paths = {}
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(contents[name]())
        paths[name] = str(path)
    return paths


def delete_missing(sample: tuple[str, int]) -> None:
    """Delete the file meant to be missing as its pair passes: after the listing."""
    if sample[0].endswith(MISSING):
        os.remove(sample[0])


def decoding(root: Path, **options: Any) -> hr.Pipeline[tuple[np.ndarray, int]]:
    """``image_folder(root)`` decoded on two workers, with ``options`` for the map."""
    return (
        hr.image_folder(root)
        .tap(delete_missing)
        .map(lambda s: (decode(s[0], size=SIZE), s[1]), workers=2, **options)
    )


def expected(paths: dict[str, str]) -> list[tuple[np.ndarray, int]]:
    """The good images, decoded one by one, in listing order, with their labels."""
    return [(decode(paths[name], size=SIZE), int(name.startswith("dog"))) for name in GOOD]


def assert_same_samples(got: list[Any], want: list[Any]) -> None:
    assert len(got) == len(want)
    for (image, label), (want_image, want_label) in zip(got, want, strict=True):
        assert label == want_label
        np.testing.assert_array_equal(image, want_image)


def map_row(run: hr.Run[Any]) -> dict[str, Any]:
    (row,) = [r for r in run.stats() if r["name"].startswith("map(")]
    return row


def stage_notes(error: BaseException) -> list[str]:
    return [n for n in getattr(error, "__notes__", []) if n.startswith("headrace: raised in")]


# -- the bad files are bad ---------------------------------------------------------------


def test_each_bad_file_is_refused_by_decode_and_each_good_one_read(tmp_path: Path) -> None:
    paths = write(tmp_path, [*GOOD, *BAD])
    for name in GOOD:
        assert decode(paths[name], size=SIZE).ndim == 3
    # The file deleted later is a good image until then.
    assert decode(paths["cat/d_missing.jpg"]).shape == (20, 20, 3)
    for name, reason in BAD.items():
        if name.endswith(MISSING):
            continue
        with pytest.raises(hr.DecodeError, match=reason) as info:
            decode(paths[name], size=SIZE)
        assert paths[name] in str(info.value)
    # The "unsupported" file is a valid PDF, a format Pillow writes but cannot read.
    assert Path(paths["dog/c_vector.png"]).read_bytes().startswith(b"%PDF-")
    # Without the small limit the "bomb" is an ordinary image.
    assert hv.decode(paths["dog/d_bomb.png"]).shape == (200, 200, 3)


# -- "raise" -----------------------------------------------------------------------------


@pytest.mark.parametrize("bad", list(BAD))
def test_raise_stops_at_a_bad_image_naming_its_path(bad: str, tmp_path: Path) -> None:
    paths = write(tmp_path, [*GOOD, bad])
    listing = sorted([*GOOD, bad])
    error_type = FileNotFoundError if bad.endswith(MISSING) else hr.DecodeError
    seen: list[Any] = []

    with pytest.raises(error_type, match=BAD[bad]) as info:
        seen.extend(decoding(tmp_path))

    assert type(info.value) is error_type
    assert paths[bad] in str(info.value)
    notes = stage_notes(info.value)
    assert len(notes) == 1, info.value.__notes__
    position = listing.index(bad)
    assert re.search(rf"\bmap\(.* on its input element {position} \(0-based\)", notes[0])
    # In order, the good images before the bad one came out.
    assert_same_samples(seen, expected(paths)[:position])


@pytest.mark.parametrize("bad", ["cat/b_truncated.jpg", "cat/d_missing.jpg"])
def test_raise_on_worker_processes_keeps_the_error_and_its_path(bad: str, tmp_path: Path) -> None:
    paths = write(tmp_path, [*GOOD, bad])
    error_type = FileNotFoundError if bad.endswith(MISSING) else hr.DecodeError

    with pytest.raises(error_type, match=BAD[bad]) as info:
        list(decoding(tmp_path, backend="process", on_error="raise"))

    assert type(info.value) is error_type
    assert paths[bad] in str(info.value)
    assert re.search(r"on its input element 1 \(0-based\)", stage_notes(info.value)[0])


# -- "skip" ------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_skip_yields_every_good_image_and_counts_the_bad_ones(
    backend: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    paths = write(tmp_path, [*GOOD, *BAD])
    pipeline = decoding(tmp_path, backend=backend, on_error="skip")

    with caplog.at_level(logging.WARNING, logger="headrace"), pipeline.iter(stats=True) as run:
        out = list(run)

    assert_same_samples(out, expected(paths))
    row = map_row(run)
    assert (row["read"], row["rejected"]) == (len(GOOD) + len(BAD), len(BAD))
    # The first five rejects are kept as examples, in input order, each naming its file.
    listing = sorted([*GOOD, *BAD])
    first = [name for name in listing if name in BAD][:5]
    assert len(row["examples"]) == len(first)
    for name, example in zip(first, row["examples"], strict=True):
        assert f"input element {listing.index(name)}: " in example
        assert paths[name] in example
        assert re.search(BAD[name], example), example
    summaries = [r.getMessage() for r in caplog.records if r.name == "headrace"]
    assert len(summaries) == 1, summaries
    assert f"rejected {len(BAD)} of {len(listing)} records" in summaries[0]
    assert paths["cat/b_truncated.jpg"] in summaries[0]


# -- quarantine --------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_quarantine_file_names_each_bad_image_and_why(backend: str, tmp_path: Path) -> None:
    root = tmp_path / "images"
    paths = write(root, [*GOOD, *BAD])
    quarantine = tmp_path / "bad-images.jsonl"

    with decoding(root, backend=backend, on_error=quarantine).iter(stats=True) as run:
        out = list(run)

    assert_same_samples(out, expected(paths))
    assert map_row(run)["rejected"] == len(BAD)
    lines = quarantine.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(BAD)
    entries = [json.loads(line) for line in lines]
    listing = sorted([*GOOD, *BAD])
    for name, entry in zip([n for n in listing if n in BAD], entries, strict=True):
        label = int(name.startswith("dog"))
        assert entry["record"] == repr((paths[name], label))
        assert paths[name] in entry["reason"]
        assert re.search(BAD[name], entry["reason"]), entry
        kind = "FileNotFoundError" if name.endswith(MISSING) else "DecodeError"
        assert entry["reason"].startswith(f"{kind}: "), entry
        assert entry["where"].endswith(f"input element {listing.index(name)}")
        assert "map(" in entry["stage"]


def unsupported_dds(path: Path) -> Path:
    """A DDS file whose pixel format (FourCC ``ZZZZ``) Pillow does not implement."""
    header = bytearray(128)
    header[0:4] = b"DDS "
    for offset, value in ((4, 124), (8, 0x1007), (12, 4), (16, 4), (76, 32), (80, 0x4)):
        header[offset : offset + 4] = value.to_bytes(4, "little")
    header[84:88] = b"ZZZZ"
    path.write_bytes(bytes(header) + bytes(64))
    return path


def test_a_format_pillow_does_not_implement_is_a_decode_error_naming_the_file(
    tmp_path: Path,
) -> None:
    bad = unsupported_dds(tmp_path / "texture.dds")
    with pytest.raises(hr.DecodeError, match=r"texture\.dds: NotImplementedError: Unimplemented"):
        decode(str(bad))
    good = tmp_path / "good.png"
    good.write_bytes(encoded(gradient(8, 8, 1), "PNG"))
    # Bad data to a policy narrowed to bad data: the run goes on with the next image.
    pipeline = hr.from_iterable([str(bad), str(good)]).map(
        decode, on_error="skip", catch=(hr.ParseError, OSError)
    )
    with pipeline.iter(stats=True) as run:
        assert [image.shape for image in run] == [(8, 8, 3)]
    assert map_row(run)["rejected"] == 1
