"""Images for training: decode encoded images into arrays, ready for transforms.

Today this is :func:`decode`, which turns a path or the bytes of one image (a sample
from :func:`headrace.read_tar_shards`, say) into an ``H x W x 3`` RGB ``uint8`` array,
with JPEG draft-mode decoding for callers that will shrink the image and a pixel limit
against decompression bombs, and :class:`LabelEncoder`, which maps class names to
labels and one-hot rows and back. Transforms are to follow.

>>> import headrace.vision as hv
>>> hv.DEFAULT_MAX_PIXELS
89478485

Pillow and numpy are imported when :func:`decode` first runs or :class:`LabelEncoder`
is first asked for, not with this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from headrace.vision.decode import DEFAULT_MAX_PIXELS, ImageSource, decode

__all__ = ["DEFAULT_MAX_PIXELS", "ImageSource", "LabelEncoder", "decode"]

if TYPE_CHECKING:
    from headrace.vision.labels import LabelEncoder
else:

    def __getattr__(name: str) -> Any:
        if name == "LabelEncoder":
            from headrace.vision.labels import LabelEncoder

            return LabelEncoder
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
