"""Transforms on images decoded from real files of many modes, alone and in pipelines.

Every image here is written by Pillow into a temporary folder and read back with
``hv.decode``, so the arrays are what a training pipeline sees: RGB ``uint8`` from
JPEG, grey, grey+alpha, palette with transparency, RGBA, CMYK, 16-bit, 1-bit,
EXIF-rotated and animated sources. Expected results come from Pillow itself (resize,
flips, rotations), from numpy slicing, or from a "marker" image whose red and green
channels hold each pixel's column and row, so a crop's box can be read off its pixels.

This module's functions are sent to worker processes by value: in importlib mode it
is registered under a name the workers cannot import.
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import cloudpickle
import numpy as np
import pytest
from PIL import Image, ImageOps

import headrace as hr
import headrace.vision as hv

cloudpickle.register_pickle_by_value(sys.modules[__name__])

Array = np.ndarray[Any, Any]

#: Seed 000's ``rescale_images`` mean, in RGB channel order as it gives it.
SEED_MEAN = [103.939, 116.779, 123.68]

FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
}

#: The file names of the ``files`` fixture; all but ``exif.jpg`` are 53 wide, 37 high.
KINDS = [
    "rgb.jpg",
    "l.png",
    "la.png",
    "p_transparent.png",
    "rgba.png",
    "cmyk.jpg",
    "i16.png",
    "bw.png",
    "exif.jpg",
    "anim.gif",
]
#: Kinds whose decoded pixels equal Pillow's own ``exif_transpose(...).convert("RGB")``
#: (16-bit keeps its top bits instead of being clipped; palette transparency goes
#: through RGBA), so the same file can be transformed by Pillow for comparison.
PILLOW_KINDS = ["rgb.jpg", "l.png", "la.png", "rgba.png", "cmyk.jpg", "bw.png", "exif.jpg"]
WIDTH, HEIGHT = 53, 37


def gradient(width: int, height: int) -> Image.Image:
    """A smooth, asymmetric RGB image, so that JPEG and resampling errors stay small."""
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 255 // width, y * 255 // height, (x + 2 * y) % 256], 2)
    return Image.fromarray(pixels.astype(np.uint8))


def marker(width: int, height: int) -> Image.Image:
    """Red is each pixel's column, green its row: a crop tells where it was taken."""
    assert width <= 256
    assert height <= 256
    y, x = np.mgrid[0:height, 0:width]
    return Image.fromarray(np.stack([x, y, (x * 7 + y) % 256], 2).astype(np.uint8))


def write_kinds(folder: Path) -> dict[str, Path]:
    base = gradient(WIDTH, HEIGHT)
    alpha = Image.fromarray(np.tile(np.arange(WIDTH, dtype=np.uint8) * 4, (HEIGHT, 1)))
    grey16 = np.asarray(base.convert("L"), dtype=np.uint16) * 257 + 3
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 53x37, shown rotated to 37x53
    second = Image.new("RGB", (WIDTH, HEIGHT), (0, 0, 255))
    paths = {name: folder / name for name in KINDS}
    base.save(paths["rgb.jpg"], quality=90)
    base.convert("L").save(paths["l.png"])
    Image.merge("LA", [base.convert("L"), alpha]).save(paths["la.png"])
    base.quantize(32).save(paths["p_transparent.png"], transparency=0)
    Image.merge("RGBA", [*base.split(), alpha]).save(paths["rgba.png"])
    base.convert("CMYK").save(paths["cmyk.jpg"], quality=90)
    Image.fromarray(grey16).save(paths["i16.png"])
    base.convert("1").save(paths["bw.png"])
    base.save(paths["exif.jpg"], exif=exif, quality=90)
    base.save(paths["anim.gif"], save_all=True, append_images=[second], duration=40, loop=0)
    return paths


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    paths = write_kinds(tmp_path_factory.mktemp("kinds"))
    modes: dict[str, str] = {}
    for name, path in paths.items():
        with Image.open(path) as image:
            modes[name] = image.mode
    # The files are what they claim to be (the animated GIF stores palette frames).
    assert modes["cmyk.jpg"] == "CMYK"
    assert modes["i16.png"] in {"I;16", "I"}
    assert modes["la.png"] == "LA"
    assert modes["bw.png"] == "1"
    assert modes["anim.gif"] == "P"
    return paths


@pytest.fixture(scope="module")
def images(files: dict[str, Path]) -> dict[str, Array]:
    return {name: hv.decode(path) for name, path in files.items()}


@pytest.fixture(scope="module")
def markers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Array]:
    """Decoded marker PNGs by ``{height}x{width}``: 80x100, 20x200, 200x20 and 48x48."""
    folder = tmp_path_factory.mktemp("markers")
    decoded: dict[str, Array] = {}
    for height, width in [(80, 100), (20, 200), (200, 20), (48, 48)]:
        path = folder / f"m{height}x{width}.png"
        marker(width, height).save(path)
        decoded[f"{height}x{width}"] = hv.decode(path)
    return decoded


def pillow_rgb(path: Path) -> Image.Image:
    """The file as Pillow shows it: EXIF orientation applied, converted to RGB."""
    with Image.open(path) as image:
        shown = ImageOps.exif_transpose(image)
        return shown.convert("RGB")


def box_of(crop: Array) -> tuple[int, int, int, int]:
    """``(left, top, right, bottom)`` of the marker pixels that ``crop`` shows."""
    columns, rows = crop[:, :, 0], crop[:, :, 1]
    return int(columns.min()), int(rows.min()), int(columns.max()) + 1, int(rows.max()) + 1


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


# --- resize -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("size", [(16, 24), (50, 9), (1, 1), (80, 120)])
def test_resize_gives_exactly_the_size_asked_for(
    images: dict[str, Array], kind: str, size: tuple[int, int]
) -> None:
    image = images[kind]
    out = hv.resize(image, size)
    assert out.shape == (*size, 3)
    assert out.dtype == np.uint8
    assert out.flags.writeable
    # The same bilinear resize Pillow makes of the decoded pixels.
    expected = Image.fromarray(image).resize(size[::-1], Image.Resampling.BILINEAR)
    np.testing.assert_array_equal(out, np.asarray(expected))


