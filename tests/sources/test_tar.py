"""``read_tar_shards``: WebDataset tar shards, grouped into samples as webdataset does.

Shards are written by webdataset's own ``TarWriter`` / ``ShardWriter`` and read back by
both libraries; damaged and hostile shards are real tar files made with ``tarfile``
and cut short or crafted member by member.
"""

from __future__ import annotations

import gc
import gzip
import io
import json
import lzma
import pickle
import random
import re
import tarfile
import tracemalloc
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import headrace as hr
from headrace.readers import read_tar_shards
from headrace.sources.files import ReadPosition
from headrace.sources.tar import ReadTarShards


def samples(shard: int, count: int) -> list[dict[str, Any]]:
    """Samples as a writer gets them: a key, and bytes (or text) per field."""
    rng = random.Random(shard)
    out = []
    for i in range(count):
        out.append(
            {
                "__key__": f"train/s{shard:02d}_{i:04d}",
                "jpg": rng.randbytes(rng.randrange(0, 1500)),
                "cls": str(i % 10).encode(),
                "seg.png": rng.randbytes(40),
                "json": json.dumps({"i": i}),
            }
        )
    return out


def write_shards(folder: Path, shards: int, per_shard: int) -> str:
    """``shards`` files of ``per_shard`` samples by webdataset's ShardWriter; the pattern."""
    import webdataset as wds

    pattern = str(folder / "data-%03d.tar")
    with wds.ShardWriter(pattern, maxcount=per_shard, verbose=0, mtime=0) as writer:
        for shard in range(shards):
            for sample in samples(shard, per_shard):
                writer.write(sample)
    return str(folder / f"data-{{000..{shards - 1:03d}}}.tar")


def webdataset_samples(paths: Sequence[str]) -> list[dict[str, Any]]:
    """What webdataset's own tar iterators make of the shards (no decoding)."""
    from webdataset.tariterators import group_by_keys, tar_file_expander

    streams = [open(path, "rb") for path in paths]  # noqa: SIM115
    try:
        sources = [
            {"url": path, "stream": stream} for path, stream in zip(paths, streams, strict=True)
        ]
        return list(group_by_keys(tar_file_expander(sources)))
    finally:
        for stream in streams:
            stream.close()


def shard(path: Path, members: Sequence[tarfile.TarInfo | tuple[str, bytes]]) -> Path:
    """A tar file holding ``members``: ``(name, data)`` for regular files, or headers."""
    with tarfile.open(path, "w") as archive:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                archive.addfile(member)
            else:
                name, data = member
                info = tarfile.TarInfo(name)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    return path


