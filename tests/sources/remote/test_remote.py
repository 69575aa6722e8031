"""File sources over fsspec URLs, read from real servers: HTTP and S3 (moto).

Every test writes real files, reads them locally and through a server, and expects
the same records; what differs is only the path spelling (a URL for a local path).
"""

from __future__ import annotations

import gzip
import json
import re
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from headrace import ParseError, files, read_jsonl, text_lines
from headrace.readers import image_folder

ROWS = [{"id": i, "name": f"row {i}"} for i in range(50)]


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    data = "".join(json.dumps(row) + "\n" for row in rows).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def parts(folder: Any, count: int = 3, suffix: str = ".jsonl") -> list[list[Any]]:
    """``part-0.jsonl`` ... under the folder, ten rows each, uploaded; their rows."""
    chunks = [ROWS[10 * i : 10 * i + 10] for i in range(count)]
    for i, rows in enumerate(chunks):
        write_jsonl(folder.local / f"part-{i}{suffix}", rows)
    folder.sync()
    return chunks


def tally_of(run: Any) -> tuple[int, int]:
    (row,) = [r for r in run.stats() if "rejected" in r]
    return row["read"], row["rejected"]


# -- the servers themselves ---------------------------------------------------------------


def test_the_http_server_answers_byte_ranges_as_real_servers_do(http_folder):
    (http_folder.local / "digits.txt").write_bytes(b"0123456789")

    def get(spec: str) -> tuple[int, bytes, str | None]:
        request = urllib.request.Request(http_folder.url_of("digits.txt"))
        request.add_header("Range", spec)
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read(), response.headers["Content-Range"]

    assert get("bytes=2-4") == (206, b"234", "bytes 2-4/10")
    assert get("bytes=7-") == (206, b"789", "bytes 7-9/10")
    assert get("bytes=-2") == (206, b"89", "bytes 8-9/10")
    with pytest.raises(urllib.error.HTTPError, match="416"):
        get("bytes=10-12")


# -- reading ------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_read_jsonl_over_a_url_reads_what_the_local_file_holds(remote_folder, suffix):
    write_jsonl(remote_folder.local / f"rows{suffix}", ROWS)
    remote_folder.sync()

    remote = list(read_jsonl(remote_folder.url_of(f"rows{suffix}")))

    assert remote == list(read_jsonl(str(remote_folder.local / f"rows{suffix}"))) == ROWS


@pytest.mark.parametrize("suffix", [".txt", ".txt.gz"])
def test_text_lines_over_a_url_reads_what_the_local_file_holds(remote_folder, suffix):
    text = "".join(f"line {i}\r\n" if i % 3 else f"línea {i}\n" for i in range(40)).encode()
    (remote_folder.local / f"a{suffix}").write_bytes(
        gzip.compress(text) if suffix.endswith(".gz") else text
    )
    remote_folder.sync()

    remote = list(text_lines(remote_folder.url_of(f"a{suffix}"), keep_ends=True))

    assert remote == list(text_lines(str(remote_folder.local / f"a{suffix}"), keep_ends=True))
    assert "".join(remote).encode() == text


def test_a_file_bigger_than_a_read_block_streams_whole(remote_folder):
    # fsspec fetches remote files in blocks of 5 MiB by default: reading this one
    # takes several requests for byte ranges, each going on where the last stopped.
    lines = [f"{i:07d} " + "x" * 92 for i in range(60_000)]  # 6 MB
    (remote_folder.local / "big.txt").write_text("\n".join(lines) + "\n")
    remote_folder.sync()

    remote = list(text_lines(remote_folder.url_of("big.txt")))

    assert len(remote) == len(lines)
    assert remote == lines


def test_a_remote_read_resumes_from_a_saved_position(remote_folder, resumed):
    parts(remote_folder)
    pipeline = read_jsonl([remote_folder.url_of(f"part-{i}.jsonl") for i in range(3)])

    for cut in (0, 7, 10, 25, 30):
        before, after, saved = resumed(pipeline, cut)
        assert before + after == ROWS[:30], (cut, saved)


# -- finding files ---------------------------------------------------------------------


def test_a_glob_over_a_url_finds_what_the_local_glob_finds(remote_folder):
    parts(remote_folder)
    (remote_folder.local / "notes.txt").write_text("not a match\n")
    remote_folder.sync()

    found = list(files(remote_folder.url_of("*.jsonl")))

    assert found == [remote_folder.url_of(f"part-{i}.jsonl") for i in range(3)]
    assert list(read_jsonl(remote_folder.url_of("*.jsonl"))) == ROWS[:30]


def test_a_double_star_glob_over_a_url_yields_files_not_folders(remote_folder):
    write_jsonl(remote_folder.local / "a" / "one.jsonl", ROWS[:2])
    write_jsonl(remote_folder.local / "a" / "b" / "two.jsonl", ROWS[2:4])
    remote_folder.sync()

    found = list(files(remote_folder.url_of("**")))

    assert found == [remote_folder.url_of("a/b/two.jsonl"), remote_folder.url_of("a/one.jsonl")]
    assert list(read_jsonl(remote_folder.url_of("**/*.jsonl"))) == ROWS[2:4] + ROWS[:2]


