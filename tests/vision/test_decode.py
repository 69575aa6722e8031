"""decode: every Pillow mode to RGB uint8, EXIF, draft mode, bombs and bad files."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from headrace import DecodeError, ParseError
from headrace.vision import DEFAULT_MAX_PIXELS, decode, resize

RED = (255, 0, 0)


def save(tmp_path: Path, image: Any, name: str, **options: Any) -> Path:
    path = tmp_path / name
    image.save(path, **options)
    return path


def opened(path: Path) -> tuple[str, dict[str, Any], int]:
    """The mode, info and frame count Pillow reports for ``path``."""
    with Image.open(path) as image:
        return image.mode, dict(image.info), getattr(image, "n_frames", 1)


def gradient(width: int, height: int) -> Any:
    """A smooth RGB image, so that JPEG and resampling errors stay small."""
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 255 // width, y * 255 // height, (x + y) * 255 // (width + height)], 2)
    return Image.fromarray(pixels.astype(np.uint8), "RGB")


def assert_rgb(array: Any, height: int, width: int) -> None:
    assert isinstance(array, np.ndarray)
    assert array.dtype == np.uint8
    assert array.shape == (height, width, 3)
    assert array.flags.writeable
    assert array.flags.c_contiguous


def test_importing_vision_loads_neither_pillow_nor_numpy() -> None:
    code = "import sys, headrace.vision\nprint(sorted({m.split('.')[0] for m in sys.modules}))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "'PIL'" not in done.stdout
    assert "'numpy'" not in done.stdout


def test_the_default_limit_is_pillows() -> None:
    assert DEFAULT_MAX_PIXELS == 89_478_485


# --- modes ------------------------------------------------------------------------------


def test_rgb_png_round_trips_exactly(tmp_path: Path) -> None:
    image = gradient(31, 17)
    array = decode(save(tmp_path, image, "a.png"))
    assert_rgb(array, 17, 31)
    np.testing.assert_array_equal(array, np.asarray(image))


def test_a_palette_image_is_expanded(tmp_path: Path) -> None:
    image = Image.new("P", (5, 4))
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255])
    image.putpixel((0, 0), 2)
    for x in range(1, 5):
        image.putpixel((x, 0), 1)
    array = decode(save(tmp_path, image, "p.png"))
    assert_rgb(array, 4, 5)
    assert tuple(array[0, 0]) == (0, 0, 255)
    assert tuple(array[0, 1]) == RED
    assert tuple(array[3, 4]) == (0, 0, 0)


@pytest.mark.parametrize("suffix", ["png", "gif"])
def test_a_palette_image_with_transparency_drops_it_without_warning(
    tmp_path: Path, suffix: str
) -> None:
    image = Image.new("P", (4, 4), 1)
    image.putpalette([0, 255, 0, 255, 0, 0])
    image.putpixel((0, 0), 0)
    path = save(tmp_path, image, f"t.{suffix}", transparency=0)
    assert "transparency" in opened(path)[1]
    array = decode(path)  # filterwarnings=error: a Pillow warning would fail here
    assert_rgb(array, 4, 4)
    assert tuple(array[0, 0]) == (0, 255, 0)  # the stored colour of the clear pixel
    assert tuple(array[1, 1]) == RED


def test_palette_transparency_given_as_bytes_does_not_warn(tmp_path: Path) -> None:
    image = Image.new("P", (3, 1), 1)
    image.putpalette([0, 255, 0, 255, 0, 0])
    path = save(tmp_path, image, "tb.png", transparency=bytes([0, 128]))
    assert isinstance(opened(path)[1]["transparency"], bytes)
    assert tuple(decode(path)[0, 0]) == RED


@pytest.mark.parametrize(("mode", "colour"), [("L", 77), ("LA", (77, 10))])
def test_grey_images_become_three_equal_channels(
    tmp_path: Path, mode: str, colour: int | tuple[int, int]
) -> None:
    array = decode(save(tmp_path, Image.new(mode, (6, 3), colour), "g.png"))
    assert_rgb(array, 3, 6)
    assert np.all(array == 77)


def test_rgba_drops_alpha_keeping_the_stored_colour(tmp_path: Path) -> None:
    image = Image.new("RGBA", (4, 2), (255, 0, 0, 255))
    image.putpixel((0, 0), (10, 20, 30, 0))
    array = decode(save(tmp_path, image, "rgba.png"))
    assert_rgb(array, 2, 4)
    assert tuple(array[0, 0]) == (10, 20, 30)
    assert tuple(array[1, 3]) == RED


def test_a_cmyk_jpeg_is_converted_to_rgb(tmp_path: Path) -> None:
    path = save(tmp_path, Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "c.jpg", quality=95)
    assert opened(path)[0] == "CMYK"
    array = decode(path)
    assert_rgb(array, 16, 16)
    np.testing.assert_allclose(array.reshape(-1, 3).mean(0), RED, atol=3)


def test_an_rgb_jpeg_keeps_its_colour(tmp_path: Path) -> None:
    array = decode(save(tmp_path, Image.new("RGB", (16, 16), RED), "r.jpg", quality=95))
    np.testing.assert_allclose(array.reshape(-1, 3).mean(0), RED, atol=3)


def test_sixteen_bit_grey_keeps_its_top_eight_bits(tmp_path: Path) -> None:
    values = np.array([[0, 255, 256, 0x8000, 0xFF00, 0xFFFF]], dtype=np.uint16)
    path = save(tmp_path, Image.fromarray(values), "16.png")
    assert opened(path)[0] in {"I;16", "I"}
    array = decode(path)
    assert_rgb(array, 1, 6)
    assert array[0, :, 0].tolist() == [0, 0, 1, 128, 255, 255]
    assert np.all(array == array[:, :, :1])


def test_32_bit_integer_images_are_read_as_sixteen_bit(tmp_path: Path) -> None:
    values = np.array([[-5, 0x1234, 0x12345]], dtype=np.int32)
    path = save(tmp_path, Image.fromarray(values, "I"), "32.tiff")
    assert decode(path)[0, :, 0].tolist() == [0, 0x12, 0xFF]


def test_one_bit_images_are_black_and_white(tmp_path: Path) -> None:
    image = Image.new("1", (3, 2), 0)
    image.putpixel((1, 1), 1)
    array = decode(save(tmp_path, image, "bw.png"))
    assert_rgb(array, 2, 3)
    assert tuple(array[1, 1]) == (255, 255, 255)
    assert tuple(array[0, 0]) == (0, 0, 0)


def test_an_animated_gif_gives_its_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (8, 8), RED), Image.new("RGB", (8, 8), (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert opened(path)[2] == 2
    array = decode(path)
    assert_rgb(array, 8, 8)
    assert np.all(array == RED)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    image = gradient(40, 24)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = save(tmp_path, image, "o.jpg", exif=exif, quality=95)
    array = decode(path)
    assert_rgb(array, 40, 24)
    with Image.open(path) as stored:
        expected = np.asarray(stored.convert("RGB").transpose(Image.Transpose.ROTATE_270))
    np.testing.assert_array_equal(array, expected)


def test_bytes_and_paths_give_the_same_array(tmp_path: Path) -> None:
    path = save(tmp_path, gradient(20, 10), "b.jpg")
    data = path.read_bytes()
    from_path = decode(path)
    np.testing.assert_array_equal(decode(data), from_path)
    np.testing.assert_array_equal(decode(bytearray(data)), from_path)
    np.testing.assert_array_equal(decode(memoryview(data)), from_path)
    np.testing.assert_array_equal(decode(str(path)), from_path)


# --- draft mode -------------------------------------------------------------------------


def test_draft_decodes_a_big_jpeg_smaller_but_at_least_size(tmp_path: Path) -> None:
    image = gradient(800, 600)
    path = save(tmp_path, image, "big.jpg", quality=95)
    array = decode(path, size=(100, 120))
    height, width = array.shape[:2]
    assert (height, width) == (150, 200)  # 1/4 scale: 1/8 would give 75 < 100
    with Image.open(path) as stored:
        full = stored.convert("RGB").resize((width, height), Image.Resampling.BILINEAR)
    difference = np.abs(array.astype(np.int16) - np.asarray(full).astype(np.int16))
    assert difference.mean() < 3


@pytest.mark.parametrize(
    ("size", "expected"),
    [((600, 800), (600, 800)), ((300, 400), (300, 400)), ((301, 10), (600, 800)), (None, None)],
)
def test_draft_never_goes_below_size(
    tmp_path: Path, size: tuple[int, int] | None, expected: tuple[int, int] | None
) -> None:
    path = save(tmp_path, gradient(800, 600), "big.jpg")
    shape = decode(path, size=size).shape[:2]
    assert shape == (expected or (600, 800))


def test_draft_accounts_for_exif_rotation(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    path = save(tmp_path, gradient(800, 400), "rot.jpg", exif=exif)
    # Displayed 800 high and 400 wide: 1/2 scale is the most that keeps 300 columns.
    assert decode(path, size=(100, 200)).shape[:2] == (400, 200)


def test_size_is_ignored_for_formats_without_draft(tmp_path: Path) -> None:
    path = save(tmp_path, gradient(80, 60), "p.png")
    assert decode(path, size=(10, 10)).shape == (60, 80, 3)


# --- limits -----------------------------------------------------------------------------


def test_an_image_over_max_pixels_is_refused_before_decoding(tmp_path: Path) -> None:
    # 9000 x 9000 one-bit pixels compress to a few kilobytes; decoding them as RGB
    # would take 243 MB, so this test passing quickly shows no pixel was decoded. (It
    # stays under Pillow's own limit, which would otherwise refuse it first.)
    path = save(tmp_path, Image.new("1", (9_000, 9_000)), "bomb.png")
    assert path.stat().st_size < 100_000
    with pytest.raises(DecodeError) as caught:
        decode(path, max_pixels=10_000_000)
    message = str(caught.value)
    assert str(path) in message
    assert "81,000,000 pixels" in message
    assert "max_pixels=10,000,000" in message


def test_the_limit_is_checked_for_bytes_and_small_limits(tmp_path: Path) -> None:
    data = save(tmp_path, gradient(30, 20), "s.png").read_bytes()
    with pytest.raises(DecodeError, match=r"<bytes>: 30x20 is 600 pixels.*max_pixels=599"):
        decode(data, max_pixels=599)
    assert decode(data, max_pixels=600).shape == (20, 30, 3)
    assert decode(data, max_pixels=None).shape == (20, 30, 3)


def test_pillows_own_bomb_check_becomes_a_decode_error(tmp_path: Path) -> None:
    # Over twice Image.MAX_IMAGE_PIXELS, Image.open itself refuses; with max_pixels=None
    # headrace does not check, and Pillow's error must still come out as DecodeError.
    path = save(tmp_path, Image.new("1", (20_000, 20_000)), "bomb.png")
    with pytest.raises(DecodeError, match="over Pillow's pixel limit"):
        decode(path, max_pixels=None)


# --- bad input --------------------------------------------------------------------------


def test_a_truncated_jpeg_is_a_decode_error(tmp_path: Path) -> None:
    data = save(tmp_path, gradient(64, 64), "whole.jpg").read_bytes()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DecodeError, match=r"(?i)cut\.jpg.*truncated"):
        decode(path)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty"),
        (b"this is not an image\n", "not in a format Pillow can read"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "cannot decode image"),
    ],
    ids=["zero-bytes", "text", "png-signature-only"],
)
def test_bad_files_are_decode_errors_naming_the_file(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(DecodeError, match=reason) as caught:
        decode(path)
    assert str(path) in str(caught.value)
    assert isinstance(caught.value, ParseError)
    assert isinstance(caught.value, ValueError)
    with pytest.raises(DecodeError, match="<bytes>"):
        decode(content)


def test_a_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        decode(tmp_path / "nope.jpg")


def test_bad_arguments_name_themselves() -> None:
    with pytest.raises(ValueError, match="size"):
        decode(b"x", size=(0, 10))
    with pytest.raises(ValueError, match="max_pixels"):
        decode(b"x", max_pixels=0)
    with pytest.raises(TypeError, match="source must be a path or bytes, not int"):
        decode(3)  # type: ignore[arg-type]


def test_a_buffer_of_another_format_is_read() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (3, 3), RED).save(buffer, format="BMP")
    assert np.all(decode(buffer.getvalue()) == RED)


def odd_files(tmp_path: Path) -> list[Path]:
    """One file for each path through decode: JPEG (drafted), palette, 16-bit, EXIF."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return [
        save(tmp_path, gradient(640, 480), "big.jpg", quality=90),
        save(tmp_path, gradient(300, 200).quantize(colors=16), "p.png"),
        save(tmp_path, Image.fromarray(np.full((90, 120), 40000, np.uint16)), "i16.png"),
        save(tmp_path, gradient(400, 200), "rot.jpg", exif=exif),
        save(tmp_path, gradient(100, 80).convert("CMYK"), "cmyk.jpg"),
    ]


