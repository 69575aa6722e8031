"""``image_folder``: one subfolder per class, ``(path, label)`` pairs, nothing decoded.

The images are real JPEG and PNG files written by Pillow.
"""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from headrace.readers import image_folder
from headrace.sources.images import IMAGE_EXTENSIONS

COLOURS = {"airedale": (200, 30, 30), "boxer": (30, 200, 30), "golden_retriever": (30, 30, 200)}


def save(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (12, 9)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    kind = {".png": "PNG", ".bmp": "BMP", ".gif": "GIF"}.get(path.suffix.lower(), "JPEG")
    Image.new("RGB", size, colour).save(path, kind)
    return path


def dogs(root: Path) -> list[tuple[str, int]]:
    """Seed 000's folder of dog breeds; the ``(path, label)`` pairs expected from it."""
    layout = {
        "airedale": ["02c9.jpg", "07dd.JPG"],
        "boxer": ["0088.jpeg", "0e3c.png", "1831.jpg", "puppies/00aa.png", "puppies/z/01.bmp"],
        "golden_retriever": ["0021.jpg", "2ae7.gif"],
    }
    expected = []
    for label, (breed, names) in enumerate(layout.items()):
        for name in names:
            expected.append((str(save(root / breed / name, COLOURS[breed])), label))
    # Left out: hidden files and folders, files beside the class folders, non-images.
    save(root / ".thumbnails" / "x.jpg", (0, 0, 0))
    save(root / "boxer" / ".ipynb_checkpoints" / "0088.jpg", (0, 0, 0))
    save(root / "boxer" / "._0088.jpg", (0, 0, 0))
    save(root / "cover.jpg", (0, 0, 0))
    (root / "airedale" / "labels.csv").write_text("02c9,airedale\n")
    (root / "README.txt").write_text("dog breeds\n")
    return expected


# -- the listing ------------------------------------------------------------------------


def test_pairs_come_class_by_class_with_labels_indexing_the_sorted_classes(tmp_path):
    expected = dogs(tmp_path)
    images = image_folder(tmp_path)

    assert images.classes == ("airedale", "boxer", "golden_retriever")
    assert images.class_to_index == {"airedale": 0, "boxer": 1, "golden_retriever": 2}
    assert list(images) == expected
    for path, label in images:
        assert Path(path).relative_to(tmp_path).parts[0] == images.classes[label]


def test_nothing_is_decoded_so_a_damaged_image_is_still_listed(tmp_path):
    save(tmp_path / "cat" / "a.jpg", (1, 2, 3))
    (tmp_path / "cat" / "b.jpg").write_bytes(b"not a jpeg at all")

    assert [Path(p).name for p, _ in image_folder(tmp_path)] == ["a.jpg", "b.jpg"]


def test_an_empty_class_folder_is_still_a_class_so_labels_do_not_shift(tmp_path):
    save(tmp_path / "ant" / "1.png", (1, 1, 1))
    (tmp_path / "bee").mkdir()
    save(tmp_path / "cow" / "1.png", (2, 2, 2))

    images = image_folder(tmp_path)

    assert images.classes == ("ant", "bee", "cow")
    assert [label for _, label in images] == [0, 2]


def test_given_classes_choose_the_folders_and_their_label_order(tmp_path):
    dogs(tmp_path)
    images = image_folder(tmp_path, classes=["golden_retriever", "airedale"])

    pairs = list(images)

    assert images.classes == ("golden_retriever", "airedale")
    assert [(Path(p).parent.name, label) for p, label in pairs] == [
        ("golden_retriever", 0),
        ("golden_retriever", 0),
        ("airedale", 1),
        ("airedale", 1),
    ]


def test_a_given_class_without_a_folder_is_an_error_naming_it(tmp_path):
    dogs(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"no folder for class 'poodle'"):
        list(image_folder(tmp_path, classes=["boxer", "poodle"]))


def test_extensions_choose_the_files_in_any_letter_case(tmp_path):
    save(tmp_path / "a" / "1.jpg", (1, 1, 1))
    save(tmp_path / "a" / "2.PNG", (1, 1, 1))
    np.save(tmp_path / "a" / "3.npy", np.zeros(2))
    (tmp_path / "a" / "4").write_text("no extension")

    def names(**options: Any) -> list[str]:
        return [Path(p).name for p, _ in image_folder(tmp_path, **options)]

    assert names() == ["1.jpg", "2.PNG"]
    assert names(extensions=["png", ".NPY"]) == ["2.PNG", "3.npy"]
    assert names(extensions=None) == ["1.jpg", "2.PNG", "3.npy", "4"]
    assert ".webp" in IMAGE_EXTENSIONS


def test_a_file_url_root_reads_the_local_folder(tmp_path):
    expected = dogs(tmp_path)
    assert list(image_folder(f"file://{tmp_path}")) == expected


def test_a_linked_class_folder_is_followed_and_a_link_loop_ends(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    save(elsewhere / "1.jpg", (5, 5, 5))
    os.symlink(elsewhere, elsewhere / "again")  # a loop back to itself
    root = tmp_path / "root"
    save(root / "a" / "1.jpg", (6, 6, 6))
    os.symlink(elsewhere, root / "b")

    pairs = [(str(Path(p).relative_to(root)), label) for p, label in image_folder(root)]

    assert pairs == [("a/1.jpg", 0), ("b/1.jpg", 1)]


# -- when the folders change -------------------------------------------------------------


def test_the_classes_stay_those_found_first_and_a_new_folder_is_left_out(tmp_path, caplog):
    save(tmp_path / "b" / "1.jpg", (1, 1, 1))
    images = image_folder(tmp_path)
    assert images.classes == ("b",)

    save(tmp_path / "a" / "1.jpg", (2, 2, 2))
    with caplog.at_level(logging.WARNING, logger="headrace"):
        pairs = list(images)

    assert images.classes == ("b",)
    assert [label for _, label in pairs] == [0]
    assert "leaves out folder(s) 'a'" in caplog.text
    assert image_folder(tmp_path).classes == ("a", "b")


def test_the_first_run_fixes_the_classes_when_nobody_asked_before(tmp_path):
    save(tmp_path / "b" / "1.jpg", (1, 1, 1))
    images = image_folder(tmp_path)
    assert len(list(images)) == 1

    save(tmp_path / "a" / "1.jpg", (2, 2, 2))
    assert images.classes == ("b",)


def test_nothing_is_listed_until_a_run_or_classes_asks(tmp_path):
    images = image_folder(tmp_path / "later")  # no such folder yet: fine until used
    save(tmp_path / "later" / "x" / "1.png", (1, 1, 1))
    assert images.classes == ("x",)


# -- errors -------------------------------------------------------------------------------


def test_a_missing_root_is_an_error_naming_it(tmp_path):
    images = image_folder(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"image_folder root '.*nowhere' does not exist"):
        list(images)
    with pytest.raises(FileNotFoundError, match=r"nowhere"):
        images.classes  # noqa: B018


def test_a_root_that_is_a_file_is_an_error(tmp_path):
    path = save(tmp_path / "one.jpg", (1, 1, 1))
    with pytest.raises(NotADirectoryError, match=r"one\.jpg' is not a folder"):
        list(image_folder(path))


def test_a_root_without_class_folders_is_an_error_that_says_what_is_expected(tmp_path):
    save(tmp_path / "loose.jpg", (1, 1, 1))
    (tmp_path / ".hidden").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no class folders in .*one subfolder per class"):
        list(image_folder(tmp_path))


def test_class_folders_without_a_single_image_are_an_error(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "notes.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match=r"no \.bmp, .*\.webp files in the class folders"):
        list(image_folder(tmp_path))


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"extensions": ".jpg"}, TypeError, "extensions must be a list"),
        ({"extensions": []}, ValueError, "extensions is empty"),
        ({"extensions": [".jpg", ""]}, ValueError, "endings such as"),
        ({"classes": "cat"}, TypeError, "classes must be a list"),
        ({"classes": []}, ValueError, "classes is empty"),
        ({"classes": ["a", "b", "a"]}, ValueError, "classes names 'a' more than once"),
        ({"classes": ["a/b"]}, ValueError, "folder names"),
        ({"seed": 3}, ValueError, "seed=3 has no effect without shuffle=True"),
        ({"shuffle": 1}, TypeError, "shuffle must be a bool"),
        ({"num_shards": 2, "shard_index": 2}, ValueError, "shard_index must be below"),
    ],
)
def test_bad_arguments_are_refused_at_construction(tmp_path, options, error, message):
    with pytest.raises(error, match=message):
        image_folder(tmp_path, **options)