@pytest.mark.parametrize(
    ("kind", "size", "shape"),
    [
        ("rgb.jpg", 20, (20, 29)),  # 53 * 20 / 37 = 28.6
        ("l.png", 36, (36, 52)),  # 53 * 36 / 37 = 51.6
        ("cmyk.jpg", 74, (74, 106)),  # exactly twice
        ("bw.png", 1, (1, 1)),  # 53 / 37 = 1.43
        ("exif.jpg", 20, (29, 20)),  # shown 37 wide, 53 high
        ("exif.jpg", 100, (143, 100)),  # 53 * 100 / 37 = 143.2
    ],
)
def test_resize_with_an_int_sets_the_shorter_side_and_keeps_the_aspect(
    images: dict[str, Array], kind: str, size: int, shape: tuple[int, int]
) -> None:
    out = hv.resize(images[kind], size)
    assert out.shape == (*shape, 3)
    height, width = images[kind].shape[:2]
    assert abs(out.shape[0] / out.shape[1] - height / width) < 1 / min(shape)


def test_resize_of_a_square_image_with_an_int_is_square(markers: dict[str, Array]) -> None:
    assert hv.resize(markers["48x48"], 20).shape == (20, 20, 3)


@pytest.mark.parametrize("interpolation", hv.INTERPOLATIONS)
@pytest.mark.parametrize("size", [(20, 31), (90, 70)])
def test_resize_matches_pillow_on_the_same_file(
    files: dict[str, Path], interpolation: str, size: tuple[int, int]
) -> None:
    path = files["rgb.jpg"]
    out = hv.resize(hv.decode(path), size, interpolation=interpolation)
    expected = pillow_rgb(path).resize(size[::-1], FILTERS[interpolation])
    np.testing.assert_array_equal(out, np.asarray(expected))


def test_the_interpolations_are_different_filters(images: dict[str, Array]) -> None:
    results = [hv.resize(images["rgb.jpg"], (20, 31), interpolation=name) for name in FILTERS]
    for i, first in enumerate(results):
        for second in results[i + 1 :]:
            assert not np.array_equal(first, second)


