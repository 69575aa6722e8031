"""Transforms on ``H x W x C`` image arrays, for ``map`` and ``random_map`` stages.

Each transform is a plain function from an array to an array. The deterministic
ones take the image first (``resize(image, 64)``); the random ones take the image
and a ``numpy.random.Generator`` first (``random_flip(image, rng)``), which is the
call ``Pipeline.random_map`` makes, so their draws come from the element's own
generator and the output is the same with any number of workers. Options are
keyword arguments: bind them with ``functools.partial`` or a lambda.

>>> import functools, numpy as np
>>> import headrace as hr, headrace.vision as hv
>>> images = hr.from_iterable([np.zeros((48, 64, 3), np.uint8)] * 4)
>>> crops = images.random_map(functools.partial(hv.random_crop, size=32), seed=0)
>>> [crop.shape for crop in crops][:2]
[(32, 32, 3), (32, 32, 3)]

``uint8`` images stay ``uint8`` through the geometric transforms and the colour
jitter; :func:`rescale`, :func:`normalize` and :func:`to_float` give floats.
Resizing goes through Pillow (imported on first use); the rest is numpy. Flips,
crops and rotations return views of their input where numpy can, without copying.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final, TypeAlias, TypeGuard

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "INTERPOLATIONS",
    "Size",
    "center_crop",
    "channels_first",
    "channels_last",
    "flip",
    "normalize",
    "random_crop",
    "random_flip",
    "random_jitter",
    "random_resized_crop",
    "random_rotate90",
    "rescale",
    "resize",
    "rotate90",
    "to_float",
]

#: ``(height, width)``, or one int for a square (a shorter side, for :func:`resize`).
Size: TypeAlias = int | tuple[int, int]
Array: TypeAlias = npt.NDArray[Any]

#: The ``interpolation=`` names and the Pillow filters they stand for. Pillow
#: filters the source when it shrinks an image (antialiasing), except ``nearest``.
INTERPOLATIONS: Final = ("nearest", "bilinear", "bicubic", "lanczos", "box")


def resize(image: Array, size: Size, *, interpolation: str = "bilinear") -> Array:
    """Resize to ``size``: a ``(height, width)`` pair, or an int for the shorter side.

    With an int, the shorter side becomes ``size`` and the other keeps the aspect
    ratio (rounded to the nearest pixel), as most classification recipes resize
    before a centre crop.

    >>> import numpy as np
    >>> image = np.zeros((300, 400, 3), np.uint8)
    >>> resize(image, (32, 48)).shape, resize(image, 150).shape
    ((32, 48, 3), (150, 200, 3))

    Args:
        image: ``H x W x C``, ``uint8`` (any channel count) or float.
        size: the new ``(height, width)``, or the new length of the shorter side.
        interpolation: one of :data:`INTERPOLATIONS`; ``"nearest"`` is what seed
            000 uses, ``"bilinear"`` (default) looks better when shrinking.

    Returns:
        A new array of the input's dtype.
    """
    _check_image("resize", image)
    height, width = image.shape[:2]
    new = resized_shape(height, width, check_size("resize", "size", size, shorter=True))
    return _resample(image, new, None, pillow_filter("resize", interpolation))


def center_crop(image: Array, size: Size) -> Array:
    """The ``size`` window in the middle of the image (a view, not a copy).

    >>> import numpy as np
    >>> image = np.arange(5 * 6).reshape(5, 6, 1)
    >>> center_crop(image, 3)[:, :, 0].tolist()
    [[7, 8, 9], [13, 14, 15], [19, 20, 21]]

    Raises:
        ValueError: the image is smaller than ``size`` (resize it first).
    """
    _check_image("center_crop", image)
    crop_height, crop_width = _fitting("center_crop", image, size)
    top = (image.shape[0] - crop_height) // 2
    left = (image.shape[1] - crop_width) // 2
    return image[top : top + crop_height, left : left + crop_width]


def random_crop(image: Array, rng: np.random.Generator, size: Size) -> Array:
    """A ``size`` window at a uniformly random place in the image (a view).

    Raises:
        ValueError: the image is smaller than ``size``.
    """
    _check_image("random_crop", image)
    crop_height, crop_width = _fitting("random_crop", image, size)
    top = int(rng.integers(image.shape[0] - crop_height + 1))
    left = int(rng.integers(image.shape[1] - crop_width + 1))
    return image[top : top + crop_height, left : left + crop_width]


def random_resized_crop(
    image: Array,
    rng: np.random.Generator,
    size: Size,
    *,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    interpolation: str = "bilinear",
) -> Array:
    """Crop a random area and aspect ratio, then resize it to ``size`` (Inception-style).

    The crop covers a fraction of the image's area drawn uniformly from ``scale`` and
    has a width/height ratio drawn log-uniformly from ``ratio``; up to ten draws are
    made for a crop that fits, and failing that the largest centred crop with a
    ratio inside ``ratio`` is taken. Cropping and resizing are one Pillow call, so
    the crop is never copied.

    >>> import numpy as np
    >>> image = np.zeros((120, 90, 3), np.uint8)
    >>> random_resized_crop(image, np.random.default_rng(0), 64).shape
    (64, 64, 3)
    """
    _check_image("random_resized_crop", image)
    out = _pair("random_resized_crop", "size", size)
    low, high = _range("random_resized_crop", "scale", scale, high=1.0)
    ratio_low, ratio_high = _range("random_resized_crop", "ratio", ratio, positive=True)
    height, width = image.shape[:2]
    area = height * width
    log_ratios = (math.log(ratio_low), math.log(ratio_high))
    for _ in range(10):
        target = area * rng.uniform(low, high)
        aspect = math.exp(rng.uniform(*log_ratios))
        crop_width = round(math.sqrt(target * aspect))
        crop_height = round(math.sqrt(target / aspect))
        if 0 < crop_width <= width and 0 < crop_height <= height:
            top = int(rng.integers(height - crop_height + 1))
            left = int(rng.integers(width - crop_width + 1))
            break
    else:
        aspect = width / height
        if aspect < ratio_low:
            crop_width, crop_height = width, round(width / ratio_low)
        elif aspect > ratio_high:
            crop_width, crop_height = round(height * ratio_high), height
        else:
            crop_width, crop_height = width, height
        # A ratio range far from the image's own can round a side to nothing.
        crop_width, crop_height = max(1, crop_width), max(1, crop_height)
        top, left = (height - crop_height) // 2, (width - crop_width) // 2
    box = (left, top, left + crop_width, top + crop_height)
    return _resample(image, out, box, pillow_filter("random_resized_crop", interpolation))


def flip(image: Array, direction: str = "horizontal") -> Array:
    """Mirror the image: ``"horizontal"`` (left-right), ``"vertical"`` or ``"both"``.

    >>> import numpy as np
    >>> flip(np.arange(3).reshape(1, 3, 1))[0, :, 0].tolist()
    [2, 1, 0]
    """
    _check_image("flip", image)
    if direction == "horizontal":
        return image[:, ::-1]
    if direction == "vertical":
        return image[::-1]
    if direction == "both":
        return image[::-1, ::-1]
    raise ValueError(
        f"flip: direction must be 'horizontal', 'vertical' or 'both', got {direction!r}"
    )


def random_flip(
    image: Array,
    rng: np.random.Generator,
    *,
    horizontal: bool = True,
    vertical: bool = False,
    p: float = 0.5,
) -> Array:
    """Mirror left-right (and, with ``vertical=True``, top-bottom), each with chance ``p``.

    One draw is made per enabled direction, whether or not it flips, so turning
    ``vertical`` on does not change which images are flipped left-right.
    """
    _check_image("random_flip", image)
    _check_probability("random_flip", p)
    if horizontal and rng.random() < p:
        image = image[:, ::-1]
    if vertical and rng.random() < p:
        image = image[::-1]
    return image


def rotate90(image: Array, k: int = 1) -> Array:
    """Rotate by ``k`` quarter turns counter-clockwise (``np.rot90`` on the image axes).

    >>> import numpy as np
    >>> rotate90(np.zeros((2, 5, 3))).shape
    (5, 2, 3)
    """
    _check_image("rotate90", image)
    return np.rot90(image, k, axes=(0, 1))


def random_rotate90(
    image: Array, rng: np.random.Generator, *, multiples: Sequence[int] = (0, 1, 2, 3)
) -> Array:
    """Rotate by a quarter-turn count drawn uniformly from ``multiples``.

    The default is seed 000's ``augment(rotate90=True)``: 0, 90, 180 or 270 degrees.
    A non-square image changes shape on odd counts; pass ``multiples=(0, 2)`` to keep
    the shape.
    """
    _check_image("random_rotate90", image)
    choices = tuple(int(k) if _is_int(k) else k for k in multiples)
    if not choices or not all(isinstance(k, int) for k in choices):
        raise ValueError(
            f"random_rotate90: multiples must be a non-empty list of ints, got {multiples!r}"
        )
    return np.rot90(image, choices[int(rng.integers(len(choices)))], axes=(0, 1))


def random_jitter(
    image: Array,
    rng: np.random.Generator,
    *,
    brightness: float = 0.2,
    contrast: float = 0.2,
) -> Array:
    """Scale brightness and contrast by random factors near 1.

    The brightness factor is drawn uniformly from ``[1 - brightness, 1 + brightness]``
    and multiplies every pixel; the contrast factor, drawn the same way from
    ``contrast``, then stretches pixels away from (or towards) the image's mean grey
    level. Both draws are always made, so setting one to 0 leaves the other's
    values as they were. ``uint8`` in gives ``uint8`` out (rounded and clipped to
    0..255); floats stay floats, unclipped.
    """
    _check_image("random_jitter", image)
    if image.dtype != np.uint8 and not np.issubdtype(image.dtype, np.floating):
        raise TypeError(f"random_jitter: expected a uint8 or float image, got {image.dtype}")
    for name, amount in (("brightness", brightness), ("contrast", contrast)):
        if not 0 <= amount <= 1:
            raise ValueError(f"random_jitter: {name} must be between 0 and 1, got {amount}")
    light = rng.uniform(1 - brightness, 1 + brightness)
    stretch = rng.uniform(1 - contrast, 1 + contrast)
    out = image.astype(np.float32 if image.dtype == np.uint8 else image.dtype)
    out *= light
    if stretch != 1:
        mean = out.mean()
        out -= mean
        out *= stretch
        out += mean
    if image.dtype == np.uint8:
        return np.clip(np.rint(out, out=out), 0, 255, out=out).astype(np.uint8)
    return out


def rescale(
    image: Array, scale: float = 1 / 255, offset: float = 0.0, *, dtype: Any = np.float32
) -> Array:
    """``image * scale + offset`` as floats: ``rescale(x)`` maps 0..255 to 0..1 (batches too).

    >>> import numpy as np
    >>> rescale(np.array([[[0, 255]]], np.uint8), 2 / 255, -1).tolist()
    [[[-1.0, 1.0]]]
    """
    _check_image("rescale", image, batched=True)
    out = np.multiply(image, scale, dtype=dtype)
    if offset:
        out += offset
    return out


def normalize(
    image: Array,
    mean: float | Sequence[float],
    std: float | Sequence[float] = 1.0,
    *,
    dtype: Any = np.float32,
) -> Array:
    """``(image - mean) / std`` per channel, as floats.

    Seed 000's ``rescale_images(mean=[103.939, 116.779, 123.68])`` is
    ``normalize(image, [103.939, 116.779, 123.68])``; ImageNet's usual recipe is
    ``normalize(to_float(image), [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])``.

    >>> import numpy as np
    >>> normalize(np.full((1, 1, 3), 100, np.uint8), [100, 50, 0], [1, 2, 4]).tolist()
    [[[0.0, 25.0, 25.0]]]

    Args:
        image: ``H x W x C`` (or a batch, ``N x H x W x C``).
        mean, std: one value for every channel, or one per channel.
        dtype: of the result.
    """
    _check_image("normalize", image, batched=True)
    centre = _per_channel("normalize", "mean", mean, image.shape[-1], dtype)
    spread = _per_channel("normalize", "std", std, image.shape[-1], dtype)
    if np.any(spread == 0):
        raise ValueError(f"normalize: std must not be zero, got {std!r}")
    out = np.empty(image.shape, dtype)
    width, channels = image.shape[-2:]
    if out.size == 0:
        return out
    if image.strides[-2] == channels * image.strides[-1]:
        np.copyto(out, image, casting="same_kind")
    else:  # pixels not packed (a flipped view): one channel at a time, in long runs
        for channel in range(channels):
            np.copyto(out[..., channel], image[..., channel], casting="same_kind")
    # On rows of pixels, not pixels: numpy's loops over a last axis of 3 are short
    # and slow (four to six times slower on a 224 x 224 x 3 image).
    rows = out.reshape(-1, width * channels)
    rows -= np.tile(centre, width) if centre.ndim else centre
    rows *= np.tile(1 / spread, width) if spread.ndim else 1 / spread
    return out


def to_float(image: Array, *, dtype: Any = np.float32) -> Array:
    """Floats in 0..1: integer images are divided by their type's maximum (255 for
    ``uint8``), float images are only cast.

    >>> import numpy as np
    >>> to_float(np.array([[[0, 51, 255]]], np.uint8)).tolist()
    [[[0.0, 0.20000000298023224, 1.0]]]
    """
    _check_image("to_float", image, batched=True)
    if np.issubdtype(image.dtype, np.integer):
        return np.divide(image, np.iinfo(image.dtype).max, dtype=dtype)
    return image.astype(dtype)


def channels_first(image: Array) -> Array:
    """``H x W x C`` to ``C x H x W`` (and ``N x H x W x C`` to ``N x C x H x W``), a view.

    >>> import numpy as np
    >>> channels_first(np.zeros((4, 5, 3))).shape, channels_first(np.zeros((8, 4, 5, 3))).shape
    ((3, 4, 5), (8, 3, 4, 5))
    """
    _check_image("channels_first", image, batched=True)
    return np.moveaxis(image, -1, -3)


def channels_last(image: Array) -> Array:
    """``C x H x W`` to ``H x W x C`` (and batches likewise): undoes :func:`channels_first`.

    >>> import numpy as np
    >>> channels_last(np.zeros((3, 4, 5))).shape
    (4, 5, 3)
    """
    _check_image("channels_last", image, batched=True)
    return np.moveaxis(image, -3, -1)


# -- helpers ---------------------------------------------------------------------------


def _check_image(name: str, image: object, *, batched: bool = False) -> None:
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{name}: expected a numpy array image, got {type(image).__name__}")
    if (image.ndim == 3 or (batched and image.ndim == 4)) and image.shape[-1] > 0:
        return
    wanted = "H x W x C (or N x H x W x C)" if batched else "H x W x C"
    raise ValueError(f"{name}: expected an {wanted} array, got shape {image.shape}")


def check_size(name: str, what: str, size: object, *, shorter: bool = False) -> Size:
    """``size`` as a checked ``(height, width)``, or (if ``shorter``) a positive int."""
    if shorter and _is_int(size):
        if size < 1:
            raise ValueError(f"{name}: {what} must be positive, got {size}")
        return int(size)
    return _pair(name, what, size)


def resized_shape(height: int, width: int, size: Size) -> tuple[int, int]:
    """The ``(height, width)`` :func:`resize` makes of a ``height x width`` image."""
    if isinstance(size, tuple):
        return size
    if height <= width:
        return size, max(1, round(width * size / height))
    return max(1, round(height * size / width)), size


def _pair(name: str, what: str, size: object) -> tuple[int, int]:
    if _is_int(size):
        size = (size, size)
    if (
        isinstance(size, tuple | list)
        and len(size) == 2
        and all(_is_int(n) and n > 0 for n in size)
    ):
        return int(size[0]), int(size[1])
    raise ValueError(f"{name}: {what} must be a positive int or (height, width), got {size!r}")


def _fitting(name: str, image: Array, size: Size) -> tuple[int, int]:
    height, width = _pair(name, "size", size)
    if height > image.shape[0] or width > image.shape[1]:
        raise ValueError(
            f"{name}: a {height}x{width} crop needs an image at least that large, got "
            f"{image.shape[0]}x{image.shape[1]} (resize it first)"
        )
    return height, width


def _is_int(value: object) -> TypeGuard[int]:
    """An int, numpy's included (``int()`` takes both), but not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)