@pytest.mark.parametrize("target", [(64, 48), (224, 224), 50, 500])
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest", "bicubic"])
def test_resize_equals_decoding_then_resizing(
    tmp_path: Path, target: int | tuple[int, int], interpolation: str
) -> None:
    draft = (target, target) if isinstance(target, int) else target
    for path in odd_files(tmp_path):
        once = decode(path, resize=target, interpolation=interpolation)
        shape = resize(decode(path), target).shape[:2]  # from the full size
        twice = resize(decode(path, size=draft), shape, interpolation=interpolation)
        np.testing.assert_array_equal(once, twice, err_msg=str(path))
        assert_rgb(once, *shape)


def test_a_drafted_jpeg_has_the_shape_of_the_full_one_resized(tmp_path: Path) -> None:
    # A draft's sides are the full ones divided and rounded up; a shorter-side
    # resize of those once rounded the longer side differently (45x59, not 45x60).
    wrong = []
    for width, height in [(640, 480), (1001, 750), (997, 743), (1280, 853), (853, 1280)]:
        path = save(tmp_path, gradient(width, height), f"{width}x{height}.jpg")
        full = decode(path)
        for target in range(20, 140, 3):
            got = decode(path, resize=target).shape
            if got != resize(full, target).shape:
                wrong.append((width, height, target, got))
    assert wrong == []