@pytest.mark.parametrize("interpolation", hv.INTERPOLATIONS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_images_stay_float_and_agree_with_uint8(
    images: dict[str, Array], interpolation: str, dtype: Any
) -> None:
    image = images["rgb.jpg"]
    as_uint8 = hv.resize(image, (20, 31), interpolation=interpolation)
    as_float = hv.resize(image.astype(dtype), (20, 31), interpolation=interpolation)
    assert as_float.dtype == dtype
    assert as_float.shape == as_uint8.shape
    if interpolation == "nearest":
        np.testing.assert_array_equal(as_float, as_uint8)
    else:
        # Pillow's 8-bit filters round each pass; the float ones do not.
        np.testing.assert_allclose(as_float, as_uint8, atol=2)
        assert np.abs(as_float - as_uint8).mean() < 0.6


def test_float_images_are_not_clipped(images: dict[str, Array]) -> None:
    image = images["rgb.jpg"].astype(np.float32) * 4 - 300
    out = hv.resize(image, (20, 31))
    assert out.min() < -250
    assert out.max() > 600


@pytest.mark.parametrize("interpolation", hv.INTERPOLATIONS)
def test_one_channel_uint8_images_resize_like_pillow_grey(
    images: dict[str, Array], interpolation: str
) -> None:
    grey = images["l.png"][:, :, :1]
    out = hv.resize(grey, (15, 40), interpolation=interpolation)
    assert out.shape == (15, 40, 1)
    assert out.dtype == np.uint8
    expected = Image.fromarray(grey[:, :, 0]).resize((40, 15), FILTERS[interpolation])
    np.testing.assert_array_equal(out[:, :, 0], np.asarray(expected))


@pytest.mark.parametrize("channels", [2, 4, 5])
@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_uint8_images_with_other_channel_counts_resize_each_channel(
    images: dict[str, Array], channels: int, interpolation: str
) -> None:
    rgb, grey = images["rgb.jpg"], images["l.png"]
    planes = [rgb[:, :, 0], rgb[:, :, 1], rgb[:, :, 2], grey[:, :, 0]][: channels - 1]
    # The last plane is all 255, so that reading it as alpha would change nothing.
    image = np.stack([*planes, np.full_like(grey[:, :, 0], 255)], 2)
    assert image.shape[2] == channels
    out = hv.resize(image, (15, 40), interpolation=interpolation)
    assert out.shape == (15, 40, channels)
    assert out.dtype == np.uint8
    for c in range(channels):
        alone = hv.resize(
            np.ascontiguousarray(image[:, :, c : c + 1]), (15, 40), interpolation=interpolation
        )
        np.testing.assert_allclose(out[:, :, c], alone[:, :, 0], atol=1)


def test_a_fourth_channel_is_not_taken_for_alpha(images: dict[str, Array]) -> None:
    rgb = images["rgb.jpg"]
    depth = np.zeros_like(rgb[:, :, :1])  # say a depth or mask plane that is 0 here
    out = hv.resize(np.concatenate([rgb, depth], 2), (15, 40))
    np.testing.assert_allclose(out[:, :, :3], hv.resize(rgb, (15, 40)), atol=1)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda im: hv.resize(im, 0), ValueError, "resize: size must be positive, got 0"),
        (lambda im: hv.resize(im, -3), ValueError, "size must be positive, got -3"),
        (lambda im: hv.resize(im, (0, 5)), ValueError, r"size must be .*\(height, width\).*0, 5"),
        (lambda im: hv.resize(im, cast(Any, (5,))), ValueError, r"size must be .*got \(5,\)"),
        (lambda im: hv.resize(im, cast(Any, (5, 6, 7))), ValueError, "size must be"),
        (lambda im: hv.resize(im, cast(Any, 2.5)), ValueError, "size must be .*2.5"),
        (lambda im: hv.resize(im, True), ValueError, "size must be .*True"),
        (
            lambda im: hv.resize(im, 8, interpolation="cubic"),
            ValueError,
            "interpolation must be one of nearest, bilinear, bicubic, lanczos, box, got 'cubic'",
        ),
        (
            lambda im: hv.resize(im[:, :, 0], 8),
            ValueError,
            r"H x W x C array, got shape \(37, 53\)",
        ),
        (lambda im: hv.resize(im[np.newaxis], 8), ValueError, r"got shape \(1, 37, 53, 3\)"),
        (lambda im: hv.resize(im.astype(np.int16), 8), TypeError, "int16"),
        (lambda im: hv.resize(im.astype(np.uint16), 8), TypeError, "uint16"),
        (lambda im: hv.resize(im.tolist(), 8), TypeError, "expected a numpy array image, got list"),
    ],
)
def test_resize_rejects_bad_arguments_naming_the_problem(
    images: dict[str, Array], call: Callable[[Array], Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        call(images["rgb.jpg"])


# --- crops ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("size", [20, (37, 53), (10, 51), (1, 1)])
def test_center_crop_is_the_middle_slice(
    images: dict[str, Array], kind: str, size: int | tuple[int, int]
) -> None:
    image = images[kind]
    height, width = (size, size) if isinstance(size, int) else size
    if height > image.shape[0] or width > image.shape[1]:
        height, width = width, height  # the EXIF image is tall
    out = hv.center_crop(image, (height, width))
    top, left = (image.shape[0] - height) // 2, (image.shape[1] - width) // 2
    np.testing.assert_array_equal(out, image[top : top + height, left : left + width])
    assert np.shares_memory(out, image)


@pytest.mark.parametrize("size", [(20, 20), (7, 30), (80, 100), (79, 99), (1, 2)])
def test_center_crop_leaves_equal_margins(markers: dict[str, Array], size: tuple[int, int]) -> None:
    image = markers["80x100"]
    left, top, right, bottom = box_of(hv.center_crop(image, size))
    assert (bottom - top, right - left) == size
    assert 0 <= (100 - right) - left <= 1  # any odd pixel goes to the right
    assert 0 <= (80 - bottom) - top <= 1


def test_random_crop_takes_exact_windows_everywhere_in_bounds(
    markers: dict[str, Array],
) -> None:
    image = markers["80x100"]
    corners = set()
    for seed in range(300):
        out = hv.random_crop(image, rng(seed), (76, 93))
        assert out.shape == (76, 93, 3)
        left, top, right, bottom = box_of(out)
        assert (bottom - top, right - left) == (76, 93)
        np.testing.assert_array_equal(out, image[top:bottom, left:right])
        corners.add((top, left))
    # 5 rows and 8 columns of places, each drawn uniformly: all are reached.
    assert corners == {(top, left) for top in range(5) for left in range(8)}


@pytest.mark.parametrize("kind", KINDS)
def test_random_crop_on_real_images_is_a_slice_of_the_image(
    images: dict[str, Array], kind: str
) -> None:
    image = images[kind]
    for seed in range(5):
        out = hv.random_crop(image, rng(seed), 30)
        assert out.shape == (30, 30, 3)
        assert np.shares_memory(out, image)
        # A view: its offset into the image's buffer gives the window's corner.
        offset = out.__array_interface__["data"][0] - image.__array_interface__["data"][0]
        top, rest = divmod(offset, image.strides[0])
        left = rest // image.strides[1]
        np.testing.assert_array_equal(out, image[top : top + 30, left : left + 30])


@pytest.mark.parametrize("kind", ["rgb.jpg", "exif.jpg", "i16.png"])
def test_random_crop_of_the_whole_size_returns_the_whole_image(
    images: dict[str, Array], kind: str
) -> None:
    image = images[kind]
    for seed in range(10):
        np.testing.assert_array_equal(hv.random_crop(image, rng(seed), image.shape[:2]), image)


@pytest.mark.parametrize(("size", "named"), [(60, "60x60"), ((20, 54), "20x54"), ((38, 1), "38x1")])
@pytest.mark.parametrize("crop", ["center", "random"])
def test_a_crop_larger_than_the_image_names_both_sizes(
    images: dict[str, Array], size: int | tuple[int, int], named: str, crop: str
) -> None:
    image = images["rgb.jpg"]
    match = rf"{crop}_crop: a {named} crop needs an image at least that large, got 37x53"
    cropping: Callable[[], Array] = (
        (lambda: hv.center_crop(image, size))
        if crop == "center"
        else (lambda: hv.random_crop(image, rng(0), size))
    )
    with pytest.raises(ValueError, match=match):
        cropping()


@pytest.mark.parametrize("size", [0, (0, 3), (3,), 1.5])
def test_crops_reject_bad_sizes(images: dict[str, Array], size: Any) -> None:
    with pytest.raises(ValueError, match="size must be a positive int or"):
        hv.center_crop(images["rgb.jpg"], size)
    with pytest.raises(ValueError, match="size must be a positive int or"):
        hv.random_crop(images["rgb.jpg"], rng(0), size)


# --- random_resized_crop ----------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("size", [24, (17, 40)])
def test_random_resized_crop_gives_the_size_and_dtype(
    images: dict[str, Array], kind: str, size: int | tuple[int, int]
) -> None:
    shape = (size, size) if isinstance(size, int) else size
    image = images[kind]
    out = hv.random_resized_crop(image, rng(1), size)
    assert out.shape == (*shape, 3)
    assert out.dtype == np.uint8
    as_float = hv.random_resized_crop(image.astype(np.float32), rng(1), size)
    assert as_float.shape == out.shape
    assert as_float.dtype == np.float32
    # The same draws make the same crop whatever the dtype.
    np.testing.assert_allclose(as_float, out, atol=2)


def overlaps(low: float, high: float, bounds: tuple[float, float]) -> bool:
    return low <= bounds[1] + 1e-9 and bounds[0] <= high + 1e-9


@pytest.mark.parametrize(
    ("scale", "ratio"),
    [
        ((0.08, 1.0), (3 / 4, 4 / 3)),
        ((0.5, 0.6), (1.0, 1.0)),
        ((0.2, 0.3), (2.0, 3.0)),
        ((0.05, 0.3), (0.25, 0.5)),
    ],
)
def test_random_resized_crop_honours_scale_and_ratio(
    markers: dict[str, Array], scale: tuple[float, float], ratio: tuple[float, float]
) -> None:
    image = markers["80x100"]
    fractions, ratios = [], []
    for seed in range(100):
        # Enlarged (at least 2.5 times) with nearest: every crop pixel shows in the output.
        out = hv.random_resized_crop(
            image, rng(seed), (256, 256), scale=scale, ratio=ratio, interpolation="nearest"
        )
        left, top, right, bottom = box_of(out)
        # The box is the whole crop: resizing that slice gives the same pixels.
        crop = image[top:bottom, left:right]
        np.testing.assert_array_equal(out, hv.resize(crop, (256, 256), interpolation="nearest"))
        width, height = right - left, bottom - top
        # The crop's sides are the drawn ones rounded: the draws lie within half a pixel.
        assert overlaps(
            (width - 0.5) * (height - 0.5) / 8000, (width + 0.5) * (height + 0.5) / 8000, scale
        )
        assert overlaps((width - 0.5) / (height + 0.5), (width + 0.5) / (height - 0.5), ratio)
        fractions.append(width * height / 8000)
        ratios.append(width / height)
    # Drawn across the ranges, not stuck at one end.
    spread = scale[1] - scale[0]
    assert min(fractions) < scale[0] + spread / 4
    assert max(fractions) > scale[1] - spread / 4
    if ratio[0] < 1 < ratio[1]:
        assert min(ratios) < 0.9
        assert max(ratios) > 1.1


@pytest.mark.parametrize(
    ("name", "ratio", "box"),
    [
        # Too wide for 4/3: the widest 4/3 crop, centred (half the area or more needs
        # a side of 38 pixels at least, so no draw fits in 20 rows).
        ("20x200", (3 / 4, 4 / 3), (86, 0, 113, 20)),
        # Too tall for 3/4: the tallest 3/4 crop, centred.
        ("200x20", (3 / 4, 4 / 3), (0, 86, 20, 113)),
        # Not wide enough for 50: all columns, 200 / 50 rows in the middle (a draw
        # of half the area at ratio 50 or more needs 316 columns).
        ("20x200", (50.0, 60.0), (0, 8, 200, 12)),
    ],
)
def test_random_resized_crop_falls_back_to_the_centre(
    markers: dict[str, Array],
    name: str,
    ratio: tuple[float, float],
    box: tuple[int, int, int, int],
) -> None:
    image = markers[name]
    left, top, right, bottom = box
    for seed in range(10):
        out = hv.random_resized_crop(
            image,
            rng(seed),
            (bottom - top, right - left),
            scale=(0.5, 1.0),
            ratio=ratio,
            interpolation="nearest",
        )
        np.testing.assert_array_equal(out, image[top:bottom, left:right])


def test_random_resized_crop_falls_back_to_the_whole_image_when_its_ratio_fits(
    markers: dict[str, Array],
) -> None:
    image = markers["48x48"]
    # The whole area at a ratio drawn from 1/100..100 fits only for ratios within 2%
    # of 1, so the ten draws fail and the image's own ratio, 1, is inside the range.
    for seed in range(20):
        out = hv.random_resized_crop(
            image, rng(seed), 48, scale=(1.0, 1.0), ratio=(0.01, 100.0), interpolation="nearest"
        )
        np.testing.assert_array_equal(out, image)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        (
            {"scale": (0.5, 0.2)},
            r"scale must be a \(low, high\) pair with 0 <= low <= high <= 1, got \(0.5, 0.2\)",
        ),
        ({"scale": (0.0, 0.0)}, "scale must be"),
        ({"scale": (-0.1, 0.5)}, "scale must be"),
        ({"scale": (0.5, 1.5)}, "scale must be"),
        ({"scale": 0.5}, "scale must be"),
        ({"scale": (0.1, 0.2, 0.3)}, "scale must be"),
        ({"ratio": (2.0, 1.0)}, r"ratio must be a \(low, high\) pair with 0 < low <= high, got"),
        ({"ratio": (-1.0, 1.0)}, "ratio must be"),
        ({"ratio": (0.0, 0.0)}, "ratio must be"),
        ({"ratio": 1.0}, "ratio must be"),
        ({"size": 0}, "size must be a positive int or"),
        ({"size": (8, -1)}, "size must be a positive int or"),
        ({"interpolation": "area"}, "interpolation must be one of"),
    ],
)
def test_random_resized_crop_rejects_bad_options(
    images: dict[str, Array], options: dict[str, Any], match: str
) -> None:
    arguments: dict[str, Any] = {"size": 16, **options}
    with pytest.raises(ValueError, match=f"random_resized_crop: {match}"):
        hv.random_resized_crop(images["rgb.jpg"], rng(0), **arguments)