def test_a_root_must_be_one_folder(tmp_path):
    with pytest.raises(TypeError, match="root must be the path or URL of one folder"):
        image_folder([str(tmp_path)])  # type: ignore[arg-type]


# -- shards, shuffling, positions ------------------------------------------------------------


def many(root: Path, per_class: int = 6) -> list[tuple[str, int]]:
    for breed, colour in COLOURS.items():
        for n in range(per_class):
            save(root / breed / f"{n:02}.jpg", colour, (4, 4))
    return list(image_folder(root))


@pytest.mark.parametrize("num_shards", [2, 3, 4])
def test_shards_are_disjoint_cover_every_file_and_hold_every_class(tmp_path, num_shards):
    everything = many(tmp_path)

    shards = [
        list(image_folder(tmp_path, num_shards=num_shards, shard_index=i))
        for i in range(num_shards)
    ]

    assert sorted(pair for shard in shards for pair in shard) == sorted(everything)
    assert sum(map(len, shards)) == len(everything)
    for shard in shards:
        assert {label for _, label in shard} == {0, 1, 2}


def test_more_shards_than_images_is_a_clear_error(tmp_path):
    save(tmp_path / "a" / "1.jpg", (1, 1, 1))
    with pytest.raises(ValueError, match=r"1 image file\(s\) to share among 2 shards"):
        list(image_folder(tmp_path, num_shards=2))