def special(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


def run_skip(
    pipeline: hr.Pipeline[Any], row: Callable[[Any], dict[str, Any]]
) -> tuple[list[Any], dict[str, Any]]:
    with pipeline.iter(stats=True) as run:
        got = list(run)
    stats = row(run)
    assert stats["read"] == len(got) + stats["rejected"]
    return got, stats


# -- webdataset compatibility ---------------------------------------------------------


def test_shards_from_webdatasets_shardwriter_read_as_webdataset_reads_them(tmp_path):
    pattern = write_shards(tmp_path, shards=3, per_shard=5)
    paths = [str(tmp_path / f"data-{n:03d}.tar") for n in range(3)]
    got = list(read_tar_shards(pattern))
    assert got == webdataset_samples(paths)
    assert len(got) == 15
    first = samples(0, 5)[0]
    assert got[0] == {
        "__key__": "train/s00_0000",
        "__url__": paths[0],
        "jpg": first["jpg"],
        "cls": b"0",
        "seg.png": first["seg.png"],
        "json": b'{"i": 0}',
    }


def test_samples_equal_those_of_webdatasets_own_webdataset_pipeline(tmp_path):
    import webdataset as wds

    pattern = write_shards(tmp_path, shards=2, per_shard=4)
    with warnings.catch_warnings():
        # webdataset leaves its shard files for the garbage collector to close.
        warnings.simplefilter("ignore", ResourceWarning)
        dataset = wds.WebDataset(pattern, shardshuffle=False)
        theirs = [{k: v for k, v in s.items() if k != "__local_path__"} for s in dataset]
        del dataset
        gc.collect()
    assert list(read_tar_shards(pattern)) == theirs
    assert len(theirs) == 8


def test_the_key_ends_at_the_first_dot_of_the_file_name_and_fields_are_lower_cased(tmp_path):
    path = shard(
        tmp_path / "names.tar",
        [
            ("dir.v1/cat.0001.JPG", b"a"),
            ("dir.v1/cat.0001.Json", b"b"),
            ("dir.v1/cat.0002.jpg", b"c"),  # same key, field 0002.jpg
            ("dog.seg.png", b"d"),
            ("./dog.png", b"e"),  # another key: "./dog"
        ],
    )
    got = list(read_tar_shards(str(path)))
    assert got == webdataset_samples([str(path)])
    assert [(s["__key__"], sorted(k for k in s if not k.startswith("__"))) for s in got] == [
        ("dir.v1/cat", ["0001.jpg", "0001.json", "0002.jpg"]),
        ("dog", ["seg.png"]),
        ("./dog", ["png"]),
    ]


_NAME_PARTS = st.sampled_from(["a", "b", ".", "/", "_", "__", "X.", ".Y", "d/"])
# webdataset's default ``skip_meta``: members it passes over as metadata.
_WDS_META = re.compile(r"__[^/]*__($|/)")


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.lists(_NAME_PARTS, min_size=1, max_size=6).map("".join), max_size=8))
def test_any_member_names_group_as_in_webdataset(tmp_path, tally_row, names):
    from webdataset.tariterators import base_plus_ext

    names = [
        n
        for n in names
        # Refused here, read by webdataset: tested on their own below.
        if not n.startswith("/")
        and ".." not in n.split("/")
        # tarfile reads a member whose name ends in "/" back as a folder.
        and not n.endswith("/")
    ]
    path = shard(tmp_path / "hypothesis.tar", [(n, n.encode()) for n in names])
    with read_tar_shards(str(path), on_error="skip").iter(stats=True) as run:
        ours = list(run)
    # A name without an extension is dropped quietly there, refused and counted here.
    unnamed = [n for n in names if base_plus_ext(n)[0] is None and not _WDS_META.match(n)]
    try:
        theirs = webdataset_samples([str(path)])
    except ValueError:  # webdataset stops at a repeated field; here that member is refused
        assert tally_row(run)["rejected"] > len(unnamed)
        return
    assert ours == theirs
    assert tally_row(run)["rejected"] == len(unnamed)


def test_members_of_a_key_must_be_adjacent_and_a_sample_never_spans_two_shards(tmp_path):
    first = shard(tmp_path / "a.tar", [("x.jpg", b"1"), ("y.jpg", b"2"), ("x.cls", b"3")])
    second = shard(tmp_path / "b.tar", [("x.png", b"4"), ("x.txt", b"5")])
    got = list(read_tar_shards(str(tmp_path / "*.tar")))
    assert got == webdataset_samples([str(first), str(second)])
    assert [(s["__key__"], s["__url__"][-5:]) for s in got] == [
        ("x", "a.tar"),
        ("y", "a.tar"),
        ("x", "a.tar"),
        ("x", "b.tar"),
    ]


def test_metadata_members_and_folders_are_passed_over(tmp_path, tally_row):
    folder = tarfile.TarInfo("train")
    folder.type = tarfile.DIRTYPE
    path = shard(
        tmp_path / "meta.tar",
        [
            ("__index__", b"{}"),
            ("__meta__/info.json", b"{}"),
            folder,
            ("train/a.jpg", b"1"),
            ("train/a.cls", b"2"),
        ],
    )
    with read_tar_shards(str(path)).iter(stats=True) as run:
        got = list(run)
    assert got == [{"__key__": "train/a", "__url__": str(path), "jpg": b"1", "cls": b"2"}]
    assert got == webdataset_samples([str(path)])
    assert tally_row(run)["read"] == 1