def test_random_resized_crop_rejects_a_ratio_of_zero(images: dict[str, Array]) -> None:
    with pytest.raises(ValueError, match="ratio must be"):
        hv.random_resized_crop(images["rgb.jpg"], rng(0), 16, ratio=(0.0, 1.0))


# --- flips ------------------------------------------------------------------------------


TRANSPOSES = {
    "horizontal": Image.Transpose.FLIP_LEFT_RIGHT,
    "vertical": Image.Transpose.FLIP_TOP_BOTTOM,
    "both": Image.Transpose.ROTATE_180,
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("direction", ["horizontal", "vertical", "both"])
def test_flip_mirrors_like_pillow(images: dict[str, Array], kind: str, direction: str) -> None:
    image = images[kind]
    out = hv.flip(image, direction)
    expected = Image.fromarray(image).transpose(TRANSPOSES[direction])
    np.testing.assert_array_equal(out, np.asarray(expected))
    assert np.shares_memory(out, image)
    np.testing.assert_array_equal(hv.flip(out, direction), image)


@pytest.mark.parametrize("kind", PILLOW_KINDS)
def test_flip_matches_pillow_on_the_file(files: dict[str, Path], kind: str) -> None:
    out = hv.flip(hv.decode(files[kind]))
    expected = pillow_rgb(files[kind]).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    np.testing.assert_array_equal(out, np.asarray(expected))


def test_flip_defaults_to_horizontal_and_rejects_other_directions(
    images: dict[str, Array],
) -> None:
    image = images["rgb.jpg"]
    np.testing.assert_array_equal(hv.flip(image), image[:, ::-1])
    with pytest.raises(ValueError, match=r"flip: direction must be .*got 'diagonal'"):
        hv.flip(image, "diagonal")


def flipped(out: Array) -> tuple[bool, bool]:
    """Whether a (possibly flipped) marker image was mirrored left-right, top-bottom."""
    return bool(out[0, 0, 0] > out[0, -1, 0]), bool(out[0, 0, 1] > out[-1, 0, 1])


@pytest.mark.parametrize(
    ("horizontal", "vertical"), [(True, False), (False, True), (True, True), (False, False)]
)
def test_random_flip_with_p_0_never_and_p_1_always_flips(
    markers: dict[str, Array], horizontal: bool, vertical: bool
) -> None:
    image = markers["80x100"]
    for seed in range(20):
        options = {"horizontal": horizontal, "vertical": vertical}
        assert flipped(hv.random_flip(image, rng(seed), p=0.0, **options)) == (False, False)
        assert flipped(hv.random_flip(image, rng(seed), p=1.0, **options)) == (
            horizontal,
            vertical,
        )


def test_random_flip_flips_about_half_and_keeps_the_pixels(markers: dict[str, Array]) -> None:
    image = markers["80x100"]
    outcomes = []
    for seed in range(200):
        out = hv.random_flip(image, rng(seed), vertical=True)
        outcome = flipped(out)
        expected = {
            (False, False): image,
            (True, False): image[:, ::-1],
            (False, True): image[::-1],
            (True, True): image[::-1, ::-1],
        }[outcome]
        np.testing.assert_array_equal(out, expected)
        outcomes.append(outcome)
    for outcome in [(False, False), (True, False), (False, True), (True, True)]:
        assert 25 <= outcomes.count(outcome) <= 75


def test_random_flip_vertical_does_not_change_the_horizontal_decisions(
    markers: dict[str, Array],
) -> None:
    image = markers["80x100"]
    vertical_ones = 0
    for seed in range(60):
        alone = flipped(hv.random_flip(image, rng(seed), p=0.5))
        both = flipped(hv.random_flip(image, rng(seed), vertical=True, p=0.5))
        assert both[0] == alone[0]
        assert alone[1] is False
        vertical_ones += both[1]
    assert 10 < vertical_ones < 50


def test_random_flip_draws_once_per_direction_whether_or_not_it_flips(
    images: dict[str, Array],
) -> None:
    image = images["rgb.jpg"]
    for horizontal, vertical, draws in [(True, False, 1), (False, True, 1), (True, True, 2)]:
        expected = rng(7).random(draws + 1)[-1]
        for p in [0.0, 0.5, 1.0]:
            generator = rng(7)
            hv.random_flip(image, generator, horizontal=horizontal, vertical=vertical, p=p)
            # What the next transform in a chain draws does not depend on p.
            assert generator.random() == expected


@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_random_flip_rejects_a_bad_probability(images: dict[str, Array], p: float) -> None:
    with pytest.raises(ValueError, match=f"random_flip: p must be between 0 and 1, got {p}"):
        hv.random_flip(images["rgb.jpg"], rng(0), p=p)


# --- rotations --------------------------------------------------------------------------


ROTATIONS = {
    1: Image.Transpose.ROTATE_90,
    2: Image.Transpose.ROTATE_180,
    3: Image.Transpose.ROTATE_270,
}


@pytest.mark.parametrize("kind", KINDS)
def test_rotate90_turns_like_numpy_and_pillow_and_four_turns_are_none(
    images: dict[str, Array], kind: str
) -> None:
    image = images[kind]
    height, width = image.shape[:2]
    turned = image
    for k in range(1, 5):
        turned = hv.rotate90(turned)
        assert turned.shape == ((width, height, 3) if k % 2 else (height, width, 3))
        np.testing.assert_array_equal(hv.rotate90(image, k), turned)
    np.testing.assert_array_equal(turned, image)
    np.testing.assert_array_equal(hv.rotate90(image, 1), np.rot90(image))
    np.testing.assert_array_equal(hv.rotate90(image, -1), hv.rotate90(image, 3))
    np.testing.assert_array_equal(hv.rotate90(image, 2), hv.flip(image, "both"))
    for k, transpose in ROTATIONS.items():
        expected = Image.fromarray(image).transpose(transpose)
        np.testing.assert_array_equal(hv.rotate90(image, k), np.asarray(expected))


@pytest.mark.parametrize("kind", PILLOW_KINDS)
def test_rotate90_matches_pillow_on_the_file(files: dict[str, Path], kind: str) -> None:
    out = hv.rotate90(hv.decode(files[kind]), 1)
    expected = pillow_rgb(files[kind]).transpose(Image.Transpose.ROTATE_90)
    np.testing.assert_array_equal(out, np.asarray(expected))


def test_random_rotate90_draws_every_quarter_turn(markers: dict[str, Array]) -> None:
    image = markers["48x48"]
    turns = [np.rot90(image, k) for k in range(4)]
    counts = [0] * 4
    for seed in range(200):
        out = hv.random_rotate90(image, rng(seed))
        (k,) = [k for k in range(4) if np.array_equal(out, turns[k])]
        counts[k] += 1
    assert all(25 <= count <= 75 for count in counts), counts


def test_random_rotate90_with_half_turns_keeps_the_shape(images: dict[str, Array]) -> None:
    image = images["rgb.jpg"]
    seen = set()
    for seed in range(30):
        out = hv.random_rotate90(image, rng(seed), multiples=(0, 2))
        assert out.shape == image.shape
        seen.add(np.array_equal(out, image))
        assert np.array_equal(out, image) or np.array_equal(out, image[::-1, ::-1])
    assert seen == {True, False}


def test_random_rotate90_with_one_multiple_always_makes_it(images: dict[str, Array]) -> None:
    image = images["exif.jpg"]
    for seed in range(5):
        np.testing.assert_array_equal(
            hv.random_rotate90(image, rng(seed), multiples=[3]), np.rot90(image, 3)
        )


@pytest.mark.parametrize("multiples", [(), [], (1.0,), (0, "1"), "0123", (None,)])
def test_random_rotate90_rejects_bad_multiples(images: dict[str, Array], multiples: Any) -> None:
    with pytest.raises(ValueError, match="random_rotate90: multiples must be a non-empty list"):
        hv.random_rotate90(images["rgb.jpg"], rng(0), multiples=multiples)


# --- random_jitter ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_random_jitter_keeps_uint8_and_saturates_instead_of_wrapping(
    images: dict[str, Array], kind: str
) -> None:
    image = images[kind]
    saturated = 0
    for seed in range(10):
        out = hv.random_jitter(image, rng(seed), brightness=0.9, contrast=0.0)
        assert out.dtype == np.uint8
        assert out.shape == image.shape
        light = np.float32(rng(seed).uniform(0.1, 1.9))
        scaled = np.rint(image.astype(np.float32) * light)
        # Past 255 stops at 255 instead of wrapping round to dark values.
        np.testing.assert_array_equal(out, np.minimum(scaled, 255))
        saturated += int(np.count_nonzero(scaled > 255))
        with_contrast = hv.random_jitter(image, rng(seed), brightness=0.9, contrast=0.9)
        assert with_contrast.dtype == np.uint8
        assert with_contrast.shape == image.shape
    assert saturated > 0


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
def test_random_jitter_of_nothing_gives_the_input_back(
    images: dict[str, Array], kind: str, dtype: Any
) -> None:
    image = images[kind].astype(dtype)
    out = hv.random_jitter(image, rng(5), brightness=0.0, contrast=0.0)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, image)


