"""The format readers over real HTTP and S3 servers: what a URL gives equals what the
local file gives, for files written by the producers users have.
"""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import webdataset

from headrace import ParseError, read_csv, read_parquet, read_tar_shards


def _same_batches(left: list[dict], right: list[dict]) -> None:
    assert len(left) == len(right)
    for a, b in zip(left, right, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
def test_csv_over_a_url_reads_what_the_local_file_holds(remote_folder, resumed, suffix):
    frame = pd.DataFrame(
        {"x": np.linspace(0, 1, 2_000), "note": [f'say "{i}",\nthen stop' for i in range(2_000)]}
    )
    frame.to_csv(remote_folder.local / f"a{suffix}", index=False)
    remote_folder.sync()
    local, remote = str(remote_folder.local / f"a{suffix}"), remote_folder.url_of(f"a{suffix}")

    rows = list(read_csv(remote, dtype={"x": "float64"}))
    assert rows == list(read_csv(local, dtype={"x": "float64"}))
    assert rows[5]["note"] == 'say "5",\nthen stop'
    _same_batches(
        list(read_csv(remote, columns=["x"], dtype="float32", batch_size=300)),
        list(read_csv(local, columns=["x"], dtype="float32", batch_size=300)),
    )
    text_rows = list(read_csv(local))
    for cut in (0, 1_000, 2_000):
        before, after, saved = resumed(read_csv(remote), cut)
        assert before + after == text_rows, (cut, saved)


def test_parquet_over_a_url_reads_what_the_local_file_holds(remote_folder, resumed):
    table = pa.table(
        {"x": np.arange(1_000, dtype=np.float32), "name": [f"r{i}" for i in range(1_000)]}
    )
    pq.write_table(table, remote_folder.local / "a.parquet", row_group_size=300)
    pd.DataFrame({"x": [1.5, 2.5], "name": ["p", "q"]}).to_parquet(
        remote_folder.local / "b.parquet", index=False
    )
    remote_folder.sync()
    local = str(remote_folder.local / "*.parquet")
    remote = remote_folder.url_of("*.parquet")

    assert list(read_parquet(remote)) == list(read_parquet(local))
    _same_batches(
        list(read_parquet(remote, columns=["x"], batch_size=128)),
        list(read_parquet(local, columns=["x"], batch_size=128)),
    )
    everything = list(read_parquet(remote))
    for cut in (0, 299, 300, 650, 1_001):
        before, after, saved = resumed(read_parquet(remote), cut)
        assert before + after == everything, (cut, saved)


def test_webdataset_shards_over_a_url_read_as_the_local_ones(remote_folder):
    pattern = str(remote_folder.local / "shard-%03d.tar")
    with webdataset.ShardWriter(pattern, maxcount=4, verbose=0) as sink:
        for i in range(10):
            sink.write({"__key__": f"sample{i:03d}", "txt": f"text {i}", "cls": str(i % 3)})
    remote_folder.sync()

    remote = list(read_tar_shards(remote_folder.url_of("shard-{000..002}.tar")))
    local = list(read_tar_shards(str(remote_folder.local / "shard-{000..002}.tar")))

    assert [s["__key__"] for s in remote] == [f"sample{i:03d}" for i in range(10)]
    assert [{k: v for k, v in s.items() if k != "__url__"} for s in remote] == [
        {k: v for k, v in s.items() if k != "__url__"} for s in local
    ]
    assert remote[0]["__url__"] == remote_folder.url_of("shard-000.tar")
    shards = [
        [
            s["__key__"]
            for s in read_tar_shards(
                remote_folder.url_of("shard-*.tar"), num_shards=3, shard_index=i
            )
        ]
        for i in range(3)
    ]
    assert sorted(key for shard in shards for key in shard) == [s["__key__"] for s in remote]


def test_a_remote_shard_cut_short_is_a_counted_reject(remote_folder):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for i in range(6):
            data = bytes(2_000)
            info = tarfile.TarInfo(f"s{i}.bin")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    (remote_folder.local / "cut.tar").write_bytes(buffer.getvalue()[:7_000])
    remote_folder.sync()
    url = remote_folder.url_of("cut.tar")

    with pytest.raises(ParseError, match=r"cut\.tar.*damaged or cut short"):
        list(read_tar_shards(url))
    with read_tar_shards(url, on_error="skip").iter(stats=True) as run:
        samples = list(run)
    (row,) = [r for r in run.stats() if "rejected" in r]
    assert [s["__key__"] for s in samples] == ["s0", "s1"]
    assert (row["read"], row["rejected"]) == (3, 1)