def test_resize_to_a_shorter_side_keeps_the_aspect_ratio(tmp_path: Path) -> None:
    big, palette, sixteen, rotated, _ = odd_files(tmp_path)
    assert decode(big, resize=60).shape == (60, 80, 3)
    assert decode(palette, resize=(10, 7)).shape == (10, 7, 3)
    assert decode(sixteen, resize=30).shape == (30, 40, 3)
    assert decode(rotated, resize=100).shape == (200, 100, 3)  # displayed 400 high, 200 wide


def test_resize_drafts_a_jpeg_only_as_far_as_the_target_allows(tmp_path: Path) -> None:
    big = odd_files(tmp_path)[0]
    with Image.open(big) as stored:
        stored.draft("RGB", (160, 120))  # what resize=(120, 160) may use: 1/4 scale
        assert stored.size == (160, 120)
        expected = np.asarray(stored.convert("RGB").resize((160, 120)))
    np.testing.assert_array_equal(decode(big, resize=(120, 160)), expected)
    # An explicit size asks for more pixels before the resize.
    finer = decode(big, size=(480, 640), resize=(120, 160))
    assert np.abs(finer.astype(int) - expected.astype(int)).mean() < 3


def test_bad_resize_arguments_name_themselves() -> None:
    with pytest.raises(ValueError, match="decode: resize must be positive, got 0"):
        decode(b"x", resize=0)
    with pytest.raises(ValueError, match=r"decode: resize must be a positive int or"):
        decode(b"x", resize=(3, 0))
    with pytest.raises(ValueError, match="decode: interpolation must be one of"):
        decode(b"x", resize=3, interpolation="cubic")