def test_random_jitter_draws_brightness_first_and_always_draws_contrast(
    images: dict[str, Array],
) -> None:
    image = images["rgb.jpg"]
    pixels = image.astype(np.float64)
    for seed in range(10):
        light, stretch = rng(seed).uniform(0.7, 1.3), rng(seed).uniform(0.6, 1.4, size=2)[1]
        # Contrast 0 leaves the brightness draws (and so the result) as they were.
        out = hv.random_jitter(image, rng(seed), brightness=0.3, contrast=0.0)
        scaled = np.rint(image.astype(np.float32) * np.float32(light))
        np.testing.assert_array_equal(out, np.clip(scaled, 0, 255))
        # Brightness 0 still uses up its draw: contrast takes the second one.
        out = hv.random_jitter(pixels, rng(seed), brightness=0.0, contrast=0.4)
        mean = pixels.mean()
        np.testing.assert_allclose(out, (pixels - mean) * stretch + mean, rtol=1e-12)


@pytest.mark.parametrize("amounts", [(0.0, 0.0), (0.3, 0.0), (0.0, 0.3), (0.3, 0.3)])
def test_random_jitter_always_makes_both_draws(
    images: dict[str, Array], amounts: tuple[float, float]
) -> None:
    generator = rng(9)
    hv.random_jitter(images["rgb.jpg"], generator, brightness=amounts[0], contrast=amounts[1])
    # The next transform in a chain draws the same whatever the amounts were.
    assert generator.random() == rng(9).random(3)[2]


