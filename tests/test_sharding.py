"""Pipeline.shard: shares are disjoint, cover the data, and refuse orders that vary."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import headrace as hr


def union(pipeline: hr.Pipeline[Any], shares: int) -> Counter[Any]:
    return Counter(x for i in range(shares) for x in pipeline.shard(shares, i).iter(epoch=3))


def write_images(root: Path, count: int) -> None:
    for n in range(count):
        folder = root / ("a" if n % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4), (n, 0, 0)).save(folder / f"{n:02d}.png")


@pytest.mark.parametrize("shares", [1, 2, 3, 5])
def test_shares_partition_a_seeded_pipeline(shares: int) -> None:
    pipeline = hr.range(23).shuffle(7, seed=4).map(lambda x: x * 10)
    assert union(pipeline, shares) == Counter(x * 10 for x in range(23))
    # After a stage that needs the whole stream, too.
    counted = hr.range(23).shuffle(7, seed=4).enumerate().map(tuple)
    assert union(counted, shares) == Counter(counted.iter(epoch=3))


@pytest.mark.parametrize("shares", [2, 20])
def test_a_source_shuffling_without_a_seed_is_refused(tmp_path: Path, shares: int) -> None:
    write_images(tmp_path, 12)
    # Before a whole-stream stage, or with fewer files than shares, every share reads
    # the source in full: each would draw its own order and the shares would overlap.
    unseeded = hr.image_folder(tmp_path, shuffle=True).enumerate()
    with pytest.raises(ValueError, match="shuffle=True without a seed"):
        unseeded.shard(shares, 0)
    files = hr.files(str(tmp_path / "*" / "*.png"), shuffle=True).enumerate()
    with pytest.raises(ValueError, match="shuffle=True without a seed"):
        files.shard(shares, 1)
    seeded = hr.image_folder(tmp_path, shuffle=True, seed=1).enumerate()
    assert union(seeded, shares) == Counter(seeded.iter(epoch=3))
    assert len(union(seeded, shares)) == 12


def test_an_unseeded_shuffle_inside_a_zip_is_refused() -> None:
    inner = hr.range(5).shuffle(3)
    with pytest.raises(ValueError, match=r"a shuffle without a seed \(in Pipeline\(range"):
        hr.zip(inner, hr.range(5)).enumerate().shard(2, 0)
    with pytest.raises(ValueError, match="a parallel map with ordered=False"):
        hr.range(9).map(abs, workers=2, ordered=False).enumerate().shard(2, 0)


def test_a_file_cache_cannot_be_shared(tmp_path: Path) -> None:
    cached = hr.range(10).cache(tmp_path / "cache.bin").map(str)
    with pytest.raises(ValueError, match="every share would write its part to the one file"):
        cached.shard(2, 0)