def test_compressed_shards_and_a_gzip_shard_without_the_extension(tmp_path):
    whole = shard(tmp_path / "plain.tar", [("a.jpg", b"1" * 3000), ("b.jpg", b"2")]).read_bytes()
    (tmp_path / "s1.tar.gz").write_bytes(gzip.compress(whole))
    (tmp_path / "s2.tar.xz").write_bytes(lzma.compress(whole))
    (tmp_path / "s3.tar").write_bytes(gzip.compress(whole))  # found by its magic bytes
    got = list(read_tar_shards(str(tmp_path / "s*.tar*")))
    assert [(Path(s["__url__"]).name, s["__key__"]) for s in got] == [
        ("s1.tar.gz", "a"),
        ("s1.tar.gz", "b"),
        ("s2.tar.xz", "a"),
        ("s2.tar.xz", "b"),
        ("s3.tar", "a"),
        ("s3.tar", "b"),
    ]
    assert all(s["jpg"] in (b"1" * 3000, b"2") for s in got)


def test_a_large_member_is_read_whole(tmp_path):
    big = random.Random(0).randbytes(6 * 1024 * 1024 + 7)
    path = shard(tmp_path / "big.tar", [("a.bin", big), ("a.cls", b"1"), ("b.cls", b"2")])
    got = list(read_tar_shards(str(path)))
    assert got[0]["bin"] == big
    assert [s["__key__"] for s in got] == ["a", "b"]


# -- members that are refused ----------------------------------------------------------


HOSTILE: list[tuple[tarfile.TarInfo | tuple[str, bytes], str]] = [
    (("../evil.txt", b"x"), r"leaves the shard's folder"),
    (("a/../../evil.txt", b"x"), r"leaves the shard's folder"),
    (("/etc/x.cls", b"x"), r"absolute"),
    (special("link.jpg", tarfile.SYMTYPE, "/etc/passwd"), r"symbolic link to '/etc/passwd'"),
    (special("hard.jpg", tarfile.LNKTYPE, "ok.jpg"), r"hard link to 'ok.jpg'"),
    (special("tty.jpg", tarfile.CHRTYPE), r"character device"),
    (special("disk.jpg", tarfile.BLKTYPE), r"block device"),
    (special("pipe.jpg", tarfile.FIFOTYPE), r"FIFO"),
    (("noextension", b"x"), r"no extension"),
]


@pytest.mark.parametrize(("member", "reason"), HOSTILE)
def test_a_hostile_member_raises_naming_shard_member_and_reason(tmp_path, member, reason):
    path = shard(tmp_path / "hostile.tar", [("ok.jpg", b"1"), member, ("ok2.jpg", b"2")])
    name = member.name if isinstance(member, tarfile.TarInfo) else member[0]
    where = re.escape(f"{path} member {name!r}: ")
    with pytest.raises(hr.ParseError, match=rf"{where}.*{reason}"):
        list(read_tar_shards(str(path)))


def test_hostile_members_under_skip_are_counted_and_the_rest_is_read(tmp_path, tally_row):
    hostile = [member for member, _ in HOSTILE]
    members = [("a.jpg", b"1"), *hostile[:4], ("a.cls", b"2"), *hostile[4:], ("b.jpg", b"3")]
    path = shard(tmp_path / "hostile.tar", members)
    got, row = run_skip(read_tar_shards(str(path), on_error="skip"), tally_row)
    # Refused members take no part in grouping: a.jpg and a.cls stay one sample.
    assert got == [
        {"__key__": "a", "__url__": str(path), "jpg": b"1", "cls": b"2"},
        {"__key__": "b", "__url__": str(path), "jpg": b"3"},
    ]
    assert row["rejected"] == len(HOSTILE)
    assert row["read"] == 2 + len(HOSTILE)


def test_a_quarantine_file_names_each_refused_member(tmp_path):
    path = shard(
        tmp_path / "s.tar",
        [("a.jpg", b"1"), ("../evil.jpg", b"x"), special("l.jpg", tarfile.SYMTYPE, "a.jpg")],
    )
    quarantine = tmp_path / "rejects.jsonl"
    assert len(list(read_tar_shards(str(path), on_error=quarantine))) == 1
    entries = [json.loads(line) for line in quarantine.read_text().splitlines()]
    assert [(e["where"], e["record"]) for e in entries] == [
        (f"{path} member '../evil.jpg'", "../evil.jpg"),
        (f"{path} member 'l.jpg'", "l.jpg"),
    ]