def test_random_jitter_of_floats_is_unclipped_and_keeps_the_mean_under_contrast(
    images: dict[str, Array],
) -> None:
    image = images["rgb.jpg"].astype(np.float32)
    highest = -math.inf
    for seed in range(10):
        out = hv.random_jitter(image, rng(seed), brightness=0.0, contrast=0.5)
        assert out.dtype == np.float32
        assert out.mean() == pytest.approx(image.mean(), rel=1e-4)
        stretch = out.std() / image.std()
        assert 0.5 - 1e-4 <= stretch <= 1.5 + 1e-4
        highest = max(highest, float(hv.random_jitter(image, rng(seed), contrast=0.0).max()))
    assert highest > 255  # brightened floats go past the uint8 range


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"brightness": -0.1}, "brightness must be between 0 and 1, got -0.1"),
        ({"brightness": 1.5}, "brightness must be between 0 and 1, got 1.5"),
        ({"contrast": 2}, "contrast must be between 0 and 1, got 2"),
    ],
)
def test_random_jitter_rejects_bad_amounts(
    images: dict[str, Array], options: dict[str, float], match: str
) -> None:
    with pytest.raises(ValueError, match=f"random_jitter: {match}"):
        hv.random_jitter(images["rgb.jpg"], rng(0), **options)


# --- rescale, normalize, to_float -------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_normalize_with_seed_000_mean(images: dict[str, Array], kind: str) -> None:
    image = images[kind]
    out = hv.normalize(image, SEED_MEAN)
    assert out.dtype == np.float32
    assert out.shape == image.shape
    expected = image.astype(np.float32) - np.array(SEED_MEAN, np.float32)
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-4)


def test_normalize_divides_each_channel_by_its_std(images: dict[str, Array]) -> None:
    image = images["cmyk.jpg"]
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    out = hv.normalize(hv.to_float(image), mean, std)
    expected = (image / 255.0 - np.array(mean)) / np.array(std)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    # One value stands for every channel; float64 on request.
    out = hv.normalize(image, 128, 2, dtype=np.float64)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, (image - 128.0) / 2)