def _range(
    name: str, what: str, pair: object, *, high: float = math.inf, positive: bool = False
) -> tuple[float, float]:
    """A ``(low, high)`` pair with ``0 <= low <= high <= high`` (``0 < low`` if positive)."""
    if isinstance(pair, tuple | list) and len(pair) == 2:
        first, second = (float(value) for value in pair)
        if (first > 0 if positive else first >= 0) and first <= second and 0 < second <= high:
            return first, second
    bounds = "0 < low" if positive else "0 <= low"
    raise ValueError(
        f"{name}: {what} must be a (low, high) pair with {bounds} <= high"
        f"{f' <= {high:g}' if high != math.inf else ''}, got {pair!r}"
    )


def _check_probability(name: str, p: float) -> None:
    if not 0 <= p <= 1:
        raise ValueError(f"{name}: p must be between 0 and 1, got {p}")


def _per_channel(
    name: str, what: str, value: float | Sequence[float], channels: int, dtype: Any
) -> Array:
    values = np.asarray(value, dtype=dtype)
    if values.ndim == 0 or (values.ndim == 1 and len(values) == channels):
        return values
    raise ValueError(
        f"{name}: {what} needs one value or one per channel ({channels}), got {value!r}"
    )


def pillow_filter(name: str, interpolation: str) -> Image.Resampling:
    """The Pillow filter for an ``interpolation=`` name; ``name`` is who asks."""
    from PIL import Image

    filters = {
        "nearest": Image.Resampling.NEAREST,
        "bilinear": Image.Resampling.BILINEAR,
        "bicubic": Image.Resampling.BICUBIC,
        "lanczos": Image.Resampling.LANCZOS,
        "box": Image.Resampling.BOX,
    }
    if interpolation not in filters:
        raise ValueError(
            f"{name}: interpolation must be one of {', '.join(INTERPOLATIONS)}, "
            f"got {interpolation!r}"
        )
    return filters[interpolation]