def test_a_glob_over_a_url_that_matches_nothing_is_an_error_naming_it(remote_folder):
    parts(remote_folder, count=1)
    pattern = remote_folder.url_of("*.csv")

    with pytest.raises(FileNotFoundError, match=re.escape(f"no files match '{pattern}'")):
        list(read_jsonl(pattern))


def test_braces_expand_over_http_urls(http_folder):
    parts(http_folder, count=4)
    pattern = http_folder.url_of("part-{0..2}.jsonl")

    assert list(files(pattern)) == [http_folder.url_of(f"part-{i}.jsonl") for i in range(3)]
    assert list(read_jsonl(pattern)) == ROWS[:30]


def test_an_http_url_with_a_query_is_a_file_not_a_glob(http_folder):
    # '?' starts the query of a URL (a signed link, a version); it is no wildcard there.
    # Like any plain URL it is kept without asking the server (a signed link may
    # answer only the one request it was signed for).
    parts(http_folder, count=1)
    url = http_folder.url_of("part-0.jsonl?version=2")
    absent = http_folder.url_of("absent.jsonl?version=2")

    assert list(files([url, absent])) == [absent, url]
    assert list(read_jsonl(url)) == ROWS[:10]


# -- missing files and the error policy ----------------------------------------------------


def test_a_missing_remote_file_is_an_error_naming_its_url_or_a_counted_reject(remote_folder):
    parts(remote_folder, count=2)
    missing = remote_folder.url_of("part-9.jsonl")
    urls = [remote_folder.url_of("part-0.jsonl"), missing, remote_folder.url_of("part-1.jsonl")]

    with pytest.raises(ParseError, match=rf"{missing}: cannot open the file"):
        list(read_jsonl(urls))

    with read_jsonl(urls, on_error="skip").iter(stats=True) as run:
        assert list(run) == ROWS[:20]
    assert tally_of(run) == (21, 1)


# -- sharding by file -----------------------------------------------------------------------


@pytest.mark.parametrize("num_shards", [2, 3])
def test_remote_shards_hold_the_files_local_shards_hold(remote_folder, num_shards):
    parts(remote_folder, count=5)
    remote = [
        list(read_jsonl(remote_folder.url_of("*.jsonl"), num_shards=num_shards, shard_index=i))
        for i in range(num_shards)
    ]
    local = [
        list(read_jsonl(str(remote_folder.local / "*.jsonl"), num_shards=num_shards, shard_index=i))
        for i in range(num_shards)
    ]

    assert remote == local
    assert sorted(row["id"] for shard in remote for row in shard) == [r["id"] for r in ROWS[:50]]


# -- image folders -----------------------------------------------------------------------


def write_images(root: Path) -> None:
    from PIL import Image

    colours = {"cat": (200, 10, 10), "dog": (10, 200, 10), "emu": (10, 10, 200)}
    for index, (name, colour) in enumerate(colours.items()):
        for n in range(index + 2):
            folder = root / name / ("nested" if n == 3 else "")
            folder.mkdir(parents=True, exist_ok=True)
            kind = "PNG" if n % 2 else "JPEG"
            Image.new("RGB", (8, 6), colour).save(folder / f"{n}.{kind.lower()}", kind)
    (root / "cat" / "labels.csv").write_text("not an image\n")
    (root / "README.txt").write_text("a file beside the class folders\n")


def test_image_folder_over_a_url_lists_what_the_local_folder_holds(remote_folder):
    write_images(remote_folder.local)
    remote_folder.sync()
    local = image_folder(str(remote_folder.local))
    remote = image_folder(remote_folder.url + "/")

    items = list(remote)

    assert remote.classes == local.classes == ("cat", "dog", "emu")
    prefix = str(remote_folder.local) + "/"
    assert items == [(remote_folder.url_of(p[len(prefix) :]), label) for p, label in local]
    assert [label for _, label in items] == [0, 0, 1, 1, 1, 2, 2, 2, 2]


def test_remote_image_bytes_are_the_local_ones(s3_folder):
    from PIL import Image

    from headrace.sources.files import open_binary

    write_images(s3_folder.local)
    s3_folder.sync()

    for url, label in image_folder(s3_folder.url, num_shards=2, shard_index=1):
        local = s3_folder.local / url[len(s3_folder.url) + 1 :]
        with open_binary(url) as stream:
            data = stream.read()
        assert data == local.read_bytes()
        with Image.open(local) as image:
            assert image.size == (8, 6)
        assert url.split("/")[4] == ("cat", "dog", "emu")[label]


def test_decode_reads_remote_images_as_it_reads_local_ones(remote_folder):
    from headrace.vision import decode

    write_images(remote_folder.local)
    remote_folder.sync()
    prefix = remote_folder.url + "/"
    decoded = image_folder(prefix).map(lambda sample: decode(sample[0]), workers=2)

    for (url, _), array in zip(image_folder(prefix), decoded, strict=True):
        local = remote_folder.local / url[len(prefix) :]
        assert np.array_equal(array, decode(local)), url
        assert array.shape == (6, 8, 3)
    with pytest.raises(FileNotFoundError):
        decode(prefix + "cat/missing.png")