def _views(array: Array) -> dict[str, Array]:
    """``array`` and the strided views of it a pipeline hands to ``normalize``."""
    width_axis = array.ndim - 2
    return {
        "packed": array,
        "flipped": np.flip(array, width_axis),  # what random_flip returns
        "upside down": np.flip(array, width_axis - 1),
        "channels reversed": array[..., ::-1],  # RGB to BGR
        "every other row": array[..., ::2, :, :],
        "transposed": np.swapaxes(array, width_axis - 1, width_axis),
    }


@pytest.mark.parametrize(
    "shape", [(224, 224, 3), (7, 5, 1), (3, 6, 4, 2), (1, 1, 3), (0, 4, 3), (4, 0, 3)]
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_normalize_equals_the_broadcast_formula_on_every_layout(
    shape: tuple[int, ...], dtype: Any
) -> None:
    # normalize works on rows of pixels rather than numpy's per-pixel broadcast; the
    # result must be the broadcast's, bit for bit, whatever the input's strides.
    image = np.random.default_rng(3).integers(0, 256, shape, dtype=np.uint8)
    channels = shape[-1]
    for name, view in _views(image).items():
        for mean, std in (
            ([123.675, 116.28, 103.53, 1.0][:channels], [58.395, 57.12, 57.375, 2.0][:channels]),
            (127.5, 0.5),
        ):
            expected = np.subtract(view, np.asarray(mean, dtype), dtype=dtype)
            expected *= 1 / np.asarray(std, dtype)
            out = hv.normalize(view, mean, std, dtype=dtype)
            assert out.dtype == dtype, name
            assert out.flags.c_contiguous, name
            assert out.flags.writeable, name
            np.testing.assert_array_equal(out, expected, err_msg=name)
    floats = np.random.default_rng(4).random(shape)
    expected = np.subtract(floats, np.float32(0.5), dtype=np.float32) * np.float32(4)
    np.testing.assert_array_equal(hv.normalize(floats, 0.5, 0.25), expected)


def test_normalize_refuses_a_cast_numpy_refuses() -> None:
    with pytest.raises(TypeError):
        hv.normalize(np.ones((2, 2, 3), np.complex64), 0.0)


@pytest.mark.parametrize(
    ("mean", "std", "match"),
    [
        ([1.0, 2.0], 1.0, r"mean needs one value or one per channel \(3\), got \[1.0, 2.0\]"),
        ([1.0, 2.0, 3.0, 4.0], 1.0, r"mean needs one value or one per channel \(3\)"),
        ([[1.0, 2.0, 3.0]], 1.0, r"mean needs one value or one per channel \(3\)"),
        (0.0, [1.0, 2.0], r"std needs one value or one per channel \(3\)"),
        (0.0, 0.0, "std must not be zero, got 0.0"),
        (0.0, [1.0, 0.0, 1.0], r"std must not be zero, got \[1.0, 0.0, 1.0\]"),
    ],
)
def test_normalize_rejects_bad_mean_and_std(
    images: dict[str, Array], mean: Any, std: Any, match: str
) -> None:
    with pytest.raises(ValueError, match=f"normalize: {match}"):
        hv.normalize(images["rgb.jpg"], mean, std)


def batch_of(images: dict[str, Array]) -> Array:
    """The decoded images cropped to a common size and stacked: ``N x 30 x 30 x 3``."""
    return np.stack([hv.center_crop(image, 30) for image in images.values()])


def test_normalize_and_to_float_take_batches(images: dict[str, Array]) -> None:
    batch = batch_of(images)
    assert batch.shape == (len(KINDS), 30, 30, 3)
    out = hv.normalize(batch, SEED_MEAN, [2.0, 3.0, 4.0])
    assert out.shape == batch.shape
    for one, image in zip(out, batch, strict=True):
        np.testing.assert_array_equal(one, hv.normalize(image, SEED_MEAN, [2.0, 3.0, 4.0]))
    np.testing.assert_array_equal(hv.to_float(batch), batch / np.float32(255))


@pytest.mark.parametrize("kind", KINDS)
def test_rescale_maps_0_255_to_the_range_asked_for(images: dict[str, Array], kind: str) -> None:
    image = images[kind]
    unit = hv.rescale(image)
    assert unit.dtype == np.float32
    np.testing.assert_allclose(unit, image / 255.0, rtol=1e-6)
    signed = hv.rescale(image, 2 / 255, -1)
    np.testing.assert_allclose(signed, image / 127.5 - 1, atol=1e-6)
    assert hv.rescale(image, 1.0, 0.5, dtype=np.float64).dtype == np.float64
    np.testing.assert_array_equal(hv.rescale(image, 1.0, 0.5, dtype=np.float64), image + 0.5)


def test_rescale_reaches_both_ends(images: dict[str, Array]) -> None:
    image = images["bw.png"]  # dithered 1-bit: only 0 and 255
    assert set(np.unique(image).tolist()) == {0, 255}
    assert set(np.unique(hv.rescale(image, 2 / 255, -1)).tolist()) == {-1.0, 1.0}


def test_to_float_divides_by_the_integer_types_maximum(
    files: dict[str, Path], images: dict[str, Array]
) -> None:
    image = images["rgb.jpg"]
    out = hv.to_float(image)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, image / np.float32(255))
    with Image.open(files["i16.png"]) as stored:
        sixteen = np.asarray(stored)[:, :, np.newaxis]
    assert sixteen.dtype == np.uint16
    assert sixteen.max() > 255
    out = hv.to_float(sixteen, dtype=np.float64)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, sixteen / 65535.0)
    assert hv.to_float(np.full((1, 1, 1), 0xFFFF, np.uint16)).item() == 1.0
    # Floats are only cast.
    floats = image.astype(np.float64) / 7
    np.testing.assert_array_equal(hv.to_float(floats), floats.astype(np.float32))