def test_a_field_repeated_within_a_sample_is_refused(tmp_path, tally_row):
    path = shard(tmp_path / "dup.tar", [("a.jpg", b"1"), ("a.JPG", b"2"), ("a.cls", b"3")])
    with pytest.raises(hr.ParseError, match=r"dup\.tar member 'a\.JPG': sample 'a' already has"):
        list(read_tar_shards(str(path)))
    with pytest.raises(ValueError, match="duplicate file name"):
        webdataset_samples([str(path)])
    got, row = run_skip(read_tar_shards(str(path), on_error="skip"), tally_row)
    assert got == [{"__key__": "a", "__url__": str(path), "jpg": b"1", "cls": b"3"}]
    assert row["rejected"] == 1


# -- damaged, empty and missing shards -------------------------------------------------


def three_samples() -> bytes:
    import webdataset as wds

    out = io.BytesIO()
    with wds.TarWriter(out, mtime=0) as writer:
        for sample in samples(7, 3):
            writer.write(sample)
    return out.getvalue()


def test_a_shard_cut_anywhere_yields_whole_samples_only_and_one_reject(tmp_path, tally_row):
    whole = three_samples()
    path = shard_file(tmp_path / "cut.tar", whole)
    expected = list(read_tar_shards(str(path)))
    members = member_list(whole)
    end = members[-1].offset_data + -(-members[-1].size // 512) * 512 + 512
    for cut in [*range(0, end, 97), end - 1, end]:
        path.write_bytes(whole[:cut])
        got, row = run_skip(read_tar_shards(str(path), on_error="skip"), tally_row)
        assert got == expected[: len(got)], cut
        if cut < end:
            assert row["rejected"] == 1, cut
            assert row["examples"][0].startswith(f"{path}: "), cut
        else:  # the end-of-archive block is whole: the zero padding after it is optional
            assert got == expected


def member_list(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        return archive.getmembers()


def shard_file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_a_cut_shard_raises_naming_the_shard_and_the_last_whole_member(tmp_path):
    whole = three_samples()
    members = member_list(whole)
    # Cut inside the data of a member of the second sample.
    index = next(i for i in range(5, 8) if members[i].size > 20)
    path = shard_file(tmp_path / "cut.tar", whole[: members[index].offset_data + 10])
    pattern = (
        rf"{path}: the shard is damaged or cut short after member '{members[index - 1].name}' "
        r"\(unexpected end of data\); sample 'train/s07_0001' dropped"
    )
    with pytest.raises(hr.ParseError, match=pattern):
        list(read_tar_shards(str(path)))
    # Cut between two members: tarfile alone would end quietly there.
    path.write_bytes(whole[: members[4].offset])
    with pytest.raises(hr.ParseError, match=r"after member .*ends without the end-of-archive"):
        list(read_tar_shards(str(path)))


def test_a_damaged_header_in_the_middle_is_reported(tmp_path):
    whole = bytearray(three_samples())
    members = member_list(bytes(whole))
    whole[members[6].offset + 20] ^= 0xFF  # the name field: the checksum no longer holds
    path = shard_file(tmp_path / "bad.tar", bytes(whole))
    with pytest.raises(hr.ParseError, match=rf"after member '{members[5].name}' \(bad checksum"):
        list(read_tar_shards(str(path)))


def test_a_gzip_shard_cut_short_keeps_the_samples_before_the_cut(tmp_path, tally_row):
    import webdataset as wds

    whole = tmp_path / "whole.tar.gz"
    rng = random.Random(3)
    with wds.TarWriter(str(whole), mtime=0) as writer:
        for i in range(40):
            writer.write({"__key__": f"k{i:02d}", "bin": rng.randbytes(5000)})
    data = whole.read_bytes()
    cut = shard_file(tmp_path / "cut.tar.gz", data[: len(data) // 2])
    expected = list(read_tar_shards(str(whole)))
    with pytest.raises(hr.ParseError, match=r"cut\.tar\.gz: the shard is damaged or cut short"):
        list(read_tar_shards(str(cut)))
    got, row = run_skip(read_tar_shards(str(cut), on_error="skip"), tally_row)
    assert 5 < len(got) < 40
    assert [s["bin"] for s in got] == [s["bin"] for s in expected[: len(got)]]
    assert row["rejected"] == 1


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", r"not a tar archive \(empty file\)"),
        (b"just some text\n" * 100, r"not a tar archive \(invalid header\)"),
        (b"short\n", r"not a tar archive \(truncated header\)"),
    ],
)
def test_an_empty_file_or_a_file_that_is_not_a_tar_is_rejected(
    tmp_path, tally_row, content, reason
):
    bad = shard_file(tmp_path / "a.tar", content)
    shard(tmp_path / "b.tar", [("x.cls", b"1")])
    with pytest.raises(hr.ParseError, match=rf"{bad}: {reason}"):
        list(read_tar_shards(str(tmp_path / "*.tar")))
    got, row = run_skip(read_tar_shards(str(tmp_path / "*.tar"), on_error="skip"), tally_row)
    assert [s["__key__"] for s in got] == ["x"]
    assert row["rejected"] == 1


def test_an_empty_archive_is_a_shard_without_samples(tmp_path, tally_row):
    path = shard(tmp_path / "empty.tar", [])
    got, row = run_skip(read_tar_shards(str(path)), tally_row)
    assert (got, row["read"]) == ([], 0)


def test_a_missing_shard_fails_when_the_run_starts(tmp_path):
    shard(tmp_path / "data-0.tar", [("x.cls", b"1")])
    with pytest.raises(FileNotFoundError, match=r"data-1\.tar"):
        list(read_tar_shards(str(tmp_path / "data-{0..1}.tar")))


def test_a_shard_that_turns_into_a_folder_mid_run_is_rejected(tmp_path, tally_row):
    for policy in ("raise", "skip"):
        first = shard(tmp_path / "a.tar", [("x.cls", b"1"), ("y.cls", b"2")])
        second = shard(tmp_path / "b.tar", [("z.cls", b"3")])
        run = read_tar_shards([str(first), str(second)], on_error=policy).iter(stats=True)
        with run:
            assert next(run)["__key__"] == "x"
            second.unlink()
            second.mkdir()  # opening it now fails, as an unreadable file does
            if policy == "raise":
                with pytest.raises(hr.ParseError, match=r"b\.tar: cannot open the file"):
                    list(run)
            else:
                assert [s["__key__"] for s in run] == ["y"]
        if policy == "skip":
            assert tally_row(run)["rejected"] == 1
        second.rmdir()


# -- read position, sharding, remote shards --------------------------------------------


def test_resuming_at_every_sample_yields_the_rest(tmp_path, resumed):
    write_shards(tmp_path, shards=3, per_shard=4)
    # A shard with refused members and metadata between samples.
    shard(
        tmp_path / "data-003.tar",
        [
            ("__meta__", b"{}"),
            ("a.jpg", b"1"),
            ("../evil.jpg", b"x"),
            ("a.cls", b"2"),
            special("l.jpg", tarfile.SYMTYPE, "a.jpg"),
            ("b.jpg", b"3"),
            ("c.jpg", b"4"),
        ],
    )
    pipeline = read_tar_shards(str(tmp_path / "data-*.tar"), on_error="skip")
    full = list(pipeline)
    assert len(full) == 15
    for cut in range(len(full) + 1):
        before, after, saved = resumed(pipeline, cut)
        assert before + after == full, cut
        if before:  # the position is in the shard of the last sample handed out
            assert saved["path"] == before[-1]["__url__"]


def test_a_position_counts_members_of_the_shard(tmp_path, resumed):
    path = shard(
        tmp_path / "s.tar",
        [("a.jpg", b"1"), ("a.cls", b"2"), ("../x.jpg", b""), ("b.jpg", b"3"), ("c.jpg", b"4")],
    )
    pipeline = read_tar_shards(str(path), on_error="skip")
    # After sample a: the refused member is behind the position too.
    saved = resumed(pipeline, 1)[2]
    assert saved == {"file": 0, "records": 3, "path": str(path), "fingerprint": ANY}
    assert saved["fingerprint"] == f"{path.stat().st_size}:" + saved["fingerprint"][-16:]
    assert resumed(pipeline, 2)[2]["records"] == 4
    assert resumed(pipeline, 3)[2]["records"] == 5


def test_a_restarted_reader_passes_over_members_without_reading_them(tmp_path, context):
    path = shard(tmp_path / "s.tar", [("a.jpg", b"1"), ("../evil.jpg", b"x"), ("b.jpg", b"2")])
    (stage,) = read_tar_shards(str(path)).stages
    assert isinstance(stage, ReadTarShards)
    # Under "raise" the refused member would stop a reader that looked at it again.
    restarted, position = stage.reader(context(stage), ReadPosition(0, 2, str(path)))
    assert [s["__key__"] for s in restarted] == ["b"]
    assert position.as_dict() == {"file": 1, "records": 0, "path": ""}


def test_three_readers_over_seven_shards_partition_the_samples(tmp_path):
    pattern = write_shards(tmp_path, shards=7, per_shard=3)
    full = list(read_tar_shards(pattern))
    parts = [list(read_tar_shards(pattern, num_shards=3, shard_index=i)) for i in range(3)]
    keys = [[s["__key__"] for s in part] for part in parts]
    assert sorted(k for part in keys for k in part) == sorted(s["__key__"] for s in full)
    assert len({k for part in keys for k in part}) == 21
    assert [len(part) for part in parts] == [9, 6, 6]  # shards 0,3,6 / 1,4 / 2,5
    assert {Path(s["__url__"]).name for s in parts[1]} == {"data-001.tar", "data-004.tar"}


def test_shards_in_an_fsspec_memory_filesystem(tmp_path):
    fsspec = pytest.importorskip("fsspec")
    memory = fsspec.filesystem("memory")
    whole = shard(tmp_path / "a.tar", [("x.jpg", b"1"), ("x.cls", b"2"), ("y.cls", b"3")])
    try:
        memory.pipe("/headrace-tar/shard-0.tar", whole.read_bytes())
        memory.pipe("/headrace-tar/shard-1.tar.gz", gzip.compress(whole.read_bytes()))
        got = list(read_tar_shards("memory://headrace-tar/shard-{0..1}.tar*"))
        # The glob spells the names as the memory filesystem does: "memory:///..." today.
        urls = [s["__url__"].replace("memory:///", "memory://") for s in got]
        assert list(zip(urls, [s["__key__"] for s in got], strict=True)) == [
            ("memory://headrace-tar/shard-0.tar", "x"),
            ("memory://headrace-tar/shard-0.tar", "y"),
            ("memory://headrace-tar/shard-1.tar.gz", "x"),
            ("memory://headrace-tar/shard-1.tar.gz", "y"),
        ]
        assert got[0]["jpg"] == b"1"
        memory.pipe("/headrace-tar/cut.tar", whole.read_bytes()[:1200])
        with pytest.raises(hr.ParseError, match=r"memory://headrace-tar/cut\.tar: the shard"):
            list(read_tar_shards("memory://headrace-tar/cut.tar"))
    finally:
        memory.rm("/headrace-tar", recursive=True)


# -- the stage itself ------------------------------------------------------------------


def test_repr_names_the_pattern_and_the_options():
    pipeline = read_tar_shards("d-{0..9}.tar", on_error="skip", num_shards=2, shard_index=1)
    (stage,) = pipeline.stages
    assert stage.name == (
        "read_tar_shards('d-{0..9}.tar', on_error='skip', num_shards=2, shard_index=1)"
    )


def test_the_pipeline_pickles_and_reads_the_same_after(tmp_path):
    pattern = write_shards(tmp_path, shards=2, per_shard=2)
    pipeline = read_tar_shards(pattern)
    assert list(pickle.loads(pickle.dumps(pipeline))) == list(pipeline)


def test_bad_arguments_fail_at_construction():
    with pytest.raises(ValueError, match="shard_index must be below num_shards"):
        read_tar_shards("a.tar", num_shards=2, shard_index=2)
    with pytest.raises(TypeError, match="urls must be"):
        read_tar_shards(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="on_error must be"):
        read_tar_shards("a.tar", on_error="ignore")


def test_nothing_is_opened_before_the_run_starts(tmp_path):
    pipeline = read_tar_shards(str(tmp_path / "later-*.tar"))
    shard(tmp_path / "later-0.tar", [("a.cls", b"1")])
    assert [s["__key__"] for s in pipeline] == ["a"]


def test_memory_stays_flat_over_a_shard_of_many_members(tmp_path):
    path = shard(tmp_path / "many.tar", [(f"k{i:05d}.cls", b"1") for i in range(4000)])
    tracemalloc.start()
    try:
        count = 0
        for _ in read_tar_shards(str(path)):
            count += 1
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == 4000
    # A header kept per member would hold about 2 MB here.
    assert peak < 500_000, peak