def _resample(
    image: Array,
    size: tuple[int, int],
    box: tuple[int, int, int, int] | None,
    resample: Image.Resampling,
) -> Array:
    """Resize (the ``box`` of) ``image`` to ``size`` with Pillow, keeping the dtype."""
    from PIL import Image

    height, width = size
    if image.dtype == np.uint8 and image.shape[2] == 3:
        # Pillow's RGB mode: one call, in C, with the GIL released. (Not RGBA for four
        # channels: Pillow premultiplies by the fourth, which is not always alpha.)
        # np.array, not asarray: an array over Pillow's bytes would be read-only.
        return np.array(Image.fromarray(image).resize((width, height), resample, box=box))
    if image.dtype == np.uint8:
        # Other channel counts go one 8-bit plane at a time, exactly as RGB would.
        planes = [
            np.asarray(
                Image.fromarray(np.ascontiguousarray(image[:, :, c])).resize(
                    (width, height), resample, box=box
                )
            )
            for c in range(image.shape[2])
        ]
        return np.stack(planes, axis=2)
    if np.issubdtype(image.dtype, np.floating):
        # Floats go one plane at a time through Pillow's 32-bit float mode.
        floats = [
            np.asarray(
                Image.fromarray(np.ascontiguousarray(image[:, :, c], dtype=np.float32)).resize(
                    (width, height), resample, box=box
                )
            )
            for c in range(image.shape[2])
        ]
        stacked: Array = np.stack(floats, axis=2)
        return stacked.astype(image.dtype, copy=False)
    raise TypeError(f"cannot resize a {image.dtype} image: use uint8 or a float dtype")