@pytest.mark.parametrize(
    "transform",
    [hv.rescale, functools.partial(hv.normalize, mean=0.0), hv.to_float, hv.channels_first],
)
def test_value_transforms_reject_flat_arrays(
    images: dict[str, Array], transform: Callable[[Array], Array]
) -> None:
    with pytest.raises(ValueError, match=r"expected an H x W x C .*got shape \(37, 53\)"):
        transform(images["rgb.jpg"][:, :, 0])


# --- channel order ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_channels_first_and_last_round_trip(images: dict[str, Array], kind: str) -> None:
    image = images[kind]
    first = hv.channels_first(image)
    assert first.shape == (3, *image.shape[:2])
    for c in range(3):
        np.testing.assert_array_equal(first[c], image[:, :, c])
    assert np.shares_memory(first, image)
    back = hv.channels_last(first)
    assert back.shape == image.shape
    np.testing.assert_array_equal(back, image)


def test_channels_first_and_last_on_batches(images: dict[str, Array]) -> None:
    batch = batch_of(images)
    first = hv.channels_first(batch)
    assert first.shape == (len(KINDS), 3, 30, 30)
    np.testing.assert_array_equal(first[4, 2], batch[4, :, :, 2])
    np.testing.assert_array_equal(hv.channels_last(first), batch)
    assert hv.channels_last(np.zeros((2, 3, 4, 5))).shape == (2, 4, 5, 3)


# --- pipelines --------------------------------------------------------------------------


def augment(image: Array, generator: np.random.Generator) -> Array:
    image = hv.random_resized_crop(image, generator, (24, 32))
    image = hv.random_flip(image, generator, vertical=True)
    image = hv.random_rotate90(image, generator, multiples=(0, 2))
    return hv.random_jitter(image, generator)


def augmented(paths: list[Path], workers: int, backend: str, epoch: int) -> list[Array]:
    pipeline = (
        hr.from_iterable(paths)
        .map(hv.decode)
        .random_map(augment, seed=3, workers=workers, backend=backend)
    )
    with pipeline.iter(epoch=epoch) as run:
        return list(run)


@pytest.mark.usefixtures("nothing_left_running")
def test_augmentation_is_the_same_with_any_workers_and_new_each_epoch(
    files: dict[str, Path],
) -> None:
    paths = [files[kind] for kind in KINDS]
    serial = augmented(paths, 0, "thread", epoch=0)
    assert [out.shape for out in serial] == [(24, 32, 3)] * len(KINDS)
    assert all(out.dtype == np.uint8 for out in serial)
    for workers, backend in [(2, "thread"), (2, "process")]:
        parallel = augmented(paths, workers, backend, epoch=0)
        assert len(parallel) == len(serial)
        for one, other in zip(parallel, serial, strict=True):
            np.testing.assert_array_equal(one, other)
    # The next epoch draws anew.
    later = augmented(paths, 2, "thread", epoch=1)
    differing = sum(not np.array_equal(a, b) for a, b in zip(serial, later, strict=True))
    assert differing >= len(KINDS) - 1


@pytest.mark.usefixtures("nothing_left_running")
def test_transforms_compose_into_float_batches(
    files: dict[str, Path], images: dict[str, Array]
) -> None:
    paths = [files[kind] for kind in KINDS]
    pipeline = (
        hr.from_iterable(paths)
        .map(hv.decode)
        .map(functools.partial(hv.resize, size=40))
        .map(functools.partial(hv.center_crop, size=32), workers=2)
        .random_map(augment, seed=11)
        .map(hv.to_float)
        .batch(4)
    )
    with pipeline.iter(epoch=0) as run:
        batches = list(run)
    assert [batch.shape for batch in batches] == [(4, 24, 32, 3), (4, 24, 32, 3), (2, 24, 32, 3)]
    assert all(batch.dtype == np.float32 for batch in batches)
    stacked = np.concatenate(batches)
    assert stacked.min() >= 0.0
    assert stacked.max() <= 1.0
    # The same steps by hand, with the generators random_map hands out, agree.
    with (
        hr.from_iterable(range(len(KINDS)))
        .random_map(lambda _, generator: generator, seed=11)
        .iter(epoch=0) as generators
    ):
        for index, (kind, generator) in enumerate(zip(KINDS, generators, strict=True)):
            image = hv.center_crop(hv.resize(images[kind], 40), 32)
            expected = hv.to_float(augment(image, generator))
            np.testing.assert_array_equal(stacked[index], expected)


def test_numpy_integers_are_sizes_and_multiples(images: dict[str, Array]) -> None:
    image = images["rgb.jpg"]
    assert hv.resize(image, np.int64(20)).shape[0] == 20
    assert hv.center_crop(image, (np.int32(5), np.int64(7))).shape == (5, 7, 3)
    turned = hv.random_rotate90(image, rng(0), multiples=np.array([2]))
    np.testing.assert_array_equal(turned, np.rot90(image, 2))


def test_jitter_and_resize_refuse_what_they_cannot_handle(images: dict[str, Array]) -> None:
    with pytest.raises(
        TypeError, match="random_jitter: expected a uint8 or float image, got uint16"
    ):
        hv.random_jitter(images["rgb.jpg"].astype(np.uint16), rng(0))
    with pytest.raises(ValueError, match=r"got shape \(37, 53, 0\)"):
        hv.resize(images["rgb.jpg"][:, :, :0], 8)


def test_rescale_takes_batches_as_normalize_does(images: dict[str, Array]) -> None:
    batch = np.stack([images["rgb.jpg"], images["cmyk.jpg"]])
    np.testing.assert_allclose(hv.rescale(batch), hv.to_float(batch), rtol=1e-6)


def test_a_ratio_far_from_the_images_own_still_crops_a_pixel() -> None:
    thin = np.arange(4 * 100 * 3, dtype=np.uint8).reshape(4, 100, 3)
    out = hv.random_resized_crop(thin, rng(0), 8, ratio=(0.01, 0.1), interpolation="nearest")
    assert out.shape == (8, 8, 3)
    # The fallback is a centred crop one pixel wide: every output column repeats it.
    np.testing.assert_array_equal(out, np.repeat(out[:, :1], 8, axis=1))