def test_shuffle_permutes_the_files_anew_each_epoch_and_a_seed_repeats_it(tmp_path):
    everything = many(tmp_path)
    shuffled = image_folder(tmp_path, shuffle=True, seed=11)

    first, second = list(shuffled.iter(epoch=0)), list(shuffled.iter(epoch=1))

    assert sorted(first) == sorted(second) == sorted(everything)
    assert first != everything
    assert first != second
    assert first == list(image_folder(tmp_path, shuffle=True, seed=11).iter(epoch=0))
    assert sorted(image_folder(tmp_path, shuffle=True)) == sorted(everything)


def test_each_shard_shuffles_its_own_share(tmp_path):
    many(tmp_path)
    plain = set(image_folder(tmp_path, num_shards=2, shard_index=1))
    shuffled = list(image_folder(tmp_path, shuffle=True, seed=1, num_shards=2, shard_index=1))
    assert set(shuffled) == plain


@pytest.mark.parametrize("options", [{}, {"shuffle": True, "seed": 5}, {"num_shards": 2}])
def test_a_read_resumes_from_any_saved_position(tmp_path, resumed, options):
    many(tmp_path, per_class=3)
    pipeline = image_folder(tmp_path, **options)
    everything = list(pipeline.iter(epoch=0))

    for cut in range(len(everything) + 1):
        before, after, saved = resumed(pipeline, cut)
        assert before + after == everything, (cut, saved)


def test_a_shuffled_read_without_a_seed_cannot_resume(tmp_path, resumed):
    many(tmp_path, per_class=2)
    with pytest.raises(ValueError, match="resumes only with a seed"):
        resumed(image_folder(tmp_path, shuffle=True), 2)


def test_the_stats_count_one_record_per_file(tmp_path, tally_row):
    expected = dogs(tmp_path)
    with image_folder(tmp_path).iter(stats=True) as run:
        assert len(list(run)) == len(expected)
    assert (tally_row(run)["read"], tally_row(run)["rejected"]) == (len(expected), 0)


# -- as a pipeline ------------------------------------------------------------------------


def test_repr_names_the_root_and_the_options_given(tmp_path):
    assert repr(image_folder("data/train")) == "Pipeline(image_folder('data/train'))"
    text = repr(image_folder("d", classes=["a", "b", "c", "e"], shuffle=True, seed=2))
    assert text == "Pipeline(image_folder('d', classes=['a', 'b', 'c', ...], shuffle=True, seed=2))"
    assert "extensions=('.png',)" in repr(image_folder("d", extensions=["png"]))


def test_the_pipeline_pickles_with_its_classes_for_worker_processes(tmp_path):
    expected = dogs(tmp_path)
    images = image_folder(tmp_path)
    assert images.classes

    copy = pickle.loads(pickle.dumps(images))

    assert type(copy) is type(images)
    assert copy.classes == images.classes
    assert list(copy) == expected


def test_seed_000_pipeline_one_hot_labels_and_decoded_resized_images(tmp_path):
    # Seed 000: discover images -> one-hot labels -> read and resize -> batches.
    dogs(tmp_path)
    images = image_folder(tmp_path)
    eye = np.eye(len(images.classes), dtype=np.float32)

    def read(pair: tuple[str, int]) -> tuple[np.ndarray, np.ndarray]:
        path, label = pair
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB").resize((8, 8), Image.NEAREST))
        return pixels, eye[label]

    batches = list(images.map(read, workers=2).batch(4))

    assert [len(b[0]) for b in batches] == [4, 4, 1]
    x = np.concatenate([b[0] for b in batches])
    y = np.concatenate([b[1] for b in batches])
    assert x.shape == (9, 8, 8, 3)
    assert y.sum(axis=0).tolist() == [2, 5, 2]
    boxer = int(np.flatnonzero(y[:, 1])[0])
    assert abs(x[boxer].mean(axis=(0, 1)) - COLOURS["boxer"]).max() < 8  # JPEG loses a little
