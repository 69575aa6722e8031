"""Images for training: decode, transform and label, as ``map`` and ``random_map`` steps.

- :func:`decode` turns a path, URL or the bytes of one image (a sample from
  :func:`headrace.read_tar_shards`, say) into an ``H x W x 3`` RGB ``uint8`` array,
  resized on the way with ``resize=`` (the fast path to a training image), with JPEG
  draft-mode decoding when the image will shrink and a pixel limit against
  decompression bombs.
- Transforms on ``H x W x C`` arrays (:mod:`headrace.vision.transforms`):
  :func:`resize`, :func:`center_crop`, :func:`flip`, :func:`rotate90`,
  :func:`rescale`, :func:`normalize`, :func:`to_float`, :func:`channels_first`,
  :func:`channels_last`, and the random ones, which take the element's generator
  second as ``random_map`` passes it: :func:`random_crop`,
  :func:`random_resized_crop`, :func:`random_flip`, :func:`random_rotate90`,
  :func:`random_jitter`.
- :class:`LabelEncoder` maps class names to labels and one-hot rows and back.

>>> import headrace.vision as hv
>>> hv.DEFAULT_MAX_PIXELS
89478485

Pillow and numpy are imported when a transform or :class:`LabelEncoder` is first
asked for or :func:`decode` first runs, not with this module.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from headrace.vision.decode import DEFAULT_MAX_PIXELS, ImageSource, decode

_LAZY = {
    "LabelEncoder": "headrace.vision.labels",
    "INTERPOLATIONS": "headrace.vision.transforms",
    "center_crop": "headrace.vision.transforms",
    "channels_first": "headrace.vision.transforms",
    "channels_last": "headrace.vision.transforms",
    "flip": "headrace.vision.transforms",
    "normalize": "headrace.vision.transforms",
    "random_crop": "headrace.vision.transforms",
    "random_flip": "headrace.vision.transforms",
    "random_jitter": "headrace.vision.transforms",
    "random_resized_crop": "headrace.vision.transforms",
    "random_rotate90": "headrace.vision.transforms",
    "rescale": "headrace.vision.transforms",
    "resize": "headrace.vision.transforms",
    "rotate90": "headrace.vision.transforms",
    "to_float": "headrace.vision.transforms",
}

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "INTERPOLATIONS",
    "ImageSource",
    "LabelEncoder",
    "center_crop",
    "channels_first",
    "channels_last",
    "decode",
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

if TYPE_CHECKING:
    from headrace.vision.labels import LabelEncoder
    from headrace.vision.transforms import (
        INTERPOLATIONS,
        center_crop,
        channels_first,
        channels_last,
        flip,
        normalize,
        random_crop,
        random_flip,
        random_jitter,
        random_resized_crop,
        random_rotate90,
        rescale,
        resize,
        rotate90,
        to_float,
    )
else:

    def __getattr__(name: str) -> Any:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value
